"""The outbox relay: for every job the Jobs table's stream reports as created (an INSERT; the event source
mapping filters out the rest), send the job's message to the jobs queue.

The API writes a job with one PutItem and sends nothing. The stream holds every insert for 24 hours and this
function's event source mapping retries a record until its message is sent, so a job that exists always gets
its message, and no failure between two calls can leave it QUEUED with none (docs/decisions.md, "No orphans").
A record that fails is reported by its sequence number (partial batch response); Lambda retries from there.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import bootstrap
from jobs.models import JobMessage
from jobs.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    """Send the message of the job one stream record inserted; raising reports the record for a retry."""
    assert record.dynamodb is not None
    bootstrap.outbox_service().enqueue(JobMessage.model_validate(record.dynamodb.keys))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the Jobs table stream's event source mapping (INSERT records only)."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
