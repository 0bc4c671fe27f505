"""The local stack's moto server deletes SQS messages under the queue's lock, so a concurrent send is never lost,
and holds messages to SQS's characters (over the wire: tests/integration/test_sqs_message_characters.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import Queue, SQSBackend

from local.moto_server import (
    InvalidMessageContents,
    allowed,
    enforce_message_characters,
    enforce_message_group_ids,
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
    for method in (SQSBackend.send_message, SQSBackend.send_message_batch):
        layers = []
        while hasattr(method, "__wrapped__"):
            layers.append(method)
            method = method.__wrapped__
        assert len(layers) == 2  # the character rule's and the group id rule's, each once


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
