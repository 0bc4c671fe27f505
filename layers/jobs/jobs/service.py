"""The use cases of the job system and the rules of a job's status.

``JobService`` sits between the entry points (the API's handlers, the consumer's record handler) and the
store and queue. It never touches boto3; ``jobs.bootstrap`` wires the real store and queue into it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import datetime

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
    ServiceUnavailable,
    TransitionRejected,
    UnknownJobType,
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
        queue: where work goes (only ``create_job`` uses it; the consumer passes None).
        registry: the job types.
        clock: returns the current UTC time (tests pass a fixed one).
    """

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue | None = None,
        registry: Registry | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.queue = queue
        self.registry = registry or Registry()
        self.clock = clock

    def create_job(self, owner_id: str, request: JobCreate) -> Job:
        """Store a new QUEUED job and enqueue its reference.

        ``job_id`` is a UUIDv7, so the id order is the creation order. Its embedded time can run a few
        milliseconds ahead of ``created_at`` (the library keeps ids monotonic within a process by bumping the
        millisecond), so ``created_at`` comes from the clock, and readers by id range allow a margin.

        Raises:
            UnknownJobType: ``request.type`` is not registered.
            InvalidPayload: the payload does not fit the type.
            ServiceUnavailable: DynamoDB or SQS failed; no job is left behind without its message.
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
        if self.queue is None:
            raise RuntimeError("JobService.create_job needs a queue")
        self.store.put_new(job)
        try:
            self.queue.send(JobMessage(owner_id=owner_id, job_id=job.job_id))
        except ServiceUnavailable:
            # The message never left: take the job back so that nothing waits QUEUED forever.
            self.store.delete(owner_id, job.job_id)
            raise
        logger.info("Job %s created", job.job_id, extra={"job_id": job.job_id, "job_type": job.type})
        return job

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

    def run_job(self, message: JobMessage) -> Job | None:
        """Run the job a queue message names: QUEUED → RUNNING → SUCCEEDED | FAILED.

        Returns the job as last written, or None when it no longer exists (deleted: the message is done).
        A duplicate delivery of a finished job returns it unchanged and runs nothing.

        Raises:
            JobInProgress: the job is RUNNING under another delivery; the message should come back later.
        """
        owner_id, job_id = message.owner_id, message.job_id
        try:
            job = self.store.start(owner_id, job_id, now_text=format_timestamp(self.clock()))
        except TransitionRejected as rejected:
            return self._not_started(job_id, rejected.current)
        try:
            result = self.registry[job.type].run(job, self.store)
        except UnknownJobType as error:
            return self._finish(job, error=JobError(type=type(error).__name__, message=str(error)))
        except Exception as error:  # noqa: BLE001 - any processor failure is the job's failure, recorded on it
            logger.exception("Job %s failed", job_id, extra={"job_id": job_id})
            return self._finish(job, error=JobError(type=type(error).__name__, message=str(error)))
        return self._finish(job, result=result)

    def _not_started(self, job_id: str, current: Job | None) -> Job | None:
        if current is None:
            logger.info("Job %s no longer exists; its message is acknowledged", job_id, extra={"job_id": job_id})
            return None
        if current.status.is_terminal:
            logger.info("Job %s is already %s; duplicate message ignored", job_id, current.status)
            return current
        raise JobInProgress(job_id)

    def _finish(
        self, job: Job, *, result: dict[str, object] | None = None, error: JobError | None = None
    ) -> Job | None:
        status = JobStatus.FAILED if error is not None else JobStatus.SUCCEEDED
        try:
            finished = self.store.finish(
                job.owner_id,
                job.job_id,
                status=status,
                now_text=format_timestamp(self.clock()),
                result=result,
                error=error,
            )
        except TransitionRejected as rejected:
            if rejected.current is None:
                logger.info("Job %s was deleted while it ran; result discarded", job.job_id)
                return None
            raise
        # The final status is written once (the condition above), so each job counts once here.
        metrics.add_metric(
            name="JobsSucceeded" if status == JobStatus.SUCCEEDED else "JobsFailed", unit=MetricUnit.Count, value=1
        )
        if finished.started_at is not None and finished.finished_at is not None:
            seconds = (finished.finished_at - finished.started_at).total_seconds()
            metrics.add_metric(name="ProcessingTime", unit=MetricUnit.Seconds, value=seconds)
        logger.info("Job %s %s", job.job_id, status, extra={"job_id": job.job_id, "attempts": finished.attempts})
        return finished
