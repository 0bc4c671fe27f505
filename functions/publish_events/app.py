"""The Job State Change publisher: for every status change the Jobs table's stream reports (its event source
mapping passes INSERT, MODIFY and REMOVE records; ``jobs.events.change_of`` keeps the status changes), put one
event on the stack's EventBridge bus (``JOBS_EVENT_BUS_NAME``), ten per ``PutEvents`` call, in stream order.

A status change and its event cannot disagree: both come from the same stream record, and the write paths stay
one DynamoDB call. The delivery is at least once: a record whose event EventBridge did not accept (a failed entry,
throttling, no time left) is reported by its sequence number (partial batch response) with every record after it,
which were not tried, and the mapping gives them back; an event put before a failure in the same call may be put
again, with the same ``version``. Retries are bounded (``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``),
and a batch past them goes, as coordinates, to the on-failure queue (``JobEventsDiscardedBatchesQueue``) that an
alarm watches: those events are lost. Nothing replays them (the reconciler replays only the relay's batches); the
stream still holds the records for 24 hours, as the README says.

Each event is logged at INFO (job id, owner, status, previous status, version, event id; never the payload).
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import aws
from jobs.events import Change, EventPublisher, change_of
from jobs.models import ServiceUnavailable
from jobs.observability import logger, metrics
from jobs.settings import event_settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def log_published(change: Change, event_id: str) -> None:
    """The publisher's line for one event EventBridge accepted."""
    detail = change.detail
    logger.info(
        "Job State Change published",
        extra={
            "job_id": detail.job_id,
            "owner_id": detail.owner_id,
            "status": detail.status,
            "previous_status": detail.previous_status,
            "deleted_by": detail.deleted_by,
            "version": detail.version,
            "event_id": event_id,
        },
    )


def publish(records: list[dict[str, Any]]) -> set[str]:
    """Publish the events of the batch's records; returns the sequence numbers of the records not settled (the
    first record whose event was not accepted and every record after it)."""
    order: list[str] = []
    changes: list[Change] = []
    for raw in records:
        sequence_number = (raw.get("dynamodb") or {}).get("SequenceNumber")
        if not isinstance(sequence_number, str):
            continue
        order.append(sequence_number)
        change = change_of(raw)
        if change is not None:
            changes.append(change)
    done = EventPublisher(event_settings().event_bus_name, published=log_published).publish(changes)
    if done:
        metrics.add_metric(name="JobEventsPublished", unit=MetricUnit.Count, value=done)
    if done == len(changes):
        return set()
    first = order.index(changes[done].sequence_number)
    return set(order[first:])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the Jobs table stream's second event source mapping."""
    unsettled = publish(event.get("Records", []))

    def record_handler(record: DynamoDBRecord) -> None:
        """Fail a record not settled, so that the stream gives it back from its sequence number."""
        sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
        if sequence_number in unsettled:
            raise ServiceUnavailable(f"the event of the record {sequence_number} was not published")

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
