"""SQS fair queues on moto (``local.moto_server.play_fair_queues``, applied to ``mock_aws`` by tests/conftest.py):
while a tenant (a ``MessageGroupId``) holds more than 10 % of a standard queue's in-flight messages and at least 30
of its own, ReceiveMessage hands out quiet tenants' messages first ("How Amazon SQS fair queues work",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues-detailed.html)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.utils import unix_time_millis
from moto.sqs.models import Queue

from local.moto_server import fair_queues_enabled, play_fair_queues
from tests.fair_queue_consumer import assert_each_once, consume, first_receive_of, noisy_neighbour, send


@pytest.fixture
def rule() -> Iterator[Callable[[bool], None]]:
    """``play_fair_queues``, turned back on (the tests' default, as on AWS) after the test."""
    yield play_fair_queues
    play_fair_queues(True)


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _queue_model(url: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends["123456789012"]["us-east-1"].get_queue(url.rsplit("/", 1)[-1])


def test_a_quiet_tenant_comes_first_while_a_noisy_one_holds_40_in_flight(
    sqs: Any, rule: Callable[[bool], None]
) -> None:
    url = sqs.create_queue(QueueName="fair")["QueueUrl"]
    bodies = noisy_neighbour(sqs, url)
    assert first_receive_of("B", bodies) == 6  # the receive right after B sent
    assert bodies[5] == [f"B-{n}" for n in range(10)]
    assert_each_once(bodies, Counter({"A": 200, "B": 10}))

    rule(False)
    url = sqs.create_queue(QueueName="unfair")["QueueUrl"]
    bodies = noisy_neighbour(sqs, url)
    assert first_receive_of("B", bodies) == 21  # after A's backlog of 200
    assert_each_once(bodies, Counter({"A": 200, "B": 10}))


def test_a_tenant_is_deprioritised_only_from_30_in_flight(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="27")["QueueUrl"]
    bodies = noisy_neighbour(sqs, url, per_receive=9, in_flight_batches=3)  # at most 27 of A's in flight
    in_order = [f"A-{n}" for n in range(200)] + [f"B-{n}" for n in range(10)]
    assert [body for batch in bodies for body in batch] == in_order

    url = sqs.create_queue(QueueName="30")["QueueUrl"]
    bodies = noisy_neighbour(sqs, url, per_receive=10, in_flight_batches=3)  # 30 of A's in flight
    assert first_receive_of("B", bodies) == 6
    assert_each_once(bodies, Counter({"A": 200, "B": 10}))


def test_a_tenant_under_30_in_flight_receives_as_without_the_rule(sqs: Any, rule: Callable[[bool], None]) -> None:
    url = sqs.create_queue(QueueName="on")["QueueUrl"]
    on = noisy_neighbour(sqs, url, per_receive=7, in_flight_batches=4)  # at most 28 in flight
    rule(False)
    url = sqs.create_queue(QueueName="off")["QueueUrl"]
    off = noisy_neighbour(sqs, url, per_receive=7, in_flight_batches=4)
    assert on == off


def test_a_tenant_is_noisy_only_above_a_tenth_of_the_queues_in_flight_messages(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    send(sqs, url, None, 300)
    send(sqs, url, "A", 100)
    send(sqs, url, "B", 10)
    bodies = consume(sqs, url, in_flight_batches=None)
    # Receive 34 finds A with 30 of 330 in flight (9 %): quiet. Receive 35 finds 40 of 340 (11.8 %): noisy.
    assert all(body.startswith("A-") for body in bodies[33])
    assert first_receive_of("B", bodies) == 35
    assert_each_once(bodies, Counter({"none": 300, "A": 100, "B": 10}))


def test_each_message_without_a_group_id_is_a_tenant_of_its_own(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    send(sqs, url, None, 200)
    bodies = consume(sqs, url, after=lambda n: send(sqs, url, "B", 10) if n == 5 else None)
    assert first_receive_of("B", bodies) == 21  # 40 in flight without a group id are 40 tenants, none noisy
    assert_each_once(bodies, Counter({"none": 200, "B": 10}))


def test_among_noisy_tenants_the_one_with_the_fewest_in_flight_comes_first(
    sqs: Any, rule: Callable[[bool], None]
) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for tenant, count, first in [("A", 40, 0), ("C", 30, 0), ("A", 60, 40), ("C", 60, 30), ("D", 5, 0)]:
        send(sqs, url, tenant, count, first=first)
    rule(False)
    held = consume(sqs, url, in_flight_batches=None, receives=7, delete_rest=False)
    assert Counter(body[0] for batch in held for body in batch) == {"A": 40, "C": 30}
    rule(True)
    got = [m["Body"][0] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert got == ["D"] * 5 + ["C"] * 5  # quiet D first, then C (30 in flight) before A (40)
    got = [m["Body"][0] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert got == ["C"] * 10  # C has 35 in flight, A 40


@pytest.mark.parametrize(("silent_seconds", "next_tenant"), [(299, "B"), (301, "A")])
def test_a_tenant_that_sent_nothing_for_5_minutes_is_quiet_again(
    sqs: Any, silent_seconds: int, next_tenant: str
) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    send(sqs, url, "A", 200)

    def after(n: int) -> None:
        if n == 5:
            for message in _queue_model(url)._messages:
                message.sent_timestamp = int(unix_time_millis()) - silent_seconds * 1000
            send(sqs, url, "B", 10)

    bodies = consume(sqs, url, after=after, receives=6)
    assert {body[0] for body in bodies[5]} == {next_tenant}  # A's 40 in flight are noisy only if A sent lately


def test_fifo_queues_keep_motos_order(sqs: Any, rule: Callable[[bool], None]) -> None:
    orders = []
    for name in ("fifo.fifo", "standard"):
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        send(sqs, url, "A", 200, fifo=bool(attributes))
        send(sqs, url, "B", 10, fifo=bool(attributes))
        queue = _queue_model(url)
        for message in queue._messages[:40]:  # 40 of A's in flight: noisy, on a standard queue
            message.visible_at = unix_time_millis() + 600_000
        orders.append([message.body for message in queue.messages])
    fifo, standard = orders
    assert fifo == [f"A-{n}" for n in range(40, 200)] + [f"B-{n}" for n in range(10)]
    assert standard == [f"B-{n}" for n in range(10)] + [f"A-{n}" for n in range(40, 200)]

    rule(False)
    url = sqs.create_queue(QueueName="off.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    send(sqs, url, "A", 200, fifo=True)
    send(sqs, url, "B", 10, fifo=True)
    off = consume(sqs, url, after=lambda n: None)
    rule(True)
    url = sqs.create_queue(QueueName="on.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    send(sqs, url, "A", 200, fifo=True)
    send(sqs, url, "B", 10, fifo=True)
    assert consume(sqs, url, after=lambda n: None) == off


def test_every_message_is_received_exactly_once_when_deleted_promptly(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for tenant, count, first in [("A", 200, 0), ("B", 10, 0), (None, 20, 0), ("C", 45, 0), ("A", 30, 200)]:
        send(sqs, url, tenant, count, first=first)
    bodies = consume(sqs, url, in_flight_batches=0)
    assert_each_once(bodies, Counter({"A": 230, "B": 10, "none": 20, "C": 45}))
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_the_patch_is_applied_once() -> None:
    play_fair_queues()
    play_fair_queues()
    wrapped = Queue.messages.fget.__wrapped__  # type: ignore[attr-defined]
    assert getattr(wrapped, "__wrapped__", None) is None


@pytest.mark.parametrize(
    ("value", "enabled"), [(None, True), ("", True), ("1", True), ("0", False), ("off", False), ("FALSE", False)]
)
def test_the_switch_reads_the_variable(value: str | None, enabled: bool) -> None:
    assert fair_queues_enabled(value) is enabled
