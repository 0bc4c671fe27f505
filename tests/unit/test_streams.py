"""The local DynamoDB Streams event source mapping: filters, and retries from the first failed record."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from local.runtime import MAX_PAYLOAD_BYTES, Invocation, payload_bytes
from local.streams import StreamPoller, fitted, matches
from local.template import UnsupportedTemplate


def test_filters_match_exact_values_and_nested_keys() -> None:
    record = {"eventName": "INSERT", "dynamodb": {"Keys": {"owner_id": {"S": "alice"}}}}

    assert matches({"eventName": ["INSERT"]}, record)
    assert not matches({"eventName": ["MODIFY", "REMOVE"]}, record)
    assert matches({"dynamodb": {"Keys": {"owner_id": {"S": ["alice"]}}}}, record)
    with pytest.raises(UnsupportedTemplate):
        matches({"eventName": [{"prefix": "IN"}]}, record)


class Scripted:
    """A function pool stand-in that answers batches from a script and keeps what it was sent."""

    def __init__(self, *outcomes: Invocation) -> None:
        self.outcomes = list(outcomes)
        self.batches: list[list[str]] = []

    def invoke(self, event: dict[str, Any]) -> Invocation:
        self.batches.append([record["dynamodb"]["SequenceNumber"] for record in event["Records"]])
        return self.outcomes.pop(0)


def records(*sequence_numbers: str, created: float | None = None) -> list[dict[str, Any]]:
    change = {} if created is None else {"ApproximateCreationDateTime": created}
    return [{"dynamodb": {"SequenceNumber": n, **change}} for n in sequence_numbers]


def poller(pool: Scripted, **bounds: Any) -> tuple[StreamPoller, list[dict[str, Any]]]:
    """A mapping on ``pool`` without pauses, and the list its on-failure destination receives."""
    discarded: list[dict[str, Any]] = []
    mapping = StreamPoller(
        None,
        "arn:stream",
        pool,  # type: ignore[arg-type]
        batch_size=10,
        starting_position="TRIM_HORIZON",
        filters=[],
        log=lambda _: None,
        on_failure=lambda text: discarded.append(json.loads(text)),
        retry_pause_seconds=0,
        **bounds,
    )
    return mapping, discarded


ERROR = Invocation(error={"errorType": "Boom", "errorMessage": "x"})
OK = Invocation(payload={"batchItemFailures": []})


def test_a_partial_failure_retries_from_the_first_failed_record() -> None:
    pool = Scripted(Invocation(payload={"batchItemFailures": [{"itemIdentifier": "2"}]}), OK)

    poller(pool)[0]._drain("shard-1", records("1", "2", "3"))

    assert pool.batches == [["1", "2", "3"], ["2", "3"]]


def test_a_function_error_or_an_unknown_identifier_retries_the_whole_batch() -> None:
    for outcome in (ERROR, Invocation(payload={"batchItemFailures": [{"itemIdentifier": "9"}]})):
        pool = Scripted(outcome, OK)
        poller(pool)[0]._drain("shard-1", records("1", "2"))
        assert pool.batches == [["1", "2"], ["1", "2"]]


def test_a_batch_without_failures_is_done() -> None:
    pool = Scripted(OK)

    poller(pool)[0]._drain("shard-1", records("1"))

    assert pool.batches == [["1"]]


def test_after_its_retries_a_failing_record_is_discarded_to_the_destination_and_the_shard_moves_on() -> None:
    failing = Invocation(payload={"batchItemFailures": [{"itemIdentifier": "2"}]})
    pool = Scripted(failing, failing, failing, OK)
    mapping, discarded = poller(pool, maximum_retry_attempts=2)

    mapping._drain("shard-1", records("1", "2"))

    assert pool.batches == [["1", "2"], ["2"], ["2"]]
    [document] = discarded
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["DDBStreamBatchInfo"] == {
        **document["DDBStreamBatchInfo"],
        "shardId": "shard-1",
        "startSequenceNumber": "2",
        "endSequenceNumber": "2",
        "batchSize": 1,
        "streamArn": "arn:stream",
    }
    assert "Records" not in json.dumps(document)  # coordinates only, never the records


def test_a_function_error_bisects_the_batch_without_spending_a_retry() -> None:
    # The poison record "3" fails every batch it is in; bisecting isolates it, and only it is discarded.
    class Poisoned(Scripted):
        def invoke(self, event: dict[str, Any]) -> Invocation:
            self.batches.append([record["dynamodb"]["SequenceNumber"] for record in event["Records"]])
            return ERROR if "3" in self.batches[-1] else OK

    pool = Poisoned()
    mapping, discarded = poller(pool, maximum_retry_attempts=1, bisect_on_error=True)

    mapping._drain("shard-1", records("1", "2", "3", "4"))

    assert pool.batches == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"], ["3"], ["3"], ["4"]]
    assert [d["DDBStreamBatchInfo"]["startSequenceNumber"] for d in discarded] == ["3"]


def test_a_batch_older_than_the_record_age_bound_is_discarded_uninvoked() -> None:
    pool = Scripted()
    mapping, discarded = poller(pool, maximum_record_age_seconds=60)

    mapping._drain("shard-1", records("1", created=time.time() - 61))

    assert pool.batches == []
    assert discarded[0]["requestContext"]["condition"] == "RecordAgeExceeded"


def test_without_bounds_a_failing_batch_is_retried_and_never_discarded() -> None:
    pool = Scripted(*([ERROR] * 20), OK)
    mapping, discarded = poller(pool)

    mapping._drain("shard-1", records("1"))

    assert len(pool.batches) == 21
    assert discarded == []


ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2026-11-30T00:00:00.000"
SHARD = "shardId-00000001700000000000-0123abcd"


@pytest.mark.parametrize(
    ("code", "position"),
    [
        ("TrimmedDataAccessException", {"ShardIteratorType": "TRIM_HORIZON"}),
        ("ExpiredIteratorException", {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "1" * 21}),
    ],
)
def test_a_trimmed_or_expired_iterator_is_replaced_and_the_shard_read_on(code: str, position: dict[str, str]) -> None:
    # botocore's Stubber checks every request and response against DynamoDB Streams' own model.
    import boto3
    from botocore.stub import Stubber

    streams = boto3.client("dynamodbstreams", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    change = {"Keys": {"job_id": {"S": "j"}}, "SequenceNumber": "1" * 21, "SizeBytes": 1, "StreamViewType": "KEYS_ONLY"}
    record = {"eventID": "e", "eventName": "INSERT", "dynamodb": change}
    shards = {"StreamDescription": {"Shards": [{"ShardId": SHARD}]}}
    with Stubber(streams) as stub:
        stub.add_response("describe_stream", shards, {"StreamArn": ARN})
        stub.add_response(
            "get_shard_iterator",
            {"ShardIterator": "i" * 8},
            {"StreamArn": ARN, "ShardId": SHARD, "ShardIteratorType": "TRIM_HORIZON"},
        )
        stub.add_response(
            "get_records", {"Records": [record], "NextShardIterator": "i" * 9}, {"ShardIterator": "i" * 8, "Limit": 10}
        )
        stub.add_response("describe_stream", shards, {"StreamArn": ARN})
        stub.add_client_error("get_records", service_error_code=code, http_status_code=400)
        stub.add_response(
            "get_shard_iterator", {"ShardIterator": "i" * 10}, {"StreamArn": ARN, "ShardId": SHARD, **position}
        )
        stub.add_response("describe_stream", shards, {"StreamArn": ARN})
        stub.add_response(
            "get_records", {"Records": [], "NextShardIterator": "i" * 11}, {"ShardIterator": "i" * 10, "Limit": 10}
        )
        pool: Any = Scripted(OK)
        mapping = StreamPoller(
            streams, ARN, pool, batch_size=10, starting_position="TRIM_HORIZON", filters=[], log=lambda _: None
        )

        assert [mapping.poll_once() for _ in range(3)] == [1, 0, 0]
        stub.assert_no_pending_responses()


class Slow:
    """A function pool stand-in whose invocations with ``slow_owner``'s records take ``seconds``; keeps, in arrival
    order, the owner and sequence number of every record it was sent."""

    def __init__(self, slow_owner: str, seconds: float) -> None:
        self.slow_owner, self.seconds = slow_owner, seconds
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.running = self.most_at_once = 0

    def invoke(self, event: dict[str, Any]) -> Invocation:
        owners = {record["dynamodb"]["Keys"]["owner_id"]["S"] for record in event["Records"]}
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        if self.slow_owner in owners:
            time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        self.seen.extend(
            (record["dynamodb"]["Keys"]["owner_id"]["S"], record["dynamodb"]["SequenceNumber"])
            for record in event["Records"]
        )
        return OK


def keyed(owner: str, *sequence_numbers: int) -> list[dict[str, Any]]:
    return [
        {"dynamodb": {"SequenceNumber": str(n), "Keys": {"owner_id": {"S": owner}, "job_id": {"S": f"job-{n}"}}}}
        for n in sequence_numbers
    ]


def test_with_a_parallelization_factor_a_burst_is_spread_over_lanes_and_each_item_stays_in_order() -> None:
    pool = Slow("burst", seconds=0.05)
    mapping, _ = poller(pool, parallelization_factor=10)  # type: ignore[arg-type]
    burst = keyed("burst", *range(1, 201))
    again = [{"dynamodb": {**record["dynamodb"], "SequenceNumber": str(1000 + n)}} for n, record in enumerate(burst)]
    try:
        mapping._deliver("shard-1", burst + keyed("quiet", 201, 202))
        mapping._deliver("shard-1", again)  # a second change of each item
        deadline = time.monotonic() + 30
        while len(pool.seen) < 402 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        mapping.stop()

    order = [owner for owner, _ in pool.seen]
    assert len(pool.seen) == 402
    assert pool.most_at_once > 1  # lanes run side by side
    # Its lane holds a tenth of the burst: it is not delivered after all of the burst's first changes (the lanes'
    # relative speed depends on the machine's load, so the test asks no more than that).
    last_of_burst = max(i for i, (owner, n) in enumerate(pool.seen) if owner == "burst" and int(n) < 1000)
    assert order.index("quiet") < last_of_burst
    first = {n: i for i, (_, n) in enumerate(pool.seen) if int(n) < 1000}
    for change, (_, n) in enumerate(pool.seen):  # each item's second change after its first
        if int(n) >= 1000:
            assert first[str(int(n) - 1000 + 1)] < change


def test_with_one_lane_records_are_delivered_in_stream_order() -> None:
    pool = Slow("burst", seconds=0)
    mapping, _ = poller(pool)  # type: ignore[arg-type]

    mapping._deliver("shard-1", keyed("burst", 1, 2, 3) + keyed("quiet", 4) + keyed("burst", 5))

    assert [int(n) for _, n in pool.seen] == [1, 2, 3, 4, 5]


def test_a_parallelization_factor_outside_1_to_10_is_refused() -> None:
    for factor in (0, 11):
        with pytest.raises(UnsupportedTemplate):
            StreamPoller(
                None,
                "arn",
                Slow("x", 0),  # type: ignore[arg-type]
                batch_size=10,
                starting_position="LATEST",
                filters=[],
                log=print,
                parallelization_factor=factor,
            )


def test_a_batch_is_cut_where_its_event_would_pass_lambdas_payload_limit() -> None:
    big = "x" * 700_000  # a record with two images near DynamoDB's 400 KB item limit is about this large
    page = [{"dynamodb": {"SequenceNumber": str(n), "NewImage": {"p": {"S": big}}}} for n in range(20)]

    batches = fitted(page)

    assert [record for batch in batches for record in batch] == page  # all of them, in order
    assert len(batches) > 1
    assert all(payload_bytes({"Records": batch}) <= MAX_PAYLOAD_BYTES for batch in batches)
    assert fitted(page[:3]) == [page[:3]]
