"""moto's DynamoDB streams made to switch as DynamoDB's do, for the local stack's moto server (``local.moto_server``)
and for tests under ``mock_aws``: ``play_stream_switches()``.

What DynamoDB does (the UpdateTable API reference, StreamSpecification: "You receive a ValidationException if you
try to enable a stream on a table that already has a stream, or if you try to disable a stream on a table that
doesn't have a stream"; the DynamoDB Streams developer guide: a disabled stream's records stay readable for 24 hours,
and enabling a stream again creates a new one, with a new ARN), as DynamoDB Local 11 plays it too:

- ``StreamEnabled: true`` on a table with an enabled stream is ``ValidationException`` "Table already has an enabled
  stream" (so the view type of an enabled stream cannot change in one call); without ``StreamViewType`` it is a
  ``ValidationException`` too;
- ``StreamEnabled: false`` with a ``StreamViewType``, or on a table without an enabled stream, is a
  ``ValidationException``;
- disabling keeps the stream: ``DescribeStream`` says ``DISABLED`` with its view type, its shard is closed
  (``EndingSequenceNumber``; ``GetRecords`` gives no ``NextShardIterator`` once it is read to its end), its records
  stay readable and ``ListStreams`` lists it; the table's ``LatestStreamArn`` stays until a new stream is enabled;
- enabling again starts a new stream (new label and ARN, a shard of its own whose sequence numbers follow the old
  ones).

moto 5.2.5 instead answers ``ResourceInUseException`` "Cannot enable stream" to all of the refusals above, forgets
a disabled stream (its ``DescribeStream`` fails) and then fails every write to the table (``KeyError`` on the
missing view type). The error texts are DynamoDB Local's where AWS documents none.
"""

from __future__ import annotations

import zlib
from typing import Any

from moto.dynamodb.exceptions import MockValidationException, ResourceNotFoundException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

_PATCHED = "_jobs_local_stream_switches"
#: On a table: its disabled streams, ``{label: (shard, view type)}``.
_CLOSED = "_jobs_local_closed_streams"


def _closed(table: Table) -> dict[str, tuple[StreamShard, str]]:
    found: dict[str, tuple[StreamShard, str]] = getattr(table, _CLOSED, None) or {}
    setattr(table, _CLOSED, found)
    return found


def _label(arn: str) -> str:
    return arn.split("/stream/", 1)[1] if "/stream/" in arn else ""


def update_table_streams(backend: DynamoDBBackend, table: Table, specification: dict[str, Any]) -> None:
    """UpdateTable's ``StreamSpecification`` as DynamoDB applies it (the module's rules).

    Raises:
        MockValidationException: what DynamoDB refuses.
    """
    enabled = bool(specification.get("StreamEnabled"))
    view_type = specification.get("StreamViewType")
    current = table.stream_shard is not None and bool((table.stream_specification or {}).get("StreamEnabled"))
    if enabled:
        if current:
            raise MockValidationException("Table already has an enabled stream")
        if not view_type:
            raise MockValidationException(
                "Invalid StreamViewType: Stream ViewType must not be null or empty when enabling streams."
            )
        closed = _closed(table)
        table.set_stream_specification({"StreamEnabled": True, "StreamViewType": view_type})
        if closed and table.stream_shard is not None:
            shard = table.stream_shard
            shard.id = f"shardId-{len(closed) + 1:020d}-{zlib.crc32(str(table.latest_stream_label).encode()):08x}"
            shard.starting_sequence_number = max(
                old.starting_sequence_number + len(old.items) for old, _ in closed.values()
            )
        return
    if view_type:
        raise MockValidationException(
            "Invalid StreamViewType: Stream StreamEnabled was false but a StreamViewType was present."
        )
    if not current or table.stream_shard is None or table.latest_stream_label is None:
        raise MockValidationException("Table has no stream to disable")
    _closed(table)[table.latest_stream_label] = (table.stream_shard, str(table.stream_specification["StreamViewType"]))  # type: ignore[index]
    table.stream_shard = None
    table.stream_specification = {"StreamEnabled": False}


def _stream(backend: DynamoDBStreamsBackend, arn: str) -> tuple[Table, StreamShard, str, bool]:
    """The table, shard, view type and openness of the stream ``arn``.

    Raises:
        ResourceNotFoundException: no such stream.
    """
    table = backend._get_table_from_arn(arn)
    label = _label(arn)
    closed = _closed(table)
    if label in closed:
        shard, view_type = closed[label]
        return table, shard, view_type, False
    if label == table.latest_stream_label and table.stream_shard is not None:
        return table, table.stream_shard, str(table.stream_specification["StreamViewType"]), True  # type: ignore[index]
    raise ResourceNotFoundException(f"Requested resource not found: Stream: {arn} not found")


def describe_stream(backend: DynamoDBStreamsBackend, arn: str) -> dict[str, Any]:
    """DescribeStream of an enabled or a disabled stream (its shard closed)."""
    table, shard, view_type, open_ = _stream(backend, arn)
    description = shard.to_json()
    if not open_ and shard.items:
        last = shard.starting_sequence_number + len(shard.items) - 1
        description["SequenceNumberRange"]["EndingSequenceNumber"] = str(last)
    return {
        "StreamArn": arn,
        "StreamLabel": _label(arn),
        "StreamStatus": "ENABLED" if open_ else "DISABLED",
        "StreamViewType": view_type,
        "CreationRequestDateTime": shard.created_on,
        "TableName": table.name,
        "KeySchema": table.schema,
        "Shards": [description],
    }


def play_stream_switches() -> None:
    """Patch moto (in this process) so that its streams switch as DynamoDB's do (the module's rules). Idempotent."""
    if getattr(DynamoDBBackend, _PATCHED, False):
        return
    setattr(DynamoDBBackend, _PATCHED, True)
    original_list = DynamoDBStreamsBackend.list_streams
    original_get = ShardIterator.get

    def get_shard_iterator(
        self: DynamoDBStreamsBackend,
        arn: str,
        shard_id: str,
        shard_iterator_type: str,
        sequence_number: str | None = None,
    ) -> ShardIterator:
        _, shard, _, _ = _stream(self, arn)
        if shard.id != shard_id:
            raise ResourceNotFoundException(f"Requested resource not found: Shard: {shard_id} in Stream: {arn}")
        iterator = ShardIterator(self, shard, shard_iterator_type, sequence_number)  # type: ignore[arg-type]
        self.shard_iterators[iterator.arn] = iterator
        return iterator

    def get(self: ShardIterator, limit: int = 1000) -> dict[str, Any]:
        page = original_get(self, limit)
        shard = self.stream_shard
        closed = shard.table.stream_shard is not shard
        following = self.streams_backend.shard_iterators.get(page["NextShardIterator"])
        end = shard.starting_sequence_number + len(shard.items)
        if closed and following is not None and following.sequence_number >= end:
            del page["NextShardIterator"]  # a closed shard read to its end
        return page

    def list_streams(self: DynamoDBStreamsBackend, table_name: str | None = None) -> list[dict[str, Any]]:
        streams = [
            s
            for s in original_list(self, table_name)
            if s["StreamLabel"] not in _closed(self.dynamodb.get_table(s["TableName"]))
        ]
        for table in self.dynamodb.tables.values():
            if table_name is not None and table.name != table_name:
                continue
            streams += [
                {"StreamArn": f"{table.table_arn}/stream/{label}", "TableName": table.name, "StreamLabel": label}
                for label in reversed(list(_closed(table)))
            ]
        return streams

    DynamoDBBackend.update_table_streams = update_table_streams  # type: ignore[method-assign,assignment]
    DynamoDBStreamsBackend.describe_stream = describe_stream  # type: ignore[method-assign,assignment]
    DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator  # type: ignore[method-assign]
    DynamoDBStreamsBackend.list_streams = list_streams  # type: ignore[method-assign]
    ShardIterator.get = get  # type: ignore[method-assign]
