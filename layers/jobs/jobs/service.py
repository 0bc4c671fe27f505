"""The use cases of the job system and the rules of a job's status.

``JobService`` sits between the entry points (the API's handlers, the consumer's record handler) and the
store and queue. It never touches boto3; ``jobs.bootstrap`` wires the real store and queue into it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import uuid6
from pydantic import ValidationError

from jobs import aws
from jobs.context import JobContext
from jobs.models import (
    MAX_NOT_BEFORE_SECONDS,
    MAX_RESULT_BYTES,
    SQS_MAX_VISIBILITY_SECONDS,
    CallbackStatus,
    ContinueLater,
    InvalidPageToken,
    InvalidRequest,
    Job,
    JobCallback,
    JobCreate,
    JobError,
    JobFinished,
    JobInProgress,
    JobMessage,
    JobNotFound,
    JobPage,
    JobPriority,
    JobStatus,
    NotYetDue,
    RetryableProcessorError,
    RetryLater,
    ServiceUnavailable,
    TransitionRejected,
    WriteRefused,
    format_timestamp,
    is_owner_id,
    json_bytes,
    utc_now,
)
from jobs.observability import SEED_DELETE_LINE, SEED_LIST_LINE, MetricUnit, logger, metrics, record_queue_wait
from jobs.processors import Registry
from jobs.queue import MAX_BATCH, MAX_DELAY_SECONDS, DiscardedBatchQueue, Dispatch, JobQueue, SendResult
from jobs.settings import callback_settings
from jobs.store import QUEUED_SHARDS, JobStore
from jobs.streams import DiscardedBatch, RecordsExpired, StreamReader, job_message_of
from jobs.webhooks import CallbackRefused, check_callback_url

#: A job id is a lowercase canonical UUID (RFC 9562 section 4); any other spelling names no job.
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: Lambda's synchronous response limit, bytes of the serialised invocation response ("Lambda quotas",
#: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: 6 MB each for request and response).
LAMBDA_RESPONSE_LIMIT_BYTES = 6_291_556
#: What a list page's jobs may take in the API function's serialised response, bytes: two thirds of Lambda's limit.
#: A page stops before the job that would pass it; that job starts the next page. One job takes at most about
#: 600 KB there (``MAX_PAYLOAD_BYTES`` and ``MAX_RESULT_BYTES`` escaped, ``job_response_bytes``), and the envelope
#: (status, headers, ``next_token``) under 1 KB, so a page always fits, with more than 1.5 MB to spare.
LIST_PAGE_BUDGET_BYTES = 4_194_304


def job_response_bytes(job: Job) -> int:
    """What ``job`` adds to the API function's serialised invocation response, bytes (``text_response_bytes`` of
    its ``model_dump_json()``)."""
    return text_response_bytes(job.model_dump_json())


def text_response_bytes(text: str) -> int:
    """What a job whose JSON text is ``text`` adds to the API function's serialised invocation response, bytes.

    The page's body is JSON text (``model_dump_json``) inside the proxy response's ``body`` string, which the
    Lambda runtime serialises again: every ``"`` and ``\\`` of the body costs two bytes, a control character's
    escape seven, and a non-ASCII character six (twelve outside the Basic Multilingual Plane) when the runtime
    escapes it, as Python runtimes before 3.12 do (later ones write UTF-8, which is never larger). This measures the
    larger: ``json.dumps`` of the job's text, less its two quotes, plus the comma between items.
    """
    return len(json.dumps(text)) - 1


def is_job_id(text: str) -> bool:
    """True when ``text`` is a lowercase canonical UUID, the only form a job id takes."""
    return JOB_ID_PATTERN.fullmatch(text) is not None


#: A ``next_token`` longer than this is not one this API issued (issued ones are about 200 characters).
MAX_PAGE_TOKEN_LENGTH = 512
_PAGE_TOKEN_VERSION = 1


def _page_digest(owner_id: str, after_job_id: str, status: str | None) -> str:
    """What binds a page token to its owner and query: a digest of the owner, the status filter and the cursor.

    It is not a secret MAC: a caller who rebuilds a token for its own owner id can only ever read its own
    partition, because the owner always comes from the verified claims. The digest makes a token issued to
    another owner, for another filter, or changed in any byte, a clear 400 instead of a silent cursor move.
    """
    text = "\0".join(("jobs-page-token", str(_PAGE_TOKEN_VERSION), owner_id, status or "", after_job_id))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def encode_page_token(owner_id: str, after_job_id: str, status: str | None = None) -> str:
    """The opaque ``next_token`` of ``owner_id``'s page after ``after_job_id`` (``status``: the list's filter).

    base64url of a small JSON object: the cursor, the filter and a digest of both with the owner. The owner
    itself is not in the token; it always comes from the caller's verified claims, so a token can never read
    another partition, and one issued to someone else is refused.
    """
    body = {"v": _PAGE_TOKEN_VERSION, "after": after_job_id, "status": status}
    body["digest"] = _page_digest(owner_id, after_job_id, status)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, owner_id: str, status: str | None = None) -> str:
    """The ``after_job_id`` inside a ``next_token`` that this API issued to ``owner_id`` for this ``status``.

    Raises:
        InvalidPageToken: garbage, a token changed in any byte, issued to another owner, or for another filter.
    """
    invalid = InvalidPageToken("next_token is not valid")
    if len(token) > MAX_PAGE_TOKEN_LENGTH or not _PAGE_TOKEN_ALPHABET.fullmatch(token):
        raise invalid
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise invalid from None
    if not isinstance(body, dict) or set(body) != {"v", "after", "status", "digest"}:
        raise invalid
    after, digest = body["after"], body["digest"]
    if body["v"] != _PAGE_TOKEN_VERSION or body["status"] != status or not isinstance(after, str):
        raise invalid
    if not is_job_id(after) or not isinstance(digest, str):
        raise invalid
    if not hmac.compare_digest(digest, _page_digest(owner_id, after, status)):
        raise invalid
    return after


_PAGE_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
#: A lease bound no run's ``started_at`` is earlier than: a transition with it takes no RUNNING job.
_NEVER_STALE = format_timestamp(datetime(1, 1, 1, tzinfo=UTC))


class JobService:
    """Create, read, list, delete and run jobs for an owner (the JWT ``sub``).

    Args:
        store: where jobs live.
        queue: where work goes (only ``enqueue`` uses it: the outbox function's service).
        registry: the job types.
        clock: returns the current UTC time (tests pass a fixed one).
        lease_seconds: how long a RUNNING job belongs to the run that started it.
        retry_base_seconds: the delay before the first retry of a retryable failure, doubled per attempt.
        retention_days: how long a finished (SUCCEEDED, FAILED or CANCELLED) job stays readable before it expires.
        page_budget_bytes: what a list page's jobs may take in the API's response (``LIST_PAGE_BUDGET_BYTES``).
        min_start_seconds: the least time left in the invocation (``seconds_left``) to start a job; with less, its
            message is sent again as a new one (a batch of ten shares one invocation's time).
        seconds_left: seconds before the invocation must answer, or None outside one (``jobs.aws.seconds_left``).
        invocation: what tells invocations apart (``jobs.aws.current_deadline``): the first job of each invocation
            is started whatever ``min_start_seconds`` says, so that a consumer whose ``Timeout`` is shorter than it
            still runs one job per invocation instead of handing every message back forever.
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
        retention_days: int = 30,
        page_budget_bytes: int = LIST_PAGE_BUDGET_BYTES,
        min_start_seconds: float = 10.0,
        seconds_left: Callable[[], float | None] = aws.seconds_left,
        invocation: Callable[[], object | None] = aws.current_deadline,
    ) -> None:
        self.store = store
        self.page_budget_bytes = page_budget_bytes
        self.queue = queue
        self.registry = registry or Registry()
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.retry_base_seconds = retry_base_seconds
        self.retention = timedelta(days=retention_days)
        self.min_start_seconds = min_start_seconds
        self.invocation = invocation
        #: The invocation in which this service last started (or tried to start) a job.
        self._started_in: object | None = None
        self.seconds_left = seconds_left

    def create_job(self, owner_id: str, request: JobCreate) -> Job:
        """Store a new QUEUED job. One write: the table's stream is the outbox, and ``enqueue`` (the outbox
        function) sends the job's message once the item exists.

        Raises:
            UnknownJobType: ``request.type`` is not registered.
            InvalidPayload: the payload does not fit the type.
            ServiceUnavailable: DynamoDB throttled, failed or did not answer; the job may or may not be stored
                (a write whose answer was lost may have landed: ``jobs.idempotency`` settles that for keyed
                requests).
        """
        job = self.new_job(owner_id, request)
        self.store_new(job)
        return job

    def new_job(self, owner_id: str, request: JobCreate) -> Job:
        """The QUEUED job a request describes, not stored yet.

        ``job_id`` is a UUIDv7, so the id order is the creation order. Its embedded time can run a few
        milliseconds ahead of ``created_at`` (the library keeps ids monotonic within a process by bumping the
        millisecond), so ``created_at`` comes from the clock, and readers by id range allow a margin.

        Raises:
            UnknownJobType: ``request.type`` is not registered.
            InvalidPayload: the payload does not fit the type.
            InvalidRequest: ``not_before`` is more than 7 days ahead (``MAX_NOT_BEFORE_SECONDS``), or
                ``callback_url`` is refused by ``jobs.webhooks.check_callback_url``.
        """
        job_type = self.registry[request.type]
        job_type.check_payload(request.payload)
        created_at = self.clock()
        if request.not_before is not None and request.not_before > created_at + timedelta(
            seconds=MAX_NOT_BEFORE_SECONDS
        ):
            raise InvalidRequest(
                [
                    {
                        "loc": ["body", "not_before"],
                        "msg": f"at most {MAX_NOT_BEFORE_SECONDS // 86400} days ahead",
                        "type": "not_before_too_late",
                    }
                ]
            )
        if request.callback_url is not None:
            try:
                check_callback_url(request.callback_url, allow_loopback=callback_settings().allow_loopback)
            except CallbackRefused as refused:
                raise InvalidRequest(
                    [{"loc": ["body", "callback_url"], "msg": refused.reason, "type": refused.kind}]
                ) from None
        return Job(
            owner_id=owner_id,
            job_id=str(uuid6.uuid7()),
            title=request.title,
            type=job_type.name,
            status=JobStatus.QUEUED,
            payload=request.payload,
            created_at=created_at,
            updated_at=created_at,
            priority=request.effective_priority,
            not_before=request.not_before,
            callback_url=request.callback_url,
            callback=None if request.callback_url is None else JobCallback(status=CallbackStatus.PENDING),
        )

    def store_new(self, job: Job) -> None:
        """Write a job made by ``new_job``. Raises ``ServiceUnavailable`` when DynamoDB failed or did not
        answer (the write may have landed)."""
        self.store.put_new(job)
        logger.info("Job %s created", job.job_id, extra={"job_id": job.job_id, "job_type": job.type})

    def settle_in_doubt(self, job: Job) -> Job:
        """The job of a create whose write was in doubt (DynamoDB failed or did not answer): the stored job when
        that write landed, else ``job`` written now, under the same id, so that however many retries settle it,
        one job exists. A write of the first attempt that lands late meets the same key: still one job.

        Raises:
            ServiceUnavailable: DynamoDB still fails; the create stays in doubt for the next retry.
        """
        found = self.store.get(job.owner_id, job.job_id)
        if found is not None:
            return found
        try:
            self.store_new(job)
        except ValueError:  # it landed meanwhile
            stored = self.store.get(job.owner_id, job.job_id)
            if stored is None:
                raise ServiceUnavailable("the job's write is still in doubt") from None
            return stored
        return job

    def dispatch_all(self, jobs: Sequence[Job | JobMessage]) -> list[bool]:
        """Send the messages of jobs the table's stream reports as created (the outbox's relay); returns, in order,
        whether each is settled (``enqueue_all``).

        A ``Job`` (the record's new image) goes to its priority's queue, delayed towards its ``not_before``
        (``Dispatch.of``). A ``JobMessage`` (a record with keys only: a ``KEYS_ONLY`` stream's, before the upgrade
        to ``NEW_AND_OLD_IMAGES``) is looked up first: a job that is gone or no longer QUEUED needs no message
        (settled), and one whose read fails is not settled (retried).
        """
        now = self.clock()
        outcomes: list[bool | Dispatch] = []  # settled already (True), not settled (False), or to send
        for found in jobs:
            if isinstance(found, JobMessage):
                try:
                    job = self._queued_job(found)
                except ServiceUnavailable as error:
                    logger.warning("Job %s not read: %s", found.job_id, error, extra={"job_id": found.job_id})
                    outcomes.append(False)
                    continue
                if job is None:
                    logger.info("Job %s needs no message (gone or started)", found.job_id)
                    outcomes.append(True)
                    continue
                found = job
            outcomes.append(Dispatch.of(found, now))
        sent = iter(self.enqueue_all([outcome for outcome in outcomes if isinstance(outcome, Dispatch)]))
        return [next(sent) if isinstance(outcome, Dispatch) else outcome for outcome in outcomes]

    def enqueue_all(self, dispatches: Sequence[Dispatch]) -> list[bool]:
        """Send the messages of jobs to their queues, ``MAX_BATCH`` per call (one SendMessageBatch per queue
        among them); returns, in order, whether each message is settled.

        A message is settled when it was sent, or when its job can never get one and is marked FAILED at once:
        its owner id breaks the identity rule (``jobs.models.is_owner_id``: no valid token can own the job, and
        only an older version or a migration writes one), or SQS refused its entry as the sender's fault
        (``SenderFault``: the same entry can never succeed). A job that is no longer QUEUED, or gone, needs no
        message either. A message that is not settled (throttling, an outage, an entry SQS failed on its side) is
        for the caller to retry: its stream record is reported as a batch item failure. Once one is not
        settled, the later ones are not tried (reported not settled): the stream is retried from the first
        failure on, in order.
        """
        if self.queue is None:
            raise RuntimeError("JobService.enqueue_all needs a queue")
        settled: list[bool] = []
        for start in range(0, len(dispatches), MAX_BATCH):
            chunk = dispatches[start : start + MAX_BATCH]
            if not all(settled):
                # A message before these was not settled: Lambda retries the stream from its record on, so these
                # would be sent again anyway. Stop here, rather than send them twice or wait on a failing SQS.
                settled.extend([False] * len(chunk))
                continue
            settled.extend(self._enqueue_chunk(chunk))
        return settled

    def _enqueue_chunk(self, chunk: Sequence[Dispatch]) -> list[bool]:
        assert self.queue is not None
        sendable = [dispatch for dispatch in chunk if is_owner_id(dispatch.message.owner_id)]
        try:
            results = self.queue.send_batch(sendable) if sendable else []
        except ServiceUnavailable as error:
            logger.warning("%d messages not sent: %s", len(sendable), error)
            results = [SendResult(code="Unavailable")] * len(sendable)
        answers = iter(results)  # in the order of ``sendable``, which keeps the chunk's order
        settled = []
        for dispatch in chunk:
            message = dispatch.message
            result = next(answers) if is_owner_id(message.owner_id) else None
            extra = {"job_id": message.job_id, "priority": dispatch.priority.value}
            if result is None:
                failure = JobError(
                    type="InvalidOwner",
                    message="the job's owner id is not 1 to 255 printable ASCII characters, so no token can own it "
                    "and its message is not sent",
                )
                settled.append(self._fail_unsendable(message, failure))
            elif result.sent:
                logger.info("Job %s enqueued", message.job_id, extra={**extra, "delay_seconds": dispatch.delay_seconds})
                settled.append(True)
            elif result.sender_fault:
                failure = JobError(type="MessageRefused", message=f"SQS refused the job's message ({result.code})")
                settled.append(self._fail_unsendable(message, failure))
            else:
                logger.warning("Job %s not enqueued (%s); retried", message.job_id, result.code, extra=extra)
                settled.append(False)
        return settled

    def _fail_unsendable(self, message: JobMessage, failure: JobError) -> bool:
        """Mark FAILED the QUEUED job of a message that can never be sent; True when that settles the message
        (the job is FAILED now, or no longer QUEUED, or gone), False when DynamoDB failed (retry)."""
        now = self.clock()
        try:
            self.store.fail_abandoned(
                message.owner_id,
                message.job_id,
                now_text=format_timestamp(now),
                stale_before_text=_NEVER_STALE,  # no RUNNING job is taken from its run here: only QUEUED ones
                error=failure,
                expires_at=self._expiry(now),
            )
        except TransitionRejected as rejected:
            status = rejected.current.status if rejected.current is not None else "gone"
            logger.info("Job %s needs no message (%s)", message.job_id, status, extra={"job_id": message.job_id})
            return True
        except ServiceUnavailable as error:
            logger.warning("Job %s not failed now: %s", message.job_id, error, extra={"job_id": message.job_id})
            return False
        except WriteRefused as refused:
            # Neither sendable nor failable (an item at DynamoDB's size limit, say): leave it QUEUED and visible
            # rather than hold the shard or the reconciler; the reconciler meets it again after its bound.
            metrics.add_metric(name="JobsUnsettled", unit=MetricUnit.Count, value=1)
            logger.error(
                "Job %s can neither be sent nor failed (%s); left QUEUED",
                message.job_id,
                refused.code,
                extra={"job_id": message.job_id},
            )
            return True
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="JobsUnsendable", unit=MetricUnit.Count, value=1)
        logger.error(
            "Job %s FAILED: its message can never be sent",
            message.job_id,
            extra={"job_id": message.job_id, "error": failure.model_dump()},
        )
        return True

    def replay_discarded(self, batches: DiscardedBatchQueue, reader: StreamReader, *, max_batches: int = 100) -> int:
        """Replay the stream batches the relay's event source mapping gave up on (its on-failure destination):
        read each batch's records back from the stream and send the messages of the jobs they created that are
        still QUEUED (a job that started, finished or was deleted needs none; a duplicate is harmless, as every
        transition is conditional). Returns the number of messages sent.

        A batch is removed from ``batches`` once replayed, or once the stream no longer holds its records (24
        hours; ``reconcile`` covers those jobs); one that fails now (throttling, an outage) stays for the next
        run. At most ``max_batches`` batches per call.
        """
        sent = 0
        for receipt, body in batches.receive(max_batches):
            try:
                batch = DiscardedBatch.model_validate_json(body).DDBStreamBatchInfo
            except ValidationError:
                logger.error("Not a discarded stream batch; removed", extra={"body": body[:1024]})
                batches.delete(receipt)
                continue
            where = {"shard_id": batch.shardId, "first": batch.startSequenceNumber, "last": batch.endSequenceNumber}
            try:
                messages = [
                    message
                    for record in reader.records(batch)
                    if record.get("eventName") == "INSERT" and (message := job_message_of(record)) is not None
                ]
                now = self.clock()
                queued = [Dispatch.of(job, now) for m in messages if (job := self._queued_job(m)) is not None]
                settled = self.enqueue_all(queued)
            except RecordsExpired as expired:
                logger.warning("Discarded batch no longer in the stream; removed: %s", expired, extra=where)
                batches.delete(receipt)
                continue
            except ServiceUnavailable as error:
                logger.warning("Discarded batch not replayed now: %s", error, extra=where)
                continue
            if not all(settled):
                logger.warning("Discarded batch partly replayed; kept for the next run", extra=where)
                continue
            logger.info("Discarded batch replayed: %d of %d jobs still QUEUED", len(queued), len(messages), extra=where)
            sent += len(queued)
            batches.delete(receipt)
        return sent

    def _queued_job(self, message: JobMessage) -> Job | None:
        job = self.store.get(message.owner_id, message.job_id)
        return job if job is not None and job.status == JobStatus.QUEUED else None

    def reconcile(self, *, queued_for: timedelta, max_jobs: int = 4800) -> int:
        """Send again the messages of QUEUED jobs not updated for ``queued_for``: jobs the stream could not give a
        message (past its retention, or written by an older version). Reads the sparse ``Queued`` index, taking
        an equal share of ``max_jobs`` from each shard, so no shard waits behind another's backlog. A job whose
        message is still in the queue (a backlog older than the bound) gets a duplicate, which its conditional
        transitions make harmless; each re-sent job is marked (``mark_reconciled``) and not re-sent again until
        ``queued_for`` has passed once more. Returns the number of messages settled (sent, or their jobs failed
        as unsendable).

        Raises:
            ServiceUnavailable: DynamoDB failed (SQS failures leave those jobs to the next call).
        """
        now = self.clock()
        before = format_timestamp(now - queued_for)
        share = max(1, math.ceil(max_jobs / len(QUEUED_SHARDS)))
        found = [
            JobMessage(owner_id=owner_id, job_id=job_id)
            for shard in QUEUED_SHARDS
            for owner_id, job_id in islice(self.store.list_queued(shard, updated_before_text=before), share)
        ]
        # The index holds keys only: each job is read for its priority and start time (and a job that started
        # since the query needs no message).
        pending = [Dispatch.of(job, now) for message in found if (job := self._queued_job(message)) is not None]
        settled = 0
        for start in range(0, len(pending), MAX_BATCH):
            chunk = pending[start : start + MAX_BATCH]
            for dispatch, done in zip(chunk, self.enqueue_all(chunk), strict=True):
                if not done:
                    continue
                settled += 1
                message = dispatch.message
                try:
                    self.store.mark_reconciled(message.owner_id, message.job_id, now_text=format_timestamp(now))
                except WriteRefused as refused:
                    logger.warning("Job %s not marked reconciled (%s)", message.job_id, refused.code)
        if found:
            logger.warning("Reconciled %d QUEUED job(s) older than %s: %d settled", len(found), before, settled)
        return settled

    def get_job(self, owner_id: str, job_id: str) -> Job:
        """The owner's job. Raises ``JobNotFound`` when absent, malformed, or someone else's."""
        job = self.store.get(owner_id, job_id) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    def list_jobs(
        self,
        owner_id: str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        next_token: str | None = None,
        status: JobStatus | None = None,
    ) -> JobPage:
        """One page of the owner's jobs, newest first, only those in ``status`` when given: ``limit`` jobs, or fewer
        when more would take more than ``page_budget_bytes`` of the API's response (``job_response_bytes``), so no
        page passes Lambda's response limit; ``next_token`` then continues after the last job returned. The page
        keeps the JSON text of its jobs, written to size it (``JobPage.json_text``).

        Args:
            limit: page size, 1 to ``MAX_PAGE_SIZE``.
            next_token: the ``next_token`` of the previous page (same filter), or None for the first.
            status: the status filter, or None for every job.

        Raises:
            InvalidPageToken: ``next_token`` was not issued by this API to this owner for this query.
        """
        after = decode_page_token(next_token, owner_id, status) if next_token is not None else None
        jobs, last = self.store.list_page(owner_id, limit=limit, after_job_id=after, status=status)
        texts: list[str] = []  # each job is written once: to size the page here, and as the response's text
        size = 0
        for count, job in enumerate(jobs):
            text = job.model_dump_json()
            size += text_response_bytes(text)
            if count and size > self.page_budget_bytes:
                # The rest of the page would pass Lambda's response limit: it starts the next page instead.
                jobs, last = jobs[:count], jobs[count - 1].job_id
                break
            texts.append(text)
        logger.info(SEED_LIST_LINE, len(jobs), owner_id)
        return JobPage.written(jobs, texts, encode_page_token(owner_id, last, status) if last else None)

    def delete_job(self, owner_id: str, job_id: str) -> None:
        """Delete the owner's job, whatever its status. Raises ``JobNotFound`` when there is none."""
        if not (is_job_id(job_id) and self.store.delete(owner_id, job_id)):
            raise JobNotFound(job_id)
        logger.info(SEED_DELETE_LINE, job_id, extra={"job_id": job_id})

    def cancel_job(self, owner_id: str, job_id: str) -> Job:
        """Cancel the owner's job, keeping its record: a QUEUED job (or one released for continuation, which no run
        holds) becomes CANCELLED at once; a RUNNING one gets ``cancel_requested_at``, and its run's final write
        makes it CANCELLED. Cancelling a CANCELLED job changes nothing.

        Returns the job as written (or as found, when already CANCELLED).

        Raises:
            JobNotFound: absent, malformed, or someone else's.
            JobFinished: the job already SUCCEEDED or FAILED (or ended in a status this version does not know).
        """
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        for _ in range(3):  # each rejection means the job moved on (started, finished): look at where it is now
            now = self.clock()
            try:
                job = self.store.cancel_unheld(
                    owner_id, job_id, now_text=format_timestamp(now), expires_at=self._expiry(now)
                )
            except TransitionRejected as rejected:
                current = rejected.current
            else:
                self._count_cancelled(job)
                return job
            if current is None:
                raise JobNotFound(job_id)
            if current.status == JobStatus.CANCELLED:
                return current
            if current.is_finished or current.status != JobStatus.RUNNING:
                raise JobFinished(job_id, current.status.value)
            try:
                job = self.store.request_cancel(owner_id, job_id, now_text=format_timestamp(self.clock()))
            except TransitionRejected:
                continue
            logger.info("Job %s: cancel requested of its run", job_id, extra={"job_id": job_id})
            return job
        raise ServiceUnavailable("the job changed status while it was being cancelled")

    def run_job(self, message: JobMessage, delivery: Delivery | None = None) -> Job | None:
        """Run the job a queue message names: QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED.

        A RUNNING job whose lease has expired (its run died) is taken over; one its last run released for
        continuation is resumed from its checkpoint without counting an attempt. A retryable failure before the
        last try (``Delivery.is_last_try``) puts the job back to QUEUED with its error and asks for the message
        again later; on the last try it fails the job. A run that asks to be continued (``JobContext.continue_later``)
        saves its checkpoint, and a new message continues it (a continuation is no retry and spends no receive).
        Every way out of RUNNING honours a cancel asked meanwhile: the job ends CANCELLED, its result discarded.
        With less than ``min_start_seconds`` left in the invocation, no job is started but the invocation's
        first: the message is sent again as a new one, and this one is acknowledged, so that no delivery is spent.
        Returns the job as last written, or None when it does not exist (deleted: the message is done) or was
        handed back. A delivery of a finished job returns it unchanged and runs nothing.

        Raises:
            RetryLater: the message should come back after ``delay_seconds`` (the job is RUNNING under a live
                lease, or failed retryably).
        """
        delivery = delivery or Delivery()
        owner_id, job_id = message.owner_id, message.job_id
        if delivery.not_before is not None:
            now = self.clock()
            if now < delivery.not_before:
                waiting, current = self._still_waiting(message)
                if not waiting:
                    return current
                self._wait_for_start(self._dispatch(message, delivery, delivery.not_before), delivery, now)
                return None
            if delivery.came_early:
                # Due now, but this message's receives so far were early ones: a fresh message runs the job, so
                # that none of them counts toward the redrive policy.
                self._send_again(self._dispatch(message, delivery, None), "due; a fresh message runs it")
                return None
        left, invocation = self.seconds_left(), self.invocation()
        first_in_invocation = invocation is not None and invocation != self._started_in
        if left is not None and left < self.min_start_seconds and not first_in_invocation:
            why = f"{left:.1f} s left in the invocation, too little to start it"
            self._send_again(self._dispatch(message, delivery, delivery.not_before), why)
            return None
        self._started_in = invocation
        now = self.clock()
        run_id = uuid.uuid4().hex
        try:
            job = self.store.start(
                owner_id,
                job_id,
                now_text=format_timestamp(now),
                stale_before_text=format_timestamp(now - self.lease),
                run_id=run_id,
            )
        except TransitionRejected as rejected:
            current = rejected.current
            if current is not None and current.status == JobStatus.QUEUED and current.not_before is not None:
                # Not due yet, and the message did not say so (it was sent without the attribute).
                self._wait_for_start(Dispatch.of(current, now), delivery, now)
                return None
            resumed = self._resume_or_settle(current, run_id, now)
            if resumed is None or resumed.status != JobStatus.RUNNING:
                return resumed
            job = resumed
        else:
            logger.info(
                "Job %s started, attempt %d", job_id, job.attempts, extra={"receive_count": delivery.receive_count}
            )
            if job.attempts == 1:
                record_queue_wait(job)
        context = JobContext(job, self.store, clock=self.clock, seconds_left=self.seconds_left)
        try:
            result = self.registry[job.type].run(job, context)
        except ContinueLater as later:
            return self._continue(job, later.checkpoint)
        except (RetryableProcessorError, ServiceUnavailable) as error:
            failure = JobError(type=type(error).__name__, message=str(error))
            if delivery.is_last_try(job.attempts):
                logger.warning("Job %s failed on its last try", job_id, extra={"error": failure.model_dump()})
                return self._finish(job, error=failure)
            return self._requeue(job, failure)
        except Exception as error:  # noqa: BLE001 - any other processor failure is the job's failure, recorded on it
            logger.exception("Job %s failed", job_id)
            return self._finish(job, error=JobError(type=type(error).__name__, message=str(error)))
        return self._finish(job, result=result)

    def _resume_or_settle(self, current: Job | None, run_id: str, now: datetime) -> Job | None:
        """After a start was refused: resume a job released for continuation, end CANCELLED one whose cancel no
        run can honour any more (released, or its lease expired), else as ``_not_started``. Returns a RUNNING job
        held by ``run_id``, or the job that needs no run."""
        if current is not None and current.status == JobStatus.RUNNING:
            if current.cancel_requested_at is not None:
                settled = self._settle_cancelled(current, run_id=None, now=now)
                if settled is not None:
                    return settled
            elif current.continued_at is not None:
                try:
                    job = self.store.resume(
                        current.owner_id, current.job_id, now_text=format_timestamp(now), run_id=run_id
                    )
                except TransitionRejected as rejected:
                    return (
                        self._resume_or_settle(rejected.current, run_id, now)
                        if rejected.current != current
                        else current
                    )
                logger.info("Job %s continued from its checkpoint, attempt %d", job.job_id, job.attempts)
                metrics.add_metric(name="JobsContinued", unit=MetricUnit.Count, value=1)
                return job
        if current is None:
            return self._not_started(run_id, None, now)
        return self._not_started(current.job_id, current, now)

    def _settle_cancelled(self, job: Job, *, run_id: str | None, now: datetime | None = None) -> Job | None:
        """End CANCELLED a RUNNING job a cancel was asked of, held by ``run_id`` or by no live run; None when that
        is not (or no longer) so."""
        now = now or self.clock()
        try:
            cancelled = self.store.settle_cancelled(
                job.owner_id,
                job.job_id,
                now_text=format_timestamp(now),
                run_id=run_id,
                stale_before_text=format_timestamp(now - self.lease),
                expires_at=self._expiry(now),
            )
        except TransitionRejected:
            return None
        self._count_cancelled(cancelled)
        return cancelled

    def _count_cancelled(self, job: Job) -> None:
        metrics.add_metric(name="JobsCancelled", unit=MetricUnit.Count, value=1)
        logger.info("Job %s CANCELLED", job.job_id, extra={"job_id": job.job_id, "attempts": job.attempts})

    def _dispatch(self, message: JobMessage, delivery: Delivery, not_before: datetime | None) -> Dispatch:
        """A fresh message for the job of ``message``, with ``not_before``, on the queue ``delivery`` came from (its
        job's priority's), not delayed."""
        priority = self.queue.priority_of(delivery.queue_arn) if self.queue and delivery.queue_arn else None
        return Dispatch(message=message, priority=priority or JobPriority.NORMAL, not_before=not_before)

    def _still_waiting(self, message: JobMessage) -> tuple[bool, Job | None]:
        """Whether the job of an early message still waits for its start (QUEUED), and the job as read. A job
        cancelled or deleted meanwhile needs its message no longer: it is acknowledged now rather than kept for
        up to 7 days. When the read fails the job is taken to wait (the message is kept: its start's condition
        still holds)."""
        try:
            current = self.store.get(message.owner_id, message.job_id)
        except ServiceUnavailable as error:
            logger.warning("Job %s not read before its start: %s", message.job_id, error)
            return True, None
        if current is None or current.status != JobStatus.QUEUED:
            status = current.status if current is not None else "gone"
            logger.info("Job %s is %s before its start; its message is acknowledged", message.job_id, status)
            return False, current
        return True, current

    def _wait_for_start(self, dispatch: Dispatch, delivery: Delivery, now: datetime) -> None:
        """Keep the message of a job whose ``not_before`` has not come until it has, in as few receives as SQS
        allows, none of which counts toward a run's (``Delivery.hold_seconds``): hide the message held for as long
        as it may stay hidden, or, when it may not (its receives or the queue's retention would run out) or the
        wait is within ``MAX_DELAY_SECONDS``, replace it with a fresh message delayed towards the start.

        Raises:
            NotYetDue: the message held comes back after ``delay_seconds``.
            RetryLater: the fresh message could not be sent: the one held comes back instead.
        """
        assert dispatch.not_before is not None
        wait = math.ceil((dispatch.not_before - now).total_seconds())
        hold = delivery.hold_seconds(now, wait)
        if hold is None:
            fresh = replace(dispatch, delay_seconds=max(0, min(MAX_DELAY_SECONDS, wait)))
            self._send_again(fresh, f"not due for {wait} s; replaced by a message delayed {fresh.delay_seconds} s")
            return
        metrics.add_metric(name="JobsHeldUntilDue", unit=MetricUnit.Count, value=1)
        raise NotYetDue(f"job {dispatch.message.job_id} is not due for {wait} s", delay_seconds=hold)

    def _send_again(self, dispatch: Dispatch, why: str) -> None:
        """Send the message of ``dispatch`` again as a new message (its receive count starts afresh), so that the
        caller can acknowledge the one it holds.

        Raises:
            RetryLater: the new message could not be sent: the one held must come back instead.
        """
        message = dispatch.message
        if self.queue is None:
            raise RetryLater(f"job {message.job_id}: {why}; no queue to send it again", delay_seconds=1)
        try:
            (sent,) = self.queue.send_batch([dispatch])
        except ServiceUnavailable as error:
            raise RetryLater(f"job {message.job_id}: {why}; not sent again: {error}", delay_seconds=1) from error
        if not sent.sent:
            raise RetryLater(f"job {message.job_id}: {why}; not sent again ({sent.code})", delay_seconds=1)
        logger.info("Job %s sent again as a new message: %s", message.job_id, why, extra={"job_id": message.job_id})

    def _continue(self, job: Job, checkpoint: dict[str, object]) -> Job | None:
        """Save the run's checkpoint and release the job for continuation, then send the message that continues
        it. A job a cancel was asked of ends CANCELLED instead.

        Raises:
            RetryLater: the continuation's message could not be sent: the current one comes back and resumes it.
        """
        assert job.run_id is not None
        try:
            released = self.store.save_checkpoint(
                job.owner_id,
                job.job_id,
                run_id=job.run_id,
                now_text=format_timestamp(self.clock()),
                checkpoint=checkpoint,
                release=True,
            )
        except TransitionRejected as rejected:
            return self._lost(job, rejected.current)
        except WriteRefused as refused:
            return self._finish(
                job, error=JobError(type="CheckpointRefused", message=f"DynamoDB refused it ({refused.code})")
            )
        self._send_again(Dispatch.of(released, self.clock()), "continued from its checkpoint")
        return released

    def fail_dead_lettered(self, message: JobMessage, delivery: Delivery | None = None) -> Job | None:
        """Mark FAILED the job of a message that reached the dead-letter queue, unless it is finished, deleted,
        or RUNNING under a live lease (then the message should come back when the lease ends). A job that a cancel
        was asked of ends CANCELLED instead.

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
                expires_at=self._expiry(now),
            )
        except TransitionRejected as rejected:
            current = rejected.current
            if current is not None and current.status == JobStatus.RUNNING and current.cancel_requested_at is not None:
                settled = self._settle_cancelled(current, run_id=None, now=now)
                if settled is not None:
                    return settled
            return self._not_started(message.job_id, current, now)
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="JobsDeadLettered", unit=MetricUnit.Count, value=1)
        logger.warning("Job %s FAILED: dead-lettered", message.job_id, extra={"job_id": message.job_id})
        return job

    def _not_started(self, job_id: str, current: Job | None, now: datetime) -> Job | None:
        if current is None:
            # The outbox sends a message only once its item exists, so a missing item was deleted.
            logger.info("Job %s no longer exists (deleted); its message is acknowledged", job_id)
            return None
        if current.status != JobStatus.RUNNING or current.started_at is None:
            # Finished, or in a status this version does not know (a newer version's): not this run's to touch.
            logger.info("Job %s is %s; its message is acknowledged", job_id, current.status)
            return current
        lease_start = datetime.fromisoformat(current.leased_at) if current.leased_at else current.started_at
        remaining = (lease_start + self.lease - now).total_seconds()
        raise JobInProgress(f"job {job_id} is running under another delivery", delay_seconds=math.ceil(remaining) + 1)

    def _requeue(self, job: Job, failure: JobError) -> Job | None:
        assert job.run_id is not None
        try:
            queued = self.store.requeue(
                job.owner_id,
                job.job_id,
                run_id=job.run_id,
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
        """A run's way out of RUNNING was refused: a cancel asked of its job ends it CANCELLED (what the run had is
        discarded); otherwise the run lost the job (deleted, or taken over) and writes nothing."""
        if current is None:
            logger.info("Job %s was deleted while it ran; its outcome is discarded", job.job_id)
            return None
        if (
            current.status == JobStatus.RUNNING
            and current.cancel_requested_at is not None
            and current.run_id == job.run_id
        ):
            cancelled = self._settle_cancelled(current, run_id=job.run_id)
            if cancelled is not None:
                logger.info("Job %s was cancelled while it ran; its outcome is discarded", job.job_id)
                return cancelled
        logger.warning("Job %s is no longer this run's (now %s); its outcome is discarded", job.job_id, current.status)
        return current

    def _finish(
        self, job: Job, *, result: dict[str, object] | None = None, error: JobError | None = None
    ) -> Job | None:
        assert job.run_id is not None
        if result is not None and (size := json_bytes(result)) > MAX_RESULT_BYTES:
            # A result that large would put the item near DynamoDB's 400 KB and a list page near Lambda's limit.
            message = f"result is {size} bytes as JSON; the limit is {MAX_RESULT_BYTES}"
            error = JobError(type="ResultTooLarge", message=message)
            result = None
        status = JobStatus.FAILED if error is not None else JobStatus.SUCCEEDED
        now = self.clock()
        try:
            finished = self.store.finish(
                job.owner_id,
                job.job_id,
                run_id=job.run_id,
                status=status,
                now_text=format_timestamp(now),
                result=result,
                error=error,
                expires_at=self._expiry(now),
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

    def _expiry(self, finished_at: datetime) -> int:
        """When a job that finishes at ``finished_at`` expires: epoch seconds, the table's TTL attribute."""
        return math.ceil((finished_at + self.retention).timestamp())


#: The longest a scheduled job's message is hidden per receive, seconds. SQS allows a message's visibility timeout to
#: end at most 12 hours (``SQS_MAX_VISIBILITY_SECONDS``) after the ReceiveMessage request that returned it, and refuses
#: a longer one ("Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"; SQS developer guide,
#: "Visibility timeout": https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html;
#: ChangeMessageVisibility, API reference). 10 minutes are kept for the time between the receive and the call: the
#: event source mapping's batching window and the batch's earlier jobs (the consumer's ``Timeout`` is 30 s).
MAX_HOLD_SECONDS = SQS_MAX_VISIBILITY_SECONDS - 600
#: How long before the queue's retention would drop a message it is replaced, seconds.
RETENTION_MARGIN_SECONDS = 3600
#: How far SQS's timestamps (``ApproximateFirstReceiveTimestamp``) and the consumer's clock may disagree, seconds: a
#: message first received less than this before its ``not_before`` is not taken for an early one (``came_early``), so
#: the message that runs a job is never replaced for a skew, which would reset the receive count a crash loop needs
#: to reach the dead-letter queue.
CLOCK_SKEW_SECONDS = 1


@dataclass(frozen=True)
class Delivery:
    """What SQS says about one delivery of a message: ``receive_count`` (ApproximateReceiveCount),
    ``max_receive_count`` (the redrive policy's), ``max_attempts`` (the runs a job gets), the queue it came from
    (``queue_arn``), when it was sent (``sent_at``) and first received (``first_received_at``), the scheduled job's
    ``not_before`` (a message attribute), and the queue's ``retention_seconds``.

    Receives and attempts differ: a message is received again after an invocation that failed as a whole (a
    crash or timeout of any job in its batch) or while its job runs elsewhere, without its job running; so the
    redrive limit is set above the attempts (template.yaml, ``MaxReceiveCount``; docs/decisions.md).
    """

    receive_count: int = 1
    max_receive_count: int = 5
    max_attempts: int = 3
    queue_arn: str = ""
    sent_at: datetime | None = None
    first_received_at: datetime | None = None
    not_before: datetime | None = None
    retention_seconds: int = 345600

    def is_last_try(self, attempts: int) -> bool:
        """Whether a run that failed retryably, the job's ``attempts``-th, must be its last: the job's attempts
        are spent, or this is the message's last receive before the dead-letter queue."""
        return attempts >= self.max_attempts or self.receive_count >= self.max_receive_count

    @property
    def came_early(self) -> bool:
        """True when this message was received before now and its first receive came before its ``not_before``
        (by more than ``CLOCK_SKEW_SECONDS``): its receive count holds early receives, which must not count toward
        a run's. The rule of ``hold_seconds`` never brings such a message back after ``not_before``; an invocation
        that failed as a whole, or a consumer backlog, can."""
        return (
            self.not_before is not None
            and self.receive_count > 1
            and self.first_received_at is not None
            # Added on the receive's side: not_before may be 0001-01-01, where a subtraction overflows.
            and self.first_received_at + timedelta(seconds=CLOCK_SKEW_SECONDS) < self.not_before
        )

    def hold_seconds(self, now: datetime, wait: int) -> int | None:
        """How long to hide this message of a job ``wait`` seconds (rounded up) before its start, or None when a
        fresh message delayed ``min(wait, MAX_DELAY_SECONDS)`` must replace it. The rule that bounds a scheduled
        job's receives:

        - a wait within ``MAX_DELAY_SECONDS`` (900, SQS's longest ``DelaySeconds``) is a fresh message's delay, so
          the message that runs the job is first received at its ``not_before``: none of its receives is early;
        - otherwise the message is hidden until ``MAX_DELAY_SECONDS`` before the start, at most
          ``MAX_HOLD_SECONDS`` per receive (SQS: 12 hours from the receive), so its last early receive is the one
          that sends that fresh message;
        - it is hidden only while its receive count leaves two receives below the redrive limit (one for the
          replacement, one of slack for a batch that fails as a whole), so an early receive never moves a
          message to the dead-letter queue;
        - it is hidden only until ``RETENTION_MARGIN_SECONDS`` before the queue would drop it (its retention
          counts from ``sent_at``; SQS developer guide, "Message retention"), and is replaced instead when that
          leaves no more than a fresh message's delay.

        Receives for a whole wait, the run's included (tests/unit/test_scheduled_start.py, MaxReceiveCount 5): 1 hour
        3, 13 hours 4, 5 days 16, 7 days 21 (15 hides of 11.8 hours, three per message, and a fresh message every
        fourth receive), instead of 672 messages of 900 s. The 12-hour hides alone set a week's floor at 17 (15
        hides, the fresh message's receive and the run's); the redrive limit's replacements add four, and a larger
        ``MaxReceiveCount`` fewer (8 hides per message at 10: 18).
        """
        if wait <= MAX_DELAY_SECONDS or self.receive_count > self.max_receive_count - 2:
            return None
        hold = min(wait - MAX_DELAY_SECONDS, MAX_HOLD_SECONDS)
        if self.sent_at is not None:
            expires = self.sent_at + timedelta(seconds=self.retention_seconds - RETENTION_MARGIN_SECONDS)
            kept = math.floor((expires - now).total_seconds())
            if kept < hold:
                return kept if kept > MAX_DELAY_SECONDS else None
        return hold
