"""SQS's message characters (SendMessage API reference, MessageBody: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to
#xFFFD | #x10000 to #x10FFFF), held by the local stack's moto server as ``local.stack`` starts it and by the tests'
``mock_aws`` (``tests/conftest.py``): no more lenient than AWS."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.moto_server import enforce_message_characters
from local.ports import free_port
from local.stack import start_moto
from tests.conftest import Aws

#: Characters outside SQS's set that boto3 can put on the wire (it cannot encode a lone surrogate as UTF-8).
REFUSED = ["\x00", "\x08", "\x0b", "\x1f", "\ufffe", "\uffff"]
#: The edges of SQS's set, all allowed.
ALLOWED_EDGES = "\t\n\r\u0020\ud7ff\ue000\ufffd\U00010000\U0010ffff"


@contextmanager
def _moto_server(mode: str) -> Iterator[str]:
    port = free_port()
    process = start_moto(port, mode)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture(scope="module")
def refusing_server() -> Iterator[str]:
    with _moto_server("refuse") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def replacing_server() -> Iterator[str]:
    with _moto_server("replace") as endpoint:
        yield endpoint


def _queue(endpoint: str | None = None) -> tuple[Any, str]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sqs = session.client("sqs", endpoint_url=endpoint)
    return sqs, sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex}")["QueueUrl"]


@pytest.fixture(params=["moto server", "mock_aws"])
def refusing(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """An SQS client and a fresh queue, in the stack's moto server (refuse mode) or the tests' mock_aws."""
    if request.param == "moto server":
        yield _queue(request.getfixturevalue("refusing_server"))
    else:
        with mock_aws():
            yield _queue()


@pytest.fixture(params=["moto server", "mock_aws"])
def replacing(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """As ``refusing``, in replace mode (mock_aws goes back to refuse mode, the tests' rule, afterwards)."""
    if request.param == "moto server":
        yield _queue(request.getfixturevalue("replacing_server"))
    else:
        enforce_message_characters("replace")
        try:
            with mock_aws():
                yield _queue()
        finally:
            enforce_message_characters("refuse")


def _bodies(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(message["Body"] for message in messages)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("character", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_a_message_body_with_a_character_outside_the_set_is_refused(refusing: tuple[Any, str], character: str) -> None:
    sqs, url = refusing

    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=url, MessageBody=f"job{character}")

    error = raised.value.response
    assert error["Error"]["Code"] == "InvalidMessageContents"
    assert error["Error"]["Type"] == "Sender"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert _bodies(sqs, url) == []


def test_a_batch_fails_only_the_entries_with_such_a_character_and_sends_the_rest(refusing: tuple[Any, str]) -> None:
    sqs, url = refusing

    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "first", "MessageBody": "one"},
            {"Id": "bad", "MessageBody": "two\uffff"},
            {"Id": "last", "MessageBody": "three"},
        ],
    )

    assert sorted(entry["Id"] for entry in sent["Successful"]) == ["first", "last"]
    [failed] = sent["Failed"]
    assert failed["Id"] == "bad"
    assert failed["SenderFault"] is True
    assert failed["Code"] == "InvalidMessageContents"
    assert sent["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert _bodies(sqs, url) == ["one", "three"]


def test_a_batch_with_such_a_character_is_still_refused_whole_for_a_whole_request_error(
    refusing: tuple[Any, str],
) -> None:
    sqs, url = refusing
    entries = [{"Id": f"e{n}", "MessageBody": "ok"} for n in range(10)] + [{"Id": "bad", "MessageBody": "\uffff!"}]

    with pytest.raises(ClientError) as raised:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    assert _bodies(sqs, url) == []


def test_a_string_attribute_value_with_such_a_character_is_refused(refusing: tuple[Any, str]) -> None:
    sqs, url = refusing
    attributes = {"kind": {"DataType": "String", "StringValue": "report\x01"}}

    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=url, MessageBody="job", MessageAttributes=attributes)
    batch = sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "job", "MessageAttributes": attributes}]
    )

    assert raised.value.response["Error"]["Code"] == "InvalidMessageContents"
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in batch["Failed"]] == [("a", "InvalidMessageContents", True)]
    assert _bodies(sqs, url) == []


def test_the_characters_at_the_edges_of_the_set_are_accepted_unchanged(refusing: tuple[Any, str]) -> None:
    sqs, url = refusing
    attributes = {"kind": {"DataType": "String", "StringValue": ALLOWED_EDGES}}

    sent = sqs.send_message(QueueUrl=url, MessageBody=ALLOWED_EDGES, MessageAttributes=attributes)
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]

    assert sent["MD5OfMessageBody"] == _md5(ALLOWED_EDGES)
    assert message["Body"] == ALLOWED_EDGES
    assert message["MessageAttributes"]["kind"]["StringValue"] == ALLOWED_EDGES


def test_replace_mode_stores_u_fffd_where_each_such_character_was(replacing: tuple[Any, str]) -> None:
    sqs, url = replacing
    attributes = {"kind": {"DataType": "String", "StringValue": "re\x00port"}}

    sent = sqs.send_message(QueueUrl=url, MessageBody="a\uffffb\x01c", MessageAttributes=attributes)
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "x", "MessageBody": "d\ufffee"}])
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]

    assert batch["Failed"] == []
    by_body = {message["Body"]: message for message in messages}
    assert sorted(by_body) == ["a\ufffdb\ufffdc", "d\ufffde"]
    assert by_body["a\ufffdb\ufffdc"]["MessageAttributes"]["kind"]["StringValue"] == "re\ufffdport"
    # Assumed where AWS is silent: the digest is of the body as stored, the one a receive reports.
    assert sent["MD5OfMessageBody"] == by_body["a\ufffdb\ufffdc"]["MD5OfBody"] == _md5("a\ufffdb\ufffdc")


def test_replace_mode_refuses_a_body_without_one_allowed_character(replacing: tuple[Any, str]) -> None:
    sqs, url = replacing

    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=url, MessageBody="\uffff\x01")

    assert raised.value.response["Error"]["Code"] == "InvalidMessageContents"
    assert _bodies(sqs, url) == []


def test_the_tests_moto_refuses_what_aws_refuses(aws: Aws) -> None:
    # No fixture of this module switches the rule on: tests/conftest.py does, for every test.
    with pytest.raises(ClientError) as raised:
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody='{"job_id": "\uffff"}')

    assert raised.value.response["Error"]["Code"] == "InvalidMessageContents"
