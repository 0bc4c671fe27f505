"""The consumer: runs the jobs named by SQS messages, reporting failures per record (partial batch response).

A record whose job ran (SUCCEEDED or FAILED), was deleted, or had finished already is acknowledged. A record
that cannot be handled now (its job is RUNNING under a live lease, is not written yet, failed retryably, or AWS
failed) is reported in ``batchItemFailures`` and comes back after the delay it asked for; a body that is not a
job reference is reported too, until the redrive policy moves it to the dead-letter queue.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import aws, bootstrap
from jobs.batch import JobMessageRecord, batch_processor, settle
from jobs.observability import logger, metrics

processor = batch_processor()


def record_handler(record: JobMessageRecord) -> None:
    """Run the job of one record; raising reports the record in ``batchItemFailures``."""
    settle(record, bootstrap.consumer_service().run_job)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the jobs queue's event source mapping (``ReportBatchItemFailures``)."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
