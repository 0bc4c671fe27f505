"""The quarterly audit of an owner whose jobs take longer to read than one invocation: run by the consumer's Lambda
handler on moto, with a short invocation and small pages, it is continued from delivery to delivery and ends
SUCCEEDED with one attempt, nothing dead-lettered, and the figures of a single pass (issue 18, part 1)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import uuid6

from jobs import aws, bootstrap, processors
from jobs.models import Job, JobCreate, JobMessage, JobStatus, utc_now
from jobs.processors import quarter_bounds, quarterly_audit
from jobs.service import JobService
from jobs.store import DynamoJobStore, job_to_item
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_function


class ShortInvocations:
    """The consumer's ``seconds_left``: each invocation starts with ``seconds`` and loses one at every look (the
    botocore time budget keeps the real invocation's 30 s, so no call is refused)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self.left = seconds

    def __call__(self) -> float:
        deadline = aws.current_deadline()
        assert deadline is not None
        # A later deadline is a new invocation's (an earlier one is the same invocation's, with time reserved).
        if self.deadline is None or deadline > self.deadline:
            self.deadline, self.left = deadline, self.seconds
        self.left -= 1
        return self.left


def uuid7_at(moment: datetime, n: int) -> str:
    """A UUIDv7 whose time is ``moment``, made unique by ``n``."""
    ms = int(moment.timestamp() * 1000)
    return str(uuid6.UUID(int=(ms << 80) | (0x7 << 76) | (0x8 << 60) | n))


class Jobs(JobService):
    """The API's service plus the outbox: a created job's message is sent, as the table's stream does."""

    def create_job(self, owner_id: str, request: JobCreate) -> Job:
        job = super().create_job(owner_id, request)
        self.dispatch_all([JobMessage(owner_id=owner_id, job_id=job.job_id)])
        return job


def write_quarter(aws: Aws, count: int) -> None:
    """``count`` finished jobs of alice in this quarter so far, written straight into the table (BatchWriteItem)."""
    now = utc_now()
    start, _ = quarter_bounds(now)
    rng = random.Random(18)  # noqa: S311 - test data, the same every run
    items = []
    for n in range(count):
        created = start + (now - timedelta(minutes=5) - start) * n / count
        started = created + timedelta(seconds=rng.uniform(0, 60))
        job = Job(
            owner_id="alice",
            job_id=uuid7_at(created, n),
            title=f"job {n}",
            type=rng.choice(["noop", "report"]),
            status=rng.choice([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]),
            payload={"pad": "x" * 500},
            created_at=created,
            updated_at=created,
            started_at=started,
            finished_at=started + timedelta(seconds=rng.uniform(0, 30)),
            attempts=1,
        )
        items.append({"PutRequest": {"Item": job_to_item(job)}})
    for first in range(0, len(items), 25):
        aws.dynamodb.batch_write_item(RequestItems={aws.table_name: items[first : first + 25]})


def receive_one(aws: Aws) -> dict[str, Any]:
    [arn] = [value["Arn"] for value in aws.physical.values() if value.get("Ref") == aws.queue_url]
    messages = aws.sqs.receive_message(
        QueueUrl=aws.queue_url,
        MaxNumberOfMessages=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {"Records": [to_record(message, arn) for message in messages]}


def test_a_report_longer_than_an_invocation_is_continued_to_success(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processors, "REPORT_PAGE_SIZE", 40)
    consumer: ModuleType = load_function("process_jobs")
    # 14 s: 13 at the start check, then two pages (8 s kept for the run's writes, 4 for a page) per invocation.
    monkeypatch.setattr(bootstrap.consumer_service(), "seconds_left", ShortInvocations(14))
    service = Jobs(DynamoJobStore(aws.table_name), bootstrap.job_queue(), bootstrap.registry())
    write_quarter(aws, 200)
    report = service.create_job("alice", JobCreate(title="audit", payload={"report_type": "quarterly_audit"}))

    deliveries = 0
    while (event := receive_one(aws))["Records"]:
        response = consumer.lambda_handler(event, FakeLambdaContext())
        assert response == {"batchItemFailures": []}
        deliveries += 1
        assert deliveries < 50

    done = service.get_job("alice", report.job_id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 1  # continuations spend no attempt
    assert deliveries == 3  # 201 jobs in pages of 40, two pages per delivery
    assert aws.messages(aws.dlq_url) == []
    store = DynamoJobStore(aws.table_name)
    low, high = processors.job_id_bounds(*quarter_bounds(report.created_at))
    everyone = [j for j in store.list_range("alice", low, high) if j.job_id != report.job_id]
    as_run = done.model_copy(update={"status": JobStatus.RUNNING, "finished_at": None})
    assert done.result == quarterly_audit(report, [*everyone, as_run])
    assert done.result is not None
    assert done.result["total_jobs"] == 201
