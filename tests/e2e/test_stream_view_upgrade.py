"""The stream's new view (issue 15), rehearsed on the local stack: ``local.upgrade`` takes CloudFormation's steps
(disable the KEYS_ONLY stream, enable a NEW_AND_OLD_IMAGES one, create the relay's mapping on it, delete the old
mapping) while jobs are created before, during (no stream enabled), right after and after the switch; then the
README's step, the reconciler, gives the jobs written during the gap their messages. Every job ends SUCCEEDED
after one run, and the gap's jobs are in neither stream: the reconciler, not the relay, saved them. The old mapping
still relays records left on the disabled stream until it is deleted; what it has not read by then (its mapping
paused, here) is left to the reconciler too.

The stack starts from a template variant whose stream is KEYS_ONLY, whatever template.yaml says; it runs once with
its tables in DynamoDB Local and once in moto.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local import dynamodb_local, invoke
from local.upgrade import upgrade_stream_view
from tests.e2e.support import StackProcess, running_stack, short_template, submit_noop

pytestmark = pytest.mark.e2e

SECRET = "e2e-upgrade-secret-that-is-long-enough-for-hs256-0123"


def keys_only_template(directory: Path) -> Path:
    """``short_template``'s copy of template.yaml with the Jobs table's stream KEYS_ONLY (the view before)."""
    path = short_template(directory)
    text, found = re.subn(r"StreamViewType: \w+", "StreamViewType: KEYS_ONLY", path.read_text())
    assert found == 1, "the Jobs table's StreamViewType was not found"
    path.write_text(text)
    return path


def client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service, endpoint_url=endpoint)


@pytest.fixture(scope="module", params=["local", "moto"])
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[StackProcess]:
    """A stack from the KEYS_ONLY variant, its tables in DynamoDB Local and then in moto (local.moto_dynamodb)."""
    if request.param == "local" and dynamodb_local.find().jar is None:
        pytest.skip(f"DynamoDB Local: {dynamodb_local.find().reason}")
    directory = tmp_path_factory.mktemp("upgrade")
    template = keys_only_template(directory)
    with running_stack(directory, secret=SECRET, template=template, dynamodb=request.param) as process:
        yield process


def submit(process: StackProcess, title: str) -> str:
    return submit_noop(process, title, secret=SECRET)


def job(process: StackProcess, job_id: str) -> dict[str, Any]:
    key = {"owner_id": {"S": "alice"}, "job_id": {"S": job_id}}
    table = process.physical["JobsTable"]
    item = client("dynamodb", process.dynamodb_endpoint).get_item(TableName=table, Key=key, ConsistentRead=True)
    found = item.get("Item") or {}
    return {"status": found.get("status", {}).get("S"), "attempts": int(found.get("attempts", {}).get("N", "0"))}


def until_succeeded(process: StackProcess, job_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(job(process, job_id)["status"] != "SUCCEEDED" for job_id in job_ids):
        if time.monotonic() > deadline:
            statuses = {job_id: job(process, job_id) for job_id in job_ids}
            raise AssertionError(f"not all SUCCEEDED within {timeout} s: {statuses}")
        time.sleep(0.25)


def stream_records(process: StackProcess, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of ``stream_arn``, each shard from its oldest record to its end (or to the present)."""
    streams = client("dynamodbstreams", process.dynamodb_endpoint)
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            page = streams.get_records(ShardIterator=iterator)
            records.extend(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def inserted(records: list[dict[str, Any]]) -> set[str]:
    return {r["dynamodb"]["Keys"]["job_id"]["S"] for r in records if r["eventName"] == "INSERT"}


def test_the_stream_view_upgrade_loses_no_job_once_the_reconciler_has_run(
    stack: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb = client("dynamodb", stack.dynamodb_endpoint)
    lambda_client = client("lambda", stack.lambda_url)
    with pytest.raises(ClientError) as refused:  # AWS's answer: no view change on an enabled stream
        dynamodb.update_table(
            TableName=stack.physical["JobsTable"],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "already has an enabled stream" in refused.value.response["Error"]["Message"]

    jobs: dict[str, list[str]] = {"before": [submit(stack, f"before {n}") for n in range(3)]}
    until_succeeded(stack, jobs["before"])
    # "late": their records wait on the old stream, its mapping paused, until that stream is disabled.
    (old,) = lambda_client.list_event_source_mappings(FunctionName="EnqueueJobsFunction")["EventSourceMappings"]
    lambda_client.update_event_source_mapping(UUID=old["UUID"], Enabled=False)
    jobs["late"] = [submit(stack, f"late {n}") for n in range(2)]

    def during(step: str) -> None:
        if step == "disabled":
            # The old mapping still reads the disabled stream's remaining records, as Lambda's does.
            lambda_client.update_event_source_mapping(UUID=old["UUID"], Enabled=True)
            until_succeeded(stack, jobs["late"])
            jobs["gap"] = [submit(stack, f"gap {n}") for n in range(3)]  # no stream is enabled: no record
        elif step == "enabled":  # on the new stream before its mapping exists: TRIM_HORIZON reads them
            jobs["right after"] = [submit(stack, f"right after {n}") for n in range(2)]

    switched = upgrade_stream_view(dynamodb, lambda_client, "NEW_AND_OLD_IMAGES", pause=during, say=lambda _: None)
    jobs["after"] = [submit(stack, f"after {n}") for n in range(3)]

    # One mapping left, on the new stream; the old one is gone.
    mappings = lambda_client.list_event_source_mappings(FunctionName="EnqueueJobsFunction")["EventSourceMappings"]
    assert [(m["EventSourceArn"], m["State"]) for m in mappings] == [(switched["new_stream_arn"], "Enabled")]
    assert mappings[0]["FilterCriteria"] == {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]}
    assert mappings[0]["MaximumRetryAttempts"] == 10
    assert mappings[0]["BisectBatchOnFunctionError"] is True
    with pytest.raises(ClientError) as gone:
        lambda_client.get_event_source_mapping(UUID=switched["old_mapping"])
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The stream's other reader moved with it, as CloudFormation replaces every mapping on the stream.
    publisher = lambda_client.list_event_source_mappings(FunctionName="PublishJobEventsFunction")
    assert [m["EventSourceArn"] for m in publisher["EventSourceMappings"]] == [switched["new_stream_arn"]]

    relayed = [job_id for when in ("before", "late", "right after", "after") for job_id in jobs[when]]
    until_succeeded(stack, relayed)
    assert all(job(stack, job_id)["status"] == "QUEUED" for job_id in jobs["gap"])  # no message: no record

    old_records = stream_records(stack, switched["old_stream_arn"])
    new_records = stream_records(stack, switched["new_stream_arn"])
    assert inserted(old_records) == set(jobs["before"] + jobs["late"])
    assert inserted(new_records) == set(jobs["right after"] + jobs["after"])
    assert not set(jobs["gap"]) & (inserted(old_records) | inserted(new_records))
    assert all(set(r["dynamodb"]) >= {"Keys"} and "NewImage" not in r["dynamodb"] for r in old_records)
    assert all("NewImage" in r["dynamodb"] for r in new_records)
    modified = [r["dynamodb"] for r in new_records if r["eventName"] == "MODIFY"]
    assert modified
    assert all("OldImage" in change and "NewImage" in change for change in modified)

    # The README's step: the reconciler right after the deploy (both passes; a small bound, locally).
    time.sleep(1.1)
    port = stack.lambda_url.rsplit(":", 1)[1]
    capsys.readouterr()
    payload = json.dumps({"replay": True, "reconcile_after_seconds": 1})
    assert invoke.main(["ReconcileJobsFunction", "--payload", payload, "--port", port]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result == {"replayed": 0, "reconciled": len(jobs["gap"])}
    until_succeeded(stack, jobs["gap"])
    every = [job_id for ids in jobs.values() for job_id in ids]
    assert len(every) == 13
    assert {job_id: job(stack, job_id)["attempts"] for job_id in every} == dict.fromkeys(every, 1)


def test_records_the_old_mapping_has_not_read_when_it_is_deleted_are_left_to_the_reconciler(
    stack: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb = client("dynamodb", stack.dynamodb_endpoint)
    lambda_client = client("lambda", stack.lambda_url)
    table = stack.physical["JobsTable"]
    view = dynamodb.describe_table(TableName=table)["Table"]["StreamSpecification"]["StreamViewType"]
    (old,) = lambda_client.list_event_source_mappings(FunctionName="EnqueueJobsFunction")["EventSourceMappings"]
    lambda_client.update_event_source_mapping(UUID=old["UUID"], Enabled=False)  # paused until deleted
    stranded = [submit(stack, f"stranded {n}") for n in range(2)]

    switched = upgrade_stream_view(
        dynamodb,
        lambda_client,
        "KEYS_ONLY" if view != "KEYS_ONLY" else "NEW_AND_OLD_IMAGES",
        say=lambda _: None,
    )
    after = submit(stack, "after")
    until_succeeded(stack, [after])

    assert set(stranded) <= inserted(stream_records(stack, switched["old_stream_arn"]))
    assert all(job(stack, job_id)["status"] == "QUEUED" for job_id in stranded)  # never relayed
    time.sleep(1.1)
    port = stack.lambda_url.rsplit(":", 1)[1]
    capsys.readouterr()
    payload = json.dumps({"replay": True, "reconcile_after_seconds": 1})
    assert invoke.main(["ReconcileJobsFunction", "--payload", payload, "--port", port]) == 0
    assert json.loads(capsys.readouterr().out) == {"replayed": 0, "reconciled": len(stranded)}
    until_succeeded(stack, stranded)
    assert [job(stack, job_id)["attempts"] for job_id in [*stranded, after]] == [1, 1, 1]


@pytest.fixture(scope="module")
def broken_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A KEYS_ONLY stack whose relay sends to a queue that does not exist, so its mapping discards every batch
    (DynamoDB Local where installed, else moto)."""
    directory = tmp_path_factory.mktemp("upgrade-broken-relay")
    missing = "http://127.0.0.1:1/123456789012/jobs-local-NoSuchQueue"
    with running_stack(
        directory,
        secret=SECRET,
        template=keys_only_template(directory),
        function_environment={"EnqueueJobsFunction": {"JOBS_QUEUE_URL": missing}},
    ) as process:
        yield process


def test_a_batch_the_old_mapping_discarded_is_replayed_from_the_disabled_stream(
    broken_relay: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = client("sqs", broken_relay.aws_endpoint)
    destination = broken_relay.physical["OutboxDiscardedBatchesQueue"]

    def discarded() -> int:
        found = sqs.get_queue_attributes(QueueUrl=destination, AttributeNames=["ApproximateNumberOfMessages"])
        return int(found["Attributes"]["ApproximateNumberOfMessages"])

    job_id = submit(broken_relay, "discarded before the switch")
    deadline = time.monotonic() + 90
    while discarded() < 1:
        assert time.monotonic() < deadline, "the old mapping did not discard the batch"
        time.sleep(0.5)
    switched = upgrade_stream_view(
        client("dynamodb", broken_relay.dynamodb_endpoint),
        client("lambda", broken_relay.lambda_url),
        "NEW_AND_OLD_IMAGES",
        say=lambda _: None,
    )
    body = sqs.receive_message(QueueUrl=destination, VisibilityTimeout=0)["Messages"][0]["Body"]
    assert json.loads(body)["DDBStreamBatchInfo"]["streamArn"] == switched["old_stream_arn"]

    port = broken_relay.lambda_url.rsplit(":", 1)[1]
    capsys.readouterr()
    assert invoke.main(["ReconcileJobsFunction", "--payload", '{"reconcile": false}', "--port", port]) == 0

    assert json.loads(capsys.readouterr().out) == {"replayed": 1, "reconciled": 0}
    until_succeeded(broken_relay, [job_id])
    assert job(broken_relay, job_id)["attempts"] == 1
