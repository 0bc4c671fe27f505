"""Job control on the in-memory store (issue 14): cancel, and every way out of RUNNING honouring it; progress;
continuation from a checkpoint without spending an attempt; a job met with too little time left handed back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.context import MAX_CHECKPOINT_BYTES, JobContext
from jobs.models import (
    Job,
    JobCreate,
    JobFinished,
    JobInProgress,
    JobMessage,
    JobNotFound,
    JobStatus,
    RetryableProcessorError,
    RetryLater,
    format_timestamp,
)
from jobs.processors import BUILT_IN_TYPES, FAULT_TYPES, JobType, Registry
from jobs.queue import InMemoryJobQueue, SendResult
from jobs.service import Delivery, JobService
from jobs.settings import AwsSettings
from jobs.store import InMemoryJobStore
from tests.helpers import Clock


class Harness:
    """A service whose ``hook`` processor does whatever a test sets, with a queue that records messages."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.store = InMemoryJobStore()
        self.queue = InMemoryJobQueue()
        self.hook: Callable[[Job, JobContext], dict[str, Any]] = lambda job, context: {"ok": True}
        types = [*BUILT_IN_TYPES.values(), *FAULT_TYPES.values(), JobType("hook", lambda j, c: self.hook(j, c))]
        self.left: float | None = None
        self.service = JobService(
            self.store, self.queue, Registry(types), clock=self.clock, seconds_left=lambda: self.left
        )

    def create(self, owner: str = "alice", **fields: Any) -> Job:
        return self.service.create_job(owner, JobCreate.model_validate({"title": "t", "type": "hook", **fields}))

    def run(self, job: Job, receive_count: int = 1) -> Job | None:
        return self.service.run_job(JobMessage(owner_id=job.owner_id, job_id=job.job_id), Delivery(receive_count))

    def get(self, job: Job) -> Job:
        return self.service.get_job(job.owner_id, job.job_id)


@pytest.fixture
def h() -> Harness:
    return Harness()


def progress_then_result(percent: float, message: str = "") -> Callable[[Job, JobContext], dict[str, Any]]:
    def hook(job: Job, context: JobContext) -> dict[str, Any]:
        context.report_progress(percent, message)
        return {}

    return hook


def recording(into: list[Any], what: Callable[[Job, JobContext], Any]) -> Callable[[Job, JobContext], dict[str, Any]]:
    def hook(job: Job, context: JobContext) -> dict[str, Any]:
        into.append(what(job, context))
        return {}

    return hook


# --- cancel -------------------------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once_kept_and_expires_like_the_other_final_statuses(h: Harness) -> None:
    job = h.create()

    cancelled = h.service.cancel_job("alice", job.job_id)

    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at == h.clock.now
    assert cancelled.is_finished
    assert h.get(job) == cancelled
    assert h.store.expires_at[("alice", job.job_id)] == int((h.clock.now + timedelta(days=30)).timestamp())
    assert h.run(job) == cancelled  # its message is acknowledged, nothing runs


def test_cancelling_a_cancelled_job_is_a_no_op(h: Harness) -> None:
    job = h.create()
    first = h.service.cancel_job("alice", job.job_id)
    h.clock.advance(5)

    assert h.service.cancel_job("alice", job.job_id) == first


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED"])
def test_a_finished_job_cannot_be_cancelled_and_the_conflict_names_its_status(h: Harness, outcome: str) -> None:
    job = h.create(type="noop" if outcome == "SUCCEEDED" else "fail")
    h.run(job)

    with pytest.raises(JobFinished) as raised:
        h.service.cancel_job("alice", job.job_id)

    assert raised.value.status == outcome
    assert h.get(job).status == outcome


@pytest.mark.parametrize("job_id", ["someone-elses", "019aced2-2b5b-7cc3-a1b1-4f1f1f1f1f1f", "", "../x"])
def test_cancelling_a_missing_or_malformed_job_is_not_found(h: Harness, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        h.service.cancel_job("alice", job_id)


def test_cancelling_someone_elses_job_is_not_found_and_leaves_it(h: Harness) -> None:
    job = h.create(owner="bob")

    with pytest.raises(JobNotFound):
        h.service.cancel_job("alice", job.job_id)

    assert h.get(job).status == JobStatus.QUEUED


def cancel_while_running(h: Harness, then: Callable[[Job, JobContext], dict[str, Any]]) -> Callable[..., Any]:
    def hook(job: Job, context: JobContext) -> dict[str, Any]:
        asked = h.service.cancel_job(job.owner_id, job.job_id)
        assert asked.status == JobStatus.RUNNING
        assert asked.cancel_requested_at is not None
        return then(job, context)

    return hook


def test_a_running_job_sees_the_cancel_and_its_finish_makes_it_cancelled_discarding_the_result(h: Harness) -> None:
    seen: list[bool] = []

    def then(job: Job, context: JobContext) -> dict[str, Any]:
        seen.append(context.cancel_requested())
        return {"would": "be discarded"}

    h.hook = cancel_while_running(h, then)
    job = h.create()

    done = h.run(job)

    assert done is not None
    assert done.status == JobStatus.CANCELLED
    assert done.result is None
    assert done.cancel_requested_at is not None
    assert done.attempts == 1
    assert seen == [True]


def test_a_run_that_fails_after_the_cancel_ends_cancelled_not_failed(h: Harness) -> None:
    def then(job: Job, context: JobContext) -> dict[str, Any]:
        raise RuntimeError("boom")

    h.hook = cancel_while_running(h, then)

    done = h.run(h.create())

    assert done is not None
    assert (done.status, done.error) == (JobStatus.CANCELLED, None)


def test_a_retryable_failure_after_the_cancel_is_not_requeued_but_cancelled(h: Harness) -> None:
    def then(job: Job, context: JobContext) -> dict[str, Any]:
        raise RetryableProcessorError("again")

    h.hook = cancel_while_running(h, then)

    done = h.run(h.create())

    assert done is not None
    assert done.status == JobStatus.CANCELLED


def test_a_continuation_asked_after_the_cancel_ends_cancelled_and_sends_nothing(h: Harness) -> None:
    def then(job: Job, context: JobContext) -> dict[str, Any]:
        context.continue_later({"step": 1})

    h.hook = cancel_while_running(h, then)

    done = h.run(h.create())

    assert done is not None
    assert done.status == JobStatus.CANCELLED
    assert h.queue.messages == []


def test_a_taken_over_job_whose_run_died_after_a_cancel_ends_cancelled_without_running(h: Harness) -> None:
    ran: list[str] = []
    job = h.create()
    h.store.start("alice", job.job_id, now_text=format_timestamp(h.clock.now), stale_before_text="", run_id="dead")
    h.service.cancel_job("alice", job.job_id)
    h.hook = recording(ran, lambda j, c: j.job_id)

    with pytest.raises(JobInProgress):  # the dead run's lease has not ended yet
        h.run(job)
    h.clock.advance(36)
    done = h.run(job)

    assert done is not None
    assert done.status == JobStatus.CANCELLED
    assert ran == []


def test_a_dead_lettered_job_with_a_cancel_asked_ends_cancelled_not_failed(h: Harness) -> None:
    job = h.create()
    h.store.start("alice", job.job_id, now_text=format_timestamp(h.clock.now), stale_before_text="", run_id="dead")
    h.service.cancel_job("alice", job.job_id)
    h.clock.advance(36)

    done = h.service.fail_dead_lettered(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert (done.status, done.error) == (JobStatus.CANCELLED, None)


def test_a_job_released_for_continuation_is_cancelled_at_once(h: Harness) -> None:
    h.hook = lambda job, context: context.continue_later({"step": 1})
    job = h.create()
    h.run(job)
    assert h.get(job).status == JobStatus.RUNNING

    cancelled = h.service.cancel_job("alice", job.job_id)

    assert cancelled.status == JobStatus.CANCELLED
    assert h.run(job) == cancelled  # the continuation's message finds it finished


# --- progress -----------------------------------------------------------------------------------------------


def test_progress_is_stored_on_the_job_at_most_once_a_second_and_readable_while_it_runs(h: Harness) -> None:
    seen: list[Any] = []

    def hook(job: Job, context: JobContext) -> dict[str, Any]:
        context.report_progress(10, "first")
        context.report_progress(20, "dropped: within a second")
        seen.append(h.get(job).progress)
        return {}

    h.hook = hook
    job = h.create()
    done = h.run(job)

    assert seen[0] is not None
    assert (seen[0].percent, seen[0].message) == (10, "first")
    assert done is not None
    assert done.progress is not None  # kept on the finished job: how far it got
    assert "progress" in done.model_dump(mode="json")


@pytest.mark.parametrize("percent", [-1, 100.5, float("nan"), float("inf")])
def test_progress_outside_0_to_100_is_a_processor_error(h: Harness, percent: float) -> None:
    h.hook = progress_then_result(percent)

    done = h.run(h.create())

    assert done is not None
    assert done.status == JobStatus.FAILED


def test_a_long_progress_message_is_cut_to_200_characters(h: Harness) -> None:
    h.hook = progress_then_result(50, "x" * 500)

    done = h.run(h.create())

    assert done is not None
    assert done.progress is not None
    assert len(done.progress.message) == 200


# --- continuation -------------------------------------------------------------------------------------------


def test_a_continued_job_resumes_from_its_checkpoint_with_one_attempt_and_keeps_its_start(h: Harness) -> None:
    job = h.create(type="steps", payload={"steps": 5, "per_run": 2})

    outcomes = []
    while True:
        outcome = h.run(job)
        outcomes.append(outcome)
        h.clock.advance(1)
        if outcome is not None and outcome.is_finished:
            break
        assert h.queue.messages.pop() == JobMessage(owner_id="alice", job_id=job.job_id)

    done = outcomes[-1]
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED
    assert done.result == {"done": 5, "runs": 3}
    assert done.attempts == 1
    assert done.started_at == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)  # the first run's: processing time is whole
    assert done.checkpoint is None  # a finished job keeps no checkpoint
    assert len(outcomes) == 3


def test_a_checkpoint_is_never_part_of_a_response(h: Harness) -> None:
    h.hook = lambda job, context: context.continue_later({"secret": "state"})
    job = h.create()
    h.run(job)

    stored = h.get(job)

    assert stored.checkpoint == {"secret": "state"}
    assert "checkpoint" not in stored.model_dump(mode="json")
    assert "run_id" not in stored.model_dump_json()


def test_a_checkpoint_over_the_size_limit_fails_the_job(h: Harness) -> None:
    h.hook = lambda job, context: context.continue_later({"blob": "x" * MAX_CHECKPOINT_BYTES})

    done = h.run(h.create())

    assert done is not None
    assert done.status == JobStatus.FAILED
    assert h.queue.messages == []


def test_a_continuation_whose_message_cannot_be_sent_comes_back_and_resumes(h: Harness) -> None:
    job = h.create(type="steps", payload={"steps": 2, "per_run": 1})
    h.queue.refuse[job.job_id] = SendResult(code="InternalError")

    with pytest.raises(RetryLater):
        h.run(job)
    del h.queue.refuse[job.job_id]
    done = h.run(job, receive_count=2)

    assert done is not None
    assert done.status == JobStatus.SUCCEEDED  # resumed from its checkpoint: the second step only
    assert done.result == {"done": 2, "runs": 2}
    assert done.attempts == 1


def test_with_too_little_time_left_a_job_is_not_started_and_its_message_is_sent_again(h: Harness) -> None:
    job = h.create()
    h.left = 5.0

    assert h.run(job) is None
    assert h.get(job).status == JobStatus.QUEUED
    assert h.get(job).attempts == 0
    assert h.queue.messages == [JobMessage(owner_id="alice", job_id=job.job_id)]


def test_the_first_job_of_an_invocation_starts_however_little_time_is_left(h: Harness) -> None:
    # A consumer whose Timeout is under JOBS_MIN_START_SECONDS must still run a job per invocation, not hand
    # every message back forever.
    invocation = [1.0]
    h.service.invocation = lambda: invocation[0]
    first, second, third = h.create(), h.create(), h.create()
    h.left = 2.0

    assert h.run(first) is not None
    assert h.run(second) is None  # the same invocation: handed back
    invocation[0] = 2.0
    assert h.run(third) is not None  # a new invocation

    assert [h.get(job).status for job in (first, second, third)] == [
        JobStatus.SUCCEEDED,
        JobStatus.QUEUED,
        JobStatus.SUCCEEDED,
    ]
    assert h.queue.messages == [JobMessage(owner_id="alice", job_id=second.job_id)]


def test_remaining_seconds_keeps_two_attempts_for_the_runs_own_writes(h: Harness) -> None:
    seen: list[float] = []
    h.hook = recording(seen, lambda j, c: c.remaining_seconds())
    h.left = 25.0

    h.run(h.create())

    assert seen == [25.0 - 2 * AwsSettings().attempt_seconds]  # two attempts (4 s each) kept for the run's writes
