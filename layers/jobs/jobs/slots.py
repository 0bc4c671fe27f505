"""Owner slots: how many callback sender invocations may deliver one owner's callbacks at once, across sandboxes.

A Lambda invocation of the sender ends when the slowest delivery of its batch ends, so a receiver that hangs holds
the whole invocation for up to an attempt's timeout, and the event source mapping runs at most
``ScalingConfig.MaximumConcurrency`` invocations ("Configuring maximum concurrency for Amazon SQS event sources",
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html#events-sqs-max-concurrency). Were one
owner's callbacks free to fill every invocation, every other owner's would wait for its receiver. So an invocation
takes a *slot* of an owner before it delivers that owner's records and gives it back after; an owner has
``slots_per_owner`` of them (1 by default), and records whose owner has none free are put back on the queue for a
while (``jobs.callbacks`` calls that a deferral; it is not an attempt). With one slot per owner and the template's
maximum concurrency of 5, one owner's hanging receiver holds at most one invocation; the other four keep
delivering everyone else's.

A slot is one DynamoDB item, ``{slot_id: "<n>#<owner_id>", holder, expires_at}``, taken with a conditional write
("Condition expressions", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html):
free when it does not exist, has expired, or is already the caller's. ``expires_at`` (epoch seconds) is the end of
the taking invocation's time, so a sandbox that dies holding a slot frees it when its invocation would have ended
anyway; it is also the table's TTL attribute, so abandoned slots are swept.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from jobs import aws

#: The slot item's key: the slot number, then the owner id (an owner id may hold ``#``; the number never does).
SLOT_KEY = "slot_id"


def slot_id(owner_id: str, number: int) -> str:
    """The key of an owner's slot ``number`` (0-based)."""
    return f"{number}#{owner_id}"


class OwnerSlots(Protocol):
    """Who holds each owner's delivery slots (module docstring)."""

    def acquire(self, owner_id: str, holder: str, seconds: float) -> bool:
        """Take a free slot of the owner for ``holder`` (an invocation's request id) for ``seconds``; False when
        all ``slots_per_owner`` are held by others.

        Raises:
            jobs.models.ServiceUnavailable: the store failed or timed out.
        """
        ...

    def release(self, owner_id: str, holder: str) -> None:
        """Give back every slot of the owner that ``holder`` holds (none is fine).

        Raises:
            jobs.models.ServiceUnavailable: the store failed or timed out (the slot frees itself at its
                ``expires_at``).
        """
        ...


class DynamoOwnerSlots:
    """``OwnerSlots`` in a DynamoDB table keyed by ``slot_id`` (template.yaml's ``CallbackSlotsTable``).

    Args:
        table_name: the table.
        slots_per_owner: how many invocations may hold one owner's slots at once (1 or more).
        client: a botocore DynamoDB client (None: ``jobs.aws.client("dynamodb")`` on first use).
        clock: now, epoch seconds.
    """

    def __init__(
        self,
        table_name: str,
        slots_per_owner: int,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.slots_per_owner = slots_per_owner
        self._client = client
        self.clock = clock

    @property
    def client(self) -> Any:
        """The DynamoDB client, made on first use."""
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def acquire(self, owner_id: str, holder: str, seconds: float) -> bool:
        now = self.clock()
        for number in range(self.slots_per_owner):
            with aws.transient_errors_as_unavailable("UpdateItem"):
                try:
                    self.client.update_item(
                        TableName=self.table_name,
                        Key={SLOT_KEY: {"S": slot_id(owner_id, number)}},
                        UpdateExpression="SET holder = :holder, expires_at = :expires",
                        ConditionExpression=(
                            f"attribute_not_exists({SLOT_KEY}) OR expires_at <= :now OR holder = :holder"
                        ),
                        ExpressionAttributeValues={
                            ":holder": {"S": holder},
                            ":expires": {"N": str(math.ceil(now + seconds))},
                            ":now": {"N": str(math.floor(now))},
                        },
                    )
                    return True
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise
        return False

    def release(self, owner_id: str, holder: str) -> None:
        for number in range(self.slots_per_owner):
            with aws.transient_errors_as_unavailable("DeleteItem"):
                try:
                    self.client.delete_item(
                        TableName=self.table_name,
                        Key={SLOT_KEY: {"S": slot_id(owner_id, number)}},
                        ConditionExpression="holder = :holder",
                        ExpressionAttributeValues={":holder": {"S": holder}},
                    )
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise


class InMemoryOwnerSlots:
    """``OwnerSlots`` in a dict, for unit tests; tests/integration/test_owner_slots.py runs the same cases against
    ``DynamoOwnerSlots`` on moto."""

    def __init__(self, slots_per_owner: int, clock: Callable[[], float] = time.time) -> None:
        self.slots_per_owner = slots_per_owner
        self.clock = clock
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[str, int]] = {}

    def acquire(self, owner_id: str, holder: str, seconds: float) -> bool:
        now = self.clock()
        with self._lock:
            for number in range(self.slots_per_owner):
                key = slot_id(owner_id, number)
                held = self._slots.get(key)
                if held is None or held[1] <= math.floor(now) or held[0] == holder:
                    self._slots[key] = (holder, math.ceil(now + seconds))
                    return True
        return False

    def release(self, owner_id: str, holder: str) -> None:
        with self._lock:
            for number in range(self.slots_per_owner):
                key = slot_id(owner_id, number)
                if self._slots.get(key, ("", 0))[0] == holder:
                    del self._slots[key]


#: How often ``acquire_within`` tries again, seconds.
RETRY_INTERVAL_SECONDS = 0.1


def acquire_within(
    slots: OwnerSlots,
    owner_id: str,
    holder: str,
    seconds: float,
    wait_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """``slots.acquire``, tried again every ``RETRY_INTERVAL_SECONDS`` for up to ``wait_seconds``: a healthy
    receiver's deliveries give their slot back within a fraction of a second, so an owner's burst spread over
    several invocations waits that long rather than a deferral; a hanging receiver's slot is held past the wait,
    and the records are deferred after it. Each try is one conditional write.

    Raises:
        jobs.models.ServiceUnavailable: the store failed or timed out.
    """
    deadline = clock() + wait_seconds
    while not slots.acquire(owner_id, holder, seconds):
        if clock() + RETRY_INTERVAL_SECONDS > deadline:
            return False
        sleep(RETRY_INTERVAL_SECONDS)
    return True
