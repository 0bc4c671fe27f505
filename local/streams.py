"""A DynamoDB Streams event source mapping: reads a table's stream shard by shard, in order, filters records
with the mapping's ``FilterCriteria``, invokes the function with batches in the Lambda DynamoDB event format,
and retries as Lambda does ("Using AWS Lambda with Amazon DynamoDB", error handling; "Lambda parameters for
Amazon DynamoDB event source mappings"; "Retaining discarded records for a DynamoDB event source in Lambda"):

- the function errors: with ``BisectBatchOnFunctionError`` a batch of more than one record is split in two and
  each half tried on its own (a split does not count as a retry); otherwise the same batch again, the shard
  waiting (records stay in order);
- the function reports ``batchItemFailures`` (sequence numbers): again from the first failed record;
- each retry counts toward ``MaximumRetryAttempts`` and a batch whose oldest record is older than
  ``MaximumRecordAgeInSeconds`` is not invoked again (-1, the default of both: no bound); a batch past either
  bound is discarded, its coordinates sent to ``DestinationConfig.OnFailure`` (an SQS queue) as Lambda sends
  them (``DDBStreamBatchInfo``; never the records), and the shard moves on;
- otherwise the shard moves on;
- a batch is cut short where its event would pass Lambda's 6 MB synchronous payload limit (``fitted``).

``ParallelizationFactor`` (1 to 10) processes that many batches of a shard at once, each record going to the lane
of its item's keys (partition and sort key), so one item's records stay in order, which is the order Lambda keeps
for a DynamoDB stream with concurrent batches (the Lambda developer guide keeps order "at the partition-key level"
for Kinesis, and for DynamoDB at the item's, partition and sort key; this plays the narrower of the two, so records
of different items of one partition key may be processed out of order here as they may be on AWS). With more than
one lane the reader reads ahead into the lanes (at most ``READ_AHEAD_RECORDS`` records held), as Lambda's poller
feeds its concurrent batches; each lane retries, splits and discards on its own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from local.poller import DISABLED_PAUSE_SECONDS, enabled_event
from local.runtime import MAX_PAYLOAD_BYTES, FunctionPool, Invocation, payload_bytes
from local.template import ACCOUNT_ID, REGION, UnsupportedTemplate

#: Pause between empty polls of a shard, seconds (Lambda polls each shard about four times a second).
POLL_SECONDS = 0.25
#: The most records a mapping with several lanes holds read but not yet delivered; the reader waits beyond it.
READ_AHEAD_RECORDS = 10_000


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


def to_record(record: Mapping[str, Any], stream_arn: str, identity: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A record from GetRecords as Lambda delivers it (``ApproximateCreationDateTime`` in epoch seconds), with
    ``userIdentity`` when the record has one (GetRecords' own, or ``identity``: TTL's, played locally)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    delivered = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }
    user_identity = record.get("userIdentity") or identity
    if user_identity:
        delivered["userIdentity"] = {"type": user_identity["type"], "principalId": user_identity["principalId"]}
    return delivered


def fitted(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``records`` cut, in order, into batches whose event (``{"Records": [...]}``) fits Lambda's synchronous payload
    limit (``MAX_PAYLOAD_BYTES``): Lambda sends a batch of up to ``BatchSize`` records "up to the payload limit for
    synchronous invocation (6 MB)" (CreateEventSourceMapping, API reference, ``BatchSize``). A single record past the
    limit cannot occur: a stream record holds at most two items of 400 KB."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = len('{"Records": []}')
    for record in records:
        grows = payload_bytes(record) + 2  # the record and its separator
        if batches[-1] and size + grows > MAX_PAYLOAD_BYTES:
            batches.append([])
            size = len('{"Records": []}')
        batches[-1].append(record)
        size += grows
    return batches


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
        maximum_retry_attempts: retries of a failing batch before it is discarded (-1: until it expires).
        maximum_record_age_seconds: a batch whose oldest record is older is discarded (-1: no bound).
        bisect_on_error: split a batch that fails with a function error (``BisectBatchOnFunctionError``).
        on_failure: sends one discarded batch's invocation record (a JSON text) to the on-failure destination;
            None drops it, as Lambda does without a destination.
        retry_pause_seconds: the pause before a retry.
        enabled: set while the mapping is enabled; while it is clear, no shard is read.
        parallelization_factor: the mapping's ``ParallelizationFactor``: concurrent batches per shard (1 to 10).
        identity_of: gives a GetRecords record's ``userIdentity`` when the local stack knows it (TTL's deletes,
            ``local.ttl``), else None.
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
        maximum_retry_attempts: int = -1,
        maximum_record_age_seconds: int = -1,
        bisect_on_error: bool = False,
        on_failure: Callable[[str], None] | None = None,
        retry_pause_seconds: float = 1.0,
        enabled: threading.Event | None = None,
        parallelization_factor: int = 1,
        identity_of: Callable[[Mapping[str, Any]], dict[str, str] | None] | None = None,
    ) -> None:
        if not 1 <= parallelization_factor <= 10:
            raise UnsupportedTemplate(f"ParallelizationFactor is 1 to 10, not {parallelization_factor}")
        self.identity_of = identity_of
        self.streams = streams
        self.stream_arn = stream_arn
        self.pool = pool
        self.batch_size = max(1, min(1000, batch_size))
        self.starting_position = starting_position
        self.patterns = [json.loads(text) for text in filters]
        self.log = log
        self.maximum_retry_attempts = maximum_retry_attempts
        self.maximum_record_age_seconds = maximum_record_age_seconds
        self.bisect_on_error = bisect_on_error
        self.on_failure = on_failure
        self.retry_pause_seconds = retry_pause_seconds
        name = pool.spec.logical_id if hasattr(pool, "spec") else "function"
        self._function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        self._stop = threading.Event()
        self.enabled = enabled or enabled_event()
        #: Set once the poller has described its stream (a created mapping is ``Creating`` until then).
        self.started = threading.Event()
        self._iterators: dict[str, str | None] = {}
        self._last: dict[str, str] = {}  # the last sequence number read, per shard
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self.parallelization_factor = parallelization_factor
        self._lanes: dict[tuple[str, int], _Lane] = {}

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in flight (of each lane)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=40)
        for lane in list(self._lanes.values()):
            lane.thread.join(timeout=40)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.enabled.is_set():
                self.started.set()  # a mapping created disabled is Disabled, not Creating
                self._stop.wait(DISABLED_PAUSE_SECONDS)
                continue
            try:
                delivered = self.poll_once()
                self.started.set()
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
        if sum(len(lane.records) for lane in list(self._lanes.values())) >= READ_AHEAD_RECORDS:
            return 0
        for shard in self._shards():
            if shard not in self._iterators:
                self._iterators[shard] = self._iterator(shard)
            iterator = self._iterators[shard]
            if iterator is None:
                continue  # a closed shard, read to its end
            try:
                response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code not in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                    raise
                # As Lambda's mapping does: a new iterator after the last record read (an iterator lives 15
                # minutes), or from the oldest record still held when the position was trimmed away.
                self.log(json.dumps({"poller": self.stream_arn, "level": "WARNING", "new_iterator": code}))
                self._iterators[shard] = self._iterator(shard, trimmed=code == "TrimmedDataAccessException")
                continue
            if response.get("Records"):
                self._last[shard] = response["Records"][-1]["dynamodb"]["SequenceNumber"]
            records = [
                to_record(record, self.stream_arn, self.identity_of(record) if self.identity_of else None)
                for record in response.get("Records", [])
                if not self.patterns or any(matches(pattern, record) for pattern in self.patterns)
            ]
            if records:
                delivered += self._deliver(shard, records)
            self._iterators[shard] = response.get("NextShardIterator")
        return delivered

    def _deliver(self, shard: str, records: list[dict[str, Any]]) -> int:
        """Deliver one page of a shard's records: at once, in order, with one lane; else into the lane of each
        record's item (the hash of its keys; returns the records handed over)."""
        if self.parallelization_factor == 1:
            return self._drain(shard, records)
        for record in records:
            keys = json.dumps(record["dynamodb"].get("Keys", {}), sort_keys=True)
            index = zlib.crc32(keys.encode()) % self.parallelization_factor
            lane = self._lanes.get((shard, index))
            if lane is None:
                lane = self._lanes[(shard, index)] = _Lane(self, shard)
            lane.put(record)
        return len(records)

    def _iterator(self, shard: str, *, trimmed: bool = False) -> str | None:
        """A shard iterator: after the last record read from ``shard`` when there is one (and it was not trimmed
        away), else at the mapping's starting position (TRIM_HORIZON: the oldest record the stream holds)."""
        position: dict[str, str] = {"ShardIteratorType": self.starting_position}
        if trimmed:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
        elif shard in self._last:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last[shard]}
        found = self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard, **position)
        iterator = found.get("ShardIterator")
        return str(iterator) if iterator else None

    def _drain(self, shard: str, records: list[dict[str, Any]]) -> int:
        """Deliver ``records`` (one shard's, in order) until each is done or discarded; returns the invocations."""
        pending = fitted(records)  # batches still to deliver, in order; a bisected batch becomes its two halves
        attempts = invocations = 0
        while pending and not self._stop.is_set():
            batch = pending[0]
            if self._too_old(batch):
                self._discard(shard, batch, "RecordAgeExceeded", attempts)
                pending.pop(0)
                attempts = 0
                continue
            invocation = self.pool.invoke({"Records": batch})
            invocations += 1
            remaining = self._remaining(batch, invocation)
            if not remaining:
                pending.pop(0)
                attempts = 0
                continue
            if not invocation.ok and self.bisect_on_error and len(batch) > 1:
                half = len(batch) // 2
                pending[0:1] = [batch[:half], batch[half:]]
                continue
            attempts += 1
            if 0 <= self.maximum_retry_attempts < attempts:
                self._discard(shard, remaining, "RetryAttemptsExhausted", attempts)
                pending.pop(0)
                attempts = 0
                continue
            self.log(
                json.dumps(
                    {
                        "poller": self.stream_arn,
                        "level": "WARNING",
                        "retrying_from": remaining[0]["dynamodb"]["SequenceNumber"],
                        "attempt": attempts,
                    }
                )
            )
            pending[0] = remaining
            self._stop.wait(self.retry_pause_seconds)
        return invocations

    @staticmethod
    def _remaining(records: list[dict[str, Any]], invocation: Invocation) -> list[dict[str, Any]]:
        """The records still to deliver after ``invocation``: none when the batch succeeded, all after a function
        error or a response naming an unknown identifier, else from the first failed record on."""
        if not invocation.ok:
            return records
        payload = invocation.payload
        failures = (payload or {}).get("batchItemFailures") or [] if isinstance(payload, dict) else []
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        failed = [f.get("itemIdentifier") for f in failures if isinstance(f, dict)]
        if not failed:
            return []
        if any(identifier not in sequence_numbers for identifier in failed):
            return records  # an unknown identifier fails the whole batch
        return records[min(sequence_numbers.index(identifier) for identifier in failed) :]

    def _too_old(self, records: list[dict[str, Any]]) -> bool:
        if self.maximum_record_age_seconds < 0:
            return False
        oldest = records[0]["dynamodb"].get("ApproximateCreationDateTime")
        return isinstance(oldest, int | float) and time.time() - oldest > self.maximum_record_age_seconds

    def _discard(self, shard: str, records: list[dict[str, Any]], condition: str, attempts: int) -> None:
        """Skip ``records`` for good, sending their coordinates to the on-failure destination when there is one.

        The record's shape is the one AWS documents for a DynamoDB stream's on-failure destination
        (``requestContext``, ``responseContext``, ``version``, ``timestamp``, ``DDBStreamBatchInfo``); the
        ``condition`` names (``RetryAttemptsExhausted``, ``RecordAgeExceeded``) are as we read that page.
        """
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]

        def arrival(change: Mapping[str, Any]) -> str:
            created = change.get("ApproximateCreationDateTime", time.time())
            return datetime.fromtimestamp(float(created), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        document = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": attempts + 1,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.log(
            json.dumps({"poller": self.stream_arn, "level": "ERROR", "discarded": len(records), "condition": condition})
        )
        if self.on_failure is not None:
            self.on_failure(json.dumps(document))


class _Lane:
    """One of a shard's concurrent batches (``ParallelizationFactor``): its records in order, delivered by a thread
    of its own in batches of up to the mapping's ``BatchSize``, with the mapping's retries."""

    def __init__(self, poller: StreamPoller, shard: str) -> None:
        self.poller = poller
        self.shard = shard
        self.records: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"stream-lane-{shard[-8:]}", daemon=True)
        self.thread.start()

    def put(self, record: dict[str, Any]) -> None:
        """Queue a record behind the lane's others."""
        with self._ready:
            self.records.append(record)
            self._ready.notify()

    def _run(self) -> None:
        poller = self.poller
        while not poller._stop.is_set():
            with self._ready:
                if not self.records:
                    self._ready.wait(POLL_SECONDS)
                    continue
            if not poller.enabled.is_set():
                poller._stop.wait(DISABLED_PAUSE_SECONDS)
                continue
            with self._ready:
                batch = [self.records.popleft() for _ in range(min(poller.batch_size, len(self.records)))]
            try:
                poller._drain(self.shard, batch)
            except Exception as error:  # noqa: BLE001 - the lane keeps delivering, as Lambda's does
                poller.log(json.dumps({"poller": poller.stream_arn, "level": "ERROR", "error": repr(error)}))
