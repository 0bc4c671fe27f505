"""The local SQS event source mapping: partial batch responses, whole-batch failures, and redrive."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.poller import SqsPoller, failed_ids
from local.runtime import Invocation


class RecordingFunction:
    """Stands in for a function pool: answers each batch with ``respond(records)`` and keeps the batches."""

    def __init__(self, respond: Any) -> None:
        self.respond = respond
        self.batches: list[list[dict[str, Any]]] = []

    def invoke(self, event: dict[str, Any]) -> Invocation:
        self.batches.append(event["Records"])
        outcome: Invocation = self.respond(event["Records"])
        return outcome


@pytest.fixture
def sqs() -> Any:
    with mock_aws():
        yield boto3.client("sqs")


def make_queue(sqs: Any, max_receive_count: int = 2) -> tuple[str, str, str]:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "0", "RedrivePolicy": redrive})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq


def poller(sqs: Any, url: str, arn: str, function: RecordingFunction) -> SqsPoller:
    return SqsPoller(sqs, url, arn, function, batch_size=10, pollers=1, log=lambda line: None)  # type: ignore[arg-type]


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_records_reported_as_failed_stay_and_the_rest_are_deleted(sqs: Any) -> None:
    url, arn, _ = make_queue(sqs)
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    function = RecordingFunction(
        lambda records: Invocation(
            payload={"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"] == "m1"]}
        )
    )

    poller(sqs, url, arn, function).poll_once()

    [batch] = function.batches
    assert sorted(r["body"] for r in batch) == ["m0", "m1", "m2"]
    assert batch[0]["eventSource"] == "aws:sqs"
    assert batch[0]["eventSourceARN"] == arn
    assert batch[0]["attributes"]["ApproximateReceiveCount"] == "1"
    remaining = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in remaining] == ["m1"]


@pytest.mark.parametrize(
    "outcome",
    [
        Invocation(error={"errorType": "RuntimeError", "errorMessage": "crash"}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": ""}]}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": None}]}),
    ],
)
def test_a_function_error_or_a_bad_failure_list_fails_the_whole_batch(sqs: Any, outcome: Invocation) -> None:
    url, arn, _ = make_queue(sqs)
    for n in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")

    poller(sqs, url, arn, RecordingFunction(lambda records: outcome)).poll_once()

    assert visible(sqs, url) == 2


def test_a_message_that_keeps_failing_moves_to_the_dead_letter_queue(sqs: Any) -> None:
    url, arn, dlq = make_queue(sqs, max_receive_count=2)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    function = RecordingFunction(
        lambda records: Invocation(payload={"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]})
    )
    mapping = poller(sqs, url, arn, function)

    received = [mapping.poll_once() for _ in range(4)]

    assert received[:2] == [1, 1]
    assert len(function.batches) == 2
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dlq).get("Messages", [])] == ["poison"]


def test_failed_ids_reads_the_partial_batch_response() -> None:
    ids = {"a", "b"}

    assert failed_ids(None, ids) == set()
    assert failed_ids({"batchItemFailures": []}, ids) == set()
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "a"}]}, ids) == {"a"}
    assert failed_ids({"batchItemFailures": "oops"}, ids) == ids
