"""The quarterly_audit report, computed from known jobs."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uuid6

from jobs import aws, processors
from jobs.context import MAX_CHECKPOINT_BYTES, JobContext, checked_checkpoint
from jobs.models import Job, JobMessage, JobStatus, RetryLater, ServiceUnavailable
from jobs.processors import (
    BUILT_IN_TYPES,
    EXACT_DISTINCT_VALUES,
    RELATIVE_ERROR_BOUND,
    SIGNIFICANT_BITS,
    AuditTally,
    Durations,
    job_id_bounds,
    percentile,
    quarter_bounds,
    quarterly_audit,
    run_report,
)
from jobs.queue import InMemoryJobQueue
from jobs.service import JobService
from jobs.store import InMemoryJobStore, SummaryPage

Q4 = datetime(2026, 10, 1, tzinfo=UTC)


def job(
    n: int,
    status: JobStatus,
    *,
    created: datetime,
    wait: float | None = None,
    run: float | None = None,
    type_: str = "report",
) -> Job:
    started = created + timedelta(seconds=wait) if wait is not None else None
    finished = started + timedelta(seconds=run) if started is not None and run is not None else None
    return Job(
        owner_id="alice",
        job_id=f"00000000-0000-7000-8000-{n:012d}",
        title=f"job {n}",
        type=type_,
        status=status,
        payload={},
        created_at=created,
        updated_at=created,
        started_at=started,
        finished_at=finished,
        attempts=1 if started else 0,
    )


def test_quarters_are_calendar_quarters_in_utc() -> None:
    assert quarter_bounds(datetime(2026, 11, 29, 10, 0, tzinfo=UTC)) == (Q4, datetime(2027, 1, 1, tzinfo=UTC))
    assert quarter_bounds(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )


def test_job_id_bounds_enclose_exactly_the_uuid7s_of_the_period() -> None:
    low, high = job_id_bounds(Q4, datetime(2027, 1, 1, tzinfo=UTC))
    inside = datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    after = datetime(2027, 1, 1, tzinfo=UTC)

    def uuid7_at(moment: datetime) -> str:
        ms = int(moment.timestamp() * 1000)
        value = uuid6.uuid7()
        return str(uuid6.UUID(int=(ms << 80) | (value.int & ((1 << 80) - 1))))

    assert low <= uuid7_at(Q4) <= high
    assert low <= uuid7_at(inside) <= high
    assert not low <= uuid7_at(after) <= high
    assert not low <= uuid7_at(Q4 - timedelta(milliseconds=1)) <= high


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20

    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None


def test_the_audit_counts_the_quarter_of_the_jobs_creation() -> None:
    created = Q4 + timedelta(days=40)
    this = job(9, JobStatus.RUNNING, created=created, wait=1.0).model_copy(
        update={"payload": {"report_type": "quarterly_audit", "priority": "HIGH", "complexity_level": 9000}}
    )
    jobs = [
        job(1, JobStatus.SUCCEEDED, created=created, wait=2.0, run=10.0),
        job(2, JobStatus.SUCCEEDED, created=created, wait=4.0, run=20.0),
        job(3, JobStatus.FAILED, created=created, wait=6.0, run=30.0, type_="noop"),
        job(4, JobStatus.QUEUED, created=created),
        job(5, JobStatus.SUCCEEDED, created=Q4 - timedelta(days=1), wait=1.0, run=1.0),  # last quarter
        this,
    ]

    report = quarterly_audit(this, jobs)

    assert report["quarter"] == "2026-Q4"
    assert report["period"] == {"start": "2026-10-01T00:00:00.000Z", "end": "2027-01-01T00:00:00.000Z"}
    assert report["total_jobs"] == 5
    assert report["by_status"] == {"QUEUED": 1, "RUNNING": 1, "SUCCEEDED": 2, "FAILED": 1, "CANCELLED": 0}
    assert report["by_type"] == {"noop": 1, "report": 4}
    assert report["success_rate"] == round(2 / 3, 4)
    assert report["processing_seconds"] == {"count": 3, "p50": 20.0, "p95": 30.0, "exact": True}
    assert report["queue_wait_seconds"] == {"count": 4, "p50": 2.0, "p95": 6.0, "exact": True}
    assert report["requested"] == {"target_user_ids": [], "complexity_level": 9000, "priority": "HIGH"}


def test_an_audit_with_nothing_finished_has_no_success_rate() -> None:
    this = job(1, JobStatus.RUNNING, created=Q4, wait=0.5)

    report = quarterly_audit(this, [this])

    assert report["success_rate"] is None
    assert report["processing_seconds"] == {"count": 0, "p50": None, "p95": None, "exact": True}


def test_the_report_finds_jobs_whose_id_time_runs_slightly_ahead_of_their_creation() -> None:
    end = datetime(2027, 1, 1, tzinfo=UTC)
    created = end - timedelta(milliseconds=200)

    def id_at(ms: int, n: int) -> str:
        digits = f"{ms:012x}"
        return f"{digits[:8]}-{digits[8:]}-7000-8000-{n:012d}"

    end_ms = int(end.timestamp() * 1000)
    # The first job's id already carries next quarter's time; its created_at is in this one.
    early = job(1, JobStatus.SUCCEEDED, created=created, wait=0.0, run=0.0).model_copy(
        update={"job_id": id_at(end_ms + 300, 1)}
    )
    this = job(2, JobStatus.RUNNING, created=created, wait=0.1).model_copy(update={"job_id": id_at(end_ms - 200, 2)})
    store = InMemoryJobStore()
    store.put_new(early)
    store.put_new(this)

    report = run_report(this, JobContext(this.model_copy(update={"run_id": "run-1"}), store))

    assert report["total_jobs"] == 2


class RecordingStore(InMemoryJobStore):
    """The in-memory store, noting how many jobs the report had read when each progress write came."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0
        self.writes: list[tuple[int, float, str]] = []

    def summary_pages(
        self,
        owner_id: str,
        lowest_job_id: str,
        highest_job_id: str,
        *,
        after_job_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[SummaryPage]:
        for page in super().summary_pages(
            owner_id, lowest_job_id, highest_job_id, after_job_id=after_job_id, page_size=page_size
        ):
            self.read += len(page.jobs)
            yield page

    def report_progress(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, percent: float, message: str
    ) -> Job:
        self.writes.append((self.read, percent, message))
        return super().report_progress(
            owner_id, job_id, run_id=run_id, now_text=now_text, percent=percent, message=message
        )


def uuid7_at(moment: datetime, n: int) -> str:
    ms = int(moment.timestamp() * 1000)
    return str(uuid6.UUID(int=(ms << 80) | (0x7 << 76) | (0x8 << 60) | n))


def test_the_report_reports_its_progress_as_it_reads_the_owners_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processors, "REPORT_PAGE_SIZE", 100)
    store = RecordingStore()
    span = timedelta(days=80)
    count = 350
    for n in range(count):
        created = Q4 + span * n / count
        store.put_new(job(n, JobStatus.SUCCEEDED, created=created).model_copy(update={"job_id": uuid7_at(created, n)}))
    report = job(999, JobStatus.QUEUED, created=Q4 + span).model_copy(update={"job_id": uuid7_at(Q4 + span, 999)})
    store.put_new(report)
    running = store.start("alice", report.job_id, now_text="2026-12-20T00:00:00.000Z", stale_before_text="", run_id="r")
    ticks = iter(range(10_000))  # a monotonic clock a second further at every look: no report is held back

    result = run_report(
        running, JobContext(running, store, monotonic=lambda: float(next(ticks)), seconds_left=lambda: None)
    )

    assert result["total_jobs"] == count + 1
    assert [(read, message) for read, _, message in store.writes] == [
        (100, "100 jobs read"),
        (200, "200 jobs read"),
        (300, "300 jobs read"),
    ]  # written while it reads, not at the end
    percents = [percent for _, percent, _ in store.writes]
    assert percents == sorted(percents)
    assert all(0 < percent < 100 for percent in percents)
    assert percents[0] == pytest.approx(99 * 99 / count, abs=0.2)  # the 100th job's share of the quarter so far
    final = store.get("alice", report.job_id)
    assert final is not None
    assert final.progress is not None
    assert (final.progress.percent, final.progress.message) == (percents[-1], "300 jobs read")


# --- a report that scales with its owner (issue 18, part 1) --------------------------------------------------


def exact_percentile_ms(values: list[int], rank: float) -> int:
    found = percentile([float(v) for v in values], rank)
    assert found is not None
    return int(found)


def test_a_figure_is_exact_up_to_its_distinct_value_limit() -> None:
    rng = random.Random(3)  # noqa: S311 - test data, the same every run
    values = [rng.randrange(0, 5_000_000) for _ in range(EXACT_DISTINCT_VALUES)]
    figure = Durations()
    for value in values:
        figure.add(value / 1000)

    assert figure.exact
    assert figure.summary() == {
        "count": len(values),
        "p50": exact_percentile_ms(values, 50) / 1000,
        "p95": exact_percentile_ms(values, 95) / 1000,
        "exact": True,
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_beyond_it_a_figure_is_within_its_relative_error_bound(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, the same every run
    # Spread over nine orders of magnitude: a millisecond to about ten days.
    values = [round(10 ** rng.uniform(0, 9)) for _ in range(20_000)]
    figure = Durations()
    for value in values:
        figure.add(value / 1000)

    assert not figure.exact
    assert figure.summary()["exact"] is False
    for rank in (50, 95, 1, 99.9):
        true = exact_percentile_ms(values, rank) / 1000
        found = figure.percentile(rank)
        assert found is not None
        assert abs(found - true) <= RELATIVE_ERROR_BOUND * true
    # Durations under 2**SIGNIFICANT_BITS ms stay exact even in a coarse figure.
    small = Durations()
    for value in [*range(64), *values]:
        small.add(value / 1000)
    assert small.percentile(0.1) == exact_percentile_ms([*range(64), *values], 0.1) / 1000


def test_the_largest_tally_fits_in_a_checkpoint() -> None:
    # Every coarse bucket from 0 ms to a year filled, in both figures: the most a tally can hold.
    tally = AuditTally(*quarter_bounds(Q4))
    for figure in (tally.processing, tally.waiting):
        for value in range(EXACT_DISTINCT_VALUES + 1):
            figure.add(value / 1000)
        assert not figure.exact
        value = 64
        while value < 366 * 24 * 3600 * 1000:
            figure.add(value / 1000)
            value += max(1, 1 << (value.bit_length() - SIGNIFICANT_BITS))
    for name in BUILT_IN_TYPES:
        tally.by_type[name] += 1
    tally.after = "ffffffff-ffff-7fff-bfff-ffffffffffff"

    checked = checked_checkpoint(tally.checkpoint())

    assert len(json.dumps(checked, separators=(",", ":")).encode()) < MAX_CHECKPOINT_BYTES
    assert AuditTally.resume(tally.start, tally.end, checked) == tally


def quarter_of_jobs(store: InMemoryJobStore, count: int, *, seed: int = 7) -> Job:
    """``count`` jobs of alice over Q4's first 80 days (statuses, types and durations drawn with ``seed``), then a
    QUEUED report job; returns the report job."""
    rng = random.Random(seed)  # noqa: S311 - test data, the same every run
    span = timedelta(days=80)
    statuses = [JobStatus.SUCCEEDED] * 6 + [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED]
    for n in range(count):
        created = Q4 + span * n / count
        status = rng.choice(statuses)
        queued = status == JobStatus.QUEUED
        item = job(
            n,
            status,
            created=created,
            wait=None if queued else rng.uniform(0, 3600),
            run=None if queued else rng.uniform(0.001, 900),
            type_=rng.choice(["report", "noop"]),
        )
        store.put_new(item.model_copy(update={"job_id": uuid7_at(created, n)}))
    report = job(count, JobStatus.QUEUED, created=Q4 + span).model_copy(
        update={"job_id": uuid7_at(Q4 + span, count), "payload": {"report_type": "quarterly_audit"}}
    )
    store.put_new(report)
    return report


class CountingStore(InMemoryJobStore):
    """The in-memory store, counting the report's pages read and failing the read after ``fail_after`` pages once."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0
        self.fail_after: int | None = None

    def summary_pages(
        self,
        owner_id: str,
        lowest_job_id: str,
        highest_job_id: str,
        *,
        after_job_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[SummaryPage]:
        for n, page in enumerate(
            super().summary_pages(
                owner_id, lowest_job_id, highest_job_id, after_job_id=after_job_id, page_size=page_size
            )
        ):
            if self.fail_after is not None and n == self.fail_after:
                self.fail_after = None
                raise ServiceUnavailable("Query was throttled or failed on the AWS side")
            self.pages += 1
            yield page


RUN_AT = Q4 + timedelta(days=81)


class Invocations:
    """Seconds left in a Lambda invocation that loses one second at every look, started afresh per delivery."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = seconds
        self.number = 0

    def next(self) -> None:
        self.number += 1
        self.left = self.seconds

    def seconds_left(self) -> float:
        self.left -= 1
        return self.left


def deliver_until_done(service: JobService, queue: InMemoryJobQueue, budget: Invocations, first: Job) -> int:
    """Deliver the report's messages one per invocation until none is left; returns the deliveries."""
    delivered = 0
    pending = [JobMessage(owner_id=first.owner_id, job_id=first.job_id)]
    while pending:
        message = pending.pop(0)
        budget.next()
        sent = len(queue.dispatches)
        try:
            service.run_job(message)
        except RetryLater:
            pending.append(message)  # the same message comes back after its delay
        delivered += 1
        pending.extend(queue.messages[sent:])
        assert delivered < 100
    return delivered


def test_a_report_longer_than_one_invocation_continues_and_equals_one_runs_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processors, "REPORT_PAGE_SIZE", 100)
    store, queue = CountingStore(), InMemoryJobQueue()
    report = quarter_of_jobs(store, 1_250)
    budget = Invocations(16.0)  # a second per look; 8 s kept for the final writes, 4 for a page: four pages
    service = JobService(
        store,
        queue,
        clock=lambda: RUN_AT,
        seconds_left=budget.seconds_left,
        invocation=lambda: budget.number,
    )
    expected = audit_as_run(store, report)

    deliveries = deliver_until_done(service, queue, budget, report)

    done = store.get("alice", report.job_id)
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 1  # continuations are no retries
    assert deliveries == 4  # 13 pages, four per invocation
    assert store.pages == 13  # each page read once
    assert done.checkpoint is None
    assert done.result == expected
    assert done.result["total_jobs"] == 1_251
    assert done.result["queue_wait_seconds"]["exact"] is False  # 1,118 distinct waits: coarse, and merged exactly


def test_a_read_that_fails_after_progress_continues_and_one_that_fails_at_once_is_retried_from_the_tally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processors, "REPORT_PAGE_SIZE", 100)
    store, queue = CountingStore(), InMemoryJobQueue()
    report = quarter_of_jobs(store, 1_250)
    budget = Invocations(1e9)
    service = JobService(
        store, queue, clock=lambda: RUN_AT, seconds_left=budget.seconds_left, invocation=lambda: budget.number
    )
    expected = audit_as_run(store, report)
    message = JobMessage(owner_id="alice", job_id=report.job_id)

    store.fail_after = 3  # throttled after three pages: the run made progress, so it is continued
    released = service.run_job(message)
    assert released is not None
    assert released.status == JobStatus.RUNNING
    assert released.attempts == 1
    assert released.checkpoint is not None
    assert released.checkpoint["read"] == 300
    assert queue.messages == [message]

    store.fail_after = 0  # throttled on the run's first page: the attempt fails, its tally kept for the retry
    with pytest.raises(RetryLater):
        service.run_job(message)
    queued = store.get("alice", report.job_id)
    assert queued is not None
    assert queued.status == JobStatus.QUEUED
    assert queued.checkpoint is not None
    assert queued.checkpoint["read"] == 300

    done = service.run_job(message)

    assert done is not None
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert store.pages == 13  # three before the failures, ten after: nothing read twice
    assert done.result == expected


def audit_as_run(store: InMemoryJobStore, report: Job) -> dict[str, object]:
    """The audit in one pass over every job of the store, the report job counted as its run sees itself: RUNNING,
    started at the service's clock."""
    running = report.model_copy(update={"status": JobStatus.RUNNING, "started_at": RUN_AT})
    others = [found for key in store.items if (found := store.get(*key)) is not None and key[1] != report.job_id]
    return quarterly_audit(report, [*others, running])


class Context:
    """Lambda's context object with ``seconds`` left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


def test_a_run_reads_on_while_a_page_and_its_own_writes_fit_in_the_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    # 17 s: 16 before the response margin, 8 of them kept for the run's writes, so 8 for reading; the pages here
    # take no time, so one invocation reads them all (the time kept for the writes is not left out twice).
    monkeypatch.setattr(processors, "REPORT_PAGE_SIZE", 100)
    store, queue = CountingStore(), InMemoryJobQueue()
    report = quarter_of_jobs(store, 1_250)
    service = JobService(store, queue, clock=lambda: RUN_AT)

    @aws.time_budget
    def invoke(event: JobMessage, context: Context) -> Job | None:
        return service.run_job(event)

    done = invoke(JobMessage(owner_id="alice", job_id=report.job_id), Context(17))

    assert done is not None
    assert done.status == JobStatus.SUCCEEDED
    assert queue.messages == []  # not continued
    assert store.pages == 13
