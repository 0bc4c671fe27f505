"""The consumer: runs the jobs named by SQS messages, reporting failures per record (partial batch response).

A record whose job ran (SUCCEEDED or FAILED), was deleted, or had finished already is acknowledged; a record
that cannot be handled now (its body is not a job reference, its job is RUNNING under another delivery, AWS
failed) is reported in ``batchItemFailures`` and comes back after the visibility timeout, until the redrive
policy moves it to the dead-letter queue.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from jobs import bootstrap
from jobs.models import JobMessage
from jobs.observability import logger, metrics


class JobMessageRecord(SqsRecordModel):
    """An SQS record whose body is a ``JobMessage`` in JSON."""

    body: Json[JobMessage]


# A batch whose every record fails is reported record by record, like any other partial failure, rather than
# raised as a function error: the records come back all the same, and Lambda's Errors metric stays for bugs.
processor = BatchProcessor(event_type=EventType.SQS, model=JobMessageRecord, raise_on_entire_batch_failure=False)


def record_handler(record: JobMessageRecord) -> None:
    """Run the job of one record; raising reports the record in ``batchItemFailures``."""
    message = record.body
    logger.append_keys(job_id=message.job_id, owner_id=message.owner_id)
    try:
        bootstrap.consumer_service().run_job(message)
    finally:
        logger.remove_keys(["job_id", "owner_id"])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the jobs queue's event source mapping (``ReportBatchItemFailures``)."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
