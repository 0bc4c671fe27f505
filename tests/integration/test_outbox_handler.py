"""The outbox relay's handler with DynamoDB stream events (events/dynamodb), against moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from jobs import bootstrap
from jobs.models import JobCreate
from jobs.service import JobService
from jobs.store import InMemoryJobStore, job_to_item
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

    def __init__(self, refuse: tuple[str, ...] = (), down: bool = False, sender_fault: bool = False) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.refuse = refuse
        self.down = down
        self.sender_fault = sender_fault

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        from botocore.exceptions import ClientError

        self.calls.append(Entries)
        if self.down:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "SQS is down"}}, "SendMessageBatch")
        refused = [e for e in Entries if any(text in e["MessageBody"] for text in self.refuse)]
        return {
            "Successful": [{"Id": e["Id"], "MessageId": f"m-{e['Id']}"} for e in Entries if e not in refused],
            "Failed": [
                {
                    "Id": e["Id"],
                    "SenderFault": self.sender_fault,
                    "Code": "InvalidMessageContents" if self.sender_fault else "InternalError",
                }
                for e in refused
            ],
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


@pytest.mark.parametrize(
    "keys",
    [
        {"owner_id": {"S": "alice"}},  # no job_id
        {"job_id": {"S": "01a226ee-fede-7c74-8f78-130f6101394b"}},  # no owner_id
        {"owner_id": {"S": ""}, "job_id": {"S": "01a226ee-fede-7c74-8f78-130f6101394b"}},
        {"owner_id": {"N": "1"}, "job_id": {"S": "01a226ee-fede-7c74-8f78-130f6101394b"}},
        {},
        None,
    ],
)
def test_a_record_whose_keys_name_no_job_is_acknowledged_and_the_others_sent(
    outbox: ModuleType, aws: Aws, keys: dict[str, Any] | None
) -> None:
    event = inserted(3)
    event["Records"][1]["dynamodb"]["Keys"] = keys

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}  # retrying it could never help: it would stall the shard
    assert len(aws.messages()) == 2


def put_queued(aws: Aws, owner_id: str) -> str:
    """A QUEUED job of ``owner_id`` written straight into the table (as an older version or a migration could)."""
    job = JobService(InMemoryJobStore()).create_job(owner_id, JobCreate(title="t", type="noop"))
    aws.dynamodb.put_item(TableName=aws.table_name, Item=job_to_item(job))
    return job.job_id


def item(aws: Aws, owner_id: str, job_id: str) -> dict[str, Any]:
    key = {"owner_id": {"S": owner_id}, "job_id": {"S": job_id}}
    return dict(aws.dynamodb.get_item(TableName=aws.table_name, Key=key, ConsistentRead=True)["Item"])


@pytest.mark.parametrize("owner_id", ["\uffff", "a b", "\u00e9", "x" * 256, "\U0001f600", "tab\there"])
def test_a_job_whose_owner_no_token_can_hold_ends_failed_and_the_shard_moves_on(
    outbox: ModuleType, aws: Aws, owner_id: str
) -> None:
    event = inserted(3)
    bad = put_queued(aws, owner_id)
    event["Records"][1]["dynamodb"]["Keys"] = {"owner_id": {"S": owner_id}, "job_id": {"S": bad}}

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    failed = item(aws, owner_id, bad)
    assert failed["status"]["S"] == "FAILED"
    assert failed["error"]["M"]["type"]["S"] == "InvalidOwner"
    assert "queued_shard" not in failed  # out of the reconciler's index
    assert sorted(json.loads(m["Body"])["job_id"] for m in aws.messages()) == sorted(
        r["dynamodb"]["Keys"]["job_id"]["S"] for r in (event["Records"][0], event["Records"][2])
    )


def test_a_job_whose_owner_dynamodb_cannot_hold_is_acknowledged(outbox: ModuleType, aws: Aws) -> None:
    event = inserted(2)
    event["Records"][0]["dynamodb"]["Keys"]["owner_id"]["S"] = "x" * 2049  # past the partition key limit

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert len(aws.messages()) == 1


def test_an_entry_sqs_refuses_as_the_senders_fault_fails_its_job_once(
    outbox: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = put_queued(aws, "alice")
    event = inserted(3)
    event["Records"][1]["dynamodb"]["Keys"]["job_id"]["S"] = refused
    sqs = RecordingSqs(refuse=(refused,), sender_fault=True)
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert item(aws, "alice", refused)["error"]["M"] == {
        "type": {"S": "MessageRefused"},
        "message": {"S": "SQS refused the job's message (InvalidMessageContents)"},
    }
    assert len(sqs.calls) == 1  # the others were sent once, not again and again
