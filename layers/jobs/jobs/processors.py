"""Job types: a registry from a ``type`` name to the processor that runs it.

A processor is ``(job, context) -> result``: it gets the RUNNING job and its ``jobs.context.JobContext`` (a read
view of the owner's jobs, progress, cancel, time left, checkpoints; its module docstring is the processor author's
guide), and returns the JSON object stored as the job's ``result``. Processors must be idempotent: SQS delivers at
least once, so after a crash one may run again for the same job, while the final status is written once. A processor
raises ``ProcessorError`` (or any exception) to fail the job, ``RetryableProcessorError`` to ask for another delivery.

Built in: ``report`` (the default type) and ``noop``. ``FAULT_TYPES`` (``flaky``, ``fail``, ``sleep``, ``crash``,
``steps``)
exist for fault tests and are registered only where ``JOBS_FAULT_INJECTION`` is on (tests, the local stack on
request; ``jobs.bootstrap.registry``).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs import aws
from jobs.context import JobContext
from jobs.models import (
    InvalidPayload,
    Job,
    JobStatus,
    ProcessorError,
    RetryableProcessorError,
    ServiceUnavailable,
    TransitionRejected,
    UnknownJobType,
    format_timestamp,
)
from jobs.observability import logger, queue_wait_seconds
from jobs.settings import aws_settings

Processor = Callable[[Job, JobContext], dict[str, Any]]


@dataclass(frozen=True)
class JobType:
    """A registered job type: its processor and the model its payload must fit (checked at create time)."""

    name: str
    run: Processor
    payload_model: type[BaseModel] | None = None

    def check_payload(self, payload: dict[str, Any]) -> None:
        """Validate ``payload`` against ``payload_model``.

        Raises:
            InvalidPayload: with pydantic's error list, locations prefixed by ``payload``.
        """
        if self.payload_model is None:
            return
        try:
            self.payload_model.model_validate(payload)
        except ValidationError as error:
            errors = error.errors(include_url=False, include_context=False, include_input=False)
            raise InvalidPayload([{**e, "loc": ("payload", *e["loc"])} for e in errors]) from error


# --- report -------------------------------------------------------------------------------------------------


class ReportPayload(BaseModel):
    """Payload of a ``report`` job. ``target_user_ids``, ``complexity_level`` and ``priority`` are recorded in
    the report as given; they never select whose jobs are read (only the owner's own are)."""

    model_config = ConfigDict(extra="allow")

    report_type: Literal["quarterly_audit"] = "quarterly_audit"
    target_user_ids: list[str] = []
    complexity_level: int | None = None
    priority: str | None = None


def quarter_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar quarter (UTC) containing ``moment``: ``[start, end)``, e.g. Oct 1 to Jan 1 for Q4."""
    moment = moment.astimezone(UTC)
    first_month = 3 * ((moment.month - 1) // 3) + 1
    start = datetime(moment.year, first_month, 1, tzinfo=UTC)
    end = datetime(moment.year + (first_month == 10), (first_month + 2) % 12 + 1, 1, tzinfo=UTC)
    return start, end


def job_id_bounds(start: datetime, end: datetime) -> tuple[str, str]:
    """The lowest and highest UUIDv7 text whose timestamp lies in ``[start, end)``.

    A UUIDv7 begins with its 48-bit Unix time in milliseconds (RFC 9562 section 5.7), and lowercase hex
    compares like the number, so these bound a ``BETWEEN`` on the ``job_id`` sort key.
    """

    def prefix(ms: int) -> str:
        digits = f"{ms:012x}"
        return f"{digits[:8]}-{digits[8:]}"

    low_ms = int(start.timestamp() * 1000)
    high_ms = int(end.timestamp() * 1000) - 1
    return f"{prefix(low_ms)}-0000-0000-000000000000", f"{prefix(high_ms)}-ffff-ffff-ffffffffffff"


def percentile(values: Sequence[float], rank: float) -> float | None:
    """The ``rank``-th percentile (0 < rank ≤ 100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(rank / 100 * len(ordered))) - 1]


#: A duration figure (``processing_seconds``, ``queue_wait_seconds``) keeps every value to the millisecond while it
#: holds at most this many distinct values; beyond that it keeps ``SIGNIFICANT_BITS`` of each (``Durations``).
EXACT_DISTINCT_VALUES = 1000
#: How many leading bits of a duration in milliseconds a coarse figure keeps: durations under 2**6 ms stay exact,
#: longer ones fall in buckets 1/32 of their power of two wide.
SIGNIFICANT_BITS = 6
#: How far a coarse figure's p50/p95 may be from the true nearest-rank value, relative to it: half a bucket over
#: the bucket's lowest value, 2**-SIGNIFICANT_BITS = 1/64 (1.6 %). Exact figures have none.
RELATIVE_ERROR_BOUND = 2.0**-SIGNIFICANT_BITS


def _bucket(ms: int) -> int:
    """The lowest value of the coarse bucket of ``ms`` (a negative duration mirrors a positive one)."""
    if ms < 0:
        return -_bucket(-ms)
    shift = max(ms.bit_length() - SIGNIFICANT_BITS, 0)
    return (ms >> shift) << shift


def _middle(key: int) -> int:
    """The value a coarse bucket whose lowest value is ``key`` reports: its middle, so that every value in the
    bucket is within half its width."""
    if key < 0:
        return -_middle(-key)
    shift = max(key.bit_length() - SIGNIFICANT_BITS, 0)
    return key + ((1 << shift) >> 1)


@dataclass
class Durations:
    """A multiset of durations in whole milliseconds (the timestamps' precision), as a count per value.

    It stays exact while it holds at most ``EXACT_DISTINCT_VALUES`` distinct values; past that every value is
    replaced by its coarse bucket (``SIGNIFICANT_BITS``), for good, so that the figure fits in a checkpoint
    (``jobs.context.MAX_CHECKPOINT_BYTES``) however many jobs it counts: at most 64 exact values and 32 buckets
    per power of two beyond them, about 1,000 for durations of up to a year. A coarse p50/p95 is within
    ``RELATIVE_ERROR_BOUND`` of the true nearest-rank value.
    """

    counts: Counter[int] = field(default_factory=Counter)
    exact: bool = True

    def add(self, seconds: float) -> None:
        """Count one duration (seconds; rounded to the millisecond)."""
        ms = round(seconds * 1000)
        self.counts[ms if self.exact else _bucket(ms)] += 1
        if self.exact and len(self.counts) > EXACT_DISTINCT_VALUES:
            coarse: Counter[int] = Counter()
            for value, count in self.counts.items():
                coarse[_bucket(value)] += count
            self.counts, self.exact = coarse, False

    def percentile(self, rank: float) -> float | None:
        """The ``rank``-th percentile (0 < rank ≤ 100) by the nearest-rank method, seconds; None when empty."""
        total = sum(self.counts.values())
        if total == 0:
            return None
        wanted = max(1, math.ceil(rank / 100 * total))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= wanted:
                return (value if self.exact else _middle(value)) / 1000
        raise AssertionError("unreachable: the counts sum to total")

    def summary(self) -> dict[str, Any]:
        """``{"count", "p50", "p95", "exact"}``: seconds rounded to the millisecond; ``exact`` False when the
        percentiles are coarse (within ``RELATIVE_ERROR_BOUND``)."""
        p50, p95 = self.percentile(50), self.percentile(95)
        return {
            "count": sum(self.counts.values()),
            "p50": round(p50, 3) if p50 is not None else None,
            "p95": round(p95, 3) if p95 is not None else None,
            "exact": self.exact,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON object for a checkpoint: ``{"exact": bool, "ms": [[value, count], ...]}``."""
        return {"exact": self.exact, "ms": [[value, count] for value, count in sorted(self.counts.items())]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Durations:
        """The figure ``to_json`` wrote."""
        return cls(Counter({int(value): int(count) for value, count in data["ms"]}), bool(data["exact"]))


class Counted(Protocol):
    """What the audit reads of a job: a ``Job`` or a ``jobs.store.JobSummary``."""

    @property
    def job_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def status(self) -> JobStatus: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def not_before(self) -> datetime | None: ...


#: The checkpoint format of a report read in several runs (``AuditTally.checkpoint``).
AUDIT_CHECKPOINT_VERSION = 1


@dataclass
class AuditTally:
    """The quarterly audit's running totals over the jobs read so far, and where the read stopped (``after``, the
    ``after_job_id`` that resumes it). Small and mergeable: a report read over several runs carries it in its
    checkpoint, and the result equals a single run's."""

    start: datetime
    end: datetime
    read: int = 0
    total: int = 0
    by_status: Counter[str] = field(default_factory=lambda: Counter({status.value: 0 for status in JobStatus}))
    by_type: Counter[str] = field(default_factory=Counter)
    processing: Durations = field(default_factory=Durations)
    waiting: Durations = field(default_factory=Durations)
    after: str | None = None

    def add(self, item: Counted) -> None:
        """Count one job read: only one created within ``[start, end)`` is in the audit."""
        self.read += 1
        if not self.start <= item.created_at < self.end:
            return
        self.total += 1
        self.by_status[item.status] += 1
        self.by_type[item.type] += 1
        if (wait := queue_wait_seconds(item)) is not None:
            self.waiting.add(wait)
            if (
                item.started_at is not None
                and item.finished_at is not None
                and item.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
            ):
                self.processing.add((item.finished_at - item.started_at).total_seconds())

    def checkpoint(self) -> dict[str, Any]:
        """The tally as a JSON object for ``JobContext.continue_later`` (well under ``MAX_CHECKPOINT_BYTES``: the
        two figures are bounded by ``Durations``, the type names by the registry)."""
        return {
            "audit": AUDIT_CHECKPOINT_VERSION,
            "after": self.after,
            "read": self.read,
            "total": self.total,
            "by_status": dict(self.by_status),
            "by_type": dict(self.by_type),
            "processing": self.processing.to_json(),
            "waiting": self.waiting.to_json(),
        }

    @classmethod
    def resume(cls, start: datetime, end: datetime, data: dict[str, Any]) -> AuditTally:
        """The tally a ``checkpoint`` holds, for the quarter ``[start, end)``.

        Raises:
            ValueError: ``data`` is not a checkpoint of this format.
        """
        if data.get("audit") != AUDIT_CHECKPOINT_VERSION:
            raise ValueError(f"not a quarterly audit checkpoint of version {AUDIT_CHECKPOINT_VERSION}")
        return cls(
            start,
            end,
            read=int(data["read"]),
            total=int(data["total"]),
            by_status=Counter({str(k): int(v) for k, v in data["by_status"].items()}),
            by_type=Counter({str(k): int(v) for k, v in data["by_type"].items()}),
            processing=Durations.from_json(data["processing"]),
            waiting=Durations.from_json(data["waiting"]),
            after=data["after"],
        )

    def report(self, job: Job) -> dict[str, Any]:
        """The audit's result (``quarterly_audit``'s shape) for the report job ``job``."""
        finished = self.by_status[JobStatus.SUCCEEDED] + self.by_status[JobStatus.FAILED]
        payload = ReportPayload.model_validate(job.payload)
        return {
            "report_type": payload.report_type,
            "quarter": f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}",
            "period": {"start": format_timestamp(self.start), "end": format_timestamp(self.end)},
            "total_jobs": self.total,
            "by_status": dict(self.by_status),
            "by_type": dict(sorted(self.by_type.items())),
            "success_rate": round(self.by_status[JobStatus.SUCCEEDED] / finished, 4) if finished else None,
            "processing_seconds": self.processing.summary(),
            "queue_wait_seconds": self.waiting.summary(),
            "requested": {
                "target_user_ids": payload.target_user_ids,
                "complexity_level": payload.complexity_level,
                "priority": payload.priority,
            },
        }


def quarterly_audit(job: Job, jobs: Iterable[Counted]) -> dict[str, Any]:
    """The audit of ``jobs`` (the owner's jobs created in the quarter of ``job``'s creation; others are skipped).

    Returns counts by status and by type, the success rate (SUCCEEDED over SUCCEEDED and FAILED, None when none
    of those; a CANCELLED job was stopped by its owner, neither a success nor a failure of the work), processing
    time (finished_at - started_at, of SUCCEEDED and FAILED jobs only: a cancelled run's time says nothing of how
    long the work takes) and queue wait (started_at - created_at, of every job that started, cancelled ones too)
    as nearest-rank p50/p95 in seconds (``Durations``: exact, or within ``RELATIVE_ERROR_BOUND`` when a figure
    has more than ``EXACT_DISTINCT_VALUES`` distinct millisecond values, its ``exact`` then False), and the
    request's own parameters as given.
    """
    tally = AuditTally(*quarter_bounds(job.created_at))
    for item in jobs:
        tally.add(item)
    return tally.report(job)


#: How far a UUIDv7's embedded time may stray from its job's ``created_at``; the id range is widened by it and
#: ``quarterly_audit`` filters on ``created_at`` itself.
ID_CLOCK_MARGIN = timedelta(minutes=1)
#: Items per Query of the report's read (DynamoDB's ``Limit``; a Query also stops at 1 MB of items, 64 of 16 KB). A
#: page of small items is then at most 256 KB, a quarter of what one Query may return, so one call stays far inside
#: one attempt's time and a continuation re-reads little; the read capacity is the same (256 items of 1 KB are
#: exactly 64 units of 4 KB). DynamoDB Local, without a ``Limit``, reads the rest of the key range before it cuts
#: the page at 1 MB (3-4 s a page at 30,000 items of 16 KB, 0.02 s with a ``Limit`` of 16, measured here), which
#: made the 100,000-item reads time out there. Tests lower it so that a small table takes several pages.
REPORT_PAGE_SIZE: int | None = 256


def run_report(job: Job, context: JobContext) -> dict[str, Any]:
    """The ``report`` processor: reads only the owner's partition, within the quarter's id range, page by page
    (summaries only, eventually consistent), and reports its progress as it reads (the share of the quarter, up to
    the job's creation, whose jobs it has read).

    A read longer than one invocation is continued (docs/decisions.md, "A report that scales with its owner"):
    before each page but a run's first, when less than one AWS attempt's time is left for it
    (``JobContext.remaining_seconds``), the run ends with its tally as the checkpoint and a new delivery resumes
    after the last page read. A read that fails (``ServiceUnavailable``: throttled, unreachable, out of time) after
    the run has read a page is continued the same way (the run made progress, so this spends no attempt and cannot
    loop); one that fails on the run's first page is the attempt's failure, retried from the tally so far, which is
    saved first.
    """
    start, end = quarter_bounds(job.created_at)
    low, high = job_id_bounds(start - ID_CLOCK_MARGIN, end + ID_CLOCK_MARGIN)
    span = max((min(end, job.created_at) - start).total_seconds(), 1.0)
    tally = AuditTally.resume(start, end, context.checkpoint) if context.checkpoint else AuditTally(start, end)
    pages = context.summary_pages(low, high, after_job_id=tally.after, page_size=REPORT_PAGE_SIZE)
    attempt = aws_settings().attempt_seconds
    read_here = 0  # pages this run has read
    try:
        while not read_here or context.remaining_seconds() >= attempt:
            # The calls keep two attempts' time for the run's own writes (a result, or a checkpoint and a message)
            # whatever their retries take (jobs.aws.reserving; remaining_seconds() already leaves that time out).
            with aws.reserving(2 * attempt):
                page = next(pages, None)
            if page is None:
                return tally.report(job)
            read_here += 1
            for item in page.jobs:
                tally.add(item)
            tally.after = page.next_after
            if page.next_after is None:
                return tally.report(job)
            if page.jobs:  # a whole page counted: the tally is a checkpoint again
                done = min(max((page.jobs[-1].created_at - start).total_seconds() / span, 0.0), 1.0)
                with aws.reserving(2 * attempt):
                    context.report_progress(round(99 * done, 1), f"{tally.read} jobs read")
    except ServiceUnavailable:
        if read_here:
            context.continue_later(tally.checkpoint())
        _keep(context, tally)
        raise
    return context.continue_later(tally.checkpoint())


def _keep(context: JobContext, tally: AuditTally) -> None:
    """Save the tally as the job's checkpoint if anything was read, so that a retry resumes from it; a save that
    fails too is logged (the retry then reads from the last checkpoint kept)."""
    if tally.read == 0:
        return
    try:
        context.save_checkpoint(tally.checkpoint())
    except (ServiceUnavailable, TransitionRejected) as error:
        logger.warning("The report's tally was not saved before its retry: %s", error)


# --- noop ---------------------------------------------------------------------------------------------------


def run_noop(job: Job, context: JobContext) -> dict[str, Any]:
    """The ``noop`` processor: returns at once, for benchmarks and load tests."""
    return {"noop": True}


BUILT_IN_TYPES: dict[str, JobType] = {
    "report": JobType("report", run_report, ReportPayload),
    "noop": JobType("noop", run_noop),
}


# --- fault injection (tests and the local stack only) --------------------------------------------------------


class FaultPayload(BaseModel):
    """Payload of the fault-injection types: ``attempts`` (how many first attempts misbehave; 0 means all),
    ``seconds`` (how long ``sleep`` sleeps, at most 25 s) and ``message`` (the error's text)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=0, le=100)
    seconds: float = Field(default=1.0, ge=0, le=25)
    message: str = "injected fault"

    def misbehaves(self, job: Job) -> bool:
        """True while the job's attempt is one of the first ``attempts`` (every attempt when 0)."""
        return self.attempts == 0 or job.attempts <= self.attempts


def run_flaky(job: Job, context: JobContext) -> dict[str, Any]:
    """``flaky``: a retryable failure on the first ``attempts`` attempts, then success."""
    fault = FaultPayload.model_validate(job.payload)
    if fault.misbehaves(job):
        raise RetryableProcessorError(f"{fault.message} (attempt {job.attempts})")
    return {"attempts_needed": job.attempts}


def run_fail(job: Job, context: JobContext) -> dict[str, Any]:
    """``fail``: a non-retryable failure on every attempt."""
    raise ProcessorError(FaultPayload.model_validate(job.payload).message)


def run_sleep(job: Job, context: JobContext) -> dict[str, Any]:
    """``sleep``: sleeps ``seconds`` (a long job, to delete, cancel or redeliver while it runs), in steps of a tenth
    of a second, reporting progress and stopping early when a cancel is asked."""
    fault = FaultPayload.model_validate(job.payload)
    deadline = time.monotonic() + fault.seconds
    while (left := deadline - time.monotonic()) > 0:
        if context.cancel_requested():
            return {"slept_seconds": round(fault.seconds - left, 3), "cancelled": True}
        context.report_progress(round(100 * (1 - left / fault.seconds), 1), "sleeping")
        time.sleep(min(left, 0.1))
    return {"slept_seconds": fault.seconds}


class StepsPayload(BaseModel):
    """Payload of ``steps``: ``steps`` steps of ``seconds`` each, continued by a new delivery whenever the
    invocation has less than ``seconds`` left (or every ``per_run`` steps, when given)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=3, ge=1, le=1000)
    seconds: float = Field(default=0.0, ge=0, le=25)
    per_run: int | None = Field(default=None, ge=1, le=1000)


def run_steps(job: Job, context: JobContext) -> dict[str, Any]:
    """``steps``: a job longer than one invocation. Resumes from its checkpoint (``{"done": n, "runs": r}``), does
    steps while time is left, and asks to be continued before it runs out."""
    spec = StepsPayload.model_validate(job.payload)
    state = context.checkpoint or {"done": 0, "runs": 0}
    done, runs = int(state["done"]), int(state["runs"]) + 1
    in_this_run = 0
    while done < spec.steps:
        out_of_time = context.remaining_seconds() < spec.seconds
        if out_of_time or (spec.per_run is not None and in_this_run >= spec.per_run):
            context.continue_later({"done": done, "runs": runs})
        if context.cancel_requested():
            return {"done": done, "runs": runs, "cancelled": True}
        time.sleep(spec.seconds)
        done += 1
        in_this_run += 1
        context.report_progress(100 * done / spec.steps, f"step {done} of {spec.steps}")
    return {"done": done, "runs": runs}


def run_crash(job: Job, context: JobContext) -> dict[str, Any]:
    """``crash``: the worker process dies on the first ``attempts`` attempts (as a Lambda runtime crash or
    timeout ends a run mid-job), after the job was marked RUNNING."""
    if FaultPayload.model_validate(job.payload).misbehaves(job):
        os._exit(70)
    return {"survived_attempt": job.attempts}


FAULT_TYPES: dict[str, JobType] = {
    "flaky": JobType("flaky", run_flaky, FaultPayload),
    "fail": JobType("fail", run_fail, FaultPayload),
    "sleep": JobType("sleep", run_sleep, FaultPayload),
    "crash": JobType("crash", run_crash, FaultPayload),
    "steps": JobType("steps", run_steps, StepsPayload),
}


class Registry:
    """Job types by name. The deployed registry holds ``BUILT_IN_TYPES`` only (``jobs.bootstrap.registry``)."""

    def __init__(self, types: Iterable[JobType] = BUILT_IN_TYPES.values()) -> None:
        self._types = {job_type.name: job_type for job_type in types}

    def __getitem__(self, name: str) -> JobType:
        """The job type called ``name``. Raises ``UnknownJobType``."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}; known: {', '.join(sorted(self._types))}") from None

    def names(self) -> list[str]:
        """The registered type names, sorted."""
        return sorted(self._types)
