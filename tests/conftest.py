"""Shared fixtures: AWS under moto (resources built from template.yaml), and clean caches per test."""

from __future__ import annotations

import os

# powertools' Logger and Metrics read their configuration when jobs.observability is imported, as they do
# in Lambda, where the environment is set before the handler module loads: set it before that import.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "JobSystemTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "jobs-tests")

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobs import bootstrap
from local import dynamodb_local
from local.moto_server import (
    enforce_message_characters,
    enforce_message_group_ids,
    enforce_visibility_limits,
    play_fair_queues,
    play_message_move_tasks,
)
from local.resources import LocalStack
from tests.helpers import ROOT, SECRET_PARAMETER, TEST_SECRET, transform_file


@pytest.fixture(scope="session", autouse=True)
def _sqs_characters_as_aws() -> None:
    """moto's SQS refuses a message character, group id, visibility timeout or delay AWS refuses, and plays message
    move tasks and fair queues, as the local stack's does."""
    enforce_message_characters("refuse")
    enforce_message_group_ids()
    enforce_visibility_limits()
    play_message_move_tasks()
    play_fair_queues()


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No AWS credentials from the machine, no cached clients or settings from another test."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "JobSystemTests",
        "POWERTOOLS_SERVICE_NAME": "jobs-tests",
        # botocore sends a DynamoDB Streams call that names a stream ARN to the account's own endpoint
        # ({account}.streams-ddb.{region}.amazonaws.com), which moto 5.2.5's in-process mock does not serve; AWS
        # serves both, so the tests use the regional one.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "JWKS_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_ALGORITHMS",
        "JOBS_FAULT_INJECTION",
    ):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    yield
    bootstrap.reset()


class Aws:
    """The moto-backed account of one test: the template's resources and their physical ids."""

    def __init__(self, physical: dict[str, dict[str, str]]) -> None:
        self.physical = physical
        self.table_name = physical["JobsTable"]["Ref"]
        self.queue_url = physical["JobsQueue"]["Ref"]
        self.dlq_url = physical["JobsDeadLetterQueue"]["Ref"]
        self.discarded_url = physical["OutboxDiscardedBatchesQueue"]["Ref"]
        self.idempotency_table_name = physical["IdempotencyTable"]["Ref"]
        self.dynamodb: Any = boto3.client("dynamodb")
        self.sqs: Any = boto3.client("sqs")

    def item_count(self) -> int:
        """Items in the Jobs table."""
        return int(self.dynamodb.scan(TableName=self.table_name, Select="COUNT")["Count"])

    def messages(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        """Receive (and leave in flight) every visible message of a queue (the jobs queue by default)."""
        found: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url or self.queue_url,
                MaxNumberOfMessages=10,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return found
            found.extend(batch)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """moto with the template's table and queues, the HS256 secret in SSM, and the functions' environment."""
    with mock_aws():
        stack = LocalStack(ROOT / "template.yaml", boto3.client)
        physical = stack.create_all()
        boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=TEST_SECRET, Type="SecureString")
        monkeypatch.setenv("JOBS_TABLE_NAME", physical["JobsTable"]["Ref"])
        monkeypatch.setenv("JOBS_QUEUE_URL", physical["JobsQueue"]["Ref"])
        monkeypatch.setenv("JOBS_IDEMPOTENCY_TABLE_NAME", physical["IdempotencyTable"]["Ref"])
        monkeypatch.setenv("JOBS_HIGH_PRIORITY_QUEUE_URL", physical["JobsHighPriorityQueue"]["Ref"])
        monkeypatch.setenv("JOBS_LOW_PRIORITY_QUEUE_URL", physical["JobsLowPriorityQueue"]["Ref"])
        sources = (physical[name]["Ref"] for name in ("JobsHighPriorityQueue", "JobsQueue", "JobsLowPriorityQueue"))
        monkeypatch.setenv("JOBS_SOURCE_QUEUE_URLS", ",".join(sources))
        monkeypatch.setenv("JOBS_DISCARDED_BATCHES_QUEUE_URL", physical["OutboxDiscardedBatchesQueue"]["Ref"])
        monkeypatch.setenv("JWT_SECRET_PARAMETER", SECRET_PARAMETER)
        yield Aws(physical)


# --- DynamoDB Local: a second DynamoDB engine, so that a moto quirk cannot hide a real bug --------------------


def pytest_report_header(config: pytest.Config) -> str:
    found = dynamodb_local.find()
    return f"DynamoDB Local: {found.version}" if found.jar else f"DynamoDB Local: SKIPPED ({found.reason})"


@pytest.fixture(scope="session")
def dynamodb_local_endpoint() -> Iterator[str]:
    """The endpoint of a DynamoDB Local server (in memory) for this test session; skips when it is missing."""
    found = dynamodb_local.find()
    if found.jar is None:
        pytest.skip(f"DynamoDB Local: {found.reason}")
    server = dynamodb_local.DynamoDBLocal(found.jar)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def dynamodb_local_table(dynamodb_local_endpoint: str) -> str:
    """A fresh Jobs table, built from template.yaml, in DynamoDB Local; returns its name."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url=dynamodb_local_endpoint)
    stack = LocalStack(ROOT / "template.yaml", lambda service: client, stack_name=f"t{uuid.uuid4().hex[:12]}")
    return stack.physical("JobsTable")["Ref"]


def dynamodb_local_client(endpoint: str) -> Any:
    """A boto3 DynamoDB client for DynamoDB Local."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("dynamodb", endpoint_url=endpoint)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """template.yaml as AWS would receive it: through the SAM translator (``local.sam_transform``)."""
    return transform_file(ROOT / "template.yaml", tmp_path_factory.mktemp("rehearsal") / "template.json")
