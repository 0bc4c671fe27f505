"""A consumer of a standard SQS queue shared by tenants (``MessageGroupId``), as the fair-queue tests and
``bench/fair_queues.py`` drive it: bodies name their tenant (``<tenant>-<n>``), receives are recorded in order."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import boto3

from local.ports import free_port
from local.stack import start_moto

#: Each receive's message bodies, in order.
Receives = list[list[str]]


def send(sqs: Any, url: str, tenant: str | None, count: int, fifo: bool = False, first: int = 0) -> None:
    """``count`` messages with bodies ``<tenant>-<n>`` (``n`` from ``first``), in batches of ten; ``tenant`` None
    sends no group id."""
    for start in range(first, first + count, 10):
        entries = []
        for n in range(start, min(first + count, start + 10)):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": f"{tenant or 'none'}-{n}"}
            if tenant is not None:
                entry["MessageGroupId"] = tenant
            if fifo:
                entry["MessageDeduplicationId"] = f"{tenant}-{n}"
            entries.append(entry)
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def consume(
    sqs: Any,
    url: str,
    *,
    per_receive: int = 10,
    in_flight_batches: int | None = 4,
    after: Callable[[int], None] = lambda n: None,
    receives: int | None = None,
    delete_rest: bool = True,
) -> Receives:
    """Receive ``per_receive`` at a time, keeping the last ``in_flight_batches`` batches in flight (deleting the
    oldest after each receive; None deletes nothing), calling ``after(n)`` after the n-th receive (from 1). Stops
    after ``receives`` receives, or when a receive finds nothing; then deletes what is still in flight (unless not
    ``delete_rest``). Returns each receive's bodies."""
    held: deque[list[str]] = deque()
    bodies: Receives = []
    while receives is None or len(bodies) < receives:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=per_receive, VisibilityTimeout=600)
        messages = got.get("Messages", [])
        if not messages:
            break
        bodies.append([message["Body"] for message in messages])
        held.append([message["ReceiptHandle"] for message in messages])
        if in_flight_batches is not None and len(held) > in_flight_batches:
            for handle in held.popleft():
                sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
        after(len(bodies))
    for batch in held if delete_rest else []:
        for handle in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    return bodies


def first_receive_of(tenant: str, bodies: Receives) -> int:
    """The number (from 1) of the first receive that held one of ``tenant``'s messages."""
    return next(n for n, batch in enumerate(bodies, 1) if any(body.startswith(f"{tenant}-") for body in batch))


def noisy_neighbour(sqs: Any, url: str, *, per_receive: int = 10, in_flight_batches: int = 4) -> Receives:
    """A sends 200; the consumer receives ``per_receive`` at a time keeping ``in_flight_batches`` batches in
    flight; B sends 10 after the 5th receive."""
    send(sqs, url, "A", 200)
    return consume(
        sqs,
        url,
        per_receive=per_receive,
        in_flight_batches=in_flight_batches,
        after=lambda n: send(sqs, url, "B", 10) if n == 5 else None,
    )


def noisy_neighbour_on_a_moto_server() -> Receives:
    """``noisy_neighbour`` on a queue of a fresh ``local.moto_server`` process (as ``local.stack`` starts it, with
    this process's environment: ``JOBS_LOCAL_SQS_FAIR_QUEUES`` turns the rule on or off)."""
    port = free_port()
    process = start_moto(port)
    try:
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
        )
        sqs = session.client("sqs", endpoint_url=f"http://127.0.0.1:{port}")
        url = sqs.create_queue(QueueName="shared")["QueueUrl"]
        return noisy_neighbour(sqs, url)
    finally:
        process.terminate()
        process.wait(10)


def assert_each_once(bodies: Receives, expected: Counter[str]) -> None:
    """Every body received once, and ``expected`` messages of each tenant."""
    received = Counter(body for batch in bodies for body in batch)
    assert max(received.values()) == 1
    assert Counter(body.rsplit("-", 1)[0] for body in received) == expected
