"""The outbox relay's handler with DynamoDB stream events (events/dynamodb), against moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from jobs import bootstrap
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_event, load_function


@pytest.fixture
def outbox(aws: Aws) -> ModuleType:
    return load_function("enqueue_jobs")


def test_an_inserted_job_gets_its_message(outbox: ModuleType, aws: Aws) -> None:
    event = load_event("dynamodb/job_inserted.json")

    response = outbox.lambda_handler(event, FakeLambdaContext())

    [message] = aws.messages()
    assert response == {"batchItemFailures": []}
    assert json.loads(message["Body"]) == {"owner_id": "alice", "job_id": "01a226ee-fede-7c74-8f78-130f6101394b"}


def test_a_record_whose_message_cannot_be_sent_is_retried_from_its_sequence_number(
    outbox: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    event = load_event("dynamodb/job_inserted.json")
    second = json.loads(json.dumps(event["Records"][0]))
    second["dynamodb"]["SequenceNumber"] = "4421584500000000017450439092"
    second["dynamodb"]["Keys"]["job_id"]["S"] = "01a226ee-fede-7c74-8f78-130f6101394c"
    event["Records"].append(second)
    sent: list[str] = []

    def flaky_send(**request: Any) -> dict[str, str]:
        if "394c" in request["MessageBody"]:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "SQS is down"}}, "SendMessage")
        sent.append(request["MessageBody"])
        return {"MessageId": "m-1"}

    queue = bootstrap.outbox_service().queue
    monkeypatch.setattr(queue, "_client", type("Sqs", (), {"send_message": staticmethod(flaky_send)})())

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439092"}]}
    assert len(sent) == 1
