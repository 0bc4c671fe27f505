"""The reconciler's handler against moto: it replays the stream batches the relay gave up on (their coordinates
on the on-failure destination, their records read back from the table's stream), and re-sends the messages of
QUEUED jobs left without one, read from the sparse ``Queued`` index."""

from __future__ import annotations

import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from jobs import bootstrap
from jobs.models import Job, JobCreate, JobPriority, JobStatus, utc_now
from jobs.service import JobService
from jobs.store import DynamoJobStore, InMemoryJobStore, job_to_item
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, load_function


@pytest.fixture
def reconciler(aws: Aws) -> ModuleType:
    return load_function("reconcile_jobs")


def put_job(
    aws: Aws,
    owner_id: str = "alice",
    *,
    age: timedelta = timedelta(0),
    status: JobStatus = JobStatus.QUEUED,
    **request: Any,
) -> Job:
    """A job written straight into the table (as an older version or a migration could), ``age`` old, created from
    a request with ``request``'s fields."""
    when = utc_now() - age
    job = JobService(InMemoryJobStore(), clock=lambda: when).create_job(
        owner_id, JobCreate(title="t", type="noop", **request)
    )
    job = job.model_copy(update={"status": status})
    aws.dynamodb.put_item(TableName=aws.table_name, Item=job_to_item(job))
    return job


def stream_batch(aws: Aws, *jobs: Job) -> dict[str, Any]:
    """The on-failure record Lambda would send for a discarded batch holding the INSERTs of ``jobs``."""
    streams = boto3.client("dynamodbstreams")
    arn = aws.physical["JobsTable"]["StreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    wanted = {job.job_id for job in jobs}
    numbers = [r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["job_id"]["S"] in wanted]
    return {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": shard["ShardId"],
            "startSequenceNumber": min(numbers, key=int),
            "endSequenceNumber": max(numbers, key=int),
            "batchSize": len(numbers),
            "streamArn": arn,
        },
    }


def sent_job_ids(aws: Aws, queue: str = "JobsQueue") -> list[str]:
    """The job ids of the messages on ``queue`` (a logical id; NORMAL's by default), sorted."""
    return sorted(json.loads(m["Body"])["job_id"] for m in aws.messages(aws.physical[queue]["Ref"]))


def test_a_discarded_batch_is_replayed_for_its_jobs_still_queued(reconciler: ModuleType, aws: Aws) -> None:
    queued, started, deleted = put_job(aws), put_job(aws), put_job(aws)
    aws.sqs.send_message(
        QueueUrl=aws.discarded_url, MessageBody=json.dumps(stream_batch(aws, queued, started, deleted))
    )
    aws.dynamodb.update_item(
        TableName=aws.table_name,
        Key={"owner_id": {"S": "alice"}, "job_id": {"S": started.job_id}},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "RUNNING"}},
    )
    aws.dynamodb.delete_item(
        TableName=aws.table_name, Key={"owner_id": {"S": "alice"}, "job_id": {"S": deleted.job_id}}
    )

    result = reconciler.lambda_handler({}, FakeLambdaContext())

    assert result["replayed"] == 1
    assert sent_job_ids(aws) == [queued.job_id]
    assert aws.messages(aws.discarded_url) == []  # replayed batches are removed


def test_a_batch_the_stream_no_longer_holds_is_removed(reconciler: ModuleType, aws: Aws) -> None:
    batch = stream_batch(aws, put_job(aws))
    info = batch["DDBStreamBatchInfo"]  # a stream gone since (its table replaced, say): ResourceNotFoundException
    info["streamArn"] = info["streamArn"].replace(aws.table_name, "jobs-replaced")
    aws.sqs.send_message(QueueUrl=aws.discarded_url, MessageBody=json.dumps(batch))

    result = reconciler.lambda_handler({}, FakeLambdaContext())

    assert result["replayed"] == 0
    assert aws.messages(aws.discarded_url) == []


def test_a_message_that_is_no_discarded_batch_is_removed(reconciler: ModuleType, aws: Aws) -> None:
    aws.sqs.send_message(QueueUrl=aws.discarded_url, MessageBody='{"not": "a batch"}')

    reconciler.lambda_handler({}, FakeLambdaContext())

    assert aws.messages(aws.discarded_url) == []


def test_a_job_left_queued_past_the_bound_gets_its_message_again(
    reconciler: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_RECONCILE_AFTER_SECONDS", "600")
    old, recent = put_job(aws, age=timedelta(minutes=11)), put_job(aws, "bob", age=timedelta(minutes=9))
    put_job(aws, "carol", age=timedelta(hours=2), status=JobStatus.SUCCEEDED)

    result = reconciler.lambda_handler({}, FakeLambdaContext())

    assert result["reconciled"] == 1
    assert sent_job_ids(aws) == [old.job_id]
    assert recent.job_id not in sent_job_ids(aws)


def test_a_queued_job_whose_owner_no_token_can_hold_ends_failed(reconciler: ModuleType, aws: Aws) -> None:
    job = put_job(aws, "owner with spaces", age=timedelta(hours=2))

    reconciler.lambda_handler({}, FakeLambdaContext())

    item = aws.dynamodb.get_item(
        TableName=aws.table_name, Key={"owner_id": {"S": "owner with spaces"}, "job_id": {"S": job.job_id}}
    )["Item"]
    assert item["status"]["S"] == "FAILED"
    assert item["error"]["M"]["type"]["S"] == "InvalidOwner"
    assert aws.messages() == []


def test_a_queued_job_written_before_the_index_existed_is_reconciled_after_the_backfill(
    reconciler: ModuleType, aws: Aws
) -> None:
    legacy = put_job(aws, age=timedelta(hours=2))
    key = {"owner_id": {"S": "alice"}, "job_id": {"S": legacy.job_id}}
    aws.dynamodb.update_item(TableName=aws.table_name, Key=key, UpdateExpression="REMOVE queued_shard")
    finished = put_job(aws, "bob", age=timedelta(hours=2), status=JobStatus.SUCCEEDED)

    before = reconciler.lambda_handler({"replay": False, "reconcile_after_seconds": 60}, FakeLambdaContext())
    after = reconciler.lambda_handler(
        {"backfill": True, "replay": False, "reconcile_after_seconds": 60}, FakeLambdaContext()
    )

    assert before["reconciled"] == 0  # not in the index: the reconciler cannot see it
    assert after["reconciled"] == 1
    assert sent_job_ids(aws) == [legacy.job_id]
    bob = {"owner_id": {"S": "bob"}, "job_id": {"S": finished.job_id}}
    assert "queued_shard" not in aws.dynamodb.get_item(TableName=aws.table_name, Key=bob)["Item"]


def test_an_event_that_is_no_request_is_refused(reconciler: ModuleType, aws: Aws) -> None:
    with pytest.raises(ValueError, match="reconcile_after_seconds"):
        reconciler.lambda_handler({"reconcile_after_seconds": 0}, FakeLambdaContext())


@pytest.mark.parametrize(
    "change",
    [
        {"endSequenceNumber": "not-a-number"},
        {"startSequenceNumber": "12"},
        {"streamArn": "not-an-arn"},
        {"shardId": ""},
    ],
)
def test_a_batch_that_can_never_be_replayed_is_removed_and_the_reconcile_pass_still_runs(
    reconciler: ModuleType, aws: Aws, change: dict[str, str]
) -> None:
    orphan = put_job(aws, age=timedelta(hours=2))
    batch = stream_batch(aws, orphan)
    batch["DDBStreamBatchInfo"].update(change)
    aws.sqs.send_message(QueueUrl=aws.discarded_url, MessageBody=json.dumps(batch))

    result = reconciler.lambda_handler({}, FakeLambdaContext())

    assert result == {"replayed": 0, "reconciled": 1}
    assert aws.messages(aws.discarded_url) == []


def test_a_job_that_can_be_neither_sent_nor_failed_does_not_hold_up_the_others(
    reconciler: ModuleType, aws: Aws
) -> None:
    # An old item at DynamoDB's 400 KB limit whose owner no token can hold: FAILED would not fit in it.
    when = utc_now() - timedelta(hours=2)
    big = JobService(InMemoryJobStore(), clock=lambda: when).create_job(
        "legacy owner", JobCreate(title="t", type="noop")
    )
    item = job_to_item(big)
    for slack in range(400, 12000, 8):  # the largest item DynamoDB takes: FAILED's attributes no longer fit
        item["payload"] = {"M": {"blob": {"S": "x" * (400 * 1024 - slack)}}}
        try:
            aws.dynamodb.put_item(TableName=aws.table_name, Item=item)
            break
        except aws.dynamodb.exceptions.ClientError:
            continue
    else:
        pytest.fail("no item size was accepted")
    others = [put_job(aws, f"owner-{n}", age=timedelta(hours=2)) for n in range(25)]

    result = reconciler.lambda_handler({"replay": False}, FakeLambdaContext())

    assert sent_job_ids(aws) == sorted(job.job_id for job in others)
    assert result["reconciled"] == 26  # the big one counted as settled: left QUEUED, logged, not retried now


def test_a_backlog_in_one_shard_neither_starves_the_others_nor_is_resent_every_run(aws: Aws) -> None:
    store = DynamoJobStore(aws.table_name)
    service = JobService(store, bootstrap.job_queue())
    jobs = [put_job(aws, f"owner-{n}", age=timedelta(hours=2)) for n in range(40)]

    first = service.reconcile(queued_for=timedelta(hours=1), max_jobs=16)  # a share of 1 per shard
    second = service.reconcile(queued_for=timedelta(hours=1), max_jobs=1000)
    third = service.reconcile(queued_for=timedelta(hours=1), max_jobs=1000)

    shards = {job.job_id[-1] for job in jobs}
    assert first == len(shards)  # one from every shard that has any
    assert second == len(jobs) - first  # the rest, each once
    assert third == 0  # re-sent ones wait for the bound to pass again
    assert sorted(sent_job_ids(aws)) == sorted(job.job_id for job in jobs)


def test_a_job_left_queued_is_sent_again_to_its_prioritys_queue(reconciler: ModuleType, aws: Aws) -> None:
    high = put_job(aws, age=timedelta(hours=2), priority=JobPriority.HIGH)
    low = put_job(aws, "bob", age=timedelta(hours=2), priority=JobPriority.LOW)

    result = reconciler.lambda_handler({"replay": False}, FakeLambdaContext())

    assert result["reconciled"] == 2
    assert sent_job_ids(aws, "JobsHighPriorityQueue") == [high.job_id]
    assert sent_job_ids(aws, "JobsLowPriorityQueue") == [low.job_id]
    assert sent_job_ids(aws) == []


def test_a_scheduled_job_is_not_reconciled_before_its_start_and_the_bound_have_passed(
    reconciler: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_RECONCILE_AFTER_SECONDS", "600")
    now = utc_now()
    # Created two hours ago; its message hides in SQS until its start. The bound counts from its start.
    put_job(aws, age=timedelta(hours=2), not_before=now + timedelta(hours=1))
    put_job(aws, "bob", age=timedelta(hours=2), not_before=now - timedelta(minutes=5))
    overdue = put_job(aws, "carol", age=timedelta(hours=2), not_before=now - timedelta(minutes=11))

    result = reconciler.lambda_handler({"replay": False}, FakeLambdaContext())

    assert result["reconciled"] == 1
    assert sent_job_ids(aws) == [overdue.job_id]  # neither the waiting one's nor the one due only 5 minutes ago
