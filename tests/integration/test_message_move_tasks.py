"""moto's SQS as the local stack serves it plays StartMessageMoveTask and ListMessageMoveTasks (which moto 5.2.5
lacks), over boto3's wire under ``mock_aws`` (tests/conftest.py applies local.moto_server's patches)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def queue(sqs: Any, name: str, dead_letters: str | None = None) -> tuple[str, str]:
    attributes = {}
    if dead_letters is not None:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_letters, "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def bodies(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return sorted(message["Body"] for message in messages.get("Messages", []))


def test_a_task_moves_the_dead_letters_back_to_their_source_queue(sqs: Any) -> None:
    dlq_url, dlq_arn = queue(sqs, "dlq")
    source_url, _ = queue(sqs, "source", dead_letters=dlq_arn)
    for n in range(3):
        sqs.send_message(
            QueueUrl=dlq_url, MessageBody=f"m{n}", MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}}
        )

    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]

    assert handle
    assert (tasks[0]["Status"], tasks[0]["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 3)
    assert bodies(sqs, dlq_url) == []
    assert bodies(sqs, source_url) == ["m0", "m1", "m2"]


def test_a_task_with_a_destination_moves_there_and_received_messages_stay(sqs: Any) -> None:
    dlq_url, dlq_arn = queue(sqs, "dlq")
    other_url, other_arn = queue(sqs, "other")
    sqs.send_message(QueueUrl=dlq_url, MessageBody="in-flight")
    sqs.receive_message(QueueUrl=dlq_url, VisibilityTimeout=60)
    sqs.send_message(QueueUrl=dlq_url, MessageBody="visible")

    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=other_arn)

    assert bodies(sqs, other_url) == ["visible"]
    counts = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert counts["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


@pytest.mark.parametrize("which", ["unknown", "not-a-dead-letter-queue"])
def test_a_task_from_a_queue_that_is_not_a_dead_letter_queue_is_refused(sqs: Any, which: str) -> None:
    _, plain_arn = queue(sqs, "plain")
    source = plain_arn if which != "unknown" else plain_arn + "-missing"

    with pytest.raises(ClientError) as error:
        sqs.start_message_move_task(SourceArn=source)

    expected = "ResourceNotFoundException" if which == "unknown" else "InvalidParameterValue"
    assert error.value.response["Error"]["Code"] == expected
