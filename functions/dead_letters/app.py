"""The dead-letter handler: marks FAILED (reason: dead-lettered) the job of every message that reached the
jobs queue's dead-letter queue, so that no job waits QUEUED or RUNNING forever behind a lost message.

A job that is finished or deleted is left as it is. A job still RUNNING under a live lease (its run may yet
finish) is retried when the lease ends. Every dead-lettered message is logged with its ids and receive count.
A body that is not a job reference is logged in full and acknowledged: there is no job to mark. No record loops
on this queue, which has no dead-letter queue of its own: one that still fails after
``JOBS_DEAD_LETTER_MAX_RECEIVES`` receives here (20, about an hour at the queue's 180 s visibility timeout) is
logged as an error, counted (``DeadLettersAbandoned``) and acknowledged; a job it leaves QUEUED is the
reconciler's. The count starts after the jobs queue's ``maxReceiveCount``, since a message may keep its receive
count when SQS moves it to the dead-letter queue.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from jobs import aws, bootstrap, settings
from jobs.batch import JobMessageRecord, batch_processor, settle
from jobs.models import RetryLater
from jobs.observability import MetricUnit, logger, metrics

processor = batch_processor()


def record_handler(record: JobMessageRecord) -> None:
    """Fail the abandoned job of one dead-lettered record; raising reports the record for a later retry."""
    logger.warning(
        "Dead-lettered message",
        extra={"message_id": record.messageId, "receive_count": record.attributes.ApproximateReceiveCount},
    )
    try:
        settle(record, bootstrap.dead_letter_service().fail_dead_lettered)
    except RetryLater:
        raise  # a live lease: bounded by the lease itself
    except Exception:
        receives = int(record.attributes.ApproximateReceiveCount)
        config = settings.consumer_settings()
        if receives < config.max_receive_count + config.dead_letter_max_receives:
            raise
        logger.exception(
            "Dead-lettered message abandoned after %d receives",
            receives,
            extra={"message_id": record.messageId, "job_id": record.body.job_id},
        )
        metrics.add_metric(name="DeadLettersAbandoned", unit=MetricUnit.Count, value=1)


def _acknowledge_poison(event: dict[str, Any]) -> dict[str, Any]:
    """The event without records whose body is not a job reference (each is logged, then dropped)."""
    kept = []
    for raw in event.get("Records", []):
        try:
            JobMessageRecord.model_validate(raw)
        except ValidationError:
            record = SqsRecordModel.model_validate(raw)
            logger.error(
                "Dead-lettered message is not a job reference",
                extra={"message_id": record.messageId, "body": str(record.body)[:1024]},
            )
            continue
        kept.append(raw)
    return {**event, "Records": kept}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the dead-letter queue's event source mapping (``ReportBatchItemFailures``)."""
    jobs_event = _acknowledge_poison(event)
    if not jobs_event["Records"]:
        return {"batchItemFailures": []}
    return process_partial_response(
        event=jobs_event, record_handler=record_handler, processor=processor, context=context
    )
