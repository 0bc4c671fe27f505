"""A table's stream switched as CloudFormation switches it for a new ``StreamViewType``, on both engines (moto with
``local.moto_dynamodb``, DynamoDB Local): UpdateTable refuses what DynamoDB refuses (the UpdateTable API reference,
StreamSpecification), a disabled stream stays readable with its shard closed, and enabling again makes a new
stream whose records carry the new view's images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.moto_dynamodb import play_stream_switches

KEYS: dict[str, Any] = {
    "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
}


@pytest.fixture(params=["moto", "dynamodb-local"])
def clients(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    if request.param == "moto":
        play_stream_switches()
        with mock_aws():
            # botocore's default DynamoDB Streams endpoint is not one moto intercepts; its classic one is.
            streams = session.client("dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")
            yield session.client("dynamodb"), streams
        return
    endpoint = request.getfixturevalue("dynamodb_local_endpoint")
    yield session.client("dynamodb", endpoint_url=endpoint), session.client("dynamodbstreams", endpoint_url=endpoint)


def refused(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as error:
        call(**kwargs)
    return error.value.response["Error"]["Code"], error.value.response["Error"]["Message"]


def records(streams: Any, arn: str) -> tuple[list[dict[str, Any]], bool]:
    """The stream's records from its oldest, and whether its shard says it has ended (no next iterator)."""
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    page = streams.get_records(ShardIterator=iterator["ShardIterator"])
    return page["Records"], "NextShardIterator" not in page


def test_a_stream_view_changes_only_through_disable_then_enable(clients: tuple[Any, Any]) -> None:
    dynamodb, streams = clients
    table = "switched"
    enabled = {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", StreamSpecification=enabled, **KEYS)
    old = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    dynamodb.put_item(TableName=table, Item={"k": {"S": "before"}})
    update = dynamodb.update_table
    new_view = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}

    assert refused(update, TableName=table, StreamSpecification=new_view) == (
        "ValidationException",
        "Table already has an enabled stream",
    )
    disable_with_view = {"StreamEnabled": False, "StreamViewType": "KEYS_ONLY"}
    assert refused(update, TableName=table, StreamSpecification=disable_with_view)[0] == "ValidationException"

    update(TableName=table, StreamSpecification={"StreamEnabled": False})
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert "StreamSpecification" not in described
    assert described["LatestStreamArn"] == old
    assert refused(update, TableName=table, StreamSpecification={"StreamEnabled": False})[0] == "ValidationException"
    assert refused(update, TableName=table, StreamSpecification={"StreamEnabled": True})[0] == "ValidationException"
    dynamodb.put_item(TableName=table, Item={"k": {"S": "gap"}})  # no stream: no record

    update(TableName=table, StreamSpecification=new_view)
    new = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    dynamodb.put_item(TableName=table, Item={"k": {"S": "after"}})
    dynamodb.put_item(TableName=table, Item={"k": {"S": "after"}, "v": {"S": "1"}})

    assert new != old
    old_description = streams.describe_stream(StreamArn=old)["StreamDescription"]
    assert (old_description["StreamStatus"], old_description["StreamViewType"]) == ("DISABLED", "KEYS_ONLY")
    assert "EndingSequenceNumber" in old_description["Shards"][0]["SequenceNumberRange"]
    assert streams.describe_stream(StreamArn=new)["StreamDescription"]["StreamStatus"] == "ENABLED"
    assert {s["StreamArn"] for s in streams.list_streams(TableName=table)["Streams"]} == {old, new}
    old_records, old_ended = records(streams, old)
    new_records, new_ended = records(streams, new)
    assert [(r["eventName"], r["dynamodb"]["Keys"]["k"]["S"]) for r in old_records] == [("INSERT", "before")]
    assert old_ended
    assert "NewImage" not in old_records[0]["dynamodb"]
    assert [(r["eventName"], r["dynamodb"]["Keys"]["k"]["S"]) for r in new_records] == [
        ("INSERT", "after"),
        ("MODIFY", "after"),
    ]
    assert not new_ended
    assert "NewImage" in new_records[0]["dynamodb"]
    assert set(new_records[1]["dynamodb"]) >= {"NewImage", "OldImage"}
