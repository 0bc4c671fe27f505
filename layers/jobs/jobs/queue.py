"""The job queue: the only module that speaks SQS.

A message carries a ``JobMessage`` (``owner_id`` and ``job_id``), never the payload: the job item is the one
source of truth, and SQS's 256 KiB message limit never constrains a payload.
"""

from __future__ import annotations

from typing import Any, Protocol

from jobs import aws
from jobs.models import JobMessage


class JobQueue(Protocol):
    """Where work goes."""

    def send(self, message: JobMessage) -> str:
        """Enqueue one job reference; returns the SQS message id.

        Raises:
            jobs.models.ServiceUnavailable: SQS throttled, failed or could not be reached.
        """
        ...

    def delay(self, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after ``seconds`` (a consumer's retry delay)."""
        ...


class SqsJobQueue:
    """``JobQueue`` on an SQS standard queue.

    Args:
        queue_url: the queue's URL.
        client: a boto3 SQS client; the process's cached one when omitted (created on first send, so a
            request that never enqueues never pays for it).
    """

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    def send(self, message: JobMessage) -> str:
        if self._client is None:
            self._client = aws.client("sqs")
        with aws.transient_errors_as_unavailable("SendMessage"):
            response = self._client.send_message(QueueUrl=self._queue_url, MessageBody=message.model_dump_json())
        return str(response["MessageId"])

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

    def send(self, message: JobMessage) -> str:
        self.messages.append(message)
        return f"in-memory-{len(self.messages)}"
