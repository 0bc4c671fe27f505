"""The use cases of the job system and the rules of a job's status.

``JobService`` sits between the entry points (the API's handlers, the consumer's record handler) and the
store and queue. It never touches boto3; ``jobs.bootstrap`` wires the real store and queue into it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import uuid6

from jobs.models import (
    InvalidPageToken,
    Job,
    JobCreate,
    JobError,
    JobInProgress,
    JobMessage,
    JobNotFound,
    JobPage,
    JobStatus,
    RetryableProcessorError,
    RetryLater,
    ServiceUnavailable,
    TransitionRejected,
    format_timestamp,
    utc_now,
)
from jobs.observability import MetricUnit, logger, metrics
from jobs.processors import Registry
from jobs.queue import JobQueue
from jobs.store import JobStore

#: A job id is a lowercase canonical UUID (RFC 9562 section 4); any other spelling names no job.
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def is_job_id(text: str) -> bool:
    """True when ``text`` is a lowercase canonical UUID, the only form a job id takes."""
    return JOB_ID_PATTERN.fullmatch(text) is not None


def encode_page_token(after_job_id: str) -> str:
    """The opaque ``next_token`` for the page after ``after_job_id`` (base64url of a small JSON object).

    The token holds no owner: the owner always comes from the caller's verified claims, so a token can
    never read another partition.
    """
    raw = json.dumps({"after": after_job_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The ``after_job_id`` inside a ``next_token``.

    Raises:
        InvalidPageToken: the token is not one this API issues.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidPageToken("next_token is not valid") from None
    if not isinstance(after, str) or not is_job_id(after):
        raise InvalidPageToken("next_token is not valid")
    return after


class JobService:
    """Create, read, list, delete and run jobs for an owner (the JWT ``sub``).

    Args:
        store: where jobs live.
        queue: where work goes (only ``enqueue`` uses it: the outbox function's service).
        registry: the job types.
        clock: returns the current UTC time (tests pass a fixed one).
        lease_seconds: how long a RUNNING job belongs to the run that started it.
        retry_base_seconds: the delay before the first retry of a retryable failure, doubled per attempt.
    """

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue | None = None,
        registry: Registry | None = None,
        clock: Callable[[], datetime] = utc_now,
        *,
        lease_seconds: int = 35,
        retry_base_seconds: int = 5,
    ) -> None:
        self.store = store
        self.queue = queue
        self.registry = registry or Registry()
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.retry_base_seconds = retry_base_seconds

    def create_job(self, owner_id: str, request: JobCreate) -> Job:
        """Store a new QUEUED job. One write: the table's stream is the outbox, and ``enqueue`` (the outbox
        function) sends the job's message once the item exists.

        ``job_id`` is a UUIDv7, so the id order is the creation order. Its embedded time can run a few
        milliseconds ahead of ``created_at`` (the library keeps ids monotonic within a process by bumping the
        millisecond), so ``created_at`` comes from the clock, and readers by id range allow a margin.

        Raises:
            UnknownJobType: ``request.type`` is not registered.
            InvalidPayload: the payload does not fit the type.
            ServiceUnavailable: DynamoDB throttled or failed; no job was stored.
        """
        job_type = self.registry[request.type]
        job_type.check_payload(request.payload)
        created_at = self.clock()
        job = Job(
            owner_id=owner_id,
            job_id=str(uuid6.uuid7()),
            title=request.title,
            type=job_type.name,
            status=JobStatus.QUEUED,
            payload=request.payload,
            created_at=created_at,
            updated_at=created_at,
        )
        self.store.put_new(job)
        logger.info("Job %s created", job.job_id, extra={"job_id": job.job_id, "job_type": job.type})
        return job

    def enqueue(self, message: JobMessage) -> None:
        """Send the message of a job the table's stream reports as created (the outbox's relay).

        Raises:
            ServiceUnavailable: SQS failed; the stream record is retried, so the job still gets its message.
        """
        if self.queue is None:
            raise RuntimeError("JobService.enqueue needs a queue")
        self.queue.send(message)
        logger.info("Job %s enqueued", message.job_id, extra={"job_id": message.job_id})

    def get_job(self, owner_id: str, job_id: str) -> Job:
        """The owner's job. Raises ``JobNotFound`` when absent, malformed, or someone else's."""
        job = self.store.get(owner_id, job_id) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    def list_jobs(self, owner_id: str, *, limit: int = DEFAULT_PAGE_SIZE, next_token: str | None = None) -> JobPage:
        """One page of the owner's jobs, newest first.

        Args:
            limit: page size, 1 to ``MAX_PAGE_SIZE``.
            next_token: the ``next_token`` of the previous page, or None for the first.

        Raises:
            InvalidPageToken: ``next_token`` was not issued by this API.
        """
        after = decode_page_token(next_token) if next_token else None
        jobs, last = self.store.list_page(owner_id, limit=limit, after_job_id=after)
        logger.info("Retrieved %d job(s) for user %s", len(jobs), owner_id)
        return JobPage(items=jobs, next_token=encode_page_token(last) if last else None)

    def delete_job(self, owner_id: str, job_id: str) -> None:
        """Delete the owner's job, whatever its status. Raises ``JobNotFound`` when there is none."""
        if not (is_job_id(job_id) and self.store.delete(owner_id, job_id)):
            raise JobNotFound(job_id)
        logger.info("Job %s was successfully hit and removed", job_id, extra={"job_id": job_id})

    def run_job(self, message: JobMessage, delivery: Delivery | None = None) -> Job | None:
        """Run the job a queue message names: QUEUED → RUNNING → SUCCEEDED | FAILED.

        A RUNNING job whose lease has expired (its run died) is taken over. A retryable failure before the
        last delivery puts the job back to QUEUED with its error and asks for the message again later.
        Returns the job as last written, or None when it does not exist (deleted: the message is done).
        A delivery of a finished job returns it unchanged and runs nothing.

        Raises:
            RetryLater: the message should come back after ``delay_seconds`` (the job is RUNNING under a live
                lease, or failed retryably).
        """
        delivery = delivery or Delivery()
        owner_id, job_id = message.owner_id, message.job_id
        now = self.clock()
        try:
            job = self.store.start(
                owner_id, job_id, now_text=format_timestamp(now), stale_before_text=format_timestamp(now - self.lease)
            )
        except TransitionRejected as rejected:
            return self._not_started(job_id, rejected.current, now)
        logger.info("Job %s started, attempt %d", job_id, job.attempts, extra={"receive_count": delivery.receive_count})
        try:
            result = self.registry[job.type].run(job, self.store)
        except (RetryableProcessorError, ServiceUnavailable) as error:
            failure = JobError(type=type(error).__name__, message=str(error))
            if delivery.receive_count >= delivery.max_receive_count:
                logger.warning("Job %s failed on its last delivery", job_id, extra={"error": failure.model_dump()})
                return self._finish(job, error=failure)
            return self._requeue(job, failure)
        except Exception as error:  # noqa: BLE001 - any other processor failure is the job's failure, recorded on it
            logger.exception("Job %s failed", job_id)
            return self._finish(job, error=JobError(type=type(error).__name__, message=str(error)))
        return self._finish(job, result=result)

    def fail_dead_lettered(self, message: JobMessage, delivery: Delivery | None = None) -> Job | None:
        """Mark FAILED the job of a message that reached the dead-letter queue, unless it is finished, deleted,
        or RUNNING under a live lease (then the message should come back when the lease ends).

        Raises:
            RetryLater: the job's run may still be alive.
        """
        delivery = delivery or Delivery()
        now = self.clock()
        error = JobError(
            type="DeadLettered",
            message=f"the job's message was moved to the dead-letter queue after {delivery.max_receive_count} "
            "deliveries",
        )
        try:
            job = self.store.fail_abandoned(
                message.owner_id,
                message.job_id,
                now_text=format_timestamp(now),
                stale_before_text=format_timestamp(now - self.lease),
                error=error,
            )
        except TransitionRejected as rejected:
            return self._not_started(message.job_id, rejected.current, now)
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="JobsDeadLettered", unit=MetricUnit.Count, value=1)
        logger.warning("Job %s FAILED: dead-lettered", message.job_id, extra={"job_id": message.job_id})
        return job

    def _not_started(self, job_id: str, current: Job | None, now: datetime) -> Job | None:
        if current is None:
            # The outbox sends a message only once its item exists, so a missing item was deleted.
            logger.info("Job %s no longer exists (deleted); its message is acknowledged", job_id)
            return None
        if current.status.is_terminal:
            logger.info("Job %s is already %s; duplicate message ignored", job_id, current.status)
            return current
        assert current.started_at is not None  # a job that is not startable here is RUNNING
        remaining = (current.started_at + self.lease - now).total_seconds()
        raise JobInProgress(f"job {job_id} is running under another delivery", delay_seconds=math.ceil(remaining) + 1)

    def _requeue(self, job: Job, failure: JobError) -> Job | None:
        assert job.started_at is not None
        try:
            queued = self.store.requeue(
                job.owner_id,
                job.job_id,
                started_at_text=format_timestamp(job.started_at),
                now_text=format_timestamp(self.clock()),
                error=failure,
            )
        except TransitionRejected as rejected:
            return self._lost(job, rejected.current)
        metrics.add_metric(name="JobsRetried", unit=MetricUnit.Count, value=1)
        delay = self.retry_base_seconds * 2 ** (queued.attempts - 1)
        logger.warning(
            "Job %s attempt %d failed; retrying in %d s",
            job.job_id,
            queued.attempts,
            delay,
            extra={"error": failure.model_dump()},
        )
        raise RetryLater(f"job {job.job_id} failed retryably", delay_seconds=delay)

    def _lost(self, job: Job, current: Job | None) -> Job | None:
        if current is None:
            logger.info("Job %s was deleted while it ran; its outcome is discarded", job.job_id)
            return None
        logger.warning("Job %s is no longer this run's (now %s); its outcome is discarded", job.job_id, current.status)
        return current

    def _finish(
        self, job: Job, *, result: dict[str, object] | None = None, error: JobError | None = None
    ) -> Job | None:
        assert job.started_at is not None
        status = JobStatus.FAILED if error is not None else JobStatus.SUCCEEDED
        try:
            finished = self.store.finish(
                job.owner_id,
                job.job_id,
                started_at_text=format_timestamp(job.started_at),
                status=status,
                now_text=format_timestamp(self.clock()),
                result=result,
                error=error,
            )
        except TransitionRejected as rejected:
            return self._lost(job, rejected.current)
        # The final status is written once (the condition above), so each job counts once here.
        metrics.add_metric(
            name="JobsSucceeded" if status == JobStatus.SUCCEEDED else "JobsFailed", unit=MetricUnit.Count, value=1
        )
        if finished.started_at is not None and finished.finished_at is not None:
            seconds = (finished.finished_at - finished.started_at).total_seconds()
            metrics.add_metric(name="ProcessingTime", unit=MetricUnit.Seconds, value=seconds)
        logger.info("Job %s %s", job.job_id, status, extra={"job_id": job.job_id, "attempts": finished.attempts})
        return finished


@dataclass(frozen=True)
class Delivery:
    """What SQS says about one delivery of a message: ``receive_count`` (ApproximateReceiveCount) and
    ``max_receive_count`` (the redrive policy's)."""

    receive_count: int = 1
    max_receive_count: int = 3
