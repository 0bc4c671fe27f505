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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jobs import aws
from jobs.models import JobMessage, is_owner_id

#: The most entries one SendMessageBatch call takes (SQS quotas, "Messages per batch": 10).
MAX_BATCH = 10
#: The longest ``MessageGroupId`` SQS takes (SendMessage, API reference): 128 characters.
MAX_GROUP_ID = 128


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
    """Where work goes."""

    def send_batch(self, messages: Sequence[JobMessage]) -> list[SendResult]:
        """Enqueue up to ``MAX_BATCH`` job references in one call; returns, in order, what SQS said of each: its
        message id, or why it refused the entry.

        Raises:
            ValueError: more than ``MAX_BATCH`` messages.
            jobs.models.ServiceUnavailable: the call as a whole was throttled, failed or could not reach SQS:
                none of the messages can be taken as sent.
        """
        ...

    def delay(self, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after ``seconds`` (a consumer's retry delay)."""
        ...


class SqsJobQueue:
    """``JobQueue`` on an SQS standard queue.

    Args:
        queue_url: the queue's URL.
        client: a boto3 SQS client; the process's cached one when omitted (created on first use, so a
            function that never sends never pays for it).
    """

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    def send_batch(self, messages: Sequence[JobMessage]) -> list[SendResult]:
        """One SendMessageBatch call (entry ids are the messages' positions); see ``JobQueue.send_batch``."""
        if len(messages) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(messages)}")
        if not messages:
            return []
        if self._client is None:
            self._client = aws.client("sqs")
        entries = [{"Id": str(index), "MessageBody": encode_message(m)} for index, m in enumerate(messages)]
        with aws.transient_errors_as_unavailable("SendMessageBatch"):
            response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        results = [SendResult(code="NotAnswered") for _ in messages]  # an entry SQS did not mention: retried
        for entry in response.get("Successful", []):
            results[int(entry["Id"])] = SendResult(message_id=str(entry["MessageId"]))
        for entry in response.get("Failed", []):
            results[int(entry["Id"])] = SendResult(
                sender_fault=bool(entry.get("SenderFault")), code=str(entry.get("Code", ""))
            )
        return results

    def delay(self, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after ``seconds`` (0 to 43200; ChangeMessageVisibility).

        Raises:
            jobs.models.ServiceUnavailable: SQS throttled, failed or could not be reached.
        """
        if self._client is None:
            self._client = aws.client("sqs")
        with aws.transient_errors_as_unavailable("ChangeMessageVisibility"):
            self._client.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
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
    """``JobQueue`` in a list, for unit tests: ``messages`` holds what was sent, in order. A message whose
    ``job_id`` is in ``refuse`` is refused with ``refuse[job_id]`` (a ``SendResult`` without a message id)."""

    def __init__(self) -> None:
        self.messages: list[JobMessage] = []
        self.delays: list[tuple[str, int]] = []
        self.refuse: dict[str, SendResult] = {}

    def delay(self, receipt_handle: str, seconds: int) -> None:
        self.delays.append((receipt_handle, seconds))

    def send_batch(self, messages: Sequence[JobMessage]) -> list[SendResult]:
        if len(messages) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(messages)}")
        results = []
        for message in messages:
            if message.job_id in self.refuse:
                results.append(self.refuse[message.job_id])
                continue
            self.messages.append(message)
            results.append(SendResult(message_id=f"in-memory-{len(self.messages)}"))
        return results
