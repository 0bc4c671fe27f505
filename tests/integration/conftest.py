"""Fixtures of the integration tests: the callback sender's world (issue 17), shared by its handler's tests and its
IAM test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme

from jobs import bootstrap
from jobs.events import DETAIL_TYPE, EVENT_SOURCE
from jobs.models import Job, JobCreate, JobStatus
from jobs.service import JobService
from jobs.slots import DynamoOwnerSlots
from jobs.store import DynamoJobStore
from local import webhook_keys
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import (
    WEBHOOK_PUBLIC_KEY_PARAMETER,
    WEBHOOK_SIGNING_KEY_PARAMETER,
    FakeLambdaContext,
    load_event,
    load_function,
)
from tests.webhook_receiver import ca_bundle

#: The callback timeout the tests set, seconds (a slow receiver outlasts it).
TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class Callbacks:
    """The sender's world: the template's resources on moto, the store, the handler module."""

    aws: Aws
    store: DynamoJobStore
    handler: Any

    @property
    def queue_url(self) -> str:
        return self.aws.physical["JobCallbacksQueue"]["Ref"]

    def finished_job(self, owner: str, callback_url: str) -> Job:
        """A job of ``owner`` with ``callback_url``, run to SUCCEEDED."""
        job = JobService(self.store).create_job(owner, JobCreate(title="t", type="noop", callback_url=callback_url))
        now = "2026-12-01T10:00:0{}.000Z"
        self.store.start(owner, job.job_id, now_text=now.format(1), stale_before_text=now.format(0), run_id="r")
        self.store.finish(owner, job.job_id, run_id="r", status=JobStatus.SUCCEEDED, now_text=now.format(2))
        return job

    def publish(self, *jobs: Job, status: str = "SUCCEEDED", has_callback: bool = True) -> None:
        """Put each job's Job State Change event on the stack's bus (the sample event's fields, the job's ids)."""
        sample = load_event("eventbridge/job_state_change.json")["detail"]
        entries = [
            {
                "Source": EVENT_SOURCE,
                "DetailType": DETAIL_TYPE,
                "EventBusName": self.aws.physical["JobEventsBus"]["Ref"],
                "Detail": json.dumps(
                    {
                        **sample,
                        "job_id": job.job_id,
                        "owner_id": job.owner_id,
                        "status": status,
                        "has_callback": has_callback,
                        "version": str(index + 1),
                    }
                ),
            }
            for index, job in enumerate(jobs)
        ]
        response = boto3.client("events").put_events(Entries=entries)
        assert response["FailedEntryCount"] == 0

    def batch(self, expected: int) -> dict[str, Any]:
        """An SQS event of the callbacks queue's visible messages (``expected`` of them), as the mapping gives it."""
        arn = self.aws.physical["JobCallbacksQueue"]["Arn"]
        messages = self.aws.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        assert len(messages) == expected, messages
        return {"Records": [to_record(message, arn) for message in messages]}

    def deliver(self, event: dict[str, Any], request_id: str = FakeLambdaContext.aws_request_id) -> dict[str, Any]:
        """The handler's answer to ``event``, as the invocation ``request_id``."""
        response: dict[str, Any] = self.handler.lambda_handler(event, FakeLambdaContext(aws_request_id=request_id))
        return response

    @property
    def slots(self) -> DynamoOwnerSlots:
        """The owner slots the sender takes (template.yaml's ``CallbackSlotsTable``, one per owner)."""
        return DynamoOwnerSlots(self.aws.physical["CallbackSlotsTable"]["Ref"], 1, boto3.client("dynamodb"))


@pytest.fixture
def callbacks(aws: Aws, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callbacks:
    """The sender's environment as template.yaml sets it, plus the local stack's loopback flag and test CA, a short
    timeout and a one-wait schedule (2 s); the key parameters created as ``make webhook-keys`` does."""
    webhook_keys.create(webhook_keys.KeyParameters(boto3.client("ssm")))
    for name, value in {
        "JOBS_SOURCE_QUEUE_URL": aws.physical["JobCallbacksQueue"]["Ref"],
        "JOBS_CALLBACK_SIGNING_KEY_PARAMETER": WEBHOOK_SIGNING_KEY_PARAMETER,
        "JOBS_CALLBACK_PUBLIC_KEY_PARAMETER": WEBHOOK_PUBLIC_KEY_PARAMETER,
        "JOBS_CALLBACK_ALLOW_LOOPBACK": "true",
        "JOBS_CALLBACK_CA_BUNDLE": str(ca_bundle(ca, tmp_path)),
        "JOBS_CALLBACK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "JOBS_CALLBACK_RETRY_DELAYS_SECONDS": "[2]",
        "JOBS_CALLBACK_SLOTS_TABLE": aws.physical["CallbackSlotsTable"]["Ref"],
        "JOBS_CALLBACK_SLOTS_PER_OWNER": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JOBS_SOURCE_QUEUE_URLS")
    bootstrap.reset()
    return Callbacks(aws, DynamoJobStore(aws.table_name), load_function("deliver_callbacks"))
