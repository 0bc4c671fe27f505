"""The outbox relay's handler with DynamoDB stream events (events/dynamodb), against moto.

The stream is NEW_AND_OLD_IMAGES: a record carries the job's item as its new image, and the relay sends the job's
message to its priority's queue without reading the table. A KEYS_ONLY record (written before the stream's upgrade,
still in its 24 hours) carries keys only: its job is read from the table first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from jobs import bootstrap, settings
from jobs.models import Job, JobCreate, JobPriority, JobStatus, format_timestamp, utc_now
from jobs.service import JobService
from jobs.store import InMemoryJobStore, job_to_item
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, inserted_record, load_event, load_function

#: Each priority's queue (logical id in template.yaml).
QUEUES = {
    JobPriority.HIGH: "JobsHighPriorityQueue",
    JobPriority.NORMAL: "JobsQueue",
    JobPriority.LOW: "JobsLowPriorityQueue",
}
FIRST_SEQUENCE_NUMBER = 4421584500000000017450439000


@pytest.fixture
def outbox(aws: Aws) -> ModuleType:
    return load_function("enqueue_jobs")


def queue_url(aws: Aws, priority: JobPriority) -> str:
    return aws.physical[QUEUES[priority]]["Ref"]


def sent(aws: Aws, priority: JobPriority = JobPriority.NORMAL) -> list[str]:
    """The job ids of the messages on ``priority``'s queue, sorted."""
    return sorted(json.loads(m["Body"])["job_id"] for m in aws.messages(queue_url(aws, priority)))


def new_job(owner_id: str = "alice", n: int = 0, **update: Any) -> Job:
    """A QUEUED job as the API creates it (not stored), its id ending in ``n``, with ``update`` applied."""
    job = JobService(InMemoryJobStore()).create_job(owner_id, JobCreate(title="t", type="noop"))
    return job.model_copy(update={"job_id": f"01a226ee-fede-7c74-8f78-1301{n:08x}", **update})


def test_the_sample_event_is_the_record_the_stream_writes_for_the_seed_job() -> None:
    [record] = load_event("dynamodb/job_inserted.json")["Records"]
    request = JobCreate.model_validate(load_event("seed-payload.json"))
    created = datetime(2026, 11, 29, 10, 52, 7, tzinfo=UTC)  # events/api/create_job.json's time
    job = Job(
        owner_id="alice",
        job_id="01a226ee-fede-7c74-8f78-130f6101394b",
        title=request.title,
        type=request.type,
        status=JobStatus.QUEUED,
        payload=request.payload,
        created_at=created,
        updated_at=created,
        priority=request.effective_priority,
    )

    assert record == {**inserted_record(job, record["dynamodb"]["SequenceNumber"]), "eventID": record["eventID"]}


def test_an_inserted_job_gets_its_message_on_its_prioritys_queue(outbox: ModuleType, aws: Aws) -> None:
    event = load_event("dynamodb/job_inserted.json")  # the seed job: payload.priority HIGH

    response = outbox.lambda_handler(event, FakeLambdaContext())

    [message] = aws.messages(queue_url(aws, JobPriority.HIGH))
    assert response == {"batchItemFailures": []}
    assert json.loads(message["Body"]) == {"owner_id": "alice", "job_id": "01a226ee-fede-7c74-8f78-130f6101394b"}
    assert message["Attributes"]["MessageGroupId"] == "alice"  # fair queues: grouped by owner
    assert sent(aws, JobPriority.NORMAL) == []
    assert aws.item_count() == 0  # sent from the record's image: the table was not needed


def inserted(count: int, owner_id: str = "alice", **update: Any) -> dict[str, Any]:
    """A stream batch of ``count`` INSERT records (with new images) of ``owner_id``'s jobs, sequence numbers
    ascending."""
    return {
        "Records": [inserted_record(new_job(owner_id, n, **update), FIRST_SEQUENCE_NUMBER + n) for n in range(count)]
    }


def job_ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["dynamodb"]["Keys"]["job_id"]["S"] for r in records)


class RecordingSqs:
    """Stands in for the relay's SQS client: records each SendMessageBatch call (its entries, and its queue in
    ``urls``); entries whose body holds a string of ``refuse`` come back in ``Failed``, and a call with ``down`` set
    raises SQS's 503."""

    def __init__(self, refuse: tuple[str, ...] = (), down: bool = False, sender_fault: bool = False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.urls: list[str] = []
        self.refuse = refuse
        self.down = down
        self.sender_fault = sender_fault

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(Entries)
        self.urls.append(QueueUrl)
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
    assert sent(aws) == job_ids(event["Records"])


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


def put_queued(aws: Aws, owner_id: str, **update: Any) -> Job:
    """A QUEUED job of ``owner_id`` (with ``update`` applied) written straight into the table, as the API (or an
    older version, or a migration) writes it."""
    job = JobService(InMemoryJobStore()).create_job(owner_id, JobCreate(title="t", type="noop"))
    job = job.model_copy(update=update)
    aws.dynamodb.put_item(TableName=aws.table_name, Item=job_to_item(job))
    return job


def item(aws: Aws, owner_id: str, job_id: str) -> dict[str, Any]:
    key = {"owner_id": {"S": owner_id}, "job_id": {"S": job_id}}
    return dict(aws.dynamodb.get_item(TableName=aws.table_name, Key=key, ConsistentRead=True)["Item"])


@pytest.mark.parametrize("keys_only", [False, True], ids=["new-image", "keys-only"])
@pytest.mark.parametrize("owner_id", ["\uffff", "a b", "\u00e9", "x" * 256, "\U0001f600", "tab\there"])
def test_a_job_whose_owner_no_token_can_hold_ends_failed_and_the_shard_moves_on(
    outbox: ModuleType, aws: Aws, owner_id: str, keys_only: bool
) -> None:
    event = inserted(3)
    bad = put_queued(aws, owner_id)
    event["Records"][1] = inserted_record(bad, event["Records"][1]["dynamodb"]["SequenceNumber"], keys_only=keys_only)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    failed = item(aws, owner_id, bad.job_id)
    assert failed["status"]["S"] == "FAILED"
    assert failed["error"]["M"]["type"]["S"] == "InvalidOwner"
    assert "queued_shard" not in failed  # out of the reconciler's index
    assert sent(aws) == job_ids([event["Records"][0], event["Records"][2]])


@pytest.mark.parametrize("keys_only", [False, True], ids=["new-image", "keys-only"])
def test_a_job_whose_owner_dynamodb_cannot_hold_is_acknowledged(outbox: ModuleType, aws: Aws, keys_only: bool) -> None:
    event = inserted(2)
    unholdable = new_job("x" * 2049)  # past the partition key limit: no such item can exist
    event["Records"][0] = inserted_record(
        unholdable, event["Records"][0]["dynamodb"]["SequenceNumber"], keys_only=keys_only
    )

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert sent(aws) == job_ids(event["Records"][1:])


def test_an_entry_sqs_refuses_as_the_senders_fault_fails_its_job_once(
    outbox: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = put_queued(aws, "alice", job_id="01a226ee-fede-7c74-8f78-1301ffffffff")
    event = inserted(3)
    event["Records"][1] = inserted_record(refused, event["Records"][1]["dynamodb"]["SequenceNumber"])
    sqs = RecordingSqs(refuse=(refused.job_id,), sender_fault=True)
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert item(aws, "alice", refused.job_id)["error"]["M"] == {
        "type": {"S": "MessageRefused"},
        "message": {"S": "SQS refused the job's message (InvalidMessageContents)"},
    }
    assert len(sqs.calls) == 1  # the others were sent once, not again and again


def test_each_job_goes_to_its_prioritys_queue_one_call_per_queue(outbox: ModuleType, aws: Aws) -> None:
    priorities = [JobPriority.LOW, JobPriority.HIGH, JobPriority.NORMAL, JobPriority.HIGH, JobPriority.LOW]
    event = {
        "Records": [
            inserted_record(new_job("alice", n, priority=priority), FIRST_SEQUENCE_NUMBER + n)
            for n, priority in enumerate(priorities)
        ]
    }

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    for priority in JobPriority:
        expected = [r for r, p in zip(event["Records"], priorities, strict=True) if p == priority]
        assert sent(aws, priority) == job_ids(expected), priority


def test_each_queue_gets_one_call_for_its_share_of_the_batch(
    outbox: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    priorities = [JobPriority.LOW, JobPriority.HIGH, JobPriority.NORMAL, JobPriority.HIGH, JobPriority.LOW]
    event = {
        "Records": [
            inserted_record(new_job("alice", n, priority=priority), FIRST_SEQUENCE_NUMBER + n)
            for n, priority in enumerate(priorities)
        ]
    }
    sqs = RecordingSqs()
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    queues = settings.queue_settings()
    calls = {url: len(entries) for url, entries in zip(sqs.urls, sqs.calls, strict=True)}
    assert calls == {queues.low_priority_queue_url: 2, queues.high_priority_queue_url: 2, queues.queue_url: 1}
    assert all(entry["MessageGroupId"] == "alice" for call in sqs.calls for entry in call)


def test_a_scheduled_job_is_sent_delayed_towards_its_start_with_its_start_as_an_attribute(
    outbox: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utc_now()
    soon, later = now + timedelta(minutes=10), now + timedelta(days=2)
    event = {
        "Records": [
            inserted_record(new_job("alice", 0), FIRST_SEQUENCE_NUMBER),
            inserted_record(new_job("alice", 1, not_before=soon), FIRST_SEQUENCE_NUMBER + 1),
            inserted_record(new_job("alice", 2, not_before=later), FIRST_SEQUENCE_NUMBER + 2),
        ]
    }
    sqs = RecordingSqs()
    monkeypatch.setattr(bootstrap.outbox_service().queue, "_client", sqs)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    [[due, in_ten_minutes, in_two_days]] = sqs.calls
    assert "DelaySeconds" not in due
    assert "MessageAttributes" not in due
    assert 590 <= in_ten_minutes["DelaySeconds"] <= 600
    assert in_two_days["DelaySeconds"] == 900  # SQS's most; the consumer hides it further
    for entry, start in ((in_ten_minutes, soon), (in_two_days, later)):
        assert entry["MessageAttributes"] == {
            "not_before": {"DataType": "String", "StringValue": format_timestamp(start)}
        }


# --- KEYS_ONLY records: written before the stream's upgrade to NEW_AND_OLD_IMAGES; the job is read ------------


def test_a_keys_only_record_of_a_queued_job_is_sent_to_the_queue_the_stored_job_names(
    outbox: ModuleType, aws: Aws
) -> None:
    job = put_queued(aws, "alice", priority=JobPriority.LOW)
    event = {"Records": [inserted_record(job, FIRST_SEQUENCE_NUMBER, keys_only=True)]}

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert sent(aws, JobPriority.LOW) == [job.job_id]
    assert sent(aws, JobPriority.NORMAL) == []


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.CANCELLED, None])
def test_a_keys_only_record_of_a_job_gone_or_no_longer_queued_is_settled_without_a_message(
    outbox: ModuleType, aws: Aws, status: JobStatus | None
) -> None:
    job = new_job("alice", 7)
    if status is not None:  # None: deleted since (or never written)
        aws.dynamodb.put_item(TableName=aws.table_name, Item=job_to_item(job.model_copy(update={"status": status})))
    event = inserted(2)
    event["Records"].append(inserted_record(job, FIRST_SEQUENCE_NUMBER + 2, keys_only=True))

    response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert sent(aws) == job_ids(event["Records"][:2])  # no message for it: nothing could start it twice


def test_a_keys_only_record_whose_read_is_throttled_is_retried_and_the_others_sent(
    outbox: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = put_queued(aws, "alice")
    event = inserted(2)
    event["Records"].append(inserted_record(job, FIRST_SEQUENCE_NUMBER + 2, keys_only=True))

    client = bootstrap.outbox_service().store.client  # type: ignore[attr-defined]
    original, throttling = client.get_item, [True]

    def throttled(**request: Any) -> Any:
        if throttling[0]:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "GetItem"
            )
        return original(**request)

    monkeypatch.setattr(client, "get_item", throttled)

    response = outbox.lambda_handler(event, FakeLambdaContext())

    throttled_number = event["Records"][2]["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": throttled_number}]}
    assert sent(aws) == job_ids(event["Records"][:2])

    throttling[0] = False  # Lambda retries from the reported record once the table answers again
    retried = outbox.lambda_handler({"Records": event["Records"][2:]}, FakeLambdaContext())

    assert retried == {"batchItemFailures": []}
    assert sent(aws) == [job.job_id]
