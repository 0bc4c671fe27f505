"""The consumer's handler with SQS batches (events/sqs), against moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from jobs.models import JobCreate
from jobs.queue import SqsJobQueue
from jobs.service import JobService
from jobs.store import DynamoJobStore
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_event, load_function


@pytest.fixture
def consumer(aws: Aws) -> ModuleType:
    return load_function("process_jobs")


@pytest.fixture
def service(aws: Aws) -> JobService:
    return JobService(DynamoJobStore(aws.table_name), SqsJobQueue(aws.queue_url))


def batch_for(job_ids: list[str], owner: str = "alice", bodies: list[str] | None = None) -> dict[str, Any]:
    """The sample batch, with one record per job id (or per raw body)."""
    template = load_event("sqs/job_batch.json")["Records"][0]
    bodies = bodies if bodies is not None else [json.dumps({"owner_id": owner, "job_id": i}) for i in job_ids]
    records = []
    for n, body in enumerate(bodies):
        records.append({**template, "messageId": f"message-{n}", "body": body})
    return {"Records": records}


def test_the_sample_batch_shape_is_accepted(consumer: ModuleType) -> None:
    # The sample's jobs do not exist here: both records are acknowledged (a deleted job is done with).
    response = consumer.lambda_handler(load_event("sqs/job_batch.json"), FakeLambdaContext())

    assert response == {"batchItemFailures": []}


def test_a_batch_runs_every_job_to_its_final_status(consumer: ModuleType, service: JobService) -> None:
    report = service.create_job("alice", JobCreate(title="audit", payload={"report_type": "quarterly_audit"}))
    noop = service.create_job("alice", JobCreate(title="noop", type="noop"))

    response = consumer.lambda_handler(batch_for([report.job_id, noop.job_id]), FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    done_report = service.get_job("alice", report.job_id)
    assert done_report.status == "SUCCEEDED"
    assert done_report.result is not None
    assert done_report.result["by_status"]["RUNNING"] == 1
    assert done_report.result["total_jobs"] == 2
    assert service.get_job("alice", noop.job_id).result == {"noop": True}


def test_a_poison_record_fails_alone(consumer: ModuleType, service: JobService) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    good = json.dumps({"owner_id": "alice", "job_id": job.job_id})

    response = consumer.lambda_handler(batch_for([], bodies=["not json", good, '{"job_id": 1}']), FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "message-0"}, {"itemIdentifier": "message-2"}]}
    assert service.get_job("alice", job.job_id).status == "SUCCEEDED"


def test_a_job_that_is_running_elsewhere_comes_back_later(consumer: ModuleType, service: JobService) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    service.store.start("alice", job.job_id, now_text="2026-11-29T10:00:00.000Z")

    response = consumer.lambda_handler(batch_for([job.job_id]), FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}


def test_a_redelivered_finished_job_is_not_run_again(consumer: ModuleType, service: JobService) -> None:
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    consumer.lambda_handler(batch_for([job.job_id]), FakeLambdaContext())
    first = service.get_job("alice", job.job_id)

    response = consumer.lambda_handler(batch_for([job.job_id, job.job_id]), FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert service.get_job("alice", job.job_id) == first
    assert first.attempts == 1
