"""A scheduled start (``not_before``) against SQS's rules, on a hand-moved clock.

``SimulatedQueue`` plays what SQS does to the messages of one job, at the level of the service's ``JobQueue`` port
(no AWS API is faked: moto covers the wire in tests/integration): a message sent with ``DelaySeconds`` (0 to 900)
becomes visible after it; a receive counts (``ApproximateReceiveCount``), stamps its first receive, and hides the
message for the queue's visibility timeout; the consumer's ``NotYetDue``/``RetryLater`` is a ChangeMessageVisibility
that must end within 12 hours of that receive; a message is dropped once it has been in the queue for the
retention period; a receive beyond ``maxReceiveCount`` would move it to the dead-letter queue. The sources: SendMessage
and ChangeMessageVisibility (SQS API reference), "Visibility timeout", "Message retention" and "Dead-letter queues"
(SQS developer guide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobs.models import (
    MAX_NOT_BEFORE_SECONDS,
    SQS_MAX_VISIBILITY_SECONDS,
    InvalidRequest,
    JobCreate,
    JobStatus,
    RetryLater,
)
from jobs.processors import Registry
from jobs.queue import MAX_DELAY_SECONDS, Dispatch, InMemoryJobQueue, SendResult
from jobs.service import CLOCK_SKEW_SECONDS, Delivery, JobService
from jobs.store import InMemoryJobStore
from tests.helpers import Clock

RETENTION_SECONDS = 345600  # the jobs queues' MessageRetentionPeriod (template.yaml): 4 days
MAX_RECEIVE_COUNT = 5  # template.yaml, MaxReceiveCount's default
QUEUE_VISIBILITY_SECONDS = 180  # the jobs queues' VisibilityTimeout
#: How long after a message becomes visible the event source mapping's poller receives it, seconds.
POLL_LATENCY_SECONDS = 0.3


@dataclass
class SimulatedMessage:
    dispatch: Dispatch
    sent_at: datetime
    visible_at: datetime
    receive_count: int = 0
    first_received_at: datetime | None = None
    received_at: datetime | None = None
    receives: list[datetime] = field(default_factory=list)


class SimulatedQueue(InMemoryJobQueue):
    """The jobs queues as SQS keeps one job's messages: sends, receives, hides and the retention period."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.live: list[SimulatedMessage] = []
        self.done: list[SimulatedMessage] = []

    def send_batch(self, dispatches: Sequence[Dispatch]) -> list[SendResult]:
        results = super().send_batch(dispatches)
        for dispatch in dispatches:
            assert 0 <= dispatch.delay_seconds <= MAX_DELAY_SECONDS  # SendMessage: DelaySeconds 0 to 900
            now = self.clock()
            self.live.append(SimulatedMessage(dispatch, now, now + timedelta(seconds=dispatch.delay_seconds)))
        return results

    def receive(self) -> SimulatedMessage:
        """Move the clock to the next message's visibility (plus the poller's latency) and receive it."""
        message = min(self.live, key=lambda m: m.visible_at)
        self.clock.now = max(self.clock.now, message.visible_at + timedelta(seconds=POLL_LATENCY_SECONDS))
        now = self.clock()
        # "Message retention": SQS deletes a message that has been in the queue longer than the retention period.
        assert now < message.sent_at + timedelta(seconds=RETENTION_SECONDS), "the message outlived its retention"
        message.receive_count += 1
        # "Dead-letter queues": a receive beyond maxReceiveCount moves the message to the dead-letter queue.
        assert message.receive_count <= MAX_RECEIVE_COUNT, "the message would have gone to the dead-letter queue"
        message.first_received_at = message.first_received_at or now
        message.received_at = now
        message.receives.append(now)
        message.visible_at = now + timedelta(seconds=QUEUE_VISIBILITY_SECONDS)
        return message

    def hide(self, message: SimulatedMessage, seconds: int) -> None:
        """ChangeMessageVisibility: 0 to 43200 s, ending at most 12 hours after the receive."""
        assert message.received_at is not None
        assert 0 <= seconds <= SQS_MAX_VISIBILITY_SECONDS
        now = self.clock()
        ends = now + timedelta(seconds=seconds)
        assert ends <= message.received_at + timedelta(seconds=SQS_MAX_VISIBILITY_SECONDS), "beyond the 12 hours"
        message.visible_at = ends

    def delete(self, message: SimulatedMessage) -> None:
        self.live.remove(message)
        self.done.append(message)


@dataclass
class Outcome:
    receives: int
    messages: list[SimulatedMessage]
    started_at: datetime
    not_before: datetime
    status: JobStatus
    attempts: int


def delivery_of(message: SimulatedMessage) -> Delivery:
    """What the consumer's record says of a message (``jobs.batch.delivery_of``)."""
    return Delivery(
        receive_count=message.receive_count,
        max_receive_count=MAX_RECEIVE_COUNT,
        queue_arn="arn:aws:sqs:us-east-1:123456789012:jobs",
        sent_at=message.sent_at,
        first_received_at=message.first_received_at,
        not_before=message.dispatch.not_before,
        retention_seconds=RETENTION_SECONDS,
    )


def make_service(clock: Clock) -> tuple[JobService, SimulatedQueue]:
    queue = SimulatedQueue(clock)
    store = InMemoryJobStore(clock=lambda: clock().timestamp())
    service = JobService(store, queue, Registry(), clock=clock, seconds_left=lambda: None, invocation=lambda: None)
    return service, queue


def schedule(wait: timedelta, *, handling_seconds: float = 0.05) -> Outcome:
    """Create a job ``wait`` ahead, relay its message, and play every receive until its message is gone."""
    clock = Clock()
    service, queue = make_service(clock)
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=clock() + wait))
    assert job.not_before is not None
    assert service.dispatch_all([job]) == [True]  # the relay
    receives = 0
    while queue.live:
        message = queue.receive()
        receives += 1
        assert receives < 100
        clock.advance(handling_seconds)  # the invocation's start, the batch's earlier records
        try:
            service.run_job(message.dispatch.message, delivery_of(message))
        except RetryLater as later:
            queue.hide(message, later.delay_seconds)
        else:
            queue.delete(message)
    final = service.get_job("alice", job.job_id)
    assert final.started_at is not None
    return Outcome(receives, queue.done, final.started_at, job.not_before, final.status, final.attempts)


WAITS = {
    "1 hour": timedelta(hours=1),
    "13 hours": timedelta(hours=13),
    "5 days": timedelta(days=5),
    "7 days": timedelta(days=7),
}
#: The receives of each wait, the run's included (the figures in ``Delivery.hold_seconds``'s docstring).
EXPECTED_RECEIVES = {"1 hour": 3, "13 hours": 4, "5 days": 16, "7 days": 21}


@pytest.mark.parametrize("name", list(WAITS))
def test_a_scheduled_job_starts_on_time_in_few_receives_none_of_them_counted(name: str) -> None:
    outcome = schedule(WAITS[name])
    print(f"{name}: {outcome.receives} receives, {len(outcome.messages)} messages")  # the report's figures
    assert outcome.status == JobStatus.SUCCEEDED
    assert outcome.attempts == 1
    # Never before not_before, and within a second or so after it (the poller's latency, the handling).
    assert outcome.not_before <= outcome.started_at <= outcome.not_before + timedelta(seconds=1.5)
    runner = outcome.messages[-1]
    # The message that ran the job had no early receive: it was first received at or after not_before.
    assert runner.first_received_at is not None
    assert runner.first_received_at >= outcome.not_before
    assert runner.receive_count == 1
    for message in outcome.messages[:-1]:
        # Early receives stay below the redrive limit, a receive of slack left for a batch failing as a whole.
        assert message.receive_count <= MAX_RECEIVE_COUNT - 1
        assert all(received < outcome.not_before for received in message.receives)
        # No message lived past (or near) the queue's retention.
        assert message.receives[-1] - message.sent_at < timedelta(seconds=RETENTION_SECONDS - 3600)
    assert outcome.receives == EXPECTED_RECEIVES[name]
    assert outcome.receives <= 21


def test_a_week_ahead_takes_a_receive_per_12_hours_not_one_per_900_seconds() -> None:
    week = schedule(timedelta(seconds=MAX_NOT_BEFORE_SECONDS))
    assert week.receives < (MAX_NOT_BEFORE_SECONDS // MAX_DELAY_SECONDS) / 30  # 672 messages of 900 s, naively
    # With no redrive limit the floor is the 12-hour hides: (7 days - 2 delays of 900 s) / MAX_HOLD, plus the
    # fresh message's receive and the run's.
    assert week.receives - math.ceil((MAX_NOT_BEFORE_SECONDS - 1800) / (SQS_MAX_VISIBILITY_SECONDS - 600)) - 2 <= 4


def test_a_slow_batch_before_the_hide_still_keeps_the_12_hours() -> None:
    # The hide counts from the receive: a batch that spent 5 minutes before the call still fits.
    outcome = schedule(timedelta(days=2), handling_seconds=300)
    # Received on time, run after the batch's 300 s.
    assert outcome.not_before <= outcome.started_at <= outcome.not_before + timedelta(seconds=302)


def test_a_short_retention_replaces_the_message_before_the_queue_drops_it() -> None:
    clock = Clock()
    service, queue = make_service(clock)
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=clock() + timedelta(days=1)))
    service.dispatch_all([job])
    message = queue.receive()
    short = Delivery(receive_count=1, sent_at=message.sent_at, retention_seconds=2 * 3600, not_before=job.not_before)
    with pytest.raises(RetryLater) as held:
        service.run_job(message.dispatch.message, short)
    # 2 h of retention less the hour's margin, counted from the send 900 s before.
    assert held.value.delay_seconds <= 3600 - MAX_DELAY_SECONDS
    clock.advance(held.value.delay_seconds)
    again = Delivery(receive_count=2, sent_at=message.sent_at, retention_seconds=2 * 3600, not_before=job.not_before)
    assert service.run_job(message.dispatch.message, again) is None  # replaced: a fresh message, retention anew
    assert queue.live[-1].dispatch.delay_seconds == MAX_DELAY_SECONDS


def test_the_replacement_near_the_redrive_limit_is_a_fresh_message() -> None:
    clock = Clock()
    service, queue = make_service(clock)
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=clock() + timedelta(days=3)))
    service.dispatch_all([job])
    fourth = Delivery(
        receive_count=MAX_RECEIVE_COUNT - 1, max_receive_count=MAX_RECEIVE_COUNT, not_before=job.not_before
    )
    assert service.run_job(queue.dispatches[0].message, fourth) is None
    assert len(queue.dispatches) == 2
    assert queue.dispatches[1].delay_seconds == MAX_DELAY_SECONDS
    assert queue.dispatches[1].not_before == job.not_before


def test_a_due_message_with_early_receives_is_replaced_but_a_clock_skew_is_not_an_early_receive() -> None:
    clock = Clock()
    service, queue = make_service(clock)
    not_before = clock() + timedelta(hours=1)
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=not_before))
    clock.now = not_before + timedelta(seconds=5)
    # A backlog brought back a message first received 10 minutes early: a fresh one runs the job.
    early = Delivery(receive_count=2, first_received_at=not_before - timedelta(minutes=10), not_before=not_before)
    assert service.run_job(_message(job), early) is None
    assert len(queue.dispatches) == 1
    assert queue.dispatches[0].not_before is None
    assert service.get_job("alice", job.job_id).status == JobStatus.QUEUED
    # SQS's stamp a few hundred ms before not_before, from clocks that disagree: the job runs.
    skewed = Delivery(
        receive_count=2,
        first_received_at=not_before - timedelta(seconds=CLOCK_SKEW_SECONDS / 2),
        not_before=not_before,
    )
    ran = service.run_job(_message(job), skewed)
    assert ran is not None
    assert ran.status == JobStatus.SUCCEEDED


def _message(job: Any) -> Any:
    from jobs.models import JobMessage

    return JobMessage(owner_id=job.owner_id, job_id=job.job_id)


def test_an_early_message_of_a_cancelled_or_deleted_job_is_acknowledged() -> None:
    clock = Clock()
    service, queue = make_service(clock)
    for end in ("cancel", "delete"):
        job = service.create_job("alice", JobCreate(title="x", type="noop", not_before=clock() + timedelta(days=2)))
        service.dispatch_all([job])
        message = queue.live[-1]
        if end == "cancel":
            assert service.cancel_job("alice", job.job_id).status == JobStatus.CANCELLED
        else:
            service.delete_job("alice", job.job_id)
        queue.receive()
        result = service.run_job(message.dispatch.message, delivery_of(message))  # no RetryLater: acknowledged
        assert (result.status if result else None) == (JobStatus.CANCELLED if end == "cancel" else None)


def test_a_message_without_the_attribute_waits_by_the_job_s_own_not_before() -> None:
    clock = Clock()
    service, _queue = make_service(clock)
    job = service.create_job("alice", JobCreate(title="x", type="noop", not_before=clock() + timedelta(hours=5)))
    with pytest.raises(RetryLater) as held:
        service.run_job(_message(job), Delivery())  # an older relay's message: no not_before attribute
    assert held.value.delay_seconds == 5 * 3600 - MAX_DELAY_SECONDS
    assert service.get_job("alice", job.job_id).status == JobStatus.QUEUED


# --- the request's not_before --------------------------------------------------------------------------------------


def test_exactly_7_days_ahead_is_taken_and_a_millisecond_more_is_a_422() -> None:
    clock = Clock()
    service, _ = make_service(clock)
    limit = clock() + timedelta(seconds=MAX_NOT_BEFORE_SECONDS)
    assert service.create_job("alice", JobCreate(title="x", type="noop", not_before=limit)).not_before == limit
    with pytest.raises(InvalidRequest) as refused:
        service.create_job("alice", JobCreate(title="x", type="noop", not_before=limit + timedelta(milliseconds=1)))
    assert refused.value.errors[0]["loc"] == ["body", "not_before"]
    assert refused.value.errors[0]["type"] == "not_before_too_late"


def test_a_past_not_before_starts_at_once() -> None:
    clock = Clock()
    service, queue = make_service(clock)
    job = service.create_job("alice", JobCreate(title="x", type="noop", not_before=clock() - timedelta(days=3)))
    service.dispatch_all([job])
    assert queue.dispatches[0].delay_seconds == 0
    message = queue.receive()
    ran = service.run_job(message.dispatch.message, delivery_of(message))
    assert ran is not None
    assert ran.status == JobStatus.SUCCEEDED
    assert ran.started_at == clock()


def test_a_not_before_at_the_start_of_year_1_runs_on_a_later_receive_too() -> None:
    # The earliest time a request may name: a retry's receive (count 2) must not overflow the early-receive check.
    clock = Clock()
    service, _queue = make_service(clock)
    earliest = JobCreate.model_validate({"title": "x", "type": "noop", "not_before": "0001-01-01T00:00:00Z"})
    job = service.create_job("alice", earliest)
    delivery = Delivery(receive_count=2, first_received_at=clock(), not_before=job.not_before)
    ran = service.run_job(_message(job), delivery)
    assert ran is not None
    assert ran.status == JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T10:30:00+01:30", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01T00:15:00-09:00", datetime(2026, 12, 1, 9, 15, tzinfo=UTC)),
        ("2026-12-01t09:00:00.123456789z", datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_not_before_with_an_offset_is_kept_in_utc_to_the_millisecond(text: str, expected: datetime) -> None:
    request = JobCreate.model_validate({"title": "x", "not_before": text})
    assert request.not_before == expected
    assert request.not_before.utcoffset() == timedelta(0)
    assert request.model_dump(mode="json")["not_before"] == expected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01",
        "2026-12-01T09:00:00",
        1764579600,
        "2026-02-30T09:00:00Z",
        "",
        "tomorrow",
        None,
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ],
    ids=[
        "date only",
        "no offset",
        "a number",
        "Feb 30",
        "empty",
        "words",
        "null",
        "before year 1",
        "after 9999",
        "a datetime before year 1",
    ],
)
def test_a_malformed_not_before_is_refused(value: Any) -> None:
    from pydantic import ValidationError

    if value is None:  # null is "no start time"
        assert JobCreate.model_validate({"title": "x", "not_before": None}).not_before is None
        return
    with pytest.raises(ValidationError) as refused:
        JobCreate.model_validate({"title": "x", "not_before": value})
    assert refused.value.errors()[0]["loc"] == ("not_before",)
