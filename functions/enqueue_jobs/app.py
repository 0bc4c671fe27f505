"""The outbox relay: for every job the Jobs table's stream reports as created (an INSERT; the event source
mapping filters out the rest), send the job's message to its priority's queue, delayed towards its
``not_before`` (both read from the record's new image; a ``KEYS_ONLY`` record from before the stream's upgrade
has none, and its job is read from the table).

The API writes a job with one PutItem and sends nothing. The stream holds every insert for 24 hours and this
function's event source mapping retries a record whose message was not sent, so a job that exists gets its
message (docs/decisions.md, "No orphans"). No record stalls the shard: a record whose keys name no job is logged
and acknowledged; a job whose message can never be sent (an owner id no token can hold, an entry SQS refuses as
the sender's fault) is marked FAILED and its record acknowledged; and the mapping's retries are bounded, with an
on-failure destination that the reconciler (functions/reconcile_jobs) replays.

The batch's messages go out ten per SendMessageBatch call (one SQS request per ten jobs, not per job); then
powertools' batch processor reports each record whose message was not sent by its sequence number (partial
batch response), and Lambda retries from there.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import aws, bootstrap
from jobs.models import ServiceUnavailable
from jobs.observability import logger, metrics
from jobs.streams import job_of

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def send_messages(records: list[dict[str, Any]]) -> dict[str, bool]:
    """Send the messages of the batch's records; returns ``{sequence number: settled}`` for the records whose
    keys name a job. A record whose keys name no job is logged here and settled: retrying it cannot help."""
    jobs = {}
    for raw in records:
        record = DynamoDBRecord(raw)
        sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
        if sequence_number is None:
            continue
        job = job_of(raw)
        if job is None:
            logger.error("Stream record names no job; acknowledged", extra={"sequence_number": sequence_number})
            continue
        jobs[sequence_number] = job
    settled = bootstrap.outbox_service().dispatch_all(list(jobs.values()))
    return dict(zip(jobs, settled, strict=True))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the Jobs table stream's event source mapping (INSERT records only)."""
    settled = send_messages(event.get("Records", []))

    def record_handler(record: DynamoDBRecord) -> None:
        """Fail the record whose message is not settled, so that it is retried from its sequence number."""
        sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
        if not settled.get(sequence_number or "", True):
            raise ServiceUnavailable(f"the message of the record {sequence_number} was not sent")

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
