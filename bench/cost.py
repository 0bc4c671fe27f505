"""Benchmark 9: what a million ``noop`` jobs cost on AWS, each created, run, read once (GET) and deleted, ours
(the table's stream is the outbox) and the peer design in which the API sends the SQS message itself.

The bill is a formula (``bill``): per job, each AWS request, Lambda invocation, GB-second, write and read unit,
event, trace and logged byte, times one region's published price. Its parameters come from two places:

- **measured here** (``measure``): the handlers run in a process of their own against moto's server (SQS, SSM,
  EventBridge) and DynamoDB Local (which reports consumed capacity as DynamoDB does, per table and per index with
  ``ReturnConsumedCapacity=INDEXES``); the table's real stream records feed the outbox relay and the event
  publisher, the queue's real messages feed the consumer. Counted with botocore hooks (``bench.calls``): every
  AWS call per function, the SQS requests as SQS bills them (64 KB chunks of payload per request), EventBridge
  entries, write and read units, the lines and bytes each function writes to stdout (its CloudWatch log
  stream), and each invocation's wall time. Two shapes of traffic: *steady* (every stream and queue batch holds
  one record, as at a million jobs a month, 0.39 jobs/s) and *busy* (full batches: the relay's and the
  publisher's BatchSize 100, the consumer's 10);
- **assumed, and said so** (``ASSUMPTIONS``): what Lambda's pollers do on our behalf (one ReceiveMessage and one
  DeleteMessageBatch per consumer batch; the stream's GetRecords, free), Lambda's own log lines (START, END,
  REPORT, INIT_START), API Gateway's access log line, X-Ray's sampling, the share of cold starts.

Durations here are not Lambda's: they are this machine's wall times of the handlers against local emulators
(DynamoDB Local answers in a few ms, as DynamoDB does in-region), labelled as such and taken as parameters.
Billed INIT is a fresh interpreter importing each function's handler module (the layer's bytecode included),
measured here too.

    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.cost            # measure, then print the bill
    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.cost --quick    # 2 jobs steady, 10 busy
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

from bench import calls
from bench.common import PYTHON, ROOT, Aws, LambdaContext, client, lambda_environment, moto_server, run_child, table
from local.dynamodb_local import running as dynamodb_local
from local.resources import LocalStack
from local.template import REGION, load_template

# --- Prices ----------------------------------------------------------------------------------------------------

#: The region priced, and the day its prices were read (from the pages named in ``PRICE_SOURCES``).
PRICED_REGION = "us-east-1"
PRICES_READ_ON = "2026-12-01"
#: Bytes in one billed GB of log data (AWS bills data in binary gigabytes; 10**9 would add 7 %).
GB = 2**30


@dataclass(frozen=True)
class Prices:
    """US dollars per unit, ``PRICED_REGION``, the first (smallest) volume tier of each, without free tiers (they
    are per account and month, not per job). Sources in ``PRICE_SOURCES``."""

    api_request: float = 1.00 / 1e6  # HTTP API request (metered in 512 KB increments)
    lambda_request: float = 0.20 / 1e6
    lambda_gb_second: float = 0.0000133334  # arm64, first 7.5 billion GB-s a month
    dynamodb_wru: float = 0.625 / 1e6  # on-demand write request unit (1 KB), Standard table class
    dynamodb_rru: float = 0.125 / 1e6  # on-demand read request unit (4 KB strongly consistent, 2 eventually)
    sqs_request: float = 0.40 / 1e6  # standard queue request (each 64 KB chunk of payload is one request)
    event: float = 1.00 / 1e6  # EventBridge custom event (each 64 KB chunk of an entry is one event)
    trace: float = 5.00 / 1e6  # X-Ray trace recorded
    log_gb: float = 0.50  # CloudWatch Logs ingestion, Standard class (Lambda's vended logs: first 10 TB tier)


#: Where each price was read, on ``PRICES_READ_ON``, and how sure it is. No internet here but a stored index of
#: public pages: the AWS pricing pages render their tables client-side, so where the stored copy of AWS's own
#: page holds no figure, the figure is the one third-party pages quote from it (named).
PRICE_SOURCES: dict[str, str] = {
    "api_request": "https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, metered in 512 KB increments; the "
    "$1.00 per million of the first 300 million as quoted by apigatewaycost.com and awsforengineers.com)",
    "lambda_request": "https://aws.amazon.com/lambda/pricing/ ($0.20 per million, as quoted by cloudchipr.com "
    '"AWS Lambda Pricing Breakdown", US East)',
    "lambda_gb_second": "https://aws.amazon.com/lambda/pricing/ (Arm, first 7.5 billion GB-s: $0.0000133334, as "
    "quoted by cloudchipr.com); INIT billed like INVOKE since 2025-08-01 for on-demand ZIP functions on managed "
    "runtimes: https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase",
    "dynamodb_wru": "https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per million WRU after the "
    "2024-11-01 halving, as quoted by airbyte.com and jusdb.com); GetRecords by Lambda triggers free: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CostOptimization_StreamsUsage.html",
    "dynamodb_rru": "https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.125 per million RRU, same sources)",
    "sqs_request": "https://aws.amazon.com/sqs/pricing/ ($0.40 per million standard requests, 64 KB chunks, empty "
    "receives billed: as quoted by cloudburn.io and factualminds.com). Fair queues (a MessageGroupId on a "
    "standard queue) add nothing in AWS's announcement; cloudburn.io alone claims a $0.10 per million surcharge, "
    "not counted here",
    "event": "https://aws.amazon.com/eventbridge/pricing/ (custom events $1.00 per million, 64 KB chunks, as "
    "quoted by blog.awsfundamentals.com and cloudburn.io)",
    "trace": "https://aws.amazon.com/xray/pricing/ ($5 per million traces recorded, 0.000005 USD a trace: AWS's "
    "own page, read in its German and Chinese copies)",
    "log_gb": "https://aws.amazon.com/cloudwatch/pricing/ ($0.50 per GB ingested, Standard, us-east-1, as quoted "
    "by duckbillgroup.com for Lambda's tiered vended logs since 2025-05-01, first tier, and hykell.com)",
}


# --- The formula -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionUse:
    """One function's share of one job.

    Attributes:
        name: the function's logical id.
        memory_mb: its ``MemorySize`` (template.yaml).
        invocations: invocations per job (1 / records per batch for the stream and queue functions).
        duration_ms: one invocation's duration, before Lambda rounds it up to the next whole millisecond.
        init_ms: one cold start's INIT duration (billed since 2025-08-01), rounded up alike.
        cold_share: cold starts per invocation.
    """

    name: str
    memory_mb: int
    invocations: float
    duration_ms: float
    init_ms: float
    cold_share: float


@dataclass(frozen=True)
class JobUse:
    """What one job uses, each figure per job: ``functions`` and the requests of every other service."""

    functions: tuple[FunctionUse, ...]
    api_requests: float  # HTTP API requests, each under 512 KB
    wru: float  # DynamoDB write request units, every table and index
    rru: float  # DynamoDB read request units
    sqs_requests: float  # billed SQS requests (64 KB chunks), ours and Lambda's pollers'
    events: float  # EventBridge entries (64 KB chunks)
    traces: float  # X-Ray traces recorded
    log_bytes: float  # bytes ingested by CloudWatch Logs


@dataclass(frozen=True)
class Line:
    """A line of the bill: ``quantity`` of ``unit`` for ``jobs`` jobs, ``dollars`` in USD."""

    item: str
    quantity: float
    unit: str
    dollars: float


#: The formula ``bill`` computes, as the table prints it (N jobs; f runs over the functions).
FORMULA = (
    "cost(N) = N x [ p_api·r_api + p_req·Σf n_f + p_gbs·Σf n_f·⌈d_f⌉/1000·m_f/1024"
    " + p_gbs·Σf n_f·c_f·⌈i_f⌉/1000·m_f/1024 + p_wru·w + p_rru·r + p_sqs·q + p_evt·e + p_xray·t + p_log·b/2^30 ]"
)


def gb_seconds(use: FunctionUse, milliseconds: float) -> float:
    """GB-seconds of one period of ``milliseconds`` (rounded up to a whole ms, as Lambda bills) at the function's
    memory (1 GB = 1024 MB)."""
    return math.ceil(milliseconds) / 1000 * use.memory_mb / 1024


def bill(use: JobUse, prices: Prices = Prices(), jobs: int = 1_000_000) -> list[Line]:
    """The bill of ``jobs`` jobs that each use ``use``, line by line (``FORMULA``). Free tiers are left out."""
    functions = use.functions
    requests = sum(f.invocations for f in functions)
    duration = sum(f.invocations * gb_seconds(f, f.duration_ms) for f in functions)
    init = sum(f.invocations * f.cold_share * gb_seconds(f, f.init_ms) for f in functions)
    return [
        Line(
            "API Gateway HTTP API requests",
            jobs * use.api_requests,
            "requests",
            jobs * use.api_requests * prices.api_request,
        ),
        Line("Lambda requests", jobs * requests, "requests", jobs * requests * prices.lambda_request),
        Line("Lambda duration (arm64)", jobs * duration, "GB-s", jobs * duration * prices.lambda_gb_second),
        Line("Lambda INIT (cold starts)", jobs * init, "GB-s", jobs * init * prices.lambda_gb_second),
        Line("DynamoDB writes (on-demand)", jobs * use.wru, "WRU", jobs * use.wru * prices.dynamodb_wru),
        Line("DynamoDB reads (on-demand)", jobs * use.rru, "RRU", jobs * use.rru * prices.dynamodb_rru),
        Line("SQS requests", jobs * use.sqs_requests, "requests", jobs * use.sqs_requests * prices.sqs_request),
        Line("EventBridge events", jobs * use.events, "events", jobs * use.events * prices.event),
        Line("X-Ray traces recorded", jobs * use.traces, "traces", jobs * use.traces * prices.trace),
        Line("CloudWatch Logs ingestion", jobs * use.log_bytes / GB, "GB", jobs * use.log_bytes / GB * prices.log_gb),
    ]


def total(lines: Sequence[Line]) -> float:
    """The sum of a bill's lines, USD."""
    return sum(line.dollars for line in lines)


# --- Assumptions (what Lambda and the other services do on our behalf) -----------------------------------------

#: SQS requests Lambda's pollers make per consumer batch: one ReceiveMessage that returned it and one
#: DeleteMessageBatch of its successful records (the local stack's poller does the same; AWS does not publish
#: which delete call its pollers use: one batch delete per batch is the assumption).
POLLER_SQS_REQUESTS_PER_BATCH = 2
#: The share of invocations that start cold: AWS's own figure, "INITs (cold starts) typically occur in under 1 %
#: of invocations" (AWS Compute Blog, "AWS Lambda standardizes billing for INIT Phase", 2025).
COLD_SHARE = 0.01
#: X-Ray's default sampling rule: a reservoir of one trace a second, then 5 % of the rest ("By default, the X-Ray
#: SDK records the first request each second, and five percent of any additional requests": X-Ray developer
#: guide, "Configuring sampling rules"). Lambda with Active tracing and no incoming trace header asks X-Ray for the
#: decision, and X-Ray shares a rule's reservoir among everything that uses it (its quotas, "Using sampling rules
#: with the X-Ray API"). Each invocation is counted as a trace of its own: an upper bound, if SQS's
#: ``AWSTraceHeader`` joins a consumer's invocation to its sender's trace.
RESERVOIR_PER_SECOND = 1.0
FIXED_RATE = 0.05
#: Jobs a second in each shape: a million a month (30 days) when steady; busy is any rate far above the reservoir.
JOBS_PER_SECOND = {"steady": 1_000_000 / (30 * 86400), "busy": math.inf}


def sampled_share(invocations_per_second: float) -> float:
    """The share of invocations the default rule records at a steady ``invocations_per_second``."""
    if invocations_per_second <= RESERVOIR_PER_SECOND:
        return 1.0
    if math.isinf(invocations_per_second):
        return FIXED_RATE
    extra = invocations_per_second - RESERVOIR_PER_SECOND
    return (RESERVOIR_PER_SECOND + FIXED_RATE * extra) / invocations_per_second


#: Idle SQS pollers: with ``ScalingConfig.MaximumConcurrency`` set (every SQS mapping of the template), Lambda
#: keeps five concurrent batches polling ("can optimize to as few as 2 ... not available when you enable the
#: maximum concurrency setting": Lambda developer guide, "Configuring scaling behavior for SQS event source
#: mappings"), each a long poll. Assumed: 20 s long polls, each one billed request when it returns empty.
IDLE_POLLERS_PER_MAPPING = 5
LONG_POLL_SECONDS = 20
SECONDS_PER_MONTH = 30 * 86400
#: The reconciler's schedule (template.yaml: ``rate(5 minutes)``).
RECONCILER_RUNS_PER_MONTH = SECONDS_PER_MONTH // 300

#: Lambda's own lines per invocation (text log format: the template's ``LoggingConfig`` sets no ``LogFormat``),
#: with typical values; ``INIT_START`` only on a cold start.
_REQUEST_ID = "8f5b3c1e-1234-4c5d-9e8f-0123456789ab"
PLATFORM_LINES = (
    f"START RequestId: {_REQUEST_ID} Version: $LATEST",
    f"END RequestId: {_REQUEST_ID}",
    f"REPORT RequestId: {_REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\t"
    "Max Memory Used: 68 MB\t\nXRAY TraceId: 1-674bd4a0-3a1f2b4c5d6e7f8091a2b3c4\tSegmentId: 6b5f4a3c2d1e0f98\t"
    "Sampled: true\t",
)
INIT_START_LINE = (
    "INIT_START Runtime Version: python:3.13.v31\tRuntime Version ARN: arn:aws:lambda:us-east-1::runtime:"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
#: Sample values of the access log's ``$context`` variables (template.yaml, ``AccessLogSettings.Format``).
ACCESS_LOG_VALUES = {
    "requestId": "Jx0AbCdEfGhIjK=",
    "identity.sourceIp": "203.0.113.10",
    "requestTime": "01/Dec/2026:03:22:56 +0000",
    "routeKey": "DELETE /api/v1/jobs/{job_id}",
    "status": "204",
    "protocol": "HTTP/1.1",
    "responseLength": "512",
    "responseLatency": "25",
    "integrationErrorMessage": "-",
}

ASSUMPTIONS = [
    f"Lambda's SQS pollers: {POLLER_SQS_REQUESTS_PER_BATCH} requests per consumer batch (the ReceiveMessage that "
    "returned it, one DeleteMessageBatch). Lambda's GetRecords on the table's stream: free (DynamoDB: \"Read "
    'requests made by AWS Lambda-based consumers of DynamoDB Streams are free").',
    f'Cold starts: {COLD_SHARE:.0%} of invocations (AWS: "under 1 % of invocations"), each billing its INIT.',
    "X-Ray: each invocation its own trace (an upper bound); recorded by the default rule, one a second for the "
    f"account plus {FIXED_RATE:.0%} of the rest: steady, a million jobs a month, that is the share the table's "
    f"traces per job show; busy, {FIXED_RATE:.0%}.",
    "CloudWatch Logs: each line's UTF-8 bytes (the function's JSON lines and EMF metrics, measured; Lambda's START, "
    "END, REPORT lines and, per cold start, INIT_START; one API Gateway access log line per request), 1 GB = 2^30 B.",
    "EventBridge: one Job State Change per status change (QUEUED, RUNNING, SUCCEEDED, DELETED), each entry far under "
    "64 KB (measured). No rule on the bus is priced (a subscriber's rules and targets are its own).",
]


# --- Measuring -------------------------------------------------------------------------------------------------


@dataclass
class Meter:
    """What one counted step used: AWS calls, billed SQS requests, EventBridge entries, DynamoDB units by table and
    index, and what the handler wrote."""

    calls: list[str] = field(default_factory=list)
    attempts: int = 0
    capacity: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    units: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # "WRU JobsTable/ByStatus"
    sqs_billed: int = 0
    sqs_payload_max: int = 0
    events: int = 0
    event_entry_max: int = 0


class CostHooks(calls.Hooks):
    """``bench.calls``' hooks, with capacity per table and index (``INDEXES``) and SQS and EventBridge payloads."""

    def __init__(self, tables: Mapping[str, str]) -> None:
        super().__init__()
        self.tables = dict(tables)  # physical name -> logical id
        self.tally: Meter = Meter()  # type: ignore[assignment]

    def handlers(self) -> list[tuple[str, Any]]:
        return [
            ("before-call", self._call),
            ("before-send", self._send),
            ("before-parameter-build.dynamodb", self._ask_capacity),
            ("after-call.dynamodb", self._capacity),
            ("before-parameter-build.sqs", self._sqs),
            ("before-parameter-build.events.PutEvents", self._events),
        ]

    def _ask_capacity(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:  # noqa: ARG002
        if model.input_shape is not None and "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"

    def _capacity(self, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:  # noqa: ARG002
        consumed = parsed.get("ConsumedCapacity")
        if not consumed:
            return
        kind = "RRU" if model.name in ("GetItem", "Query", "Scan", "BatchGetItem") else "WRU"
        name = self.tables.get(consumed.get("TableName", ""), consumed.get("TableName", "?"))
        self.tally.capacity[kind] += float(consumed.get("CapacityUnits", 0))
        parts = {name: (consumed.get("Table") or {}).get("CapacityUnits")}
        for index, used in (consumed.get("GlobalSecondaryIndexes") or {}).items():
            parts[f"{name}/{index}"] = used.get("CapacityUnits")
        for part, units in parts.items():
            if units:
                self.tally.units[f"{kind} {part}"] += float(units)

    def _sqs(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:  # noqa: ARG002
        if model.name == "SendMessage":
            sizes = [_message_bytes(params)]
        elif model.name == "SendMessageBatch":
            sizes = [_message_bytes(entry) for entry in params.get("Entries", [])]
        else:
            return
        payload = sum(sizes)
        self.tally.sqs_billed += max(1, math.ceil(payload / 65536))
        self.tally.sqs_payload_max = max(self.tally.sqs_payload_max, payload)

    def _events(self, params: dict[str, Any], **kwargs: Any) -> None:  # noqa: ARG002
        for entry in params.get("Entries", []):
            size = entry_bytes(entry)
            self.tally.events += max(1, math.ceil(size / 65536))
            self.tally.event_entry_max = max(self.tally.event_entry_max, size)

    @contextmanager
    def counting(self) -> Iterator[Meter]:  # type: ignore[override]
        counted = self.tally = Meter()
        try:
            yield counted
        finally:
            self.tally = Meter()


def _message_bytes(message: Mapping[str, Any]) -> int:
    """An SQS message's billed payload: its body and its attributes' names, types and values (UTF-8 bytes)."""
    size = len(str(message.get("MessageBody", "")).encode())
    for name, value in (message.get("MessageAttributes") or {}).items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        size += len(str(value.get("StringValue", "")).encode()) + len(value.get("BinaryValue", b"") or b"")
    return size


def entry_bytes(entry: Mapping[str, Any]) -> int:
    """A PutEvents entry's size as EventBridge counts it ("Calculating PutEvents event entry size"): 14 bytes for a
    ``Time``, and the UTF-8 bytes of ``Source``, ``DetailType``, ``Detail`` and each of ``Resources``."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if entry.get(key) is not None:
            size += len(str(entry[key]).encode())
    return size + sum(len(str(resource).encode()) for resource in entry.get("Resources", []))


def attribute_bytes(value: Any) -> int:
    """The size of one attribute value by DynamoDB's rules ("Item sizes and formats", developer guide): strings
    and binaries their length, numbers about one byte per two significant digits plus one, booleans and nulls one
    byte, lists and maps 3 bytes plus one per element plus their elements."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Decimal):
        digits = str(abs(Decimal(str(value)))).replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(len(str(key).encode()) + attribute_bytes(item) + 1 for key, item in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(attribute_bytes(item) + 1 for item in value)
    if isinstance(value, set | frozenset):
        return sum(attribute_bytes(item) for item in value)
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def item_bytes(item: Mapping[str, Any]) -> int:
    """An item's size: its attribute names' and values' bytes (``attribute_bytes``; values as boto3's resource
    layer gives them)."""
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


class Tap(StringIO):
    """stdout while the handlers run: powertools' Logger binds it when created, EMF lines are printed to it."""

    def since(self, mark: int) -> list[str]:
        """The non-empty lines written after position ``mark``."""
        return [line for line in self.getvalue()[mark:].split("\n") if line.strip()]


@dataclass
class Step:
    """The handler invocations of one kind in one shape of traffic, and what they used all together."""

    function: str
    invocations: int = 0
    records: int = 0
    durations_ms: list[float] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    units: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    sqs_billed: int = 0
    sqs_payload_max: int = 0
    events: int = 0
    event_entry_max: int = 0
    log_lines: int = 0
    log_bytes: int = 0
    emf_lines: int = 0
    emf_bytes: int = 0
    response_bytes_max: int = 0

    def add(self, meter: Meter, lines: list[str], seconds: float, records: int) -> None:
        self.invocations += 1
        self.records += records
        self.durations_ms.append(seconds * 1000)
        self.calls.update(meter.calls)
        for key, value in meter.units.items():
            self.units[key] += value
        self.sqs_billed += meter.sqs_billed
        self.sqs_payload_max = max(self.sqs_payload_max, meter.sqs_payload_max)
        self.events += meter.events
        self.event_entry_max = max(self.event_entry_max, meter.event_entry_max)
        for line in lines:
            size = len(line.encode())
            if line.startswith('{"_aws"'):
                self.emf_lines += 1
                self.emf_bytes += size
            else:
                self.log_lines += 1
                self.log_bytes += size

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "calls": dict(self.calls), "units": dict(self.units)}


class Lifecycle:
    """Runs jobs through the handlers as Lambda would, counting each invocation into its ``Step``."""

    def __init__(self, aws: Aws, hooks: CostHooks, tap: Tap, handlers: dict[str, Any], streams: Any, stream_arn: str):
        self.aws = aws
        self.hooks = hooks
        self.tap = tap
        self.handlers = handlers
        self.streams = streams
        self.stream_arn = stream_arn
        self.sqs = aws.client("sqs")
        self.queue_url = aws.physical["JobsQueue"]["Ref"]
        self.queue_arn = aws.physical["JobsQueue"]["Arn"]
        self.iterators: dict[str, str | None] = {}
        self.stream_counts: Counter[str] = Counter()

    def invoke(self, steps: dict[str, Step], name: str, function: str, event: Any, records: int = 1) -> Any:
        context = FunctionContext(function, self.aws.functions[function].timeout_seconds)
        mark = len(self.tap.getvalue())
        with self.hooks.counting() as meter:
            began = time.perf_counter()
            response = self.handlers[function](event, context)
            seconds = time.perf_counter() - began
        step = steps.setdefault(name, Step(function))
        step.add(meter, self.tap.since(mark), seconds, records)
        if isinstance(response, dict) and isinstance(response.get("body"), str):
            step.response_bytes_max = max(step.response_bytes_max, len(response["body"].encode()))
        if isinstance(response, dict) and response.get("batchItemFailures"):
            raise RuntimeError(f"{function} failed records: {response}")
        return response

    def create(self, steps: dict[str, Step]) -> str:
        event = calls.api_event("create_job")
        event["body"] = json.dumps({"title": "noop", "type": "noop", "payload": {}})
        event["headers"]["idempotency-key"] = str(uuid.uuid4())  # the client's submit always sends one
        response = self.invoke(steps, "create", "ApiFunction", event)
        if response["statusCode"] != 201:
            raise RuntimeError(f"create answered {response['statusCode']}: {response['body']}")
        return str(json.loads(response["body"])["job_id"])

    def read_stream(self, expected: int) -> list[dict[str, Any]]:
        """The stream's records since the last read, as Lambda delivers them (at least ``expected``)."""
        from local.streams import to_record

        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(found) < expected and time.monotonic() < deadline:
            shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
            for shard in shards:
                shard_id = shard["ShardId"]
                if shard_id not in self.iterators:
                    self.iterators[shard_id] = self.streams.get_shard_iterator(
                        StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
                iterator = self.iterators[shard_id]
                while iterator:
                    page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                    found.extend(to_record(record, self.stream_arn) for record in page.get("Records", []))
                    iterator = page.get("NextShardIterator")
                    if not page.get("Records"):
                        break
                self.iterators[shard_id] = iterator
            if len(found) < expected:
                time.sleep(0.05)
        self.stream_counts.update(record["eventName"] for record in found)
        return found

    def receive(self, count: int) -> list[dict[str, Any]]:
        """``count`` messages of the NORMAL queue, as Lambda's poller would receive them (deleted after)."""
        from local.poller import to_record

        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(messages) < count and time.monotonic() < deadline:
            page = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, count - len(messages)),
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages.extend(page.get("Messages", []))
        if len(messages) < count:
            raise RuntimeError(f"{len(messages)} of {count} messages arrived")
        return [to_record(message, self.queue_arn) for message in messages]

    def settle(self, records: list[dict[str, Any]]) -> None:
        """Delete a batch's messages, as Lambda's poller does after a successful invocation (not counted: the
        poller's requests are ``POLLER_SQS_REQUESTS_PER_BATCH``)."""
        entries = [{"Id": str(n), "ReceiptHandle": record["receiptHandle"]} for n, record in enumerate(records)]
        self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def run(self, jobs: int, batch: Mapping[str, int]) -> dict[str, Step]:
        """``jobs`` noop jobs through create, the relay, the consumer, GET, DELETE and the publisher, with batches
        of at most ``batch[function]`` records."""
        steps: dict[str, Step] = {}
        created = [self.create(steps) for _ in range(jobs)]
        inserts = self.read_stream(jobs)
        published = list(inserts)
        for chunk in chunks([r for r in inserts if r["eventName"] == "INSERT"], batch["EnqueueJobsFunction"]):
            self.invoke(steps, "relay", "EnqueueJobsFunction", {"Records": chunk}, len(chunk))
        for chunk in chunks(self.receive(jobs), batch["ProcessJobsFunction"]):
            self.invoke(steps, "consumer", "ProcessJobsFunction", {"Records": chunk}, len(chunk))
            self.settle(chunk)
        for job_id in created:
            response = self.invoke(steps, "get", "ApiFunction", calls.api_event("get_job", job_id))
            if json.loads(response["body"])["status"] != "SUCCEEDED":
                raise RuntimeError(f"job {job_id} did not succeed: {response['body']}")
        for job_id in created:
            self.invoke(steps, "delete", "ApiFunction", calls.api_event("delete_job", job_id))
        published += self.read_stream(3 * jobs)
        for chunk in chunks(published, batch["PublishJobEventsFunction"]):
            self.invoke(steps, "publisher", "PublishJobEventsFunction", {"Records": chunk}, len(chunk))
        return steps


def chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class FunctionContext(LambdaContext):
    """A Lambda context named as a deployed stack names its functions (SAM: ``<stack>-<LogicalId>-<12 chars>``),
    so that the Logger's context fields weigh what they weigh on AWS; a fresh request id per invocation, and the
    function's ``Timeout`` counting down from its creation."""

    def __init__(self, logical_id: str, timeout_seconds: int) -> None:
        super().__init__(f"jobs-prod-{logical_id}-A1b2C3d4E5f6", str(uuid.uuid4()))
        self.deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left until the function's ``Timeout``."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


#: The functions of one job's life, with the batch size of each shape (template.yaml's BatchSize when busy).
STEADY = {"EnqueueJobsFunction": 1, "ProcessJobsFunction": 1, "PublishJobEventsFunction": 1}
BUSY = {"EnqueueJobsFunction": 100, "ProcessJobsFunction": 10, "PublishJobEventsFunction": 100}
FUNCTIONS = ("ApiFunction", "EnqueueJobsFunction", "ProcessJobsFunction", "PublishJobEventsFunction")


def measure(*, quick: bool = False) -> dict[str, Any]:
    """Everything ``report`` needs, measured in a process of its own (powertools reads its configuration at
    import, as in Lambda). ``quick``: 2 jobs steady and 10 busy, one INIT sample per function."""
    return run_child("bench.cost", *(["--quick"] if quick else []))


def measure_here(*, quick: bool) -> dict[str, Any]:
    """``measure()``'s work, in this process."""
    tap = Tap()
    saved_stdout, saved_environ = sys.stdout, dict(os.environ)
    sys.stdout = tap
    try:
        with moto_server() as aws, dynamodb_local() as endpoint:
            return _measure(aws, endpoint, tap, quick=quick)
    finally:
        sys.stdout = saved_stdout
        os.environ.clear()
        os.environ.update(saved_environ)


def _measure(aws: Aws, endpoint: str | None, tap: Tap, *, quick: bool) -> dict[str, Any]:
    dynamodb_endpoint = endpoint or aws.endpoint
    stack = LocalStack(
        ROOT / "template.yaml",
        lambda service: client(service, dynamodb_endpoint if service.startswith("dynamodb") else aws.endpoint),
    )
    jobs_table = stack.physical("JobsTable") if endpoint else aws.physical["JobsTable"]
    idempotency_table = stack.physical("IdempotencyTable") if endpoint else aws.physical["IdempotencyTable"]
    tables = {jobs_table["Ref"]: "JobsTable", idempotency_table["Ref"]: "IdempotencyTable"}
    environment: dict[str, str] = {}
    for logical_id in ("ReconcileJobsFunction", *reversed(FUNCTIONS)):
        environment.update(aws.environment(logical_id))
    environment["JOBS_SOURCE_QUEUE_URLS"] = ",".join(
        aws.physical[queue]["Ref"] for queue in ("JobsHighPriorityQueue", "JobsQueue", "JobsLowPriorityQueue")
    )
    # What Lambda sets with Tracing: Active; powertools' Logger adds its trace id to every line.
    environment["_X_AMZN_TRACE_ID"] = "Root=1-674bd4a0-3a1f2b4c5d6e7f8091a2b3c4;Parent=6b5f4a3c2d1e0f98;Sampled=1"
    if endpoint:
        environment["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    os.environ.update(environment)
    hooks = CostHooks(tables)
    layer = str(ROOT / "layers" / "jobs")
    with hooks.installed():
        handlers = {
            "ApiFunction": calls.load("bench_cost_api", "functions/api/app.py", layer).lambda_handler,
            "EnqueueJobsFunction": calls.load(
                "bench_cost_relay", "functions/enqueue_jobs/app.py", layer
            ).lambda_handler,
            "ProcessJobsFunction": calls.load(
                "bench_cost_consumer", "functions/process_jobs/app.py", layer
            ).lambda_handler,
            "PublishJobEventsFunction": calls.load(
                "bench_cost_publisher", "functions/publish_events/app.py", layer
            ).lambda_handler,
            "ReconcileJobsFunction": calls.load(
                "bench_cost_reconciler", "functions/reconcile_jobs/app.py", layer
            ).lambda_handler,
        }
        streams = client("dynamodbstreams", dynamodb_endpoint)
        lifecycle = Lifecycle(aws, hooks, tap, handlers, streams, jobs_table["StreamArn"])
        lifecycle.run(1, STEADY)  # warm: the token secret, every client, every lazy import
        lifecycle.stream_counts.clear()
        steady_jobs, busy_jobs = (2, 10) if quick else (20, 100)
        steady = lifecycle.run(steady_jobs, STEADY)
        stream_counts = dict(lifecycle.stream_counts)
        busy = lifecycle.run(busy_jobs, {**BUSY, "EnqueueJobsFunction": min(100, busy_jobs)})
        reconciler: dict[str, Step] = {}
        for _ in range(1 if quick else 3):
            lifecycle.invoke(reconciler, "reconciler", "ReconcileJobsFunction", {})
        sizes = item_sizes(aws, lifecycle, dynamodb_endpoint, jobs_table["Ref"], idempotency_table["Ref"])
        peer_send = peer_send_ms(aws, 3 if quick else 20)
    return {
        "engine": "DynamoDB Local" if endpoint else "moto",
        "jobs": {"steady": steady_jobs, "busy": busy_jobs},
        "steady": {name: step.to_json() for name, step in steady.items()},
        "busy": {name: step.to_json() for name, step in busy.items()},
        "reconciler": reconciler["reconciler"].to_json(),
        "stream_records_per_job": {name: count / steady_jobs for name, count in stream_counts.items()},
        "item_bytes": sizes,
        "peer_send_ms": peer_send,
        "init_ms": {name: init_samples(aws, name, 1 if quick else 5) for name in FUNCTIONS},
        "memory_mb": {spec.logical_id: spec.memory_mb for spec in aws.functions.values()},
        "access_log_bytes": access_log_bytes(),
    }


def item_sizes(
    aws: Aws, lifecycle: Lifecycle, endpoint: str, jobs_table: str, idempotency_table: str
) -> dict[str, int]:
    """The sizes (``item_bytes``) of a noop job when QUEUED and when SUCCEEDED, and of its idempotency record."""
    import boto3

    resource = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).resource("dynamodb", endpoint_url=endpoint)
    steps: dict[str, Step] = {}
    job_id = lifecycle.create(steps)
    queued = resource.Table(jobs_table).get_item(Key={"owner_id": "alice", "job_id": job_id})["Item"]
    records = lifecycle.read_stream(1)
    lifecycle.invoke(steps, "relay", "EnqueueJobsFunction", {"Records": records})
    received = lifecycle.receive(1)
    lifecycle.invoke(steps, "consumer", "ProcessJobsFunction", {"Records": received})
    lifecycle.settle(received)
    succeeded = resource.Table(jobs_table).get_item(Key={"owner_id": "alice", "job_id": job_id})["Item"]
    record = max(resource.Table(idempotency_table).scan()["Items"], key=item_bytes)
    return {
        "job QUEUED": item_bytes(queued),
        "job SUCCEEDED": item_bytes(succeeded),
        "idempotency record (largest)": item_bytes(record),
        "queue message body": len(received[0]["body"].encode()),
    }


def peer_send_ms(aws: Aws, samples: int) -> list[float]:
    """The peer's extra call in create: one SendMessage of a job's message (the relay's body) through the
    functions' own SQS client (``jobs.aws``), wall ms per call, to a queue of its own."""
    from jobs import aws as jobs_aws

    sqs = jobs_aws.client("sqs")
    url = aws.client("sqs").create_queue(QueueName="bench-cost-peer")["QueueUrl"]
    body = json.dumps({"owner_id": "alice", "job_id": str(uuid.uuid4()), "priority": "NORMAL"})
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="alice")  # warm the connection
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="alice")
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def init_samples(aws: Aws, logical_id: str, samples: int) -> list[float]:
    """Billed INIT, approximated: a fresh interpreter importing the function's handler module with its layer
    (spawn to exit, ms; Lambda's INIT runs the runtime's start and the handler module's import)."""
    spec = aws.functions[logical_id]
    module = spec.handler.rsplit(".", 1)[0]
    environment = lambda_environment(spec.environment, None)
    environment["PYTHONPATH"] = os.pathsep.join([str(spec.code_dir), *map(str, spec.layer_dirs)])
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [PYTHON, "-c", f"import {module}"], env=environment, cwd=spec.code_dir, check=True, timeout=60
        )
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def access_log_bytes() -> int:
    """One access log line of the HTTP API (template.yaml's ``AccessLogSettings.Format``, ``ACCESS_LOG_VALUES``)."""
    template = load_template(ROOT / "template.yaml")
    fmt = template["Resources"]["JobsHttpApi"]["Properties"]["AccessLogSettings"]["Format"]
    line = re.sub(r"\$context\.([A-Za-z.]+)", lambda match: ACCESS_LOG_VALUES.get(match.group(1), ""), str(fmt))
    return len(line.replace("\n", "").encode())


# --- From measurements to the bill -----------------------------------------------------------------------------


def platform_bytes(*, cold_share: float) -> float:
    """Lambda's own log bytes per invocation: START, END, REPORT, and INIT_START on a cold start."""
    return sum(len(line.encode()) for line in PLATFORM_LINES) + cold_share * len(INIT_START_LINE.encode())


#: The counted steps of one job's life, and the function each runs in.
STEPS = {
    "create": "ApiFunction",
    "relay": "EnqueueJobsFunction",
    "consumer": "ProcessJobsFunction",
    "get": "ApiFunction",
    "delete": "ApiFunction",
    "publisher": "PublishJobEventsFunction",
}


def job_use(
    measured: Mapping[str, Any],
    shape: str,
    *,
    peer: bool = False,
    cold_share: float = COLD_SHARE,
    durations_ms: Mapping[str, float] | None = None,
    init_ms: Mapping[str, float] | None = None,
) -> JobUse:
    """One job's use in ``shape`` (``steady`` or ``busy``), ours or the ``peer``'s, from ``measure()``'s results
    and ``ASSUMPTIONS``: one ``FunctionUse`` per step (``STEPS``), its duration the step's median invocation.
    ``durations_ms`` (by step) and ``init_ms`` (by function) override the measured medians."""
    jobs = measured["jobs"][shape]
    steps = {name: measured[shape][name] for name in STEPS if not (peer and name == "relay")}
    send_ms = statistics.median(measured["peer_send_ms"])
    functions = []
    for name, step in steps.items():
        duration = statistics.median(step["durations_ms"])
        if peer and name == "create":
            duration += send_ms  # the peer's API sends the job's message itself: one SendMessage more
        functions.append(
            FunctionUse(
                name=f"{step['function']} ({name})",
                memory_mb=int(measured["memory_mb"][step["function"]]),
                invocations=step["invocations"] / jobs,
                duration_ms=(durations_ms or {}).get(name, duration),
                init_ms=(init_ms or {}).get(step["function"], least(measured["init_ms"][step["function"]])),
                cold_share=cold_share,
            )
        )
    units = units_per_job(measured, shape)
    sqs = sum(step["sqs_billed"] for step in steps.values()) / jobs
    sqs += POLLER_SQS_REQUESTS_PER_BATCH * steps["consumer"]["invocations"] / jobs
    api_requests = sum(steps[name]["invocations"] for name in ("create", "get", "delete")) / jobs
    log_bytes = sum(step["log_bytes"] + step["emf_bytes"] for step in steps.values()) / jobs
    if peer:
        sqs += 1  # SendMessage in create (a payload far under 64 KB)
        log_bytes += measured[shape]["relay"]["log_bytes"] / jobs  # the relay's lines, but its EMF, move to the API
    invocations = sum(f.invocations for f in functions)
    log_bytes += invocations * platform_bytes(cold_share=cold_share)
    log_bytes += api_requests * measured["access_log_bytes"]
    return JobUse(
        functions=tuple(functions),
        api_requests=api_requests,
        wru=sum(value for key, value in units.items() if key.startswith("WRU")),
        rru=sum(value for key, value in units.items() if key.startswith("RRU")),
        sqs_requests=sqs,
        events=sum(step["events"] for step in steps.values()) / jobs,
        traces=invocations * sampled_share(invocations * JOBS_PER_SECOND[shape]),
        log_bytes=log_bytes,
    )


def least(samples: Sequence[float]) -> float:
    """The least of a function's INIT samples: importing is CPU work that other work on a shared machine only
    slows down (the medians of the same runs are in the JSON ``measure()`` returns)."""
    return min(samples)


def units_per_job(measured: Mapping[str, Any], shape: str) -> dict[str, float]:
    """DynamoDB request units per job by kind, table and index (``"WRU JobsTable/ByStatus"``)."""
    units: dict[str, float] = defaultdict(float)
    for step in measured[shape].values():
        for key, value in step["units"].items():
            units[key] += value / measured["jobs"][shape]
    return dict(sorted(units.items()))


#: The least a Query or GetItem consumes on DynamoDB, eventually consistent: half a read unit, even when it
#: finds nothing (DynamoDB Local reports 0 for an empty Query; AWS rounds a read up to the next 4 KB).
MIN_READ_RRU = 0.5


def fixed_monthly(measured: Mapping[str, Any], prices: Prices = Prices()) -> list[Line]:
    """What the stack costs a month whatever the number of jobs: the SQS mappings' idle long polls and the
    reconciler's runs (the same in both designs: the peer needs a sweeper for the jobs whose send failed)."""
    template = load_template(ROOT / "template.yaml")
    mappings = sum(
        1
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event.get("Type") == "SQS"
    )
    polls = mappings * IDLE_POLLERS_PER_MAPPING * SECONDS_PER_MONTH / LONG_POLL_SECONDS
    run = measured["reconciler"]
    runs = RECONCILER_RUNS_PER_MONTH
    reconciler = FunctionUse("ReconcileJobsFunction", int(measured["memory_mb"]["ReconcileJobsFunction"]), 1, 0, 0, 0)
    gbs = runs * gb_seconds(reconciler, statistics.median(run["durations_ms"]))
    sqs = runs * sum(n for name, n in run["calls"].items() if name.startswith("sqs.")) / run["invocations"]
    reads = sum(n for name, n in run["calls"].items() if name in ("dynamodb.Query", "dynamodb.GetItem"))
    measured_rru = sum(value for key, value in run["units"].items() if key.startswith("RRU"))
    rru = runs * max(measured_rru, reads * MIN_READ_RRU) / run["invocations"]
    return [
        Line(
            f"SQS empty receives: {mappings} mappings x {IDLE_POLLERS_PER_MAPPING} pollers, one per "
            f"{LONG_POLL_SECONDS} s",
            polls,
            "requests",
            polls * prices.sqs_request,
        ),
        Line("Reconciler, every 5 minutes: Lambda requests", runs, "requests", runs * prices.lambda_request),
        Line("Reconciler: Lambda duration", gbs, "GB-s", gbs * prices.lambda_gb_second),
        Line("Reconciler: SQS requests", sqs, "requests", sqs * prices.sqs_request),
        Line("Reconciler: DynamoDB reads (Queued index)", rru, "RRU", rru * prices.dynamodb_rru),
    ]


# --- The report ------------------------------------------------------------------------------------------------

SHAPES = ("steady", "busy")
SIDES = {"ours": False, "peer": True}


def dollars(value: float) -> str:
    return f"{value:,.2f}" if value >= 0.1 else f"{value:,.3f}"


def quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def bills(measured: Mapping[str, Any]) -> dict[tuple[str, str], list[Line]]:
    """The bill of a million jobs for each (shape, side)."""
    return {
        (shape, side): bill(job_use(measured, shape, peer=peer)) for shape in SHAPES for side, peer in SIDES.items()
    }


def report(measured: Mapping[str, Any]) -> str:
    """The section of bench/RESULTS.md: the bill, its parameters, the usage per job, the fixed part, the prices."""
    billed = bills(measured)
    uses = {(shape, side): job_use(measured, shape, peer=peer) for shape in SHAPES for side, peer in SIDES.items()}
    keys = list(billed)
    rows = []
    for index, line in enumerate(billed[keys[0]]):
        rows.append(
            [
                line.item,
                *(f"{quantity(billed[key][index].quantity)} {line.unit}" for key in keys[:2]),
                *(dollars(billed[key][index].dollars) for key in keys),
            ]
        )
    totals = {key: total(lines) for key, lines in billed.items()}
    rows.append(["**total per million jobs**", "", "", *(f"**{dollars(totals[key])}**" for key in keys)])
    rows.append(
        [
            "the outbox's price (ours - peer)",
            "",
            "",
            *(
                dollars(totals[(shape, "ours")] - totals[(shape, "peer")]) if side == "ours" else ""
                for shape, side in keys
            ),
        ]
    )
    header = [
        "item",
        "quantity, ours (steady)",
        "quantity, peer (steady)",
        *(f"USD {side} ({shape})" for shape, side in keys),
    ]
    parts = [
        "`PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.cost` (`make bench` runs it too): one million "
        "`noop` jobs, each created (with an `Idempotency-Key`, as the client sends), run, read once (GET) and "
        f"deleted, priced in {PRICED_REGION} at the prices read on {PRICES_READ_ON} (table below), without free "
        "tiers. *Steady*: every stream and queue batch holds one record (a million jobs a month is 0.39 a "
        "second). *Busy*: full batches (relay and publisher 100 records, consumer 10). *Ours*: the API writes the "
        "job and the table's stream (EnqueueJobsFunction) sends its message. *Peer*: the API writes the job and "
        "sends the message itself (one SendMessage more in create, measured at "
        f"{statistics.median(measured['peer_send_ms']):.1f} ms here; no relay). Both keep the stream for the Job "
        "State Change publisher, the Queued index and the reconciler (the peer needs a sweeper for the jobs whose "
        'send failed: docs/decisions.md, "No orphans").',
        table(header, rows),
        summary(measured, billed),
        "The formula (`bench.cost.bill`; N = 10^6; per job: r_api HTTP API requests, n_f invocations of step f, "
        "d_f its duration in ms, m_f its memory in MB, i_f its INIT in ms, c_f its cold-start share, w and r "
        "DynamoDB write and read units, q SQS requests, e EventBridge events, t X-Ray traces, b logged bytes):",
        f"`{FORMULA}`",
        "Its parameters per step. Durations are this machine's (2 shared x86 cores) wall times of the handlers "
        f"against moto's server and {measured['engine']}, medians, not Lambda's; INIT is a fresh interpreter "
        "importing the function's handler module with its layer (the least of 5), not Lambda's either; memory is the "
        "template's `MemorySize`.",
        parameters_table(measured, uses),
        usage_table(measured, uses),
        sizes_text(measured),
        "Fixed, per month, whatever the number of jobs (both designs alike):",
        table(
            ["item", "quantity", "USD a month"],
            [
                [line.item, f"{quantity(line.quantity)} {line.unit}", dollars(line.dollars)]
                for line in fixed_monthly(measured)
            ],
        ),
        "Prices (USD, first volume tier) and where they were read:",
        table(
            ["price", "USD", "source"],
            [[name, price_text(name), PRICE_SOURCES[name]] for name in PRICE_SOURCES],
        ),
        "Assumptions:\n\n" + "\n".join(f"- {text}" for text in ASSUMPTIONS),
        "Not counted: DynamoDB storage and point-in-time recovery (per GB-month of a table that holds a job for "
        "seconds here), TTL deletes (free), CloudWatch Logs storage ($0.03 per GB-month, 30 days' retention) and "
        "custom metrics (per metric a month, not per job), data transfer out of API responses (a few hundred bytes "
        "each), SSM and KMS (one GetParameter per sandbox per 5 minutes), the dead-letter path (no failures here).",
    ]
    return "\n\n".join(parts)


#: The unit each price is per, for the prices table.
PRICE_UNITS = {
    "api_request": "request",
    "lambda_request": "request",
    "lambda_gb_second": "GB-s",
    "dynamodb_wru": "WRU",
    "dynamodb_rru": "RRU",
    "sqs_request": "request",
    "event": "event",
    "trace": "trace",
    "log_gb": "GB",
}


def price_text(name: str) -> str:
    """A price as the pricing pages state it: per million for the per-request ones."""
    value = float(getattr(Prices(), name))
    unit = PRICE_UNITS[name]
    if unit in ("GB-s", "GB"):
        return f"{value:.10g} per {unit}"
    return f"{value * 1e6:.4g} per million {unit}s"


def summary(measured: Mapping[str, Any], billed: Mapping[tuple[str, str], list[Line]]) -> str:
    """What the bill is made of: its biggest lines, X-Ray's reservoir, and the per-job units behind the rest."""
    ours = billed[("steady", "ours")]
    biggest = ", ".join(
        f"{line.item} {line.dollars / total(ours):.0%}" for line in sorted(ours, key=lambda line: -line.dollars)[:4]
    )
    reservoir = RESERVOIR_PER_SECOND * SECONDS_PER_MONTH
    units = units_per_job(measured, "steady")
    writes = ", ".join(f"{part.split(' ', 1)[1]} {n:g}" for part, n in units.items() if part.startswith("WRU"))
    use = job_use(measured, "steady")
    return (
        f"Steady, the biggest lines of ours: {biggest}. X-Ray's default rule records up to one trace a second for "
        f"the account before its 5 %: {reservoir / 1e6:.2f} million traces, ${reservoir * Prices().trace:.2f}, a "
        "month whatever the volume, which is most of its line at a million jobs a month; busy, it is 5 % of "
        f"invocations. Per job: {use.wru:g} write units ({writes}), {use.events:g} EventBridge events, "
        f"{use.log_bytes / 1000:.1f} KB of log lines (steady). The outbox's own price is the relay (an invocation "
        "per batch, its lines and traces) against the peer's one SendMessage per job: dearer when batches hold "
        "one record, cheaper when they are full (SendMessageBatch sends ten messages a request)."
    )


def parameters_table(measured: Mapping[str, Any], uses: Mapping[tuple[str, str], JobUse]) -> str:
    rows = []
    for shape in SHAPES:
        peer_create = next(f for f in uses[(shape, "peer")].functions if f.name.endswith("(create)"))
        for use in uses[(shape, "ours")].functions:
            rows.append(
                [
                    shape,
                    use.name,
                    use.memory_mb,
                    f"{use.invocations:.2f}",
                    f"{use.duration_ms:.1f}"
                    + (
                        f" (peer {peer_create.duration_ms:.1f})"
                        if use is not None and use.name == peer_create.name
                        else ""
                    ),
                    f"{use.init_ms:.0f}",
                    f"{use.cold_share:.0%}",
                ]
            )
    return table(["shape", "step f", "m_f MB", "n_f per job", "d_f ms", "i_f ms", "c_f"], rows)


def usage_table(measured: Mapping[str, Any], uses: Mapping[tuple[str, str], JobUse]) -> str:
    keys = list(uses)
    units = {shape: units_per_job(measured, shape) for shape in SHAPES}
    rows = [
        ["HTTP API requests", *(f"{uses[key].api_requests:.2f}" for key in keys)],
        ["Lambda invocations", *(f"{sum(f.invocations for f in uses[key].functions):.2f}" for key in keys)],
    ]
    parts = sorted({part for shape in SHAPES for part in units[shape]})
    for kind, attribute in (("WRU", "wru"), ("RRU", "rru")):
        rows.append([f"DynamoDB {kind}", *(f"{getattr(uses[key], attribute):.2f}" for key in keys)])
        rows += [
            [f"- {part.split(' ', 1)[1]}", *(f"{units[shape].get(part, 0):.2f}" for shape, _ in keys)]
            for part in parts
            if part.startswith(kind)
        ]
    rows += [
        ["SQS requests", *(f"{uses[key].sqs_requests:.2f}" for key in keys)],
        ["EventBridge events", *(f"{uses[key].events:.2f}" for key in keys)],
        ["X-Ray traces", *(f"{uses[key].traces:.2f}" for key in keys)],
        ["log bytes", *(f"{uses[key].log_bytes:,.0f}" for key in keys)],
    ]
    lines = {
        shape: sum(step["log_lines"] + step["emf_lines"] for step in measured[shape].values()) / measured["jobs"][shape]
        for shape in SHAPES
    }
    return "\n\n".join(
        [
            "Per job (WRU and RRU as DynamoDB Local reports them with `ReturnConsumedCapacity=INDEXES`, per table and "
            "index; SQS requests: the relay's sends as SQS bills them, 64 KB chunks, plus Lambda's pollers' "
            f"{POLLER_SQS_REQUESTS_PER_BATCH} per consumer batch; the stream gave "
            + ", ".join(f"{n:g} {name}" for name, n in measured["stream_records_per_job"].items())
            + " record(s) per job; log lines written by the functions per job: "
            + ", ".join(f"{lines[shape]:.1f} {shape}" for shape in SHAPES)
            + ", plus Lambda's 3 per invocation and one access log line per API request):",
            table(["per job", *(f"{side} ({shape})" for shape, side in keys)], rows),
        ]
    )


def sizes_text(measured: Mapping[str, Any]) -> str:
    sizes = measured["item_bytes"]
    listed = ", ".join(f"{name} {size} B" for name, size in sizes.items())
    steady = measured["steady"]
    return (
        f"Sizes (DynamoDB's item sizing rules): {listed}. Every write is of an item under 1 KB, so one WRU per "
        "table or index it touches: create writes the job (1), its ByStatus entry (1) and its Queued entry (1, the "
        "sparse index holds QUEUED jobs only) and the idempotency record twice (powertools' INPROGRESS put, then "
        "its COMPLETED update); QUEUED to RUNNING rewrites the job (1), moves its ByStatus entry (its key "
        "`status_job_id` changes: a delete and a put, 2) and drops its Queued entry (1); RUNNING to SUCCEEDED 1 + 2; "
        "DELETE removes the job and its ByStatus entry (2). The GET is one strongly consistent read of a 4 KB unit. "
        "Largest payloads: an SQS message "
        f"{max(step['sqs_payload_max'] for step in steady.values())} B, an EventBridge entry "
        f"{max(step['event_entry_max'] for step in steady.values())} B, an API response "
        f"{max(step['response_bytes_max'] for step in steady.values())} B: one billed unit each."
    )


def latency_report(measured: Mapping[str, Any]) -> str:
    """201 to RUNNING on AWS, on paper: each hop, what AWS documents of it, and an estimate."""
    steady = measured["steady"]
    relay_ms = statistics.median(steady["relay"]["durations_ms"])
    consumer_ms = statistics.median(steady["consumer"]["durations_ms"])
    init = {name: least(samples) for name, samples in measured["init_ms"].items()}
    send_ms = statistics.median(measured["peer_send_ms"])
    rows = [
        [
            "1. the stream record is readable",
            'DynamoDB Streams write records "in near-real time"; no bound is '
            'published (DynamoDB developer guide, "Change data capture for DynamoDB Streams")',
            "0.1 (assumed)",
            "",
            "0",
        ],
        [
            "2. the relay's mapping reads it",
            '"Lambda polls shards in your DynamoDB stream for records at a base rate '
            'of 4 times per second"; with `MaximumBatchingWindowInSeconds: 0` (template) it "invokes your function as '
            'soon as records are available" (Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB")',
            "0.125 (0 to 0.25)",
            "",
            "0",
        ],
        [
            "3. the relay sends the message",
            f"one SendMessageBatch; measured here {relay_ms:.0f} ms per invocation",
            f"{relay_ms / 1000:.3f}",
            f"+{init['EnqueueJobsFunction'] / 1000:.2f} INIT",
            "0",
        ],
        [
            "4. a consumer poller receives it",
            '"For standard queues, Lambda uses long polling", five concurrent '
            'batches at least (MaximumConcurrency is set: Lambda developer guide, "Configuring scaling behavior for '
            'SQS event source mappings"); a long poll returns as soon as a message arrives (SQS developer guide, '
            '"Amazon SQS short and long polling"); the template\'s SQS mappings set no batching window: default 0',
            "0.02 (assumed: one SQS round trip)",
            "",
            f"{send_ms / 1000:.3f} (the API's SendMessage, before its 201)",
        ],
        [
            "5. the consumer writes RUNNING",
            "its first call, UpdateItem QUEUED to RUNNING; measured here "
            f"{consumer_ms:.0f} ms for the whole noop run of a batch of one",
            f"{consumer_ms / 2000:.3f} (half of it)",
            f"+{init['ProcessJobsFunction'] / 1000:.2f} INIT",
            "same",
        ],
    ]
    warm = 0.1 + 0.125 + relay_ms / 1000 + 0.02 + consumer_ms / 2000
    worst = 0.1 + 0.25 + relay_ms / 1000 + 0.02 + consumer_ms / 2000
    peer = 0.02 + consumer_ms / 2000
    return "\n\n".join(
        [
            "From the API's 201 (its PutItem done) to the job's RUNNING write, on AWS, warm and cold, in seconds. "
            "Nothing here ran on AWS: each hop is AWS's documented behaviour of the template's settings, with this "
            "machine's handler times standing in for Lambda's.",
            table(
                ["hop", "what AWS documents (and the template sets)", "warm s", "cold adds s", "peer design s"], rows
            ),
            f"Warm: about {warm:.2f} s on average, {worst:.2f} s at worst of the 4-per-second poll, plus the stream's "
            "unpublished delay. Each cold function adds its INIT (the relay's and the consumer's: both when idle long "
            "enough for both sandboxes to go), and its first AWS call's client creation and connection. The peer "
            f"design skips hops 1 to 3: about {peer:.2f} s warm, and {send_ms:.0f} ms more before its 201. So the "
            f"outbox costs about {warm - peer:.2f} s of latency warm ({worst - peer:.2f} s at worst), and one more "
            "INIT when its relay is cold. The local stack plays the same hops (its stream poller also waits 0.25 s "
            "between empty reads): the load benchmark's one-client 201 to SUCCEEDED p50 on DynamoDB Local (table 4) "
            "is the same order.",
            "A backlog changes the picture, not these hops: the relay reads a shard in order (ParallelizationFactor "
            "10 keeps order per item), so a job created behind a burst of inserts waits for their relay (table 6), and "
            "a message behind a queue backlog waits for consumers (tables 6 and 7).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 jobs steady and 10 busy, one INIT sample per function")
    parser.add_argument("--child", type=Path, help="measure in this process and write the results there (JSON)")
    args = parser.parse_args(argv)
    if args.child:
        warnings.filterwarnings("ignore", "No application metrics to publish")
        args.child.write_text(json.dumps(measure_here(quick=args.quick)), encoding="utf-8")
        return 0
    measured = measure(quick=args.quick)
    print(report(measured))
    print()
    print(latency_report(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
