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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs.context import JobContext
from jobs.models import (
    InvalidPayload,
    Job,
    JobStatus,
    ProcessorError,
    RetryableProcessorError,
    UnknownJobType,
    format_timestamp,
)
from jobs.observability import queue_wait_seconds

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


def _summary(seconds: list[float]) -> dict[str, Any]:
    p50, p95 = percentile(seconds, 50), percentile(seconds, 95)
    return {
        "count": len(seconds),
        "p50": round(p50, 3) if p50 is not None else None,
        "p95": round(p95, 3) if p95 is not None else None,
    }


def quarterly_audit(job: Job, jobs: Iterable[Job]) -> dict[str, Any]:
    """The audit of ``jobs`` (the owner's jobs created in the quarter of ``job``'s creation).

    Returns counts by status and by type, the success rate (SUCCEEDED over SUCCEEDED and FAILED, None when none
    of those; a CANCELLED job was stopped by its owner, neither a success nor a failure of the work), processing
    time (finished_at - started_at, of SUCCEEDED and FAILED jobs only: a cancelled run's time says nothing of how
    long the work takes) and queue wait (started_at - created_at, of every job that started, cancelled ones too)
    as nearest-rank p50/p95 in seconds, and the request's own parameters as given.
    """
    start, end = quarter_bounds(job.created_at)
    by_status: Counter[str] = Counter({status.value: 0 for status in JobStatus})
    by_type: Counter[str] = Counter()
    processing: list[float] = []
    waiting: list[float] = []
    total = 0
    for item in jobs:
        if not start <= item.created_at < end:
            continue
        total += 1
        by_status[item.status] += 1
        by_type[item.type] += 1
        if (wait := queue_wait_seconds(item)) is not None:
            waiting.append(wait)
            if (
                item.started_at is not None
                and item.finished_at is not None
                and item.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
            ):
                processing.append((item.finished_at - item.started_at).total_seconds())
    finished = by_status[JobStatus.SUCCEEDED] + by_status[JobStatus.FAILED]
    payload = ReportPayload.model_validate(job.payload)
    return {
        "report_type": payload.report_type,
        "quarter": f"{start.year}-Q{(start.month - 1) // 3 + 1}",
        "period": {"start": format_timestamp(start), "end": format_timestamp(end)},
        "total_jobs": total,
        "by_status": dict(by_status),
        "by_type": dict(sorted(by_type.items())),
        "success_rate": round(by_status[JobStatus.SUCCEEDED] / finished, 4) if finished else None,
        "processing_seconds": _summary(processing),
        "queue_wait_seconds": _summary(waiting),
        "requested": {
            "target_user_ids": payload.target_user_ids,
            "complexity_level": payload.complexity_level,
            "priority": payload.priority,
        },
    }


#: How far a UUIDv7's embedded time may stray from its job's ``created_at``; the id range is widened by it and
#: ``quarterly_audit`` filters on ``created_at`` itself.
ID_CLOCK_MARGIN = timedelta(minutes=1)


def run_report(job: Job, context: JobContext) -> dict[str, Any]:
    """The ``report`` processor: reads only the owner's partition, within the quarter's id range, and reports its
    progress as it reads (the share of the quarter, up to the job's creation, whose jobs it has read)."""
    start, end = quarter_bounds(job.created_at)
    low, high = job_id_bounds(start - ID_CLOCK_MARGIN, end + ID_CLOCK_MARGIN)
    span = max((min(end, job.created_at) - start).total_seconds(), 1.0)

    def reading() -> Iterator[Job]:
        for count, item in enumerate(context.list_jobs(low, high), 1):
            if count % 100 == 0:
                done = min(max((item.created_at - start).total_seconds() / span, 0.0), 1.0)
                context.report_progress(round(99 * done, 1), f"{count} jobs read")
            yield item

    return quarterly_audit(job, reading())


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
