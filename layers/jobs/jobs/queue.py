"""The job queue: the only module that speaks SQS.

A message carries a ``JobMessage`` (``owner_id`` and ``job_id``), never the payload: the job item is the one
source of truth, and SQS's 256 KiB message limit never constrains a payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from jobs import aws
from jobs.models import JobMessage

#: The most entries one SendMessageBatch call takes (SQS quotas, "Messages per batch": 10).
MAX_BATCH = 10


class JobQueue(Protocol):
    """Where work goes."""

    def send_batch(self, messages: Sequence[JobMessage]) -> list[str | None]:
        """Enqueue up to ``MAX_BATCH`` job references in one call; returns, in order, each one's SQS message id,
        or None for an entry SQS refused (the caller sends it again).

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

    def send_batch(self, messages: Sequence[JobMessage]) -> list[str | None]:
        """One SendMessageBatch call (entry ids are the messages' positions); see ``JobQueue.send_batch``."""
        if len(messages) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(messages)}")
        if not messages:
            return []
        if self._client is None:
            self._client = aws.client("sqs")
        entries = [{"Id": str(index), "MessageBody": m.model_dump_json()} for index, m in enumerate(messages)]
        with aws.transient_errors_as_unavailable("SendMessageBatch"):
            response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        ids: list[str | None] = [None] * len(messages)
        for entry in response.get("Successful", []):
            ids[int(entry["Id"])] = str(entry["MessageId"])
        return ids

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


class InMemoryJobQueue:
    """``JobQueue`` in a list, for unit tests: ``messages`` holds what was sent, in order."""

    def __init__(self) -> None:
        self.messages: list[JobMessage] = []
        self.delays: list[tuple[str, int]] = []

    def delay(self, receipt_handle: str, seconds: int) -> None:
        self.delays.append((receipt_handle, seconds))

    def send_batch(self, messages: Sequence[JobMessage]) -> list[str | None]:
        if len(messages) > MAX_BATCH:
            raise ValueError(f"SendMessageBatch takes at most {MAX_BATCH} messages, not {len(messages)}")
        self.messages.extend(messages)
        return [f"in-memory-{len(self.messages) - len(messages) + n + 1}" for n in range(len(messages))]
