"""The owner slots' contract (jobs.slots), run against the in-memory fake and against ``DynamoOwnerSlots`` on moto
with template.yaml's ``CallbackSlotsTable``: the unit tests' fake behaves as the table does."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from jobs.slots import RETRY_INTERVAL_SECONDS, DynamoOwnerSlots, InMemoryOwnerSlots, OwnerSlots, acquire_within
from tests.conftest import Aws


class Clock:
    """A settable clock, epoch seconds."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


SlotsFactory = Callable[[int, Clock], OwnerSlots]


@pytest.fixture(params=["memory", "dynamodb"])
def make_slots(request: pytest.FixtureRequest) -> SlotsFactory:
    if request.param == "memory":
        return lambda per_owner, clock: InMemoryOwnerSlots(per_owner, clock)
    aws: Aws = request.getfixturevalue("aws")
    table = aws.physical["CallbackSlotsTable"]["Ref"]
    return lambda per_owner, clock: DynamoOwnerSlots(table, per_owner, boto3.client("dynamodb"), clock)


def test_an_owner_has_as_many_holders_as_slots(make_slots: SlotsFactory) -> None:
    slots = make_slots(2, Clock())

    assert slots.acquire("alice", "one", 30)
    assert slots.acquire("alice", "two", 30)
    assert not slots.acquire("alice", "three", 30)
    assert slots.acquire("bob", "three", 30)  # another owner's slots are its own
    assert slots.acquire("alice#1", "three", 30)  # an owner id holding the key's separator is another owner


def test_a_given_back_slot_is_free_and_only_its_holder_gives_it_back(make_slots: SlotsFactory) -> None:
    slots = make_slots(1, Clock())
    assert slots.acquire("alice", "one", 30)

    slots.release("alice", "two")  # not the holder: nothing happens
    taken_while_held = slots.acquire("alice", "two", 30)
    slots.release("alice", "one")

    assert not taken_while_held
    assert slots.acquire("alice", "two", 30)
    slots.release("bob", "two")  # nothing held: nothing to do


def test_a_slot_frees_itself_when_its_lease_ends(make_slots: SlotsFactory) -> None:
    clock = Clock()
    slots = make_slots(1, clock)
    assert slots.acquire("alice", "crashed", 30)

    clock.now += 29
    before = slots.acquire("alice", "next", 30)
    clock.now += 2

    assert not before
    assert slots.acquire("alice", "next", 30)


def test_the_holder_may_take_its_slot_again(make_slots: SlotsFactory) -> None:
    slots = make_slots(1, Clock())

    assert slots.acquire("alice", "one", 30)
    assert slots.acquire("alice", "one", 30)


def test_a_slot_is_waited_for_a_moment_then_given_up(make_slots: SlotsFactory) -> None:
    clock = Clock()
    slots = make_slots(1, clock)
    assert slots.acquire("alice", "one", 30)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        if len(slept) == 3:
            slots.release("alice", "one")  # the holder's deliveries end

    assert acquire_within(slots, "alice", "two", 30, 1.0, clock=clock, sleep=sleep)
    assert slept == [RETRY_INTERVAL_SECONDS] * 3
    assert not acquire_within(slots, "alice", "three", 30, 1.0, clock=clock, sleep=sleep)
    assert sum(slept[3:]) == pytest.approx(1.0, abs=0.11)  # tried for about the second, then deferred
