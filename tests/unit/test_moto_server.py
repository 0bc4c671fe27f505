"""The local stack's moto server deletes SQS messages under the queue's lock, so a concurrent send is never lost."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
from moto import mock_aws
from moto.sqs.models import Queue

from local.moto_server import lock_deletes


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
