"""The outbox relay: for every job the Jobs table's stream reports as created (an INSERT; the event source
mapping filters out the rest), send the job's message to the jobs queue.

The API writes a job with one PutItem and sends nothing. The stream holds every insert for 24 hours and this
function's event source mapping retries a record until its message is sent, so a job that exists always gets
its message, and no failure between two calls can leave it QUEUED with none (docs/decisions.md, "No orphans").

The batch's messages go out ten per SendMessageBatch call (one SQS request per ten jobs, not per job); then
powertools' batch processor reports each record whose message was not sent by its sequence number (partial
batch response), and Lambda retries from there.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from jobs import bootstrap
from jobs.models import JobMessage, ServiceUnavailable
from jobs.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def send_messages(records: list[dict[str, Any]]) -> dict[str, bool]:
    """Send the messages of the batch's records; returns ``{sequence number: sent}`` for the records whose keys
    name a job (the others fail in ``record_handler`` with their validation error)."""
    messages: dict[str, JobMessage] = {}
    for raw in records:
        record = DynamoDBRecord(raw)
        if record.dynamodb is None or record.dynamodb.sequence_number is None:
            continue
        try:
            messages[record.dynamodb.sequence_number] = JobMessage.model_validate(record.dynamodb.keys)
        except ValidationError:
            continue
    sent = bootstrap.outbox_service().enqueue_all(list(messages.values()))
    return dict(zip(messages, sent, strict=True))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the Jobs table stream's event source mapping (INSERT records only)."""
    sent = send_messages(event.get("Records", []))

    def record_handler(record: DynamoDBRecord) -> None:
        """Fail the record whose message was not sent (or whose keys name no job), so it is retried."""
        assert record.dynamodb is not None
        sequence_number = record.dynamodb.sequence_number
        if sequence_number not in sent:
            JobMessage.model_validate(record.dynamodb.keys)  # raises the reason it named no job
        if not sent.get(sequence_number or "", False):
            raise ServiceUnavailable(f"the message of the record {sequence_number} was not sent")

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
