"""The callback sender: delivers the callback of every job whose final Job State Change event reached the callbacks
queue (template.yaml's ``JobCallbacksRule``: source ``chuck-norris.jobs``, detail-type ``Job State Change``,
status SUCCEEDED, FAILED or CANCELLED, ``has_callback`` true; each SQS message's body is the EventBridge event).

One attempt per receive: the attempt number is the message's ``ApproximateReceiveCount`` (1-based), and
``jobs.callbacks.CallbackSender.deliver`` sends, records the outcome on the job, logs and counts it.

- Owner isolation: the batch's records are delivered concurrently, a thread each (at most ``BatchSize``, 10), so
  one owner's slow receiver (bounded by ``CallbackSettings.timeout_seconds``) delays no other record of the batch;
  other batches run in other invocations (the mapping's ``MaximumConcurrency``). A wait between attempts is never
  spent in the function: a ``retry`` outcome hides its message for ``retry_after_seconds``
  (ChangeMessageVisibility, https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html)
  and reports it in ``batchItemFailures`` (partial batch response, "Handling errors for an SQS event source in
  Lambda", https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html), so SQS gives it back
  then, as the next attempt.
- A visibility timeout may end at most 12 hours after the ReceiveMessage request that returned the message
  (ChangeMessageVisibility, above): a longer wait is cut to what is left of those 12 hours.
- A job named by several records of one batch (the publisher's and EventBridge's deliveries are at least once) is
  delivered once, for its first record; the others are settled. Across batches, the job's callback state decides
  (a DELIVERED callback is skipped), and ``webhook-id`` is the same for every attempt, so receivers can drop a
  duplicate.
- A body that is not a Job State Change event naming a job (``job_id``, ``owner_id``, ``version``) is logged and
  settled (deleted): no job to call back, and retrying it cannot help.
- A delivery that raises (DynamoDB failing, no time left) reports its record without a visibility change: it comes
  back after the queue's visibility timeout, as the next attempt. Records that keep failing reach the queue's
  dead-letter queue after its ``maxReceiveCount``, above the schedule's attempts (alarmed).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError

from jobs import aws, bootstrap
from jobs.models import SQS_MAX_VISIBILITY_SECONDS, ServiceUnavailable
from jobs.observability import logger, metrics

if TYPE_CHECKING:
    from jobs.callbacks import CallbackOutcome, CallbackSender

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

#: The longest ReceiveMessage long poll (WaitTimeSeconds, 20 s): the 12 hours a message may stay hidden are counted
#: from the receive request, which may have waited this long before the message was returned.
RECEIVE_WAIT_SECONDS = 20


class CallbackTarget(BaseModel):
    """The part of a Job State Change ``detail`` the sender needs (other fields are ignored: the job is read
    afresh)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str = Field(min_length=1)
    owner_id: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d{1,40}$")


class CallbackEvent(BaseModel):
    """A Job State Change event as EventBridge delivers it to an SQS target (the message body)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    source: Literal["chuck-norris.jobs"]
    detail_type: Literal["Job State Change"] = Field(alias="detail-type")
    detail: CallbackTarget


class CallbackRecord(BaseModel):
    """One record of the batch: its message id, receive count and event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    messageId: str  # noqa: N815 - Lambda's SQS record field
    body: Json[CallbackEvent]
    attributes: dict[str, Any]

    @property
    def attempt(self) -> int:
        """The delivery attempt this receive is (``ApproximateReceiveCount``, 1 for the first)."""
        return max(1, int(self.attributes.get("ApproximateReceiveCount", 1)))


def parse(raw: dict[str, Any]) -> CallbackRecord | None:
    """The record's event, or None (logged) when its body is not a Job State Change event naming a job."""
    try:
        return CallbackRecord.model_validate(raw)
    except (ValidationError, ValueError) as error:
        logger.error(
            "Callbacks queue message is not a Job State Change event; dropped",
            extra={"message_id": raw.get("messageId"), "reason": str(error)[:500]},
        )
        return None


def deliver_all(records: Sequence[CallbackRecord], sender: CallbackSender) -> dict[str, Future[CallbackOutcome]]:
    """Deliver every record's callback at once, a thread each; returns each record's outcome (or the error its
    delivery raised) by message id, once all are done. A job named by several records of the batch (an event
    EventBridge or the publisher delivered twice) is delivered once, for its first record; the others are not in
    the result. Each thread runs in a copy of the caller's context, so the invocation's time budget
    (``jobs.aws.time_budget``) bounds its AWS calls too."""
    first: dict[tuple[str, str], CallbackRecord] = {}
    for record in records:
        first.setdefault((record.body.detail.owner_id, record.body.detail.job_id), record)
    if not first:
        return {}
    with ThreadPoolExecutor(max_workers=len(first), thread_name_prefix="callback") as pool:
        return {
            record.messageId: pool.submit(
                contextvars.copy_context().run,
                sender.deliver,
                record.body.detail.owner_id,
                record.body.detail.job_id,
                version=record.body.detail.version,
                attempt=record.attempt,
            )
            for record in first.values()
        }


def retry_visibility(seconds: int, started: float) -> int:
    """The visibility timeout that brings a message back after ``seconds``, cut to what is left of the 12 hours
    SQS allows from its receive (``started``: ``time.monotonic()`` when the invocation began)."""
    spent = math.ceil(time.monotonic() - started) + RECEIVE_WAIT_SECONDS
    return max(0, min(seconds, SQS_MAX_VISIBILITY_SECONDS - spent))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the callbacks queue's event source mapping (``ReportBatchItemFailures``)."""
    started = time.monotonic()
    records = {record.messageId: record for record in map(parse, event.get("Records", [])) if record is not None}
    outcomes = deliver_all(list(records.values()), bootstrap.callback_sender()) if records else {}

    def record_handler(record: SQSRecord) -> None:
        """Settle one record: a retry hides its message until the next attempt is due, then fails it."""
        future = outcomes.get(record.message_id)
        if future is None:
            return  # not a callback event (logged by parse), or its job's delivery is another record's
        try:
            outcome = future.result()
        except Exception:
            detail = records[record.message_id].body.detail
            logger.exception(
                "Callback delivery could not run; the message comes back after the visibility timeout",
                extra={"job_id": detail.job_id, "owner_id": detail.owner_id, "message_id": record.message_id},
            )
            raise
        if outcome.action != "retry":
            return
        wait = retry_visibility(outcome.retry_after_seconds or 0, started)
        bootstrap.source_queues().delay(record.event_source_arn, record.receipt_handle, wait)
        raise ServiceUnavailable(f"callback attempt failed; the next one in {wait} s", retry_after=wait)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
