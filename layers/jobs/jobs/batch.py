"""The consumers' set-up (the jobs consumer and the dead-letter handler): the SQS record model, what a record
says about its delivery, and turning ``RetryLater`` into a delayed redelivery.

A record handler that raises reports its record in ``batchItemFailures`` (powertools' partial batch
response); before it does, a ``RetryLater`` sets the message's visibility timeout to the delay it asks for, so
the retry comes when it is useful rather than after the queue's whole visibility timeout.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json, ValidationError

from jobs import bootstrap, settings
from jobs.models import START_TIME, JobMessage, RetryLater
from jobs.observability import logger
from jobs.queue import NOT_BEFORE_ATTRIBUTE
from jobs.service import Delivery


class JobMessageRecord(SqsRecordModel):
    """An SQS record whose body is a ``JobMessage`` in JSON (anything else fails the record)."""

    body: Json[JobMessage]


def batch_processor() -> BatchProcessor:
    """A partial-batch processor for ``JobMessageRecord``s.

    A batch whose every record fails is reported record by record, like any other partial failure, rather
    than raised as a function error: the records come back all the same, and Lambda's Errors metric stays for
    real crashes.
    """
    return BatchProcessor(event_type=EventType.SQS, model=JobMessageRecord, raise_on_entire_batch_failure=False)


def delivery_of(record: JobMessageRecord) -> Delivery:
    """The delivery facts of a record: its receive count, the redrive limit and the attempts a job gets, the queue
    it came from, when it was sent and first received, and the ``not_before`` message attribute of a scheduled
    job's message (``jobs.queue.NOT_BEFORE_ATTRIBUTE``; an attribute that is not a time is ignored: the job's own
    ``not_before``, which the start's condition checks, still holds)."""
    consumer = settings.consumer_settings()
    attribute = record.messageAttributes.get(NOT_BEFORE_ATTRIBUTE)
    try:
        not_before = START_TIME.validate_python(attribute.stringValue) if attribute else None
    except ValidationError:
        not_before = None
    return Delivery(
        receive_count=int(record.attributes.ApproximateReceiveCount),
        max_receive_count=consumer.max_receive_count,
        max_attempts=consumer.max_attempts,
        queue_arn=record.eventSourceARN,
        sent_at=record.attributes.SentTimestamp,
        first_received_at=record.attributes.ApproximateFirstReceiveTimestamp,
        not_before=not_before,
        retention_seconds=consumer.queue_retention_seconds,
    )


def settle(record: JobMessageRecord, action: Callable[[JobMessage, Delivery], object]) -> None:
    """Run ``action`` for the record's message, with its job ids in every log line meanwhile.

    Raises:
        RetryLater: after delaying the message's next delivery by the delay it asks for.
    """
    message = record.body
    logger.append_keys(job_id=message.job_id, owner_id=message.owner_id, message_id=record.messageId)
    try:
        action(message, delivery_of(record))
    except RetryLater as later:
        logger.info("Message comes back in %d s: %s", later.delay_seconds, later)
        bootstrap.source_queues().delay(record.eventSourceARN, record.receiptHandle, later.delay_seconds)
        raise
    finally:
        logger.remove_keys(["job_id", "owner_id", "message_id"])
