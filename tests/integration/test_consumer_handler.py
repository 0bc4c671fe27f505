"""The consumers' handlers (jobs consumer, dead-letter handler) with real SQS messages, against moto.

Faults are injected where they happen: a processor that fails or stalls, a run that dies after RUNNING, a
second delivery racing the first, a delete in flight, a throttled table, a body that is not a job reference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from jobs import bootstrap
from jobs.batch import JobMessageRecord, delivery_of
from jobs.context import JobContext
from jobs.models import Job, JobCreate, JobMessage, JobStatus, format_timestamp, utc_now
from jobs.processors import BUILT_IN_TYPES, JobType, Registry
from jobs.service import JobService
from jobs.store import DynamoJobStore
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_event, load_function, race


@pytest.fixture(autouse=True)
def _fault_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_FAULT_INJECTION", "1")


@pytest.fixture
def consumer(aws: Aws) -> ModuleType:
    return load_function("process_jobs")


@pytest.fixture
def dead_letters(aws: Aws) -> ModuleType:
    return load_function("dead_letters")


class Jobs(JobService):
    """The API's service plus the outbox: every created job's message is sent, as the table's stream does."""

    def create_job(self, owner_id: str, request: JobCreate) -> Job:
        job = super().create_job(owner_id, request)
        self.dispatch_all([JobMessage(owner_id=owner_id, job_id=job.job_id)])
        return job


@pytest.fixture
def service(aws: Aws) -> JobService:
    return Jobs(DynamoJobStore(aws.table_name), bootstrap.job_queue(), bootstrap.registry())


def receive(aws: Aws, queue_url: str | None = None, count: int = 10) -> dict[str, Any]:
    """An SQS event of up to ``count`` messages received from a queue (the NORMAL jobs queue by default), as the
    event source mapping builds it (system and message attributes)."""
    url = queue_url or aws.queue_url
    [arn] = [value["Arn"] for value in aws.physical.values() if value.get("Ref") == url]
    messages = aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=count, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    return {"Records": [to_record(message, arn) for message in messages]}


def failures(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def invisible_for(aws: Aws) -> int:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_sample_batch_shape_is_accepted(consumer: ModuleType) -> None:
    # The sample's jobs do not exist here (deleted, as far as the consumer knows): both are acknowledged.
    event = load_event("sqs/job_batch.json")

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    # The second is a scheduled job's message, received when due: its start is read from the message attribute.
    first, scheduled = (delivery_of(JobMessageRecord.model_validate(record)) for record in event["Records"])
    assert first.not_before is None
    assert scheduled.not_before == datetime(2026, 11, 29, 11, 7, 7, tzinfo=UTC)
    assert scheduled.first_received_at is not None
    assert scheduled.first_received_at >= scheduled.not_before
    assert not scheduled.came_early


def test_a_batch_runs_every_job_to_its_final_status(consumer: ModuleType, service: JobService, aws: Aws) -> None:
    report = service.create_job("alice", JobCreate(title="audit", payload={"report_type": "quarterly_audit"}))
    noop = service.create_job("alice", JobCreate(title="noop", type="noop"))

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    done_report = service.get_job("alice", report.job_id)
    assert done_report.status == "SUCCEEDED"
    assert done_report.result is not None
    assert done_report.result["total_jobs"] == 2
    assert service.get_job("alice", noop.job_id).result == {"noop": True}


def test_poison_records_fail_alone_and_are_named_by_their_own_ids(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    for body in ("not json", '{"job_id": 1}', "", '{"owner_id": "alice", "job_id": "x", "extra": 1}'):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body or " ")
    event = receive(aws)

    response = consumer.lambda_handler(event, FakeLambdaContext())

    ids = {record["messageId"] for record in event["Records"]}
    good = next(r["messageId"] for r in event["Records"] if job.job_id in r["body"])
    assert set(failures(response)) == ids - {good}
    assert all(failures(response))
    assert service.get_job("alice", job.job_id).status == "SUCCEEDED"


def test_a_batch_where_every_record_fails_is_reported_record_by_record(consumer: ModuleType, aws: Aws) -> None:
    for n in range(3):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=f"poison {n}")
    event = receive(aws)

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert sorted(failures(response)) == sorted(r["messageId"] for r in event["Records"])


def test_a_retryable_failure_requeues_and_delays_the_message(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    job = service.create_job("alice", JobCreate(title="flaky", type="flaky", payload={"attempts": 1}))
    event = receive(aws)

    response = consumer.lambda_handler(event, FakeLambdaContext())

    waiting = service.get_job("alice", job.job_id)
    assert failures(response) == [event["Records"][0]["messageId"]]
    assert (waiting.status, waiting.attempts) == (JobStatus.QUEUED, 1)
    assert waiting.error is not None
    assert waiting.error.type == "RetryableProcessorError"
    assert invisible_for(aws) == 1


def test_the_last_delivery_of_a_retryable_failure_fails_the_job(
    consumer: ModuleType, service: JobService, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_MAX_RECEIVE_COUNT", "1")
    job = service.create_job("alice", JobCreate(title="flaky", type="flaky", payload={"attempts": 0}))

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    failed = service.get_job("alice", job.job_id)
    assert failures(response) == []
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.message.startswith("injected fault")


def test_a_non_retryable_failure_fails_at_once(consumer: ModuleType, service: JobService, aws: Aws) -> None:
    job = service.create_job("alice", JobCreate(title="fail", type="fail", payload={"message": "no way"}))

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    failed = service.get_job("alice", job.job_id)
    assert failures(response) == []
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("ProcessorError", "no way")


def test_a_job_running_under_a_live_lease_comes_back_when_it_ends(
    consumer: ModuleType, service: JobService, aws: Aws
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    now = format_timestamp(utc_now())
    service.store.start("alice", job.job_id, now_text=now, stale_before_text=now)
    event = receive(aws)

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert failures(response) == [event["Records"][0]["messageId"]]
    assert service.get_job("alice", job.job_id).status == JobStatus.RUNNING
    assert invisible_for(aws) == 1


def test_a_run_that_died_after_running_is_taken_over_once_its_lease_expires(
    consumer: ModuleType, service: JobService, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_LEASE_SECONDS", "1")
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    now = format_timestamp(utc_now())
    service.store.start("alice", job.job_id, now_text=now, stale_before_text=now)  # ... and the run dies here
    time.sleep(1.2)

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    done = service.get_job("alice", job.job_id)
    assert failures(response) == []
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 2)


def counting(runs: list[str], seconds: float) -> Callable[[Any, JobContext], dict[str, Any]]:
    """A processor that records each run outside the job item, then works for ``seconds``."""

    def run(job: Any, context: JobContext) -> dict[str, Any]:
        runs.append(job.job_id)
        time.sleep(seconds)
        return {"runs": len(runs)}

    return run


def test_a_redelivered_finished_job_is_not_run_again(consumer: ModuleType, service: JobService, aws: Aws) -> None:
    runs: list[str] = []
    bootstrap.consumer_service().registry = Registry([JobType("noop", counting(runs, 0))])
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    event = receive(aws)
    consumer.lambda_handler(event, FakeLambdaContext())
    first = service.get_job("alice", job.job_id)

    response = consumer.lambda_handler({"Records": event["Records"] * 2}, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert service.get_job("alice", job.job_id) == first
    assert runs == [job.job_id]


def test_a_job_deleted_while_it_runs_stays_deleted_and_its_message_is_done(
    consumer: ModuleType, service: JobService, aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    job = service.create_job("alice", JobCreate(title="slow", type="sleep", payload={"seconds": 0.5}))
    event = receive(aws)

    def delete_midway() -> None:
        time.sleep(0.2)
        service.delete_job("alice", job.job_id)

    response, _ = race([lambda: consumer.lambda_handler(event, FakeLambdaContext()), delete_midway])

    assert response == {"batchItemFailures": []}
    assert service.store.get("alice", job.job_id) is None
    assert f"Job {job.job_id} was deleted while it ran" in caplog.text


def test_a_throttled_table_makes_the_record_come_back(
    consumer: ModuleType, service: JobService, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    service.create_job("alice", JobCreate(title="noop", type="noop"))
    event = receive(aws)

    def throttled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")

    monkeypatch.setattr(bootstrap.consumer_service().store.client, "update_item", throttled)  # type: ignore[attr-defined]

    response = consumer.lambda_handler(event, FakeLambdaContext())

    assert failures(response) == [event["Records"][0]["messageId"]]


def dead_letter(aws: Aws, body: str) -> dict[str, Any]:
    aws.sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body)
    return receive(aws, aws.dlq_url)


@pytest.fixture
def dlq_env(monkeypatch: pytest.MonkeyPatch, aws: Aws) -> None:
    monkeypatch.setenv("JOBS_SOURCE_QUEUE_URL", aws.dlq_url)


def test_a_dead_lettered_queued_job_is_failed(
    dead_letters: ModuleType, service: JobService, aws: Aws, dlq_env: None
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    event = dead_letter(aws, json.dumps({"owner_id": "alice", "job_id": job.job_id}))

    response = dead_letters.lambda_handler(event, FakeLambdaContext())

    failed = service.get_job("alice", job.job_id)
    assert failures(response) == []
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "DeadLettered"


def test_a_dead_lettered_finished_job_is_left_alone(
    dead_letters: ModuleType, consumer: ModuleType, service: JobService, aws: Aws, dlq_env: None
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    consumer.lambda_handler(receive(aws), FakeLambdaContext())
    event = dead_letter(aws, json.dumps({"owner_id": "alice", "job_id": job.job_id}))

    response = dead_letters.lambda_handler(event, FakeLambdaContext())

    assert failures(response) == []
    assert service.get_job("alice", job.job_id).status == JobStatus.SUCCEEDED


def test_a_dead_lettered_job_whose_run_may_live_comes_back_later(
    dead_letters: ModuleType, service: JobService, aws: Aws, dlq_env: None
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    now = format_timestamp(utc_now())
    service.store.start("alice", job.job_id, now_text=now, stale_before_text=now)
    event = dead_letter(aws, json.dumps({"owner_id": "alice", "job_id": job.job_id}))

    response = dead_letters.lambda_handler(event, FakeLambdaContext())

    assert failures(response) == [event["Records"][0]["messageId"]]
    assert service.get_job("alice", job.job_id).status == JobStatus.RUNNING


def test_a_dead_lettered_poison_message_is_logged_and_acknowledged(
    dead_letters: ModuleType, aws: Aws, dlq_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    event = dead_letter(aws, "definitely not a job")

    response = dead_letters.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert any(getattr(record, "body", None) == "definitely not a job" for record in caplog.records)


def _denied(**_: Any) -> Any:
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateItem")


# The jobs queue's maxReceiveCount is 5 here: a message may arrive with its count, so 5 + 20 is the bound.
@pytest.mark.parametrize(("receives", "comes_back"), [("1", True), ("24", True), ("25", False), ("40", False)])
def test_a_dead_letter_that_keeps_failing_comes_back_until_its_receive_bound_then_is_abandoned(
    dead_letters: ModuleType,
    service: JobService,
    aws: Aws,
    dlq_env: None,
    monkeypatch: pytest.MonkeyPatch,
    receives: str,
    comes_back: bool,
) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    event = dead_letter(aws, json.dumps({"owner_id": "alice", "job_id": job.job_id}))
    monkeypatch.setattr(bootstrap.consumer_service().store.client, "update_item", _denied)  # type: ignore[attr-defined]
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = receives

    response = dead_letters.lambda_handler(event, FakeLambdaContext())

    # Past the bound it is logged, counted and acknowledged, not looped: the reconciler has the QUEUED job.
    assert failures(response) == ([event["Records"][0]["messageId"]] if comes_back else [])


@pytest.mark.parametrize("owner_id", ["x" * 2049, "\uffff", "a b"])
def test_a_message_whose_owner_names_no_job_is_acknowledged_by_both_consumers(
    consumer: ModuleType, dead_letters: ModuleType, aws: Aws, owner_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"owner_id": owner_id, "job_id": "01a226ee-fede-7c74-8f78-130f6101394b"})
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)

    assert failures(consumer.lambda_handler(receive(aws), FakeLambdaContext())) == []
    monkeypatch.setenv("JOBS_SOURCE_QUEUE_URL", aws.dlq_url)
    bootstrap.reset()
    assert failures(dead_letters.lambda_handler(dead_letter(aws, body), FakeLambdaContext())) == []


def test_only_the_built_in_types_exist_without_fault_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_FAULT_INJECTION")

    bootstrap.reset()

    assert bootstrap.registry().names() == sorted(BUILT_IN_TYPES)
