"""The local DynamoDB Streams event source mapping: filters, and retries from the first failed record."""

from __future__ import annotations

from typing import Any

import pytest

from local.runtime import Invocation
from local.streams import StreamPoller, matches
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


def records(*sequence_numbers: str) -> list[dict[str, Any]]:
    return [{"dynamodb": {"SequenceNumber": n}} for n in sequence_numbers]


def poller(pool: Scripted) -> StreamPoller:
    mapping = StreamPoller(
        None,
        "arn:stream",
        pool,  # type: ignore[arg-type]
        batch_size=10,
        starting_position="TRIM_HORIZON",
        filters=[],
        log=lambda _: None,
    )
    mapping._stop.set()  # no pauses between retries in a test
    return mapping


def test_a_partial_failure_retries_from_the_first_failed_record() -> None:
    pool = Scripted(Invocation(payload={"batchItemFailures": [{"itemIdentifier": "2"}]}))

    left = poller(pool)._deliver(records("1", "2", "3"))

    assert [r["dynamodb"]["SequenceNumber"] for r in left] == ["2", "3"]


def test_a_function_error_or_an_unknown_identifier_retries_the_whole_batch() -> None:
    for outcome in (
        Invocation(error={"errorType": "Boom", "errorMessage": "x"}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": "9"}]}),
    ):
        assert len(poller(Scripted(outcome))._deliver(records("1", "2"))) == 2


def test_a_batch_without_failures_is_done() -> None:
    assert poller(Scripted(Invocation(payload={"batchItemFailures": []})))._deliver(records("1")) == []
