"""An SQS event source mapping: long-polls a queue, invokes the function with batches of records in the
Lambda SQS event format, and settles the batch as Lambda does.

- The function returns ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``: every other record is
  deleted; the failed ones stay and come back after the queue's visibility timeout.
- The function errors or times out, or its response names an empty or unknown ``itemIdentifier``: the whole
  batch counts as failed, and nothing is deleted ("Handling errors for an SQS event source in Lambda").
- Redrive to the dead-letter queue is the queue's own ``RedrivePolicy``, applied by SQS (moto) on receive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from local.runtime import FunctionPool
from local.template import REGION

#: Long-poll wait of one ReceiveMessage, seconds (short, so the stack stops promptly).
WAIT_SECONDS = 1
#: How often a disabled mapping looks whether it is enabled again, seconds.
DISABLED_PAUSE_SECONDS = 0.2


def enabled_event() -> threading.Event:
    """An event that is set: a mapping starts enabled."""
    event = threading.Event()
    event.set()
    return event


def to_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One SQS message as a record of the Lambda SQS event."""
    attributes = {key: str(value) for key, value in message.get("Attributes", {}).items()}
    message_attributes = {}
    for name, value in message.get("MessageAttributes", {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value["DataType"],
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def failed_ids(response: Any, batch_ids: set[str]) -> set[str]:
    """The message ids to leave on the queue, given a function's response to a batch.

    A response that is not a partial batch response fails nothing (success); one whose
    ``batchItemFailures`` is malformed or names an id outside the batch fails everything.
    """
    if response is None or not isinstance(response, dict) or "batchItemFailures" not in response:
        return set()
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return set(batch_ids)
    ids = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return set(batch_ids)
        ids.add(identifier)
    return ids


class SqsPoller:
    """Polls ``queue_url`` and feeds ``pool``; ``pollers`` threads, each with one batch in flight.

    Args:
        sqs: a boto3 SQS client (the Lambda service's side).
        queue_url, queue_arn: the queue.
        pool: the function to invoke.
        batch_size: the mapping's ``BatchSize`` (1 to 10 per receive).
        pollers: concurrent batches (Lambda starts several pollers per mapping).
        log: writes one line to the stack's output.
        enabled: set while the mapping is enabled (``UpdateEventSourceMapping``'s ``Enabled``); while it is clear,
            nothing is received, and the batches in flight finish.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        pool: FunctionPool,
        *,
        batch_size: int,
        pollers: int,
        log: Callable[[str], None],
        enabled: threading.Event | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.pool = pool
        self.batch_size = max(1, min(10, batch_size))
        self.log = log
        self._stop = threading.Event()
        self.enabled = enabled or enabled_event()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"sqs-poller-{i}", daemon=True) for i in range(pollers)
        ]

    def start(self) -> None:
        """Start polling."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the batches in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WAIT_SECONDS + 35)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.enabled.is_set():
                self._stop.wait(DISABLED_PAUSE_SECONDS)
                continue
            with self._in_flight_lock:
                self._in_flight += 1
            try:
                self.poll_once()
            except Exception as error:  # noqa: BLE001 - the mapping keeps polling, as Lambda's does
                if self._stop.is_set():
                    return
                self.log(json.dumps({"poller": self.queue_arn, "level": "ERROR", "error": repr(error)}))
                self._stop.wait(1)
            finally:
                with self._in_flight_lock:
                    self._in_flight -= 1

    def busy(self) -> bool:
        """True while a receive or a batch is in flight (a disabled mapping is still ``Disabling`` then)."""
        return self._in_flight > 0

    def poll_once(self) -> int:
        """Receive one batch, invoke the function, settle the batch; returns the batch size (0 if empty)."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=WAIT_SECONDS,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        records = [to_record(message, self.queue_arn) for message in messages]
        invocation = self.pool.invoke({"Records": records})
        ids = {record["messageId"] for record in records}
        failed = set(ids) if not invocation.ok else failed_ids(invocation.payload, ids)
        done = [
            {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
            for index, record in enumerate(records)
            if record["messageId"] not in failed
        ]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)
        if failed:
            self.log(
                json.dumps(
                    {"poller": self.queue_arn, "level": "WARNING", "failed_records": len(failed), "batch": len(ids)}
                )
            )
        return len(messages)
