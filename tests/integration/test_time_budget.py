"""The time budget (``jobs.aws``): an AWS endpoint that accepts connections and never answers costs a function
one or two attempts, then an answer (a 503, a partial batch response) before its ``Timeout``, never a timeout.

The endpoint is a real socket that accepts and stays silent; everything else is moto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from jobs import aws as jobs_aws
from jobs.models import JobMessage, ServiceUnavailable
from jobs.settings import AwsSettings
from jobs.store import DynamoJobStore
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import (
    FakeLambdaContext,
    SilentEndpoint,
    api_event,
    load_event,
    load_function,
    sign,
    silent_http_endpoint,
)

#: The defaults: what every deployed function runs with.
BUDGET = AwsSettings()


@pytest.fixture
def silent_endpoint() -> Iterator[SilentEndpoint]:
    with silent_http_endpoint() as endpoint:
        yield endpoint


@dataclass
class Context(FakeLambdaContext):
    """A Lambda context with ``seconds`` left at its creation."""

    seconds: float = 30.0
    created: float = 0.0

    def __post_init__(self) -> None:
        self.created = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.seconds - (time.monotonic() - self.created)) * 1000))


@pytest.fixture
def silent_dynamodb(aws: Aws, silent_endpoint: SilentEndpoint, monkeypatch: pytest.MonkeyPatch) -> SilentEndpoint:
    """The functions' DynamoDB is the silent endpoint (SQS and SSM stay moto's)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", silent_endpoint.url)
    return silent_endpoint


def test_every_client_has_the_budget_s_timeouts_and_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_AWS_READ_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("JOBS_AWS_MAX_ATTEMPTS", "2")
    config = jobs_aws.client("dynamodb").meta.config

    assert (config.connect_timeout, config.read_timeout) == (BUDGET.connect_timeout_seconds, 1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}  # the first attempt included
    assert BUDGET.attempt_seconds == BUDGET.connect_timeout_seconds + BUDGET.read_timeout_seconds


def test_an_attempt_that_cannot_finish_in_time_is_not_sent(silent_dynamodb: SilentEndpoint) -> None:
    store = DynamoJobStore("jobs")
    # 1 s of margin leaves 4.5 s, less than one 5 s attempt: refused before connecting.
    handler = jobs_aws.time_budget(lambda event, context: store.get("alice", "0" * 32))
    started = time.monotonic()

    with pytest.raises(ServiceUnavailable, match="within the invocation's time"):
        handler({}, Context(seconds=BUDGET.attempt_seconds + BUDGET.response_margin_seconds - 0.5))

    assert time.monotonic() - started < 1
    assert silent_dynamodb.accepted == []


def test_outside_an_invocation_there_is_no_deadline() -> None:
    assert jobs_aws.seconds_left() is None
    seen: list[float | None] = []
    jobs_aws.time_budget(lambda event, context: seen.append(jobs_aws.seconds_left()))({}, Context(seconds=20))
    assert seen[0] is not None
    assert 18 < seen[0] <= 20 - BUDGET.response_margin_seconds
    assert jobs_aws.seconds_left() is None


@pytest.mark.parametrize("idempotency_key", [None, "k-1"], ids=["without a key", "with an Idempotency-Key"])
def test_the_api_answers_503_with_retry_after_before_its_timeout(
    silent_dynamodb: SilentEndpoint, idempotency_key: str | None
) -> None:
    api = load_function("api")
    event = api_event("create_job", token=sign("alice"), body={"title": "t", "type": "noop"})
    if idempotency_key:
        event["headers"]["idempotency-key"] = idempotency_key
    timeout = 10  # the API function's Timeout in template.yaml
    started = time.monotonic()

    response = api.lambda_handler(event, Context(seconds=timeout))

    elapsed = time.monotonic() - started
    assert response["statusCode"] == 503, response
    assert int(response["headers"]["Retry-After"]) >= 1
    assert json.loads(response["body"])["status"] == 503
    assert elapsed < timeout - BUDGET.response_margin_seconds + 0.5
    assert silent_dynamodb.accepted, "the request did reach the endpoint"


def test_the_consumer_settles_every_record_before_its_timeout(aws: Aws, silent_dynamodb: SilentEndpoint) -> None:
    consumer = load_function("process_jobs")
    arn = aws.physical["JobsQueue"]["Arn"]
    for index in range(3):
        message = JobMessage(owner_id="alice", job_id=f"{index:032x}")
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=message.model_dump_json())
    messages = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    event: dict[str, Any] = {"Records": [to_record(message, arn) for message in messages]}
    timeout = 20  # enough to start one job (JOBS_MIN_START_SECONDS), whose table then hangs
    started = time.monotonic()

    response = consumer.lambda_handler(event, Context(seconds=timeout))

    elapsed = time.monotonic() - started
    failed = [failure["itemIdentifier"] for failure in response["batchItemFailures"]]
    sent_again = aws.messages()  # a job met with too little time left is sent again as a new message
    assert failed, "the job that started on the hanging table comes back"
    assert set(failed) <= {message["MessageId"] for message in messages}
    assert len(failed) + len(sent_again) == len(messages)
    assert elapsed < timeout - BUDGET.response_margin_seconds + 0.5


@pytest.mark.parametrize(
    ("service", "keys_only"),
    [("SQS", False), ("DYNAMODB", True)],
    ids=["new-image-sqs-hangs", "keys-only-table-hangs"],
)
def test_the_outbox_relay_fails_its_batch_before_its_timeout(
    aws: Aws, silent_endpoint: SilentEndpoint, monkeypatch: pytest.MonkeyPatch, service: str, keys_only: bool
) -> None:
    # Every record unsent: powertools raises (a function error), and the stream mapping retries the batch
    # within its bounded retries, as after a timeout, only sooner and with the reason in the log. A record with a
    # new image waits on SQS only; a KEYS_ONLY one (from before the stream's upgrade) first reads its job.
    monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", silent_endpoint.url)
    relay = load_function("enqueue_jobs")
    event = load_event("dynamodb/job_inserted.json")
    if keys_only:
        record = event["Records"][0]["dynamodb"]
        del record["NewImage"]
        record["StreamViewType"] = "KEYS_ONLY"
    timeout = 12
    started = time.monotonic()

    with pytest.raises(BatchProcessingError, match="All records failed"):
        relay.lambda_handler(event, Context(seconds=timeout))

    assert time.monotonic() - started < timeout - BUDGET.response_margin_seconds + 0.5
    assert silent_endpoint.accepted, "the relay did call the silent endpoint"
