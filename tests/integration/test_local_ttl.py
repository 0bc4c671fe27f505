"""The local stack's play of DynamoDB's TTL (local/ttl.py), against moto: it deletes what TTL deletes (a Number
of epoch seconds in the past, at most five years past) and nothing else, and only its own deletes get TTL's
``userIdentity`` in the stream; a user's delete never does, even one racing the sweeper."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from local.streams import to_record
from local.ttl import FIVE_YEARS_SECONDS, TTL_IDENTITY, TtlSweeper
from tests.conftest import Aws

NOW = 1_800_000_000


def item(job_id: str, expires: Any) -> dict[str, Any]:
    found = {"owner_id": {"S": "alice"}, "job_id": {"S": job_id}, "status": {"S": "SUCCEEDED"}}
    if expires is not None:
        found["expires_at"] = expires
    return found


@pytest.fixture
def sweeper(aws: Aws) -> TtlSweeper:
    return TtlSweeper(
        boto3.client("dynamodb"),
        aws.table_name,
        ["owner_id", "job_id"],
        "expires_at",
        interval=60,
        log=lambda _: None,
        clock=lambda: NOW,
    )


def removes(aws: Aws, sweeper: TtlSweeper) -> dict[str, dict[str, Any]]:
    streams = boto3.client("dynamodbstreams")
    arn = aws.physical["JobsTable"]["StreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    delivered = [to_record(r, arn, sweeper.identity_of(r, wait_seconds=0)) for r in records]
    return {r["dynamodb"]["Keys"]["job_id"]["S"]: r for r in delivered if r["eventName"] == "REMOVE"}


def test_the_sweeper_deletes_what_ttl_deletes_and_marks_only_its_own_deletes(aws: Aws, sweeper: TtlSweeper) -> None:
    dynamodb = boto3.client("dynamodb")
    cases = {
        "expired": {"N": str(NOW - 1)},
        "due now": {"N": str(NOW)},
        "future": {"N": str(NOW + 1)},
        "too old": {"N": str(NOW - FIVE_YEARS_SECONDS - 1)},
        "not a number": {"S": str(NOW - 1)},
        "none": None,
        "user deleted": {"N": str(NOW + 3600)},
    }
    for job_id, expires in cases.items():
        dynamodb.put_item(TableName=aws.table_name, Item=item(job_id, expires))
    dynamodb.delete_item(TableName=aws.table_name, Key={"owner_id": {"S": "alice"}, "job_id": {"S": "user deleted"}})

    assert sweeper.sweep() == 2

    left = {i["job_id"]["S"] for i in dynamodb.scan(TableName=aws.table_name)["Items"]}
    assert left == {"future", "too old", "not a number", "none"}
    found = removes(aws, sweeper)
    assert {job_id: record.get("userIdentity") for job_id, record in found.items()} == {
        "expired": TTL_IDENTITY,
        "due now": TTL_IDENTITY,
        "user deleted": None,
    }


def test_an_item_written_again_before_the_sweeper_deletes_it_is_left(aws: Aws, sweeper: TtlSweeper) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=aws.table_name, Item=item("renewed", {"N": str(NOW - 1)}))
    original = dynamodb.delete_item

    def renewed_first(**kwargs: Any) -> Any:  # the item is written again between the scan and the delete
        dynamodb.put_item(TableName=aws.table_name, Item=item("renewed", {"N": str(NOW + 60)}))
        return original(**kwargs)

    sweeper.dynamodb = SimpleNamespace(get_paginator=dynamodb.get_paginator, delete_item=renewed_first)

    assert sweeper.sweep() == 0
    assert removes(aws, sweeper) == {}


def test_a_users_delete_racing_the_sweeper_is_not_taken_for_ttls(aws: Aws, sweeper: TtlSweeper) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=aws.table_name, Item=item("raced", {"N": str(NOW - 1)}))
    key = {"owner_id": {"S": "alice"}, "job_id": {"S": "raced"}}
    original = dynamodb.delete_item

    def user_first(**kwargs: Any) -> Any:
        original(TableName=aws.table_name, Key=key)  # the owner's DELETE lands first
        time.sleep(0.01)
        return original(**kwargs)  # the sweeper's conditional delete then fails

    sweeper.dynamodb = SimpleNamespace(get_paginator=dynamodb.get_paginator, delete_item=user_first)

    assert sweeper.sweep() == 0
    assert removes(aws, sweeper)["raced"].get("userIdentity") is None
