"""EventBridge's PutEvents limits on the local stack (issue 11's EventBridge row, local/moto_events.py): at most 10
entries per call, the entries' total size (counted as "Calculating PutEvents event entry size" says) under 1 MB,
and a ``Detail`` that is a JSON object. Each test calls moto's server of the running stack over the wire, as the
publisher does."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.moto_events import MAX_REQUEST_BYTES, TIME_BYTES
from tests.e2e.support import RunningStack

pytestmark = pytest.mark.e2e

SOURCE, DETAIL_TYPE = "limits.probe", "Probe"


@pytest.fixture(scope="module")
def events(stack: RunningStack) -> Any:
    assert stack.process is not None
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("events", endpoint_url=stack.process.aws_endpoint)


@pytest.fixture(scope="module")
def bus(stack: RunningStack) -> str:
    assert stack.process is not None
    found = re.search(r"on bus (\S+);", stack.process.banner)
    assert found is not None
    return found.group(1)


def entry(bus: str, detail_bytes: int) -> dict[str, Any]:
    """An entry whose counted size is exactly ``detail_bytes`` plus its Source, DetailType and Time."""
    filler = "x" * (detail_bytes - len('{"x":""}'))
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps({"x": filler}, separators=(",", ":")),
        "EventBusName": bus,
        "Time": datetime.now(UTC),
    }


def overhead() -> int:
    return len(SOURCE) + len(DETAIL_TYPE) + TIME_BYTES


def test_more_than_ten_entries_are_refused(events: Any, bus: str) -> None:
    assert events.put_events(Entries=[entry(bus, 100)] * 10)["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[entry(bus, 100)] * 11)
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_entries_of_1_mb_in_total_are_refused_and_one_byte_less_is_put(events: Any, bus: str) -> None:
    last = MAX_REQUEST_BYTES - 1 - 3 * 200_000 - 4 * overhead()
    fits = [entry(bus, 200_000)] * 3 + [entry(bus, last)]

    assert events.put_events(Entries=fits)["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[entry(bus, 200_000)] * 3 + [entry(bus, last + 1)])
    assert refused.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "Total size of the entries in the request is over the limit.",
    }


def test_a_detail_that_is_not_a_json_object_fails_its_entry_only(events: Any, bus: str) -> None:
    good = entry(bus, 100)
    bad = {**good, "Detail": "[1, 2]"}

    response = events.put_events(Entries=[good, bad, good])

    assert response["FailedEntryCount"] == 1
    assert [e.get("ErrorCode") for e in response["Entries"]] == [None, "MalformedDetail", None]
    assert all("EventId" in e for e in (response["Entries"][0], response["Entries"][2]))
