"""A scheduled start (``not_before``) through the functions' handlers, on moto: the API takes and shows it, refuses
every malformed or too-late one with a 422 that writes nothing, cancels a scheduled job; the relay sends its message
delayed and carrying the ``not_before`` attribute; the consumer hides an early message (ChangeMessageVisibility) or
replaces it with a fresh one, and acknowledges the early message of a cancelled job."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from jobs import bootstrap
from jobs.models import JobCreate, JobPriority, format_timestamp, utc_now
from jobs.queue import MAX_DELAY_SECONDS, NOT_BEFORE_ATTRIBUTE, Dispatch, SqsJobQueue
from jobs.service import JobService
from jobs.store import DynamoJobStore, job_to_item
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_event, load_function, sign

HIGH_QUEUE = "JobsHighPriorityQueue"


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


@pytest.fixture
def consumer(aws: Aws) -> ModuleType:
    return load_function("process_jobs")


@pytest.fixture
def service(aws: Aws) -> JobService:
    queue = SqsJobQueue(
        {
            JobPriority.NORMAL: aws.queue_url,
            JobPriority.HIGH: aws.physical[HIGH_QUEUE]["Ref"],
            JobPriority.LOW: aws.physical["JobsLowPriorityQueue"]["Ref"],
        }
    )
    return JobService(DynamoJobStore(aws.table_name), queue, bootstrap.registry())


def call(api: ModuleType, name: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(api_event(name, token=sign("alice"), **kwargs), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"] or "null")


def _moto_queue(url: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends["123456789012"]["us-east-1"].get_queue(url.rsplit("/", 1)[-1])


def receive(aws: Aws, queue: str = "JobsQueue") -> dict[str, Any]:
    """An SQS event of the queue's visible messages, as the event source mapping builds it (attributes included)."""
    physical = aws.physical[queue]
    messages = aws.sqs.receive_message(
        QueueUrl=physical["Ref"],
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {"Records": [to_record(message, physical["Arn"]) for message in messages]}


def send_due_soon(service: JobService, job: Any) -> None:
    """The job's message as the relay sends it, but visible now (as after its first 900 s of delay)."""
    assert service.queue is not None
    [sent] = service.queue.send_batch([Dispatch(_message(job), priority=job.priority, not_before=job.not_before)])
    assert sent.sent


def _message(job: Any) -> Any:
    from jobs.models import JobMessage

    return JobMessage(owner_id=job.owner_id, job_id=job.job_id)


# --- the API ------------------------------------------------------------------------------------------------------


def test_a_scheduled_job_is_created_and_shows_its_not_before(api: ModuleType, aws: Aws) -> None:
    start = utc_now() + timedelta(hours=2)
    status, created = call(api, "create_job", body={"title": "later", "type": "noop", "not_before": start.isoformat()})
    assert status == 201
    assert created["not_before"] == format_timestamp(start)
    assert created["status"] == "QUEUED"
    status, shown = call(api, "get_job", job_id=created["job_id"])
    assert status == 200
    assert shown["not_before"] == format_timestamp(start)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2026-12-01", "date only"),
        ("2026-12-01T09:00:00", "no offset"),
        (1764579600, "a number"),
        ("2026-02-30T09:00:00Z", "Feb 30"),
        ("", "empty"),
        ("8 days", "not_before_too_late"),
        ("0001-01-01T00:00:00+01:00", "before year 1 in UTC"),
        ("9999-12-31T23:59:59-01:00", "after year 9999 in UTC"),
        ("\u0662\u0660\u0662\u0666-12-01T09:00:00Z", "Arabic-Indic digits"),
    ],
)
def test_a_bad_not_before_is_a_422_at_body_not_before_and_writes_nothing(
    api: ModuleType, aws: Aws, value: Any, kind: str
) -> None:
    if kind == "not_before_too_late":
        value = format_timestamp(utc_now() + timedelta(days=7, seconds=5))
    status, problem = call(api, "create_job", body={"title": "later", "not_before": value})
    assert status == 422
    assert [error["loc"] for error in problem["errors"]] == [["body", "not_before"]]
    if kind == "not_before_too_late":
        assert problem["errors"][0]["type"] == kind
    assert aws.item_count() == 0


def test_a_scheduled_job_is_cancelled_and_its_early_delivery_acknowledged(
    api: ModuleType, consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=utc_now() + timedelta(days=2)))
    send_due_soon(service, job)
    status, cancelled = call(api, "cancel_job", job_id=job.job_id)
    assert status == 200
    assert cancelled["status"] == "CANCELLED"

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    assert response == {"batchItemFailures": []}  # acknowledged: the mapping deletes it
    assert aws.messages() == []  # and nothing was sent in its place
    assert service.get_job("alice", job.job_id).status == "CANCELLED"


# --- the consumer -------------------------------------------------------------------------------------------------


def test_an_early_record_is_hidden_until_900_s_before_its_start(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    wait = timedelta(hours=5)
    job = service.create_job("alice", JobCreate(title="later", type="noop", not_before=utc_now() + wait))
    send_due_soon(service, job)
    event = receive(aws)
    [record] = event["Records"]
    assert job.not_before is not None
    assert record["messageAttributes"][NOT_BEFORE_ATTRIBUTE]["stringValue"] == format_timestamp(job.not_before)
    assert record["attributes"]["ApproximateReceiveCount"] == "1"

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    [held] = _moto_queue(aws.queue_url)._messages
    hidden_ms = held.visible_at - time.time() * 1000  # not utc_now(): it drops the sub-millisecond, moto does not
    assert (wait.total_seconds() - MAX_DELAY_SECONDS - 5) * 1000 < hidden_ms <= (wait.total_seconds() - 900) * 1000
    assert service.get_job("alice", job.job_id).status == "QUEUED"


def test_an_early_record_within_900_s_is_replaced_by_a_delayed_message_on_its_priority_queue(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    start = utc_now() + timedelta(minutes=10)
    job = service.create_job("alice", JobCreate(title="soon", type="noop", priority=JobPriority.HIGH, not_before=start))
    send_due_soon(service, job)
    event = receive(aws, HIGH_QUEUE)

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}  # the early one is acknowledged (the mapping deletes it)
    high = _moto_queue(aws.physical[HIGH_QUEUE]["Ref"])
    fresh = next(m for m in high._messages if m.approximate_receive_count == 0)  # the new message, never received
    assert fresh.message_attributes[NOT_BEFORE_ATTRIBUTE]["StringValue"] == format_timestamp(start)
    delay_ms = fresh.delayed_until - fresh.sent_timestamp
    assert 590_000 <= delay_ms <= 601_000  # ceil(the wait) s, the relay's clock to moto's
    assert _moto_queue(aws.queue_url)._messages == []


def test_a_due_record_with_early_receives_is_replaced_and_its_fresh_message_runs_the_job(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    job = service.create_job("alice", JobCreate(title="now", type="noop", not_before=utc_now() + timedelta(hours=1)))
    send_due_soon(service, job)
    event = receive(aws)
    [record] = event["Records"]
    # As SQS reports a message first received an hour ago and now for the third time, after its not_before.
    past = int((utc_now() - timedelta(hours=2)).timestamp() * 1000)
    record["attributes"].update(ApproximateReceiveCount="3", ApproximateFirstReceiveTimestamp=str(past))
    record["messageAttributes"][NOT_BEFORE_ATTRIBUTE]["stringValue"] = format_timestamp(utc_now() - timedelta(hours=1))

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert service.get_job("alice", job.job_id).status == "QUEUED"  # not run on the message with early receives
    [fresh] = aws.messages()
    assert "MessageAttributes" not in fresh  # the job's own not_before still guards its start
    assert fresh["Attributes"]["ApproximateReceiveCount"] == "1"


# --- the relay ----------------------------------------------------------------------------------------------------


def test_the_relay_sends_a_scheduled_job_delayed_with_the_attribute(aws: Aws) -> None:
    outbox = load_function("enqueue_jobs")
    service = JobService(DynamoJobStore(aws.table_name), registry=bootstrap.registry())
    start = utc_now() + timedelta(hours=3)
    job = service.create_job("alice", JobCreate(title="later", type="noop", priority=JobPriority.LOW, not_before=start))
    event = load_event("dynamodb/job_inserted.json")
    change = event["Records"][0]["dynamodb"]
    change["Keys"]["job_id"]["S"] = job.job_id
    change["NewImage"] = job_to_item(job)
    change["StreamViewType"] = "NEW_AND_OLD_IMAGES"

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    [message] = _moto_queue(aws.physical["JobsLowPriorityQueue"]["Ref"])._messages
    assert abs(message.delayed_until - message.sent_timestamp - MAX_DELAY_SECONDS * 1000) < 1000
    assert message.message_attributes[NOT_BEFORE_ATTRIBUTE]["StringValue"] == format_timestamp(start)
    assert message.group_id == "alice"
