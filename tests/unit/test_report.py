"""The quarterly_audit report, computed from known jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uuid6

from jobs.context import JobContext
from jobs.models import Job, JobStatus
from jobs.processors import job_id_bounds, percentile, quarter_bounds, quarterly_audit, run_report
from jobs.store import InMemoryJobStore

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
    assert report["processing_seconds"] == {"count": 3, "p50": 20.0, "p95": 30.0}
    assert report["queue_wait_seconds"] == {"count": 4, "p50": 2.0, "p95": 6.0}
    assert report["requested"] == {"target_user_ids": [], "complexity_level": 9000, "priority": "HIGH"}


def test_an_audit_with_nothing_finished_has_no_success_rate() -> None:
    this = job(1, JobStatus.RUNNING, created=Q4, wait=0.5)

    report = quarterly_audit(this, [this])

    assert report["success_rate"] is None
    assert report["processing_seconds"] == {"count": 0, "p50": None, "p95": None}


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

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        for item in super().list_range(owner_id, lowest_job_id, highest_job_id):
            self.read += 1
            yield item

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


def test_the_report_reports_its_progress_as_it_reads_the_owners_jobs() -> None:
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
