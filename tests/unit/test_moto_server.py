"""The local stack's moto server deletes SQS messages under the queue's lock, so a concurrent send is never lost,
and holds messages to SQS's characters (over the wire: tests/integration/test_sqs_message_characters.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sqs.models import Queue, SQSBackend

from local.moto_server import (
    InvalidMessageContents,
    allowed,
    enforce_message_characters,
    enforce_message_group_ids,
    enforce_visibility_limits,
    lock_deletes,
)
from local.stack import Stack


def _queue_model(url: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends["123456789012"]["us-east-1"].get_queue(url.rsplit("/", 1)[-1])


def test_a_delete_waits_for_the_queue_lock_that_sends_hold() -> None:
    lock_deletes()
    lock_deletes()  # idempotent: one wrapper, not two
    assert getattr(Queue.delete_message, "__wrapped__", None) is not None
    assert getattr(Queue.delete_message.__wrapped__, "__wrapped__", None) is None  # type: ignore[attr-defined]
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m")
        [message] = sqs.receive_message(QueueUrl=url)["Messages"]
        queue = _queue_model(url)
        deleted = threading.Event()

        def delete() -> None:
            queue.delete_message(message["ReceiptHandle"])
            deleted.set()

        with queue._messages_lock:  # what add_message holds while it appends
            worker = threading.Thread(target=delete)
            worker.start()
            time.sleep(0.2)
            assert not deleted.is_set()  # the delete cannot rebuild the list under a send
        worker.join(5)
        assert deleted.is_set()
        assert (
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
                "ApproximateNumberOfMessagesNotVisible"
            ]
            == "0"
        )


def test_the_character_rule_patches_moto_once_and_a_later_call_only_switches_the_mode() -> None:
    enforce_message_characters("replace")
    enforce_message_characters("refuse")  # the tests' rule (tests/conftest.py), restored
    enforce_message_group_ids()  # tests/conftest.py applied it once already
    enforce_visibility_limits()
    # The character rule's and the group id rule's, each once, and on SendMessage the delay rule's.
    for method, expected in ((SQSBackend.send_message, 3), (SQSBackend.send_message_batch, 2)):
        layers = []
        while hasattr(method, "__wrapped__"):
            layers.append(method)
            method = method.__wrapped__
        assert len(layers) == expected


def test_a_lone_surrogate_that_reaches_moto_is_outside_the_set() -> None:
    # boto3 cannot encode one as UTF-8, but a decoded request may hold one; U+D7FF and U+E000 border them.
    with pytest.raises(InvalidMessageContents):
        allowed("a\ud800b", "message body", "refuse")
    assert allowed("a\udfffb", "message body", "replace") == "a\ufffdb"
    assert allowed("\ud7ff\ue000", "message body", "refuse") == "\ud7ff\ue000"


@pytest.mark.parametrize("mode", ["", "lenient", "Refuse"])
def test_an_unknown_mode_is_refused_by_the_patch_and_by_the_stack(mode: str) -> None:
    with pytest.raises(ValueError, match="JOBS_LOCAL_SQS_INVALID_CHARACTERS"):
        enforce_message_characters(mode)
    with pytest.raises(SystemExit, match="JOBS_LOCAL_SQS_INVALID_CHARACTERS"):
        Stack(sqs_invalid_characters=mode)


# --- visibility and delay limits (enforce_visibility_limits) -------------------------------------------------------


def _received(sqs: Any, url: str, **send: Any) -> str:
    sqs.send_message(QueueUrl=url, MessageBody="m", **send)
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    return str(message["ReceiptHandle"])


def test_change_message_visibility_takes_0_to_43200_seconds_counted_from_the_receive() -> None:
    enforce_visibility_limits()
    enforce_visibility_limits()  # idempotent
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="limits")["QueueUrl"]
        receipt = _received(sqs, url)
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
        receipt = _received_again(sqs, url)
        for refused in (-1, 43201):
            with pytest.raises(ClientError) as error:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=refused)
            assert error.value.response["Error"]["Code"] == "InvalidParameterValue"
        # 12 hours from the receive: a message received 2 s ago can no longer be hidden the whole 43200 s.
        queue = _queue_model(url)
        [model] = queue._messages
        model._jobs_local_received_at -= 2000
        with pytest.raises(ClientError) as beyond:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=43200)
        assert beyond.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]" in str(beyond.value)
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=43190)


def test_the_12_hours_count_from_the_latest_receive_not_from_the_send() -> None:
    enforce_visibility_limits()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="late")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m")
        [model] = _queue_model(url)._messages
        model.sent_timestamp -= 3600 * 1000  # sent an hour ago (a delayed message, say), received now
        receipt = _received_again(sqs, url)
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=43000)  # AWS takes it


def _received_again(sqs: Any, url: str) -> str:
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=30)["Messages"]
    return str(message["ReceiptHandle"])


def test_delay_seconds_is_0_to_900() -> None:
    enforce_visibility_limits()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="delays")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m", DelaySeconds=900)
        for refused in (-1, 901):
            with pytest.raises(ClientError) as error:
                sqs.send_message(QueueUrl=url, MessageBody="m", DelaySeconds=refused)
            assert error.value.response["Error"]["Code"] == "InvalidParameterValue"
        batch = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "ok", "MessageBody": "m", "DelaySeconds": 0},
                {"Id": "negative", "MessageBody": "m", "DelaySeconds": -5},
                {"Id": "long", "MessageBody": "m", "DelaySeconds": 901},
            ],
        )
        assert [entry["Id"] for entry in batch["Successful"]] == ["ok"]
        assert sorted(entry["Id"] for entry in batch["Failed"]) == ["long", "negative"]
        assert all(entry["SenderFault"] for entry in batch["Failed"])
