"""bench.cost: the bill's arithmetic on small known inputs (no timing, no AWS)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from bench.cost import (
    FUNCTIONS,
    FunctionUse,
    JobUse,
    Prices,
    attribute_bytes,
    bill,
    entry_bytes,
    item_bytes,
    job_use,
    platform_bytes,
    sampled_share,
    total,
)

#: Round prices, so that every line's dollars are checked by hand.
PRICES = Prices(
    api_request=1.0,
    lambda_request=2.0,
    lambda_gb_second=3.0,
    dynamodb_wru=4.0,
    dynamodb_rru=5.0,
    sqs_request=6.0,
    event=7.0,
    trace=8.0,
    log_gb=9.0,
)


def test_each_line_is_quantity_times_price_with_lambda_rounding_up_to_the_millisecond() -> None:
    use = JobUse(
        functions=(
            # 1.2 ms is billed as 2 ms, 99.5 ms of INIT as 100 ms; 1024 MB is 1 GB.
            FunctionUse("a", memory_mb=1024, invocations=2, duration_ms=1.2, init_ms=99.5, cold_share=0.5),
            FunctionUse("b", memory_mb=512, invocations=0.5, duration_ms=10, init_ms=0, cold_share=0),
        ),
        api_requests=3,
        wru=14,
        rru=1,
        sqs_requests=2.5,
        events=4,
        traces=0.25,
        log_bytes=2**30 / 1000,
    )
    lines = {line.item: line for line in bill(use, PRICES, jobs=1000)}

    assert lines["API Gateway HTTP API requests"].quantity == 3000
    assert lines["Lambda requests"].quantity == 2500
    assert lines["Lambda requests"].dollars == pytest.approx(5000)
    # a: 2 x 0.002 s x 1 GB; b: 0.5 x 0.010 s x 0.5 GB; per job, times 1000 jobs.
    assert lines["Lambda duration (arm64)"].quantity == pytest.approx(1000 * (2 * 0.002 + 0.5 * 0.010 * 0.5))
    assert lines["Lambda duration (arm64)"].dollars == pytest.approx(3 * 6.5)
    # a only: 2 invocations x 0.5 cold x 0.1 s x 1 GB.
    assert lines["Lambda INIT (cold starts)"].quantity == pytest.approx(100)
    assert lines["Lambda INIT (cold starts)"].dollars == pytest.approx(300)
    assert lines["DynamoDB writes (on-demand)"].dollars == pytest.approx(14 * 1000 * 4)
    assert lines["DynamoDB reads (on-demand)"].dollars == pytest.approx(1000 * 5)
    assert lines["SQS requests"].dollars == pytest.approx(2500 * 6)
    assert lines["EventBridge events"].dollars == pytest.approx(4000 * 7)
    assert lines["X-Ray traces recorded"].dollars == pytest.approx(250 * 8)
    assert lines["CloudWatch Logs ingestion"].quantity == pytest.approx(1.0)  # 1000 x 2^30/1000 B = 1 GB
    assert lines["CloudWatch Logs ingestion"].dollars == pytest.approx(9)
    expected = 3000 + 5000 + 19.5 + 300 + 56000 + 5000 + 15000 + 28000 + 2000 + 9
    assert total(bill(use, PRICES, jobs=1000)) == pytest.approx(expected)


def test_the_default_prices_are_the_us_east_1_figures_read() -> None:
    one = JobUse((), api_requests=1, wru=1, rru=1, sqs_requests=1, events=1, traces=1, log_bytes=0)
    lines = {line.item: line.dollars for line in bill(one, jobs=1_000_000)}
    assert lines["API Gateway HTTP API requests"] == pytest.approx(1.00)
    assert lines["DynamoDB writes (on-demand)"] == pytest.approx(0.625)
    assert lines["DynamoDB reads (on-demand)"] == pytest.approx(0.125)
    assert lines["SQS requests"] == pytest.approx(0.40)
    assert lines["EventBridge events"] == pytest.approx(1.00)
    assert lines["X-Ray traces recorded"] == pytest.approx(5.00)


def test_the_sampling_reservoir_then_five_percent() -> None:
    assert sampled_share(0.5) == 1.0
    assert sampled_share(3.0) == pytest.approx((1 + 0.05 * 2) / 3)
    assert sampled_share(math.inf) == 0.05


def test_item_and_entry_sizes_follow_the_documented_rules() -> None:
    # names' bytes plus values': "xyz" 3; 123 has 3 significant digits: ceil(3/2) + 1 = 3; True 1.
    assert item_bytes({"a": "xyz", "n": Decimal("123"), "b": True}) == (1 + 3) + (1 + 3) + (1 + 1)
    assert attribute_bytes({"k": "v"}) == 3 + (1 + 1 + 1)  # a map: 3, plus per member its name, value and 1
    assert attribute_bytes(["v", "w"]) == 3 + 2 * (1 + 1)
    entry = {"Source": "s" * 10, "DetailType": "d" * 5, "Detail": "{}", "Time": object()}
    assert entry_bytes(entry) == 14 + 10 + 5 + 2


def step(function: str, invocations: int, durations: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "function": function,
        "invocations": invocations,
        "durations_ms": durations,
        "units": extra.get("units", {}),
        "sqs_billed": extra.get("sqs_billed", 0),
        "events": extra.get("events", 0),
        "log_bytes": extra.get("log_bytes", 0),
        "emf_bytes": extra.get("emf_bytes", 0),
    }


def measured() -> dict[str, Any]:
    """Two jobs, steady: what ``measure()`` would return for them."""
    return {
        "jobs": {"steady": 2, "busy": 2},
        "steady": {
            "create": step("ApiFunction", 2, [10, 30, 20], units={"WRU JobsTable": 2.0, "WRU IdempotencyTable": 4.0}),
            "relay": step("EnqueueJobsFunction", 2, [5, 5], sqs_billed=2, log_bytes=100, emf_bytes=40),
            "consumer": step("ProcessJobsFunction", 2, [8, 8], units={"WRU JobsTable": 4.0}),
            "get": step("ApiFunction", 2, [3, 3], units={"RRU JobsTable": 2.0}),
            "delete": step("ApiFunction", 2, [4, 4], units={"WRU JobsTable": 2.0}),
            "publisher": step("PublishJobEventsFunction", 8, [2] * 8, events=8),
        },
        "peer_send_ms": [3, 4, 100],
        "init_ms": {name: [500.0] for name in FUNCTIONS},
        "memory_mb": dict.fromkeys(FUNCTIONS, 512),
        "access_log_bytes": 200,
    }


def test_a_job_uses_what_the_steps_measured_plus_the_pollers_and_lambdas_lines() -> None:
    use = job_use(measured(), "steady", cold_share=0)
    durations = {f.name: f.duration_ms for f in use.functions}
    assert durations["ApiFunction (create)"] == 20  # the median invocation
    assert sum(f.invocations for f in use.functions) == 9  # create, relay, consumer, get, delete, 4 events
    assert use.wru == 6  # (2 + 4 + 4 + 2) / 2 jobs
    assert use.rru == 1
    assert use.sqs_requests == 1 + 2  # the relay's send, the poller's receive and delete
    assert use.events == 4
    assert use.api_requests == 3
    assert use.log_bytes == pytest.approx((100 + 40) / 2 + 9 * platform_bytes(cold_share=0) + 3 * 200)


def test_the_peer_drops_the_relay_and_sends_from_create() -> None:
    ours, peer = job_use(measured(), "steady"), job_use(measured(), "steady", peer=True)
    assert [f.name for f in peer.functions if "Enqueue" in f.name] == []
    create = {f.name: f.duration_ms for f in peer.functions}["ApiFunction (create)"]
    assert create == 20 + 4  # plus the median SendMessage
    assert peer.sqs_requests == ours.sqs_requests  # one SendMessage instead of the relay's one batch of one
    assert peer.wru == ours.wru
    # the relay's lines move to the API, its EMF line and its Lambda lines go
    assert ours.log_bytes - peer.log_bytes == pytest.approx(40 / 2 + platform_bytes(cold_share=0.01))
