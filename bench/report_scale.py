"""Benchmark 8: a report that scales with its owner. Owners with 1,000, 10,000 and 100,000 jobs in the current
quarter are written straight into the Jobs table on DynamoDB Local (BatchWriteItem, items of a stated size: 1 KB
and 16 KB, the payload padding the rest), then each one's ``quarterly_audit`` is run by the consumer's own Lambda
handler (``functions/process_jobs/app.py``) in a process of its own, one SQS message per invocation, each
invocation with the consumer's ``Timeout`` (30 s, template.yaml) as its time budget, as Lambda would run it.
Messages come from moto's server (the continuation's new message goes there too); the table is DynamoDB Local's.

Per owner it prints: the report's wall time (first delivery to SUCCEEDED), the deliveries used and the longest one,
the read capacity the report's Queries consumed (``ReturnConsumedCapacity=TOTAL``, added to each Query by a botocore
hook in the consumer's process, as DynamoDB Local computes it), the same from the arithmetic of DynamoDB's rules
(docs/decisions.md, "A report that scales with its owner"), the consumer process's resident memory before the first
delivery and at its peak (``VmHWM``), and the final status. The figures are this machine's: DynamoDB Local is not
DynamoDB (no partition throughput limit, another latency), so the wall time says how the work grows, not what AWS
would take; the capacity is DynamoDB's own rule.

    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.report_scale --counts 1000 10000 100000 --sizes 1024 16384
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, client, lambda_environment, moto_server, table
from local import dynamodb_local
from local.resources import LocalStack

#: The consumer's ``Timeout`` (template.yaml, ``ProcessJobsFunction``): each delivery's time budget, seconds.
TIMEOUT_SECONDS = 30
#: DynamoDB's read capacity rule: one unit reads 4 KB strongly consistently, two eventually consistently; a Query
#: sums the sizes of the items it reads (before any filter or projection) and rounds up to 4 KB.
READ_UNIT_BYTES = 4096
#: A Query reads at most 1 MB of items per call (developer guide, "Paginating table query results").
QUERY_PAGE_BYTES = 1024 * 1024
#: Threads writing the owners' items (BatchWriteItem, 25 items per call).
WRITERS = 4
#: How long the consumer waits for a message while its job is unfinished before it says the job is stuck, seconds:
#: longer than a retry's delay, a lease (35 s) and the queue's visibility timeout (180 s) together.
STUCK_SECONDS = 300
#: How long one owner's report may take here before the benchmark gives up on it (and says so), seconds.
REPORT_TIMEOUT_SECONDS = 3600


def attribute_size(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for an ``AttributeValue``: a String's UTF-8 bytes, a Number's significant digits
    halved plus one, 1 for a Boolean or Null, 3 plus the elements (and each key) for a Map or List (developer guide,
    "Item sizes and formats": https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        digits = str(data).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(key.encode("utf-8")) + attribute_size(item) + 1 for key, item in data.items())
    if kind == "L":
        return 3 + sum(attribute_size(item) + 1 for item in data)
    raise ValueError(f"no size rule here for {kind}")


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: every attribute's name (UTF-8) plus its value."""
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def uuid7_at(moment: datetime, n: int) -> str:
    """A UUIDv7 whose time is ``moment``, unique by ``n``."""
    ms = int(moment.timestamp() * 1000)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0x8 << 60) | (n & ((1 << 60) - 1))))


def owner_items(owner: str, count: int, target_bytes: int, now: datetime, seed: int = 18) -> Iterator[dict[str, Any]]:
    """``count`` finished jobs of ``owner`` spread over the quarter so far, each an item of exactly ``target_bytes``
    (the payload's padding makes up the rest): SUCCEEDED, FAILED and CANCELLED, ``noop`` and ``report``, with queue
    waits up to a minute and processing times up to 30 s."""
    from jobs.models import Job, JobStatus
    from jobs.processors import quarter_bounds
    from jobs.store import job_to_item

    rng = random.Random(seed)
    start, _ = quarter_bounds(now)
    span = now - timedelta(minutes=10) - start
    statuses = [JobStatus.SUCCEEDED] * 8 + [JobStatus.FAILED, JobStatus.CANCELLED]
    expires = int((now + timedelta(days=30)).timestamp())
    pad: int | None = None
    for n in range(count):
        created = start + span * n / count
        started = created + timedelta(milliseconds=rng.randrange(0, 60_000))
        finished = started + timedelta(milliseconds=rng.randrange(1, 30_000))
        job = Job(
            owner_id=owner,
            job_id=uuid7_at(created, n),
            title=f"bench job {n}",
            type=rng.choice(["noop", "report"]),
            status=rng.choice(statuses),
            payload={"pad": ""},
            created_at=created,
            updated_at=finished,
            started_at=started,
            finished_at=finished,
            attempts=1,
        )
        item = job_to_item(job)
        item["expires_at"] = {"N": str(expires)}
        if pad is None:
            pad = target_bytes - item_size(item)
            if pad < 0:
                raise ValueError(f"an item is {item_size(item)} bytes without padding, over {target_bytes}")
        item["payload"] = {"S": json.dumps({"pad": "x" * pad}, separators=(",", ":"))}
        # Timestamps of other lengths (none here) or another title width would move the size; check it.
        if item_size(item) != target_bytes:
            item["payload"] = {
                "S": json.dumps({"pad": "x" * (pad + target_bytes - item_size(item))}, separators=(",", ":"))
            }
        yield item


def write_owner(dynamodb: Any, table_name: str, items: Iterator[dict[str, Any]]) -> int:
    """Write ``items`` with BatchWriteItem (25 per call, ``WRITERS`` threads, unprocessed items sent again);
    returns how many."""

    def batches() -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        for item in items:
            batch.append({"PutRequest": {"Item": item}})
            if len(batch) == 25:
                yield batch
                batch = []
        if batch:
            yield batch

    def send(batch: list[dict[str, Any]]) -> int:
        pending = {table_name: batch}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        return len(batch)

    written = 0
    with ThreadPoolExecutor(WRITERS) as pool:
        # A few batches per writer at a time: Executor.map would take every item of the owner at once.
        for chunk in itertools.batched(batches(), 4 * WRITERS, strict=False):
            written += sum(pool.map(send, chunk))
    return written


def expected_read_units(count: int, item_bytes: int, *, consistent: bool) -> float:
    """The read capacity DynamoDB's rules charge for Querying ``count`` items of ``item_bytes`` each: pages of at
    most 1 MB of items and at most the report's ``Limit`` (``REPORT_PAGE_SIZE``), each page's size rounded up to
    4 KB, halved for an eventually consistent read."""
    from jobs.processors import REPORT_PAGE_SIZE

    per_page = max(1, min(QUERY_PAGE_BYTES // item_bytes, REPORT_PAGE_SIZE or count))
    full, rest = divmod(count, per_page)
    units = full * math.ceil(per_page * item_bytes / READ_UNIT_BYTES) + math.ceil(rest * item_bytes / READ_UNIT_BYTES)
    return units if consistent else units / 2


# --- the consumer's side (a process of its own, as a Lambda execution environment) ---------------------------


class Invocation:
    """Lambda's context object for one invocation of ``seconds``: the time left counts down from its start."""

    function_name = "ProcessJobsFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ProcessJobsFunction"

    def __init__(self, seconds: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def memory_kb(field: str) -> int:
    """A line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), kB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def deliver(queue_url: str, sqs_endpoint: str, owner: str, job_id: str) -> dict[str, Any]:
    """Run the consumer's handler on the jobs queue's messages, one per invocation of ``TIMEOUT_SECONDS``, until
    the job ``owner``/``job_id`` is finished (a retried message is waited for while it is hidden); each handled
    message is deleted, as the event source mapping does. Returns the figures."""
    spec = importlib.util.spec_from_file_location("process_jobs_app", ROOT / "functions" / "process_jobs" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    from jobs import aws, bootstrap
    from local.poller import to_record

    store = bootstrap.consumer_service().store

    read = {"units": 0.0, "queries": 0}

    def ask_capacity(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def count_capacity(parsed: dict[str, Any], **_: Any) -> None:
        read["units"] += float(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0))
        read["queries"] += 1

    dynamodb = aws.client("dynamodb")
    dynamodb.meta.events.register("provide-client-params.dynamodb.Query", ask_capacity)
    dynamodb.meta.events.register("after-call.dynamodb.Query", count_capacity)
    sqs = client("sqs", sqs_endpoint)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    before_kb = memory_kb("VmRSS")
    durations: list[float] = []
    failures = 0
    began = last = time.monotonic()
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            job = store.get(owner, job_id)
            if job is None or job.is_finished or time.monotonic() - last > STUCK_SECONDS:
                break
            time.sleep(1)  # a retry's message is hidden for its delay
            continue
        last = time.monotonic()
        started = time.monotonic()
        response = app.lambda_handler({"Records": [to_record(messages[0], arn)]}, Invocation(TIMEOUT_SECONDS))
        durations.append(time.monotonic() - started)
        if response["batchItemFailures"]:
            failures += 1
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return {
        "seconds": time.monotonic() - began,
        "deliveries": len(durations),
        "longest": max(durations, default=0.0),
        "failures": failures,
        "read_units": read["units"],
        "queries": read["queries"],
        "rss_before_kb": before_kb,
        "rss_peak_kb": memory_kb("VmHWM"),
    }


# --- the benchmark's side --------------------------------------------------------------------------------------


@contextmanager
def dynamodb_local_table() -> Iterator[tuple[str, str, Any]]:
    """DynamoDB Local with the template's Jobs table: ``(endpoint, table name, client)``."""
    found = dynamodb_local.find()
    if found.jar is None:
        raise RuntimeError(f"DynamoDB Local: {found.reason}")
    server = dynamodb_local.DynamoDBLocal(found.jar)
    endpoint = server.start()
    try:
        dynamodb = client("dynamodb", endpoint)
        stack = LocalStack(ROOT / "template.yaml", lambda service: dynamodb, stack_name="report-scale")
        yield endpoint, stack.physical("JobsTable")["Ref"], dynamodb
    finally:
        server.stop()


def run_owner(
    count: int, item_bytes: int, *, moto: Any, endpoint: str, table_name: str, dynamodb: Any
) -> dict[str, Any]:
    """Write one owner's quarter of ``count`` jobs of ``item_bytes``, submit its report and run it to the end."""
    from jobs.models import JobCreate, JobMessage
    from jobs.service import JobService
    from jobs.store import DynamoJobStore

    owner = f"bench-{count}-{item_bytes}"
    now = datetime.now(UTC)
    began = time.monotonic()
    written = write_owner(dynamodb, table_name, owner_items(owner, count, item_bytes, now))
    write_seconds = time.monotonic() - began
    store = DynamoJobStore(table_name, dynamodb)
    report = JobService(store).create_job(
        owner, JobCreate(title="Quarterly audit", payload={"report_type": "quarterly_audit"})
    )
    queue_url = moto.physical["JobsQueue"]["Ref"]
    moto.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=JobMessage(owner_id=owner, job_id=report.job_id).model_dump_json()
    )
    environment = {
        **lambda_environment(moto.functions["ProcessJobsFunction"].environment, moto.endpoint),
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "JOBS_TABLE_NAME": table_name,
        # BENCH_REPORT_LAYER runs the consumer with another copy of the layer's code (the version before this
        # change, say: `git archive <commit> layers/jobs | tar -x -C /tmp/old`, then /tmp/old/layers/jobs).
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('BENCH_REPORT_LAYER', ROOT / 'layers' / 'jobs')}",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("BENCH_REPORT_LOG_LEVEL", "WARNING"),
    }
    try:
        child = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            [PYTHON, "-m", "bench.report_scale", "--deliver", queue_url, moto.endpoint, owner, report.job_id],
            env=environment,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=REPORT_TIMEOUT_SECONDS,
            check=False,
        )
        if log := os.environ.get("BENCH_REPORT_LOG"):
            Path(log).write_text(child.stdout + child.stderr, encoding="utf-8")
        lines = [line for line in child.stdout.splitlines() if line.startswith('{"seconds"')]
        figures = json.loads(lines[-1]) if lines else {"error": child.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        figures = {"error": f"not finished within {REPORT_TIMEOUT_SECONDS} s"}
    done = store.get(owner, report.job_id)
    result = done.result if done is not None and done.result else {}
    return {
        "count": count,
        "item_bytes": item_bytes,
        "written": written,
        "write_seconds": write_seconds,
        "status": str(done.status.value) if done is not None else "gone",
        "attempts": done.attempts if done is not None else 0,
        "total_jobs": result.get("total_jobs"),
        "job_error": done.error.model_dump() if done is not None and done.error else None,
        "expected_units": expected_read_units(count, item_bytes, consistent=False),
        "strong_units": expected_read_units(count, item_bytes, consistent=True),
        "dead_letters": len(
            moto.client("sqs")
            .receive_message(QueueUrl=moto.physical["JobsDeadLetterQueue"]["Ref"], MaxNumberOfMessages=10)
            .get("Messages", [])
        ),
        **figures,
    }


#: ``make bench``'s owners, (jobs, item bytes): the whole 1 KB curve and the 16 KB one to 10,000 jobs (100,000 of
#: 16 KB take about half an hour on DynamoDB Local here: ``python -m bench.report_scale`` runs them).
BENCH_OWNERS = ((1000, 1024), (10000, 1024), (100000, 1024), (1000, 16384), (10000, 16384))


def measure(owners: Sequence[tuple[int, int]] = BENCH_OWNERS) -> dict[str, Any]:
    """The report of every owner ``(jobs, item bytes)``, in that order; a fresh DynamoDB Local per item size (its
    tables live in memory)."""
    from jobs.observability import logger

    level = logger.log_level
    logger.setLevel("WARNING")  # the benchmark's own job creation logs nothing on its output
    try:
        return _measure(owners)
    finally:
        logger.setLevel(level)  # the process's logger is shared: make bench's other sections and tests log again


def _measure(owners: Sequence[tuple[int, int]]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    with moto_server() as moto:
        for item_bytes, group in itertools.groupby(owners, key=lambda owner: owner[1]):
            with dynamodb_local_table() as (endpoint, table_name, dynamodb):
                for count, _ in group:
                    runs.append(
                        run_owner(
                            count, item_bytes, moto=moto, endpoint=endpoint, table_name=table_name, dynamodb=dynamodb
                        )
                    )
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return {"runs": runs, "version": dynamodb_local.find().version, "seconds": time.monotonic() - began}


def report(measured: dict[str, Any]) -> str:
    """The curve as a Markdown table, with how it was measured."""
    rows = []
    for run in measured["runs"]:
        if "error" in run:
            rows.append(
                [
                    f"{run['count']:,}",
                    f"{run['item_bytes'] // 1024} KB",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    run["error"][:80],
                ]
            )
            continue
        rows.append(
            [
                f"{run['count']:,}",
                f"{run['item_bytes'] // 1024} KB",
                f"{run['write_seconds']:.0f}",
                f"{run['seconds']:.1f}",
                f"{run['deliveries']} (longest {run['longest']:.1f} s)",
                f"{run['read_units']:,.1f} ({run['queries']} Queries)",
                f"{run['expected_units']:,.1f} / {run['strong_units']:,.0f}",
                f"{run['rss_before_kb'] / 1024:.0f} → {run['rss_peak_kb'] / 1024:.0f}",
                f"{run['status']}, attempts {run['attempts']}, "
                + (f"{run['total_jobs']:,} jobs counted" if run["total_jobs"] is not None else f"{run['job_error']}"),
                f"{run['dead_letters']} dead letters, {run['failures']} failed deliveries",
            ]
        )
    return "\n".join(
        [
            f"One owner's `quarterly_audit` on DynamoDB Local {measured['version']} (items written straight into the "
            "table, every one of the stated size, all in the current quarter), run by the consumer's Lambda handler "
            f"one message per invocation of {TIMEOUT_SECONDS} s (the consumer's `Timeout`); messages on moto's SQS. "
            "Read capacity: what DynamoDB Local returned for the report's Queries (`ReturnConsumedCapacity`), then "
            "DynamoDB's rule (pages of at most 256 items and 1 MB, each rounded up to 4 KB; half a unit per 4 KB "
            "eventually consistent, as the report reads) for the owner's jobs (the report's own item adds up to "
            "a unit), and the same read strongly consistent, as the report read before. "
            "Memory: the consumer process's resident set before its first delivery → its peak (MB). "
            f"This section took {measured['seconds']:.0f} s, the owners' writes included.",
            "",
            table(
                [
                    "jobs",
                    "item",
                    "write s",
                    "report s",
                    "deliveries",
                    "RCU consumed",
                    "RCU by the rule: eventual / strong",
                    "RSS MB",
                    "final",
                    "faults",
                ],
                rows,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000, 100000], help="jobs per owner")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 16384], help="item sizes, bytes")
    parser.add_argument("--deliver", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deliver:
        print(json.dumps(deliver(*args.deliver)), flush=True)
        return 0
    owners = [(count, size) for size in args.sizes for count in args.counts]
    sys.stdout.write(report(measure(owners)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
