"""Least privilege, measured, for the Job State Change publisher (issue 16), as tests/integration/test_iam_actions.py
measures the other functions: botocore's hooks record every AWS call the publisher's code makes while it
publishes a job's whole life (created, started, retried, finished, deleted), and its role in the template AWS would
receive grants exactly those actions on exactly those resources, plus what the Lambda platform does with it (its
logs; the stream mapping's reads and its on-failure destination)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from jobs.models import JobCreate, JobError, JobStatus
from jobs.service import JobService
from jobs.store import DynamoJobStore
from local.streams import to_record
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_function
from tests.integration.test_iam_actions import Recorder, granted, platform, recording


class EventsRecorder(Recorder):
    """The recorder, naming a PutEvents call's resource by the template's bus (each entry's ``EventBusName``)."""

    def __init__(self, physical: dict[str, dict[str, str]]) -> None:
        super().__init__(physical)
        self._buses = {value["Ref"]: logical for logical, value in physical.items() if logical == "JobEventsBus"}

    def _resource(self, service: str, params: dict[str, Any]) -> str:
        if service == "events":
            [bus] = {entry["EventBusName"] for entry in params["Entries"]}
            return str(self._buses.get(bus, bus))
        return super()._resource(service, params)


@pytest.fixture
def events_recorder(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """As test_iam_actions.py's ``recorder``, with the bus named."""
    return recording(EventsRecorder(aws.physical), monkeypatch)


def granted_with_the_stacks_own_bus(generated: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """``granted``, with each ``Fn::If`` resource read for the default parameters (``CreateEventBus`` true)."""
    copy: dict[str, Any] = {"Resources": {role: {"Properties": {"Policies": []}}}}
    for policy in generated["Resources"][role]["Properties"]["Policies"]:
        statements = []
        for statement in policy["PolicyDocument"]["Statement"]:
            resource = statement["Resource"]
            if isinstance(resource, dict) and "Fn::If" in resource:
                assert resource["Fn::If"][0] == "CreateEventBus"
                statement = {**statement, "Resource": resource["Fn::If"][1]}
            statements.append(statement)
        copy["Resources"][role]["Properties"]["Policies"].append({"PolicyDocument": {"Statement": statements}})
    return granted(copy, role)


def test_the_publisher_is_granted_exactly_what_its_code_calls(
    aws: Aws, events_recorder: Recorder, monkeypatch: pytest.MonkeyPatch, generated: dict[str, Any]
) -> None:
    monkeypatch.setenv("JOBS_EVENT_BUS_NAME", aws.physical["JobEventsBus"]["Ref"])
    store = DynamoJobStore(aws.table_name)
    job = JobService(store).create_job("alice", JobCreate(title="t", type="noop"))
    now = "2026-12-01T10:00:0{}.000Z"
    store.start("alice", job.job_id, now_text=now.format(1), stale_before_text=now.format(0), run_id="r1")
    store.requeue("alice", job.job_id, run_id="r1", now_text=now.format(2), error=JobError(type="E", message="m"))
    store.start("alice", job.job_id, now_text=now.format(3), stale_before_text=now.format(0), run_id="r2")
    store.finish("alice", job.job_id, run_id="r2", status=JobStatus.SUCCEEDED, now_text=now.format(4))
    store.delete("alice", job.job_id)
    streams = boto3.client("dynamodbstreams")
    arn = aws.physical["JobsTable"]["StreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = [to_record(r, arn) for r in streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]
    publisher = load_function("publish_events")

    with events_recorder.recording():
        response = publisher.lambda_handler({"Records": records}, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert events_recorder.calls == {("events:PutEvents", "JobEventsBus")}
    stream = {p for p in platform("PublishJobEventsFunction", stream=True) if p[0].startswith("dynamodb:")}
    expected = (
        events_recorder.calls
        | {p for p in platform("PublishJobEventsFunction") if p[0].startswith("logs:")}
        | stream
        | {("sqs:SendMessage", "JobEventsDiscardedBatchesQueue")}  # the mapping's on-failure destination
    )
    assert expected == granted_with_the_stacks_own_bus(generated, "PublishJobEventsFunctionRole")
