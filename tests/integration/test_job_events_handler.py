"""The Job State Change publisher (functions/publish_events) against moto: real stream records of the Jobs table
(NEW_AND_OLD_IMAGES, written by the store's own transitions) in, events on the stack's bus out, read back through
a rule that delivers them to an SQS queue, and each validated against docs/job-state-change.schema.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import jsonschema  # type: ignore[import-untyped]
import pytest
from moto.events.models import EventsBackend

from jobs.events import EVENT_SOURCE, TTL_IDENTITY
from jobs.models import JobCreate, JobError, JobStatus
from jobs.service import JobService
from jobs.store import DynamoJobStore
from local.moto_events import play_eventbridge
from local.stack import JOB_EVENTS_SOURCE
from local.streams import to_record
from tests.conftest import Aws
from tests.helpers import ROOT, FakeLambdaContext, load_function

SCHEMA = json.loads((ROOT / "docs" / "job-state-change.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
T = "2026-12-01T10:00:{:02d}.000Z"


class Bus:
    """The stack's bus in moto, with a rule that copies every job event to a queue."""

    def __init__(self, aws: Aws) -> None:
        self.name = aws.physical["JobEventsBus"]["Ref"]
        self.sqs = boto3.client("sqs")
        self.url = self.sqs.create_queue(QueueName="tap")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(Name="tap", EventBusName=self.name, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
        events.put_targets(Rule="tap", EventBusName=self.name, Targets=[{"Id": "q", "Arn": arn}])

    def received(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            found.extend(json.loads(message["Body"]) for message in batch)
        return found


@pytest.fixture
def publisher(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("JOBS_EVENT_BUS_NAME", aws.physical["JobEventsBus"]["Ref"])
    return load_function("publish_events")


@pytest.fixture
def bus(aws: Aws) -> Bus:
    play_eventbridge()  # as the local stack's moto server does: AWS's PutEvents limits and whole events
    return Bus(aws)


def stream_records(aws: Aws, identities: dict[int, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every record of the Jobs table's stream so far, as Lambda delivers them (the local stack's conversion);
    ``identities`` gives the ``userIdentity`` of the records at those positions (TTL's deletes)."""
    streams = boto3.client("dynamodbstreams")
    arn = aws.physical["JobsTable"]["StreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        records.extend(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])
    return [to_record(r, arn, (identities or {}).get(i)) for i, r in enumerate(records)]


def a_job(aws: Aws, job_type: str = "noop") -> tuple[DynamoJobStore, str]:
    store = DynamoJobStore(aws.table_name)
    job = JobService(store).create_job("alice", JobCreate(title="t", type=job_type, payload={"secret": "s3cr3t"}))
    return store, job.job_id


def test_each_status_change_publishes_its_event_and_nothing_else_does(
    publisher: ModuleType, bus: Bus, aws: Aws
) -> None:
    store, job_id = a_job(aws)
    store.start("alice", job_id, now_text=T.format(1), stale_before_text=T.format(0), run_id="r1")
    store.report_progress("alice", job_id, run_id="r1", now_text=T.format(2), percent=50, message="half")
    store.save_checkpoint("alice", job_id, run_id="r1", now_text=T.format(3), checkpoint={"n": 1}, release=False)
    store.requeue("alice", job_id, run_id="r1", now_text=T.format(4), error=JobError(type="Flaky", message="again"))
    store.start("alice", job_id, now_text=T.format(5), stale_before_text=T.format(0), run_id="r2")
    store.finish("alice", job_id, run_id="r2", status=JobStatus.SUCCEEDED, now_text=T.format(6), result={"ok": 1})
    store.delete("alice", job_id)
    records = stream_records(aws)

    response = publisher.lambda_handler({"Records": records}, FakeLambdaContext())

    events = bus.received()
    assert response == {"batchItemFailures": []}
    assert [(e["detail"]["previous_status"], e["detail"]["status"]) for e in events] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
        ("SUCCEEDED", "DELETED"),
    ]
    for event in events:
        VALIDATOR.validate(event)
        assert event["source"] == EVENT_SOURCE == JOB_EVENTS_SOURCE
        assert event["detail-type"] == "Job State Change"
        assert "s3cr3t" not in json.dumps(event)  # never the payload, the result or the checkpoint
        assert not {"payload", "result", "checkpoint", "progress"} & set(event["detail"])
    versions = [int(e["detail"]["version"]) for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert [e["detail"]["attempts"] for e in events] == [0, 1, 1, 2, 2, 2]
    assert events[2]["detail"]["error"] == {"type": "Flaky", "message": "again"}
    assert events[-1]["detail"]["deleted_by"] == "owner"
    assert events[4]["time"] == "2026-12-01T10:00:06Z"  # the change's own time


def test_a_delete_by_ttl_is_told_from_the_owners(publisher: ModuleType, bus: Bus, aws: Aws) -> None:
    store, expiring = a_job(aws)
    _, deleted = a_job(aws)
    store.delete("alice", deleted)
    boto3.client("dynamodb").delete_item(
        TableName=aws.table_name, Key={"owner_id": {"S": "alice"}, "job_id": {"S": expiring}}
    )
    records = stream_records(aws, identities={3: TTL_IDENTITY})  # the second REMOVE is TTL's

    publisher.lambda_handler({"Records": records}, FakeLambdaContext())

    removed = {e["detail"]["job_id"]: e["detail"] for e in bus.received() if e["detail"]["status"] == "DELETED"}
    assert removed[deleted]["deleted_by"] == "owner"
    assert removed[expiring]["deleted_by"] == "expiry"
    assert removed[expiring]["previous_status"] == "QUEUED"


@pytest.fixture
def calls() -> Iterator[list[int]]:
    """The number of entries of each PutEvents call moto receives."""
    seen: list[int] = []
    original = EventsBackend.put_events

    def counting(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(len(events))
        return original(self, events)

    with mock.patch.object(EventsBackend, "put_events", counting):
        yield seen


def test_events_go_ten_per_call_in_stream_order(publisher: ModuleType, bus: Bus, aws: Aws, calls: list[int]) -> None:
    jobs = [a_job(aws)[1] for _ in range(25)]

    publisher.lambda_handler({"Records": stream_records(aws)}, FakeLambdaContext())

    assert calls == [10, 10, 5]
    assert [e["detail"]["job_id"] for e in bus.received()] == jobs


def test_a_failed_entry_fails_its_record_and_every_later_one(publisher: ModuleType, bus: Bus, aws: Aws) -> None:
    jobs = [a_job(aws)[1] for _ in range(5)]
    records = stream_records(aws)
    original = EventsBackend.put_events

    def third_throttled(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        put = original(self, events[:2] + events[3:])
        return [*put[:2], {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}, *put[2:]]

    with mock.patch.object(EventsBackend, "put_events", third_throttled):
        response = publisher.lambda_handler({"Records": records}, FakeLambdaContext())

    failed = [failure["itemIdentifier"] for failure in response["batchItemFailures"]]
    assert failed == [record["dynamodb"]["SequenceNumber"] for record in records[2:]]
    delivered = [e["detail"]["job_id"] for e in bus.received()]
    assert delivered[:2] == jobs[:2]  # the two before it; those after it in the call may come twice
    assert jobs[2] not in delivered


def test_a_bus_that_does_not_exist_is_a_function_error(
    publisher: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from jobs import bootstrap

    a_job(aws)
    monkeypatch.setenv("JOBS_EVENT_BUS_NAME", "no-such-bus")
    bootstrap.reset()

    with pytest.raises(ClientError):
        publisher.lambda_handler({"Records": stream_records(aws)}, FakeLambdaContext())


def test_the_documented_example_is_a_valid_event() -> None:
    example = json.loads((ROOT / "events" / "eventbridge" / "job_state_change.json").read_text())

    VALIDATOR.validate(example)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


FAILED_RULE = '{"source": ["chuck-norris.jobs"], "detail-type": ["Job State Change"], "detail": {"status": ["FAILED"]}}'
OWNER_RULE = '{"source": ["chuck-norris.jobs"], "detail-type": ["Job State Change"], "detail": {"owner_id": ["alice"]}}'


def test_the_readmes_rules_route_what_they_say(publisher: ModuleType, bus: Bus, aws: Aws) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert FAILED_RULE in readme
    assert OWNER_RULE in readme
    events, sqs = boto3.client("events"), boto3.client("sqs")
    urls = {}
    for name, pattern in (("failed", FAILED_RULE), ("alice", OWNER_RULE)):
        urls[name] = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventBusName=bus.name, EventPattern=pattern)
        events.put_targets(Rule=name, EventBusName=bus.name, Targets=[{"Id": name, "Arn": arn}])
    store = DynamoJobStore(aws.table_name)
    service = JobService(store)
    failing = service.create_job("alice", JobCreate(title="t", type="noop")).job_id
    service.create_job("bob", JobCreate(title="t", type="noop"))
    store.start("alice", failing, now_text=T.format(1), stale_before_text=T.format(0), run_id="r")
    store.finish(
        "alice",
        failing,
        run_id="r",
        status=JobStatus.FAILED,
        now_text=T.format(2),
        error=JobError(type="E", message="m"),
    )

    publisher.lambda_handler({"Records": stream_records(aws)}, FakeLambdaContext())

    def received(url: str) -> list[tuple[str, str]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [
            (json.loads(m["Body"])["detail"]["owner_id"], json.loads(m["Body"])["detail"]["status"]) for m in messages
        ]

    assert received(urls["failed"]) == [("alice", "FAILED")]
    assert received(urls["alice"]) == [("alice", "QUEUED"), ("alice", "RUNNING"), ("alice", "FAILED")]
