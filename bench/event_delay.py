"""The delay from a job's status write to its Job State Change event on the local stack's tap queue.

Starts the local stack (``make run``'s, with DynamoDB Local where installed), runs ``--warmup`` jobs to their
events (the workers' cold starts are not measured), then submits ``--jobs`` noop jobs from ``--clients`` threads,
each waiting ``--interval`` seconds between two of its submits (0: a burst), and reads the tap queue (the
banner's ``Job events``). For each QUEUED, RUNNING and
SUCCEEDED event, the delay is the tap message's ``SentTimestamp`` (when EventBridge delivered it to the queue,
stamped by SQS) minus the event's ``detail.updated_at`` (the status write's own time, written by the function
that made the change). What it measures: the stream poller's 0.25 s polls, the publisher's invocation and
PutEvents, moto's rule delivery. It says nothing of AWS's figures (AWS documents none for DynamoDB Streams to
Lambda). Prints p50, p90, p99 and the maximum, per status and over all; never passes or fails on time.

    .venv/bin/python -m bench.event_delay --jobs 100                           # a burst from 4 clients
    .venv/bin/python -m bench.event_delay --jobs 100 --clients 1 --interval 0.5   # one job every 0.5 s
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from tests.e2e.support import running_stack
from tests.helpers import sign

SECRET = "event-delay-bench-secret-that-is-long-enough-for-hs256"
STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` 0 to 1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def submit(base: str, token: str) -> str:
    body = json.dumps({"title": "delay", "type": "noop", "payload": {}}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base}/api/v1/jobs",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 # nosec B310
        return str(json.loads(response.read())["job_id"])


def measure(jobs: int, clients: int, interval: float = 0.0, warmup: int = 4) -> dict[str, list[float]]:
    """Run the jobs and return the delays (seconds) by status."""
    with tempfile.TemporaryDirectory() as folder, running_stack(Path(folder), secret=SECRET) as stack:
        found = re.search(r"Job events\s+(\S+)", stack.banner)
        assert found is not None, stack.banner
        tap = found.group(1)
        sqs = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        ).client("sqs", endpoint_url=stack.aws_endpoint)
        token = sign("bench", secret=SECRET)
        warm = {submit(stack.base_url, token) for _ in range(warmup)}
        _read(sqs, tap, warm, time.monotonic() + 120)

        def paced(_: int) -> str:
            time.sleep(interval)
            return submit(stack.base_url, token)

        with ThreadPoolExecutor(clients) as pool:
            submitted = set(pool.map(paced, range(jobs)))
        return _read(sqs, tap, submitted, time.monotonic() + 120 + jobs)


def _read(sqs: Any, tap: str, submitted: set[str], deadline: float) -> dict[str, list[float]]:
    """The delays of the QUEUED, RUNNING and SUCCEEDED events of ``submitted`` jobs, read off the tap."""
    delays: dict[str, list[float]] = {status: [] for status in STATUSES}
    seen: set[tuple[str, str]] = set()
    while len(seen) < 3 * len(submitted) and time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=tap, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["SentTimestamp"]
        ).get("Messages", [])
        for message in messages:
            event: dict[str, Any] = json.loads(message["Body"])
            detail = event["detail"]
            key = (detail["job_id"], detail["status"])
            if detail["job_id"] not in submitted or detail["status"] not in delays or key in seen:
                continue
            seen.add(key)
            written = datetime.fromisoformat(detail["updated_at"].replace("Z", "+00:00")).timestamp()
            delays[detail["status"]].append(int(message["Attributes"]["SentTimestamp"]) / 1000 - written)
        if messages:
            sqs.delete_message_batch(
                QueueUrl=tap,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
    return delays


def report(delays: dict[str, list[float]]) -> str:
    """A Markdown table of the delays, milliseconds."""
    rows = ["| events | count | p50 ms | p90 ms | p99 ms | max ms |", "| --- | --- | --- | --- | --- | --- |"]
    everything = [value for values in delays.values() for value in values]
    for name, values in [*delays.items(), ("all", everything)]:
        if not values:
            rows.append(f"| {name} | 0 | | | | |")
            continue
        figures = [percentile(values, p) * 1000 for p in (0.5, 0.9, 0.99)] + [max(values) * 1000]
        rows.append(f"| {name} | {len(values)} | " + " | ".join(f"{figure:.0f}" for figure in figures) + " |")
    if everything:
        rows.append(f"\nmean {statistics.fmean(everything) * 1000:.0f} ms over {len(everything)} events")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m bench.event_delay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args(argv)
    print(report(measure(args.jobs, args.clients, args.interval, args.warmup)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
