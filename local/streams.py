"""A DynamoDB Streams event source mapping: reads a table's stream shard by shard, in order, filters records
with the mapping's ``FilterCriteria``, invokes the function with batches in the Lambda DynamoDB event format,
and retries as Lambda does ("Using AWS Lambda with Amazon DynamoDB", error handling):

- the function errors: the same batch again (the shard waits: records stay in order);
- the function reports ``batchItemFailures`` (sequence numbers): again from the first failed record;
- otherwise the shard moves on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from local.runtime import FunctionPool
from local.template import REGION, UnsupportedTemplate

#: Pause between empty polls of a shard, seconds (Lambda polls each shard about four times a second).
POLL_SECONDS = 0.25


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """True when ``record`` matches an event filter ``pattern`` (exact values, nested keys; the subset of
    EventBridge pattern syntax the template uses). Other operators raise ``UnsupportedTemplate``."""
    for key, expected in pattern.items():
        value = record.get(key)
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(expected, value):
                return False
        elif isinstance(expected, list):
            if any(isinstance(option, dict) for option in expected):
                raise UnsupportedTemplate(f"filter operators in {json.dumps(pattern)} are not emulated")
            if value not in expected:
                return False
        else:
            raise UnsupportedTemplate(f"filter pattern {json.dumps(pattern)} is not an event pattern")
    return True


def to_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record from GetRecords as Lambda delivers it (``ApproximateCreationDateTime`` in epoch seconds)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class StreamPoller:
    """Polls every shard of ``stream_arn`` and feeds ``pool``.

    Args:
        streams: a boto3 ``dynamodbstreams`` client.
        stream_arn: the table's ``StreamArn``.
        pool: the function to invoke.
        batch_size: the mapping's ``BatchSize``.
        starting_position: ``TRIM_HORIZON`` or ``LATEST``.
        filters: the mapping's ``FilterCriteria.Filters[*].Pattern`` values (JSON text); a record is delivered
            when it matches any of them, and dropped otherwise, as Lambda drops it.
        log: writes one line to the stack's output.
    """

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        pool: FunctionPool,
        *,
        batch_size: int,
        starting_position: str,
        filters: list[str],
        log: Callable[[str], None],
    ) -> None:
        self.streams = streams
        self.stream_arn = stream_arn
        self.pool = pool
        self.batch_size = max(1, min(1000, batch_size))
        self.starting_position = starting_position
        self.patterns = [json.loads(text) for text in filters]
        self.log = log
        self._stop = threading.Event()
        self._iterators: dict[str, str | None] = {}
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in flight."""
        self._stop.set()
        self._thread.join(timeout=40)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.poll_once()
            except Exception as error:  # noqa: BLE001 - the mapping keeps polling, as Lambda's does
                self.log(json.dumps({"poller": self.stream_arn, "level": "ERROR", "error": repr(error)}))
                delivered = 0
            if not delivered:
                self._stop.wait(POLL_SECONDS)

    def _shards(self) -> list[str]:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [shard["ShardId"] for shard in description.get("Shards", [])]

    def poll_once(self) -> int:
        """Read each shard once and deliver what it holds; returns the number of records delivered."""
        delivered = 0
        for shard in self._shards():
            if shard not in self._iterators:
                self._iterators[shard] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType=self.starting_position
                )["ShardIterator"]
            iterator = self._iterators[shard]
            if iterator is None:
                continue  # a closed shard, read to its end
            response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = [
                to_record(record, self.stream_arn)
                for record in response.get("Records", [])
                if not self.patterns or any(matches(pattern, record) for pattern in self.patterns)
            ]
            while records and not self._stop.is_set():
                records = self._deliver(records)
                delivered += 1
            self._iterators[shard] = response.get("NextShardIterator")
        return delivered

    def _deliver(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Invoke the function; returns the records still to deliver (empty when the batch succeeded)."""
        invocation = self.pool.invoke({"Records": records})
        if not invocation.ok:
            self._stop.wait(1)
            return records
        failures = (
            (invocation.payload or {}).get("batchItemFailures") or [] if isinstance(invocation.payload, dict) else []
        )
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        failed = [f.get("itemIdentifier") for f in failures if isinstance(f, dict)]
        if not failed:
            return []
        if any(identifier not in sequence_numbers for identifier in failed):
            self._stop.wait(1)
            return records  # an unknown identifier fails the whole batch
        first = min(sequence_numbers.index(identifier) for identifier in failed)
        self.log(json.dumps({"poller": self.stream_arn, "level": "WARNING", "retrying_from": failed[0]}))
        self._stop.wait(1)
        return records[first:]
