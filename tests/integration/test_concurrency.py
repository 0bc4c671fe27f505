"""Duplicate deliveries racing each other: one run, one final status.

Run on the in-memory store and on DynamoDB Local. Not on moto: its in-process DynamoDB evaluates a condition
and applies the update without a lock, so two threads can both pass ``#status = :queued`` (seen here as a
second start with attempts=2); real DynamoDB, and DynamoDB Local, apply a conditional write atomically.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from jobs.context import JobContext
from jobs.models import JobCreate, JobMessage, JobStatus, RetryLater
from jobs.processors import JobType, Registry
from jobs.queue import InMemoryJobQueue
from jobs.service import Delivery, JobService
from jobs.store import DynamoJobStore, InMemoryJobStore, JobStore
from tests.conftest import dynamodb_local_client
from tests.helpers import race


@pytest.fixture(params=["memory", "dynamodb-local"])
def store(request: pytest.FixtureRequest) -> JobStore:
    if request.param == "memory":
        return InMemoryJobStore()
    table = request.getfixturevalue("dynamodb_local_table")
    return DynamoJobStore(table, dynamodb_local_client(request.getfixturevalue("dynamodb_local_endpoint")))


@pytest.mark.parametrize("deliveries", [2, 8])
def test_concurrent_deliveries_run_the_job_once_and_finish_it_once(store: JobStore, deliveries: int) -> None:
    runs: list[str] = []  # counted outside the job item

    def slow(job: Any, _: JobContext) -> dict[str, Any]:
        runs.append(job.job_id)
        time.sleep(0.3)
        return {"done": True}

    service = JobService(store, InMemoryJobQueue(), Registry([JobType("slow", slow)]))
    job = service.create_job("alice", JobCreate(title="race", type="slow"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)

    outcomes = race([lambda: service.run_job(message, Delivery()) for _ in range(deliveries)])

    final = service.get_job("alice", job.job_id)
    assert runs == [job.job_id]
    assert (final.status, final.attempts) == (JobStatus.SUCCEEDED, 1)
    assert sum(1 for outcome in outcomes if isinstance(outcome, RetryLater)) == deliveries - 1
    assert sum(1 for outcome in outcomes if outcome == final) == 1


def test_a_delivery_after_the_final_status_changes_nothing(store: JobStore) -> None:
    service = JobService(store, InMemoryJobQueue())
    job = service.create_job("alice", JobCreate(title="noop", type="noop"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)
    first = service.run_job(message)

    outcomes = race([lambda: service.run_job(message) for _ in range(4)])

    assert outcomes == [first] * 4
    assert service.get_job("alice", job.job_id) == first
