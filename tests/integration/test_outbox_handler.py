"""The outbox relay's handler with DynamoDB stream events (events/dynamodb), against moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

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


def inserted(count: int) -> dict[str, Any]:
    """A stream batch of ``count`` INSERT records of alice's jobs, sequence numbers ascending."""
    event = load_event("dynamodb/job_inserted.json")
    template = event["Records"][0]
    records = []
    for n in range(count):
        record = json.loads(json.dumps(template))
        record["dynamodb"]["SequenceNumber"] = str(4421584500000000017450439000 + n)
        record["dynamodb"]["Keys"]["job_id"]["S"] = f"01a226ee-fede-7c74-8f78-1301{n:08x}"
        records.append(record)
    return {"Records": records}


class RecordingSqs:
    """Stands in for the relay's SQS client: records each SendMessageBatch call; entries whose body holds a
    string of ``refuse`` come back in ``Failed``, and a call with ``down`` set raises SQS's 503."""

    def __init__(self, refuse: tuple[str, ...] = (), down: bool = False) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.refuse = refuse
        self.down = down

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        from botocore.exceptions import ClientError

        self.calls.append(Entries)
        if self.down:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "SQS is down"}}, "SendMessageBatch")
        refused = [e for e in Entries if any(text in e["MessageBody"] for text in self.refuse)]
        return {
            "Successful": [{"Id": e["Id"], "MessageId": f"m-{e['Id']}"} for e in Entries if e not in refused],
            "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in refused],
        }


def test_a_batch_goes_out_ten_messages_per_call(outbox: ModuleType, aws: Aws, recorder_sqs: Any) -> None:
    event = inserted(25)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert [len(call) for call in recorder_sqs] == [10, 10, 5]
    sent = sorted(json.loads(m["Body"])["job_id"] for m in aws.messages())
    assert sent == sorted(r["dynamodb"]["Keys"]["job_id"]["S"] for r in event["Records"])


@pytest.fixture
def recorder_sqs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operation names of the relay's real (moto) SQS client's calls, in order."""
    from jobs import aws as jobs_aws

    calls: list[Any] = []
    client = jobs_aws.client("sqs")
    original = client.send_message_batch

    def counted(**request: Any) -> Any:
        calls.append(request["Entries"])
        return original(**request)

    monkeypatch.setattr(client, "send_message_batch", counted)
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", client)
    return calls


def test_a_refused_entry_is_retried_from_its_records_sequence_number(
    outbox: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = inserted(12)
    refused = event["Records"][11]["dynamodb"]
    sqs = RecordingSqs(refuse=(refused["Keys"]["job_id"]["S"],))
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": refused["SequenceNumber"]}]}
    assert [len(call) for call in sqs.calls] == [10, 2]


def test_a_failed_call_reports_each_of_its_records_and_no_other(
    outbox: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = inserted(12)
    sqs = RecordingSqs()
    original = sqs.send_message_batch

    def second_call_fails(**request: Any) -> dict[str, Any]:
        sqs.down = len(sqs.calls) == 1
        return original(**request)

    monkeypatch.setattr(sqs, "send_message_batch", second_call_fails)
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    failed = [r["dynamodb"]["SequenceNumber"] for r in event["Records"][10:]]
    assert response == {"batchItemFailures": [{"itemIdentifier": number} for number in failed]}


def test_after_a_failed_call_the_rest_of_the_batch_is_not_sent_but_reported(
    outbox: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = inserted(25)
    sqs = RecordingSqs(down=True)
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    with pytest.raises(BatchProcessingError):  # every record failed: a function error, the whole batch retried
        outbox.lambda_handler(event, FakeLambdaContext())

    assert len(sqs.calls) == 1  # Lambda retries from the first record: the later ones would be sent twice


def test_after_a_refused_entry_the_next_calls_are_not_made(outbox: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    event = inserted(25)
    refused = event["Records"][3]["dynamodb"]
    sqs = RecordingSqs(refuse=(refused["Keys"]["job_id"]["S"],))
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert len(sqs.calls) == 1
    failed = [r["dynamodb"]["SequenceNumber"] for r in event["Records"][3:4] + event["Records"][10:]]
    assert response == {"batchItemFailures": [{"itemIdentifier": number} for number in failed]}


def test_a_record_whose_keys_name_no_job_fails_alone(outbox: ModuleType, aws: Aws) -> None:
    event = inserted(3)
    del event["Records"][1]["dynamodb"]["Keys"]["job_id"]

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
    assert len(aws.messages()) == 2
