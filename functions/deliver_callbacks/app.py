"""The callback sender: delivers the callback of every job whose final Job State Change event reached the callbacks
queue (template.yaml's ``JobCallbacksRule``: source ``chuck-norris.jobs``, detail-type ``Job State Change``,
status SUCCEEDED, FAILED or CANCELLED, ``has_callback`` true; each SQS message's body is the EventBridge event).

At most one attempt per receive: ``jobs.callbacks.CallbackSender.deliver`` sends, records the outcome on the job
(the attempt's number is one more than the attempts recorded there), logs and counts it.

- Owner isolation: the batch's records are delivered concurrently, a thread each (at most ``BatchSize``, 10), so
  one owner's slow receiver (bounded by ``CallbackSettings.timeout_seconds``) delays no other record of the batch;
  other batches run in other invocations (the mapping's ``MaximumConcurrency``). An invocation delivers an owner's
  records only while it holds one of that owner's slots (``jobs.slots``: 1 per owner by default, across every
  sandbox), so one owner's hanging receiver holds at most that many invocations, never all of them. The records of
  an owner with no free slot are *deferred*: sent again to the queue as new messages, delayed
  ``deferral_delay(n)`` (2 s doubling to 900 s with the message's ``deferrals`` attribute), and acknowledged;
  a deferral is not an attempt and spends nothing of the redrive policy. A wait between attempts is never
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
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError

from jobs import aws, bootstrap
from jobs.callbacks import METRICS_LOCK
from jobs.models import SQS_MAX_VISIBILITY_SECONDS, ServiceUnavailable
from jobs.observability import MetricUnit, logger, metrics
from jobs.queue import MAX_DELAY_SECONDS
from jobs.slots import OwnerSlots, acquire_within

if TYPE_CHECKING:
    from jobs.callbacks import CallbackOutcome, CallbackSender


processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

#: The longest ReceiveMessage long poll (WaitTimeSeconds, 20 s): the 12 hours a message may stay hidden are counted
#: from the receive request, which may have waited this long before the message was returned.
RECEIVE_WAIT_SECONDS = 20
#: The message attribute counting a message's deferrals (String; absent: none yet).
DEFERRALS_ATTRIBUTE = "deferrals"
#: The message attribute counting the receives of the earlier messages of a deferred record that were not deferrals
#: (attempts, crashes): a deferral is a new message, whose ApproximateReceiveCount starts again at 1.
RECEIVES_ATTRIBUTE = "receives"
#: template.yaml's JobCallbacksQueue ``maxReceiveCount``: a record received this often (its deferrals aside) is no
#: longer deferred as a new message but hidden as it is, so its receives go on counting towards the dead-letter queue.
MAX_RECEIVES = 12
#: How long an invocation waits for a held slot of an owner before deferring the owner's records, seconds.
SLOT_WAIT_SECONDS = 0.5
#: The first deferral's delay, seconds (a hanging receiver's slot is given back after the attempt's timeout, 10 s);
#: it doubles with each deferral.
DEFERRAL_BASE_SECONDS = 2


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
    messageAttributes: dict[str, Any] = Field(default_factory=dict)  # noqa: N815 - Lambda's SQS record field

    def _count(self, name: str) -> int:
        """The message attribute ``name`` as a count (0 when absent or not a count, at most 1000)."""
        value = str((self.messageAttributes.get(name) or {}).get("stringValue", "0"))
        # ASCII digits only: str.isdigit() also accepts characters int() refuses ("\u00b2"), which would raise in
        # the deferral and fail the record instead of deferring it.
        return min(int(value), 1000) if re.fullmatch(r"[0-9]{1,5}", value) else 0

    @property
    def deferrals(self) -> int:
        """How many times the message was deferred before (its ``deferrals`` attribute; 0 when absent or not a
        count)."""
        return self._count(DEFERRALS_ATTRIBUTE)

    @property
    def earlier_receives(self) -> int:
        """The receives of the record before this one that were not deferrals: its ``receives`` attribute (those of
        the messages before the last deferral) and this message's own earlier receives."""
        count = str(self.attributes.get("ApproximateReceiveCount", "1"))
        own = int(count) - 1 if re.fullmatch(r"[0-9]{1,5}", count) and int(count) > 0 else 0
        return self._count(RECEIVES_ATTRIBUTE) + own


def deferral_delay(deferrals: int) -> int:
    """Seconds a record deferred for the ``deferrals + 1``-th time waits: 2, 4, 8, ... up to SendMessage's 900."""
    return min(MAX_DELAY_SECONDS, DEFERRAL_BASE_SECONDS << min(deferrals, 10))


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


def deliver_all(
    records: Sequence[CallbackRecord],
    sender: CallbackSender,
    slots: OwnerSlots | None,
    holder: str,
    lease_seconds: float,
    defer: Callable[[CallbackRecord], None],
) -> dict[str, Future[CallbackOutcome | None]]:
    """Deliver every record's callback at once; returns each record's outcome by message id (None: deferred; or
    the error its delivery or deferral raised), once all are done.

    Each owner of the batch has a thread of its own: it takes one of the owner's slots for ``holder`` (the
    invocation's request id) for ``lease_seconds`` (what is left of the invocation), waiting up to
    ``SLOT_WAIT_SECONDS`` for one; with it, the owner's records are delivered, a thread each, and the slot is given
    back as soon as they end (a slow receiver of one owner keeps no other owner's slot for the batch's length);
    without it, ``defer`` puts each of the owner's records back on the queue. One owner's wait for a slot never
    holds another owner's deliveries. ``slots`` None: no limit.

    A job named by several records of the batch (an event EventBridge or the publisher delivered twice) is
    delivered once, for its first record; the others are not in the result. Each thread runs in a copy of the
    caller's context, so the invocation's time budget (``jobs.aws.time_budget``) bounds its AWS calls too."""
    first: dict[tuple[str, str], CallbackRecord] = {}
    for record in records:
        first.setdefault((record.body.detail.owner_id, record.body.detail.job_id), record)
    by_owner: dict[str, list[CallbackRecord]] = {}
    for (owner, _), record in first.items():
        by_owner.setdefault(owner, []).append(record)
    outcomes: dict[str, Future[CallbackOutcome | None]] = {}
    if not first:
        return outcomes
    # A thread per owner and one per record: every task runs at once.
    with ThreadPoolExecutor(max_workers=len(first) + len(by_owner), thread_name_prefix="callback") as pool:

        def in_context(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
            return pool.submit(contextvars.copy_context().run, function, *args, **kwargs)

        def owner_deliveries(owner: str, mine: list[CallbackRecord]) -> dict[str, Future[CallbackOutcome | None]]:
            if slots is not None and not acquire_within(slots, owner, holder, lease_seconds, SLOT_WAIT_SECONDS):
                return {record.messageId: in_context(defer, record) for record in mine}  # None: deferred
            started = {
                record.messageId: in_context(
                    sender.deliver, owner, record.body.detail.job_id, version=record.body.detail.version
                )
                for record in mine
            }
            if slots is not None:
                give_back(slots, owner, holder, list(started.values()))
            return started

        owners = {owner: in_context(owner_deliveries, owner, mine) for owner, mine in by_owner.items()}
        for owner, future in owners.items():
            if future.exception() is None:
                outcomes.update(future.result())
            else:  # the slot could not be read: each of the owner's records raises the error
                outcomes.update({record.messageId: future for record in by_owner[owner]})
        wait(list(outcomes.values()))
    return outcomes


def give_back(slots: OwnerSlots, owner_id: str, holder: str, deliveries: Sequence[Future[Any]]) -> None:
    """Give the owner's slot back once its ``deliveries`` are done (a failure is logged: the slot frees itself when
    its lease ends)."""
    wait(deliveries)
    try:
        slots.release(owner_id, holder)
    except Exception:  # noqa: BLE001 - best effort: the deliveries are done, and the slot's lease ends anyway
        logger.warning("An owner slot was not given back; it frees itself", extra={"owner_id": owner_id})


def retry_visibility(seconds: int, started: float) -> int:
    """The visibility timeout that brings a message back after ``seconds``, cut to what is left of the 12 hours
    SQS allows from its receive (``started``: ``time.monotonic()`` when the invocation began)."""
    spent = math.ceil(time.monotonic() - started) + RECEIVE_WAIT_SECONDS
    return max(0, min(seconds, SQS_MAX_VISIBILITY_SECONDS - spent))


def defer(record: SQSRecord, parsed: CallbackRecord) -> None:
    """Send the record's event again as a new message, delayed by ``deferral_delay``, counting the deferral and
    carrying its earlier receives; the record is then acknowledged (deleted) by the partial batch response. A
    record received ``MAX_RECEIVES`` times before (deferrals aside) is hidden for the delay instead, and reported:
    the redrive policy goes on counting it, so a record that crashes every invocation that delivers it reaches the
    dead-letter queue even while its owner's slot is often held.

    Raises:
        jobs.models.ServiceUnavailable: SQS failed: the record is reported, and comes back after the visibility
            timeout; or the record was hidden rather than sent again.
    """
    delay = deferral_delay(parsed.deferrals)
    detail = parsed.body.detail
    if parsed.earlier_receives >= MAX_RECEIVES:
        bootstrap.source_queues().delay(record.event_source_arn, record.receipt_handle, delay)
        raise ServiceUnavailable(
            f"its owner's slot is held and it was received {parsed.earlier_receives} times before: hidden {delay} s",
            retry_after=delay,
        )
    bootstrap.source_queues().send_again(
        record.event_source_arn,
        record.body,
        delay,
        {DEFERRALS_ATTRIBUTE: str(parsed.deferrals + 1), RECEIVES_ATTRIBUTE: str(parsed.earlier_receives)},
    )
    logger.info(
        "Callback deferred: its owner's delivery slots are held by other invocations",
        extra={
            "job_id": detail.job_id,
            "owner_id": detail.owner_id,
            "deferrals": parsed.deferrals + 1,
            "delay_seconds": delay,
        },
    )
    with METRICS_LOCK:  # deferrals run in the owners' threads
        metrics.add_metric(name="CallbacksDeferred", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the callbacks queue's event source mapping (``ReportBatchItemFailures``)."""
    started = time.monotonic()
    raw = {str(record.get("messageId")): SQSRecord(record) for record in event.get("Records", [])}
    records = {record.messageId: record for record in map(parse, event.get("Records", [])) if record is not None}
    lease_seconds = max(1.0, context.get_remaining_time_in_millis() / 1000)
    outcomes = (
        deliver_all(
            list(records.values()),
            bootstrap.callback_sender(),
            bootstrap.owner_slots(),
            context.aws_request_id,
            lease_seconds,
            lambda parsed: defer(raw[parsed.messageId], parsed),
        )
        if records
        else {}
    )

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
        if outcome is None:
            return  # deferred: sent again as a new message, so this one is acknowledged
        if outcome.action != "retry":
            return
        wait = retry_visibility(outcome.retry_after_seconds or 0, started)
        bootstrap.source_queues().delay(record.event_source_arn, record.receipt_handle, wait)
        raise ServiceUnavailable(f"callback attempt failed; the next one in {wait} s", retry_after=wait)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
