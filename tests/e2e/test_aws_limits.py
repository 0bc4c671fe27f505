"""SQS's limits on the local stack's SQS (moto's server as ``local.moto_server`` runs it), over the real wire:
each refused as AWS refuses it (the SendMessage, SendMessageBatch, ChangeMessageVisibility API references), and the
largest allowed value of each accepted. And the list of 100 jobs of 64 KiB walked through the gateway."""

from __future__ import annotations

import string
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobs_client import JobsClient
from tests.e2e.support import RunningStack, token

#: The MaximumMessageSize the probe queue is given, bytes (SQS allows 1,024 to 1,048,576).
MAX_MESSAGE_BYTES = 262_144


@pytest.fixture(scope="module")
def sqs(stack: RunningStack) -> Any:
    assert stack.process is not None
    return boto3.client(
        "sqs",
        endpoint_url=stack.process.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture(scope="module")
def queue(sqs: Any) -> str:
    """A queue of the stack's SQS that no function polls, with the jobs queues' MaximumMessageSize."""
    attributes = {"MaximumMessageSize": str(MAX_MESSAGE_BYTES)}
    return str(sqs.create_queue(QueueName="limits-probe", Attributes=attributes)["QueueUrl"])


@pytest.fixture(scope="module")
def default_queue(sqs: Any) -> str:
    """A queue with SQS's defaults, as the template's queues have: MaximumMessageSize 1,048,576 bytes (1 MiB)."""
    return str(sqs.create_queue(QueueName="limits-probe-default")["QueueUrl"])


def refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as error:
        call(**kwargs)
    return str(error.value.response["Error"]["Code"])


VALID_GROUP_IDS = ["a", "A" * 128, string.ascii_letters + string.digits, string.punctuation, "owner-1:tenant_2"]
INVALID_GROUP_IDS = ["", "a" * 129, "has space", "tab\t", "é", "😀", "new\nline", "\x7f"]


@pytest.mark.parametrize("group_id", VALID_GROUP_IDS)
def test_a_message_group_id_of_up_to_128_allowed_characters_is_sent(sqs: Any, queue: str, group_id: str) -> None:
    sent = sqs.send_message(QueueUrl=queue, MessageBody="x", MessageGroupId=group_id)
    batch = sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": "0", "MessageBody": "x", "MessageGroupId": group_id}]
    )

    assert sent["MessageId"]
    assert batch.get("Failed", []) == []


@pytest.mark.parametrize("group_id", INVALID_GROUP_IDS)
def test_a_message_group_id_outside_the_rule_is_refused(sqs: Any, queue: str, group_id: str) -> None:
    code = refused(sqs.send_message, QueueUrl=queue, MessageBody="x", MessageGroupId=group_id)
    batch = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "bad", "MessageBody": "x", "MessageGroupId": group_id},
            {"Id": "good", "MessageBody": "x", "MessageGroupId": "g"},
        ],
    )

    assert code == "InvalidParameterValue"
    assert [(f["Id"], f["SenderFault"], f["Code"]) for f in batch["Failed"]] == [("bad", True, "InvalidParameterValue")]
    assert [entry["Id"] for entry in batch["Successful"]] == ["good"]


def test_a_message_past_the_queues_maximum_size_is_refused(sqs: Any, queue: str) -> None:
    assert sqs.send_message(QueueUrl=queue, MessageBody="a" * MAX_MESSAGE_BYTES)["MessageId"]
    assert refused(sqs.send_message, QueueUrl=queue, MessageBody="a" * (MAX_MESSAGE_BYTES + 1)) == (
        "InvalidParameterValue"
    )


def test_a_message_past_the_default_maximum_of_1_mib_is_refused(sqs: Any, default_queue: str) -> None:
    assert sqs.send_message(QueueUrl=default_queue, MessageBody="a" * 1_048_576)["MessageId"]
    assert refused(sqs.send_message, QueueUrl=default_queue, MessageBody="a" * 1_048_577) == "InvalidParameterValue"


def test_a_batch_of_more_than_ten_entries_or_past_the_total_size_is_refused(sqs: Any, default_queue: str) -> None:
    queue = default_queue
    eleven = [{"Id": str(n), "MessageBody": "x"} for n in range(11)]
    too_big = [{"Id": str(n), "MessageBody": "a" * 400_000} for n in range(3)]  # 1.2 MB in all, past 1 MiB

    assert refused(sqs.send_message_batch, QueueUrl=queue, Entries=eleven) == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    )
    assert refused(sqs.send_message_batch, QueueUrl=queue, Entries=too_big) == (
        "AWS.SimpleQueueService.BatchRequestTooLong"
    )


def test_a_delay_past_900_seconds_is_refused(sqs: Any, queue: str) -> None:
    assert sqs.send_message(QueueUrl=queue, MessageBody="x", DelaySeconds=900)["MessageId"]
    assert refused(sqs.send_message, QueueUrl=queue, MessageBody="x", DelaySeconds=901) == "InvalidParameterValue"


def test_a_visibility_timeout_past_12_hours_is_refused(sqs: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="visible")
    handle = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]["ReceiptHandle"]

    # The 12 hours count from the receive, on AWS as here, so a second or two of them have gone.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=43_100)
    code = refused(sqs.change_message_visibility, QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=43_201)

    assert code == "InvalidParameterValue"


def test_a_hundred_jobs_of_64_kib_list_through_the_gateway_in_pages_and_once_each(stack: RunningStack) -> None:
    payload = {"x": "é" * (64 * 1024 // 2 - 8)}  # 64 KiB as stored; six bytes a character escaped in a response
    with JobsClient(stack.base, token("lists-100-x-64k")) as client:
        created = [client.submit(f"j{n}", payload, job_type="noop").job_id for n in range(100)]
        listed = [job.job_id for job in client.list(page_size=100)]
        first = client.list_page(limit=100)

    assert listed == created[::-1]
    assert first.next_token is not None
    assert 0 < len(first.items) < 100
