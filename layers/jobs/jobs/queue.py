"""The job queue: the only module that speaks SQS.

A message carries a ``JobMessage`` (``owner_id`` and ``job_id``), never the payload: the job item is the one
source of truth, and SQS's 256 KiB message limit never constrains a payload.

Message bodies are ASCII-escaped JSON (``encode_message``). SQS takes only #x9, #xA, #xD, #x20 to #xD7FF, #xE000
to #xFFFD and #x10000 to #x10FFFF in a body, and has both refused other characters (``InvalidMessageContents``)
and replaced them with U+FFFD (SendMessage, API reference, ``MessageBody``). Escaped, every string a DynamoDB item
can hold travels as printable ASCII and comes back exactly, so no owner id is ever refused or mangled in transit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from jobs import aws
from jobs.models import Job, JobMessage, JobPriority, format_timestamp, is_owner_id

#: The most entries one SendMessageBatch call takes (SQS quotas, "Messages per batch": 10).
MAX_BATCH = 10
#: SQS's longest ``DelaySeconds`` for one message, seconds (SendMessage, API reference: 0 to 900).
MAX_DELAY_SECONDS = 900
#: The longest ``MessageGroupId`` SQS takes (SendMessage, API reference): 128 characters.
MAX_GROUP_ID = 128
#: The message attribute that carries a scheduled job's ``not_before`` (RFC 3339), so a consumer can tell an early
#: delivery without reading the job. Consumers of earlier versions ignore message attributes.
NOT_BEFORE_ATTRIBUTE = "not_before"


def message_group_id(owner_id: str) -> str:
    """The ``MessageGroupId`` of an owner's messages: the tenant SQS fair queues balance on a standard queue
    ("How Amazon SQS fair queues work", SQS Developer Guide).

    SendMessage takes 1 to 128 characters, each alphanumeric or punctuation (``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~``;
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html, MessageGroupId).
    A valid owner id (``jobs.models.OWNER_ID_PATTERN``: 1 to 255 characters 0x21 to 0x7E) is made of exactly
    those characters, so only its length can be too much:

    - up to 127 characters: the owner id itself;
    - 128 to 255: its first 64 characters and the SHA-256 hex digest (64 characters) of the whole id, 128 in all.

    A derived id is always 128 characters long and an owner's own one at most 127, so two owners share a group id
    only if SHA-256 collides (an owner id of exactly 128 characters is derived too: kept as it is, it could equal
    another, longer owner's derived id). Stable: the same owner id always gives the same group id.

    Args:
        owner_id: a valid owner id (1 to 255 printable ASCII characters, no space).

    Returns:
        1 to 128 characters SQS accepts as a ``MessageGroupId``.

    Raises:
        ValueError: ``owner_id`` is not a valid owner id (empty, too long, or a character outside 0x21 to 0x7E).
    """
    if not is_owner_id(owner_id):
        raise ValueError("not a valid owner id (1 to 255 printable ASCII characters, no space)")
    if len(owner_id) < MAX_GROUP_ID:
        return owner_id
    digest = hashlib.sha256(owner_id.encode("ascii")).hexdigest()
    return owner_id[: MAX_GROUP_ID - len(digest)] + digest


@dataclass(frozen=True)
class Dispatch:
    """One job's message and where it goes: the queue of its ``priority``, hidden for ``delay_seconds`` (0 to
    ``MAX_DELAY_SECONDS``), with the job's ``not_before`` as a message attribute when it has one."""

    message: JobMessage
    priority: JobPriority = JobPriority.NORMAL
    not_before: datetime | None = None
    delay_seconds: int = 0

    @classmethod
    def of(cls, job: Job, now: datetime) -> Dispatch:
        """The dispatch of ``job`` at ``now``: its priority's queue, hidden until its ``not_before`` or for
        SQS's most (900 s), whichever is sooner (the consumer hides it further: ``JobService.run_job``)."""
        wait = (job.not_before - now).total_seconds() if job.not_before is not None else 0.0
        return cls(
            message=JobMessage(owner_id=job.owner_id, job_id=job.job_id),
            priority=job.priority,
            not_before=job.not_before,
            delay_seconds=max(0, min(MAX_DELAY_SECONDS, math.ceil(wait))),
        )

    def entry(self, entry_id: str) -> dict[str, Any]:
        """This dispatch as a SendMessageBatch entry named ``entry_id``."""
        entry: dict[str, Any] = {
            "Id": entry_id,
            "MessageBody": encode_message(self.message),
            "MessageGroupId": message_group_id(self.message.owner_id),
        }
        if self.delay_seconds:
            entry["DelaySeconds"] = self.delay_seconds
        if self.not_before is not None:
            value = {"DataType": "String", "StringValue": format_timestamp(self.not_before)}
            entry["MessageAttributes"] = {NOT_BEFORE_ATTRIBUTE: value}
        return entry


def encode_message(message: JobMessage) -> str:
    """A message's body: compact JSON with every non-ASCII character escaped (``\\uXXXX``, RFC 8259 section 7),
    so the body holds only characters SQS accepts (printable ASCII) whatever the ids hold. Any JSON parser
    (``Json[JobMessage]`` in the consumers) reads it back to the same strings."""
    return json.dumps(message.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))


@dataclass(frozen=True)
class SendResult:
    """What SQS said about one entry of a SendMessageBatch call.

    ``message_id`` is set when the message was sent. Otherwise ``sender_fault`` tells whether SQS blamed the
    request (``SenderFault: true``: the entry itself is wrong, and sending it again can never succeed) or itself
    (throttling, an outage: worth retrying), and ``code`` is SQS's error code (BatchResultErrorEntry, SQS API
    reference).
    """

    message_id: str | None = None
    sender_fault: bool = False
    code: str = ""

    @property
    def sent(self) -> bool:
        """True when SQS took the message."""
        return self.message_id is not None


class JobQueue(Protocol):
    """Where work goes: a queue per priority."""

    def priority_of(self, queue_arn: str) -> JobPriority:
        """The priority whose queue is ``queue_arn``; NORMAL for a queue it does not know."""
        ...

    def send_batch(self, dispatches: Sequence[Dispatch]) -> list[SendResult]:
        """Enqueue up to ``MAX_BATCH`` job references, each on its priority's queue; returns, in order, what SQS said
        of each: its message id, or why it refused the entry.

        Raises:
            ValueError: more than ``MAX_BATCH`` messages.
            jobs.models.ServiceUnavailable: a call as a whole was throttled, failed or could not reach SQS: none of
                its messages can be taken as sent.
        """
        ...


def queue_name(url_or_arn: str) -> str:
    """A queue's name: the last segment of its URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``) or of
    its ARN (``arn:aws:sqs:<region>:<account>:<name>``)."""
    return url_or_arn.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


class SqsJobQueue:
    """``JobQueue`` on SQS standard queues, one per priority.

    Args:
        queue_urls: each priority's queue URL; a priority without one (a level added later, a configuration
            from before priorities) goes to NORMAL's, which must be given.
        client: a boto3 SQS client; the process's cached one when omitted (created on first use, so a
            function that never sends never pays for it).
    """

    def __init__(self, queue_urls: Mapping[JobPriority, str], client: Any | None = None) -> None:
        if JobPriority.NORMAL not in queue_urls:
            raise ValueError("SqsJobQueue needs the NORMAL queue's URL")
        self._queue_urls = dict(queue_urls)
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 SQS client, created on first use."""
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def queue_url(self, priority: JobPriority) -> str:
        """The URL of ``priority``'s queue (NORMAL's for a level without one)."""
        return self._queue_urls.get(priority) or self._queue_urls[JobPriority.NORMAL]

    def priority_of(self, queue_arn: str) -> JobPriority:
        """The priority whose queue is ``queue_arn`` (matched by name); NORMAL for a queue not configured."""
        name = queue_name(queue_arn)
        for priority, url in self._queue_urls.items():
            if queue_name(url) == name:
                return priority
        return JobPriority.NORMAL

    def send_batch(self, dispatches: Sequence[Dispatch]) -> list[SendResult]:
        """One SendMessageBatch call per queue the dispatches go to (entry ids are their positions); see
        ``JobQueue.send_batch``."""
        if len(dispatches) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(dispatches)}")
        results = [SendResult(code="NotAnswered") for _ in dispatches]  # an entry SQS did not mention: retried
        by_queue: dict[str, list[int]] = {}
        for index, dispatch in enumerate(dispatches):
            by_queue.setdefault(self.queue_url(dispatch.priority), []).append(index)
        for url, indexes in by_queue.items():
            entries = [dispatches[index].entry(str(index)) for index in indexes]
            with aws.transient_errors_as_unavailable("SendMessageBatch"):
                response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            for entry in response.get("Successful", []):
                results[int(entry["Id"])] = SendResult(message_id=str(entry["MessageId"]))
            for entry in response.get("Failed", []):
                results[int(entry["Id"])] = SendResult(
                    sender_fault=bool(entry.get("SenderFault")), code=str(entry.get("Code", ""))
                )
        return results


class SourceQueues:
    """The queues a consumer reads, by URL, for changing a received message's visibility.

    Args:
        queue_urls: the URLs of every queue the function's event source mappings read.
        client: a boto3 SQS client; the process's cached one when omitted.
    """

    def __init__(self, queue_urls: Sequence[str], client: Any | None = None) -> None:
        self._urls = {queue_name(url): url for url in queue_urls}
        self._client = client

    def _url(self, queue_arn: str) -> str:
        """The URL of the queue ``queue_arn``; ValueError when it is none of this function's queues."""
        url = self._urls.get(queue_name(queue_arn))
        if url is None:
            raise ValueError(f"{queue_arn} is none of this function's queues")
        return url

    def _sqs(self) -> Any:
        """The SQS client, made on first use."""
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def delay(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Make a message received from the queue ``queue_arn`` (a record's ``eventSourceARN``) visible again after
        ``seconds`` (0 to 43200 from now, and at most 12 hours after its receive; ChangeMessageVisibility, SQS API
        reference).

        Raises:
            ValueError: ``queue_arn`` names none of the queues.
            jobs.models.ServiceUnavailable: SQS throttled, failed or could not be reached.
        """
        url = self._url(queue_arn)
        with aws.transient_errors_as_unavailable("ChangeMessageVisibility"):
            self._sqs().change_message_visibility(QueueUrl=url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds)

    def send_again(self, queue_arn: str, body: str, delay_seconds: int, attributes: Mapping[str, str]) -> None:
        """Send ``body`` to the queue ``queue_arn`` as a new message, delayed ``delay_seconds`` (0 to
        ``MAX_DELAY_SECONDS``, 900: SendMessage's ``DelaySeconds``), with ``attributes`` as String message
        attributes. A new message starts at receive count 0, so waiting this way spends nothing of the queue's
        redrive policy (``maxReceiveCount``).

        Raises:
            ValueError: ``queue_arn`` names none of the queues, or ``delay_seconds`` is outside 0 to 900.
            jobs.models.ServiceUnavailable: SQS throttled, failed or could not be reached.
        """
        url = self._url(queue_arn)
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"delay_seconds {delay_seconds} is outside 0 to {MAX_DELAY_SECONDS}")
        with aws.transient_errors_as_unavailable("SendMessage"):
            self._sqs().send_message(
                QueueUrl=url,
                MessageBody=body,
                DelaySeconds=delay_seconds,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                },
            )


class DiscardedBatchQueue(Protocol):
    """Where the relay's event source mapping puts the stream batches it gave up on (its on-failure destination)."""

    def receive(self, max_messages: int) -> list[tuple[str, str]]:
        """Up to ``max_messages`` messages, as ``(receipt handle, body)``; they stay hidden for the queue's
        visibility timeout unless deleted."""
        ...

    def delete(self, receipt_handle: str) -> None:
        """Remove a received message for good."""
        ...


class SqsDiscardedBatchQueue:
    """``DiscardedBatchQueue`` on an SQS standard queue (the on-failure destination of the relay's mapping).

    Args:
        queue_url: the queue's URL.
        client: a boto3 SQS client; the process's cached one when omitted.
    """

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 SQS client, created on first use."""
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def receive(self, max_messages: int) -> list[tuple[str, str]]:
        """Up to ``max_messages`` messages, ten per ReceiveMessage call (SQS's most), without waiting for more.

        Raises:
            jobs.models.ServiceUnavailable: SQS throttled, failed or could not be reached.
        """
        received: list[tuple[str, str]] = []
        while len(received) < max_messages:
            with aws.transient_errors_as_unavailable("ReceiveMessage"):
                response = self.client.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=min(MAX_BATCH, max_messages - len(received))
                )
            messages = response.get("Messages", [])
            if not messages:
                break
            received.extend((str(m["ReceiptHandle"]), str(m["Body"])) for m in messages)
        return received

    def delete(self, receipt_handle: str) -> None:
        """DeleteMessage. Raises ``jobs.models.ServiceUnavailable`` when SQS fails."""
        with aws.transient_errors_as_unavailable("DeleteMessage"):
            self.client.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt_handle)


class InMemoryJobQueue:
    """``JobQueue`` in lists, for unit tests: ``dispatches`` holds what was sent, in order (``messages``: their
    messages). A message whose ``job_id`` is in ``refuse`` is refused with ``refuse[job_id]`` (a ``SendResult``
    without a message id)."""

    def __init__(self) -> None:
        self.dispatches: list[Dispatch] = []
        self.refuse: dict[str, SendResult] = {}

    @property
    def messages(self) -> list[JobMessage]:
        """The messages sent, in order."""
        return [dispatch.message for dispatch in self.dispatches]

    def priority_of(self, queue_arn: str) -> JobPriority:
        """The priority named by the queue's name (``...-HIGH``, ``...-LOW``), else NORMAL."""
        name = queue_name(queue_arn).upper()
        return next((p for p in JobPriority if name.endswith(f"-{p.value}")), JobPriority.NORMAL)

    def send_batch(self, dispatches: Sequence[Dispatch]) -> list[SendResult]:
        if len(dispatches) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(dispatches)}")
        results = []
        for dispatch in dispatches:
            if dispatch.message.job_id in self.refuse:
                results.append(self.refuse[dispatch.message.job_id])
                continue
            self.dispatches.append(dispatch)
            results.append(SendResult(message_id=f"in-memory-{len(self.dispatches)}"))
        return results
