"""Soak test: N concurrent clients submit M jobs to the local stack while faults are injected, then the table
and the three priority queues and their dead-letter queues are counted to check the promise: every accepted job
is terminal or deleted, none is lost, duplicated or resurrected, no final status is written twice, no
dead-lettered message belongs to a job that is still QUEUED or RUNNING, every job whose cancel was accepted ends
CANCELLED and no other job does, every job keeps the priority it was given, and no scheduled job started before
its ``not_before``.

Jobs come from two owners (``soak-a`` and ``soak-b``, alternating job by job in every client, so both owners'
message groups share each queue), with a mix of priorities (HIGH, LOW, NORMAL sent or left to the default), and
some are scheduled a few seconds ahead (``not_before``), some of those cancelled while they wait.

Faults: processor errors (retryable and not), workers killed mid-job (``crash``, the process exits after the
job is RUNNING), jobs that never stop crashing (the dead-letter path), deletes while jobs run, and cancels
(``POST .../cancel``) of jobs just submitted (mostly still QUEUED: CANCELLED at once) and of jobs seen RUNNING
(their run is asked to stop and ends them CANCELLED). The stack
runs a copy of template.yaml with shorter timeouts (8 s consumer, 10 s lease, 24 s visibility timeout), so
that leases and redeliveries play out in minutes; 8 s leaves a batch of ten room on a loaded 2-core machine,
where the end-to-end tests' 3 s times whole batches out.

    make soak                       # N=16 clients, M=2000 jobs
    .venv/bin/python -m bench.soak --clients 4 --jobs 200

It prints figures and exits non-zero only when an invariant is broken (never on time).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from bench.common import UNTHROTTLED
from jobs.models import format_timestamp
from tests.e2e.support import running_stack, short_template
from tests.helpers import sign

SECRET = "soak-test-secret-that-is-long-enough-for-hs256-0123456"
#: The final statuses; any other status (QUEUED, RUNNING, or one this version does not know) is open.
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

#: The job mix: (weight, type, payload, what the client does to it: None, "delete" while it runs, "cancel" at
#: once after its 201, or "cancel running" once GET shows it RUNNING).
MIX: list[tuple[float, str, dict[str, Any], str | None]] = [
    (0.72, "noop", {}, None),
    (0.06, "flaky", {"attempts": 1}, None),  # one retryable failure, then success
    (0.03, "flaky", {"attempts": 0}, None),  # retryable failures until the last delivery: FAILED
    (0.03, "fail", {}, None),  # a non-retryable failure: FAILED at once
    (0.05, "sleep", {"seconds": 1.0}, "delete"),  # deleted while it runs
    (0.02, "crash", {"attempts": 1}, None),  # the worker dies mid-job once; the lease hands it over
    (0.01, "crash", {"attempts": 0}, None),  # the worker always dies: the dead-letter handler fails the job
    (0.04, "noop", {}, "cancel"),  # cancelled at once: QUEUED, unless it already ran (409)
    (0.04, "sleep", {"seconds": 3.0}, "cancel running"),  # cancelled while it runs: its run ends it CANCELLED
    (0.06, "noop", {}, "scheduled"),  # not_before a few seconds ahead: starts no earlier
    (0.03, "noop", {}, "cancel scheduled"),  # scheduled, then cancelled while it waits: CANCELLED at once
]
#: The two owners every client submits for, job by job.
OWNERS = ("soak-a", "soak-b")
#: The priorities sent, by weight; None sends none (the API's default, NORMAL).
PRIORITIES: list[tuple[float, str | None]] = [(0.2, "HIGH"), (0.3, "NORMAL"), (0.3, None), (0.2, "LOW")]
#: How far ahead a scheduled job's not_before is, seconds.
SCHEDULE_AHEAD = (2.0, 8.0)
#: The template's queues of jobs, one per priority, and their dead-letter queues (logical ids).
QUEUES = ("JobsHighPriorityQueue", "JobsQueue", "JobsLowPriorityQueue")
DEAD_LETTER_QUEUES = ("JobsHighPriorityDeadLetterQueue", "JobsDeadLetterQueue", "JobsLowPriorityDeadLetterQueue")


@dataclass
class Ledger:
    """What the clients saw: accepted job ids (201), deleted ones (204), and the HTTP statuses."""

    accepted: dict[str, str] = field(default_factory=dict)  # job_id -> owner
    priorities: dict[str, str] = field(default_factory=dict)  # job_id -> the priority the 201 returned
    asked: dict[str, str] = field(default_factory=dict)  # job_id -> the priority sent (NORMAL when none)
    scheduled: dict[str, str] = field(default_factory=dict)  # job_id -> not_before as the 201 returned it
    deleted: set[str] = field(default_factory=set)
    cancels: dict[str, tuple[int, str]] = field(default_factory=dict)  # job_id -> (HTTP status, status returned)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def call(base: str, method: str, path: str, owner: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {sign(owner, secret=SECRET)}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, json.loads(raw) if raw else None


def cancel(base: str, owner: str, job_id: str, ledger: Ledger, *, when_running: bool) -> None:
    """Cancel a job, at once or once GET shows it RUNNING (up to 30 s), and note what the cancel answered."""
    deadline = time.monotonic() + 30
    while when_running and time.monotonic() < deadline:
        status, job = call(base, "GET", f"/api/v1/jobs/{job_id}", owner)
        if status != 200 or job["status"] != "QUEUED":
            break
        time.sleep(0.2)
    status, job = call(base, "POST", f"/api/v1/jobs/{job_id}/cancel", owner)
    with ledger.lock:
        ledger.statuses[status] += 1
        ledger.cancels[job_id] = (status, job["status"] if status == 200 else "")


def client(base: str, first_owner: int, count: int, ledger: Ledger, rng: random.Random) -> None:
    """One client: submits ``count`` jobs of the mix for the two owners in turn (from ``OWNERS[first_owner]``),
    each with a priority of ``PRIORITIES``, deleting, cancelling or scheduling the marked ones."""
    weights = [weight for weight, *_ in MIX]
    priority_weights = [weight for weight, _ in PRIORITIES]
    for n in range(count):
        owner = OWNERS[(first_owner + n) % len(OWNERS)]
        _, job_type, payload, action = rng.choices(MIX, weights=weights)[0]
        priority = rng.choices(PRIORITIES, weights=priority_weights)[0][1]
        body: dict[str, Any] = {"title": job_type, "type": job_type, "payload": payload}
        if priority is not None:
            body["priority"] = priority
        if action in ("scheduled", "cancel scheduled"):
            ahead = timedelta(seconds=rng.uniform(*SCHEDULE_AHEAD))
            body["not_before"] = format_timestamp(datetime.now(UTC) + ahead)
        status, job = call(base, "POST", "/api/v1/jobs", owner, body)
        with ledger.lock:
            ledger.statuses[status] += 1
            if status == 201:
                ledger.accepted[job["job_id"]] = owner
                ledger.priorities[job["job_id"]] = job.get("priority", "")
                ledger.asked[job["job_id"]] = priority or "NORMAL"
                if job.get("not_before"):
                    ledger.scheduled[job["job_id"]] = job["not_before"]
        if status == 201 and action in ("cancel", "cancel running", "cancel scheduled"):
            cancel(base, owner, job["job_id"], ledger, when_running=action == "cancel running")
        if status == 201 and action == "delete":
            time.sleep(rng.uniform(0.2, 1.2))
            gone, _ = call(base, "DELETE", f"/api/v1/jobs/{job['job_id']}", owner)
            with ledger.lock:
                ledger.statuses[gone] += 1
                if gone == 204:
                    ledger.deleted.add(job["job_id"])


def scan(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every job item: status, owner, priority (NORMAL when the item has none), started_at and not_before (None
    when absent)."""
    items: dict[str, dict[str, Any]] = {}
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**request)
        for item in page["Items"]:
            items[item["job_id"]["S"]] = {
                "status": item["status"]["S"],
                "owner": item["owner_id"]["S"],
                "priority": item.get("priority", {}).get("S", "NORMAL"),
                "started_at": item.get("started_at", {}).get("S"),
                "not_before": item.get("not_before", {}).get("S"),
            }
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a queue (received, left to become visible again)."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(200):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if not batch:
            break
        for message in batch:
            found[message["MessageId"]] = message
    return list(found.values())


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def final_writes(log: Path) -> collections.Counter[str]:
    """How many times each job's final status was logged as written (``Job <id> SUCCEEDED|FAILED|CANCELLED...``)."""
    writes: collections.Counter[str] = collections.Counter()
    decoder = json.JSONDecoder()
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        position = line.find("{")
        while position != -1:  # several processes share the stream: a line may hold more than one record
            try:
                record, end = decoder.raw_decode(line, position)
            except json.JSONDecodeError:
                break
            parts = str(record.get("message", "")).split() if isinstance(record, dict) else []
            if len(parts) >= 3 and parts[0] == "Job" and parts[2].rstrip(":") in TERMINAL:
                writes[parts[1]] += 1
            position = line.find("{", end)
    return writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle-timeout", type=float, default=1200, help="seconds to wait for terminal statuses")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        directory = Path(folder)
        environment = {"Parameters": {"JOBS_FAULT_INJECTION": "1", "JOBS_RETRY_BASE_SECONDS": "1"}}
        with running_stack(
            directory,
            secret=SECRET,
            template=short_template(directory, consumer_timeout=8, lease=10, visibility=24),
            function_environment=environment,
            parameter_overrides=UNTHROTTLED,
        ) as stack:
            engine = re.search(r"DynamoDB\s+\S+\s+\((.*)\)", stack.banner)
            print(f"DynamoDB on {engine.group(1) if engine else 'unknown'}")
            ledger = Ledger()
            per_client = [args.jobs // args.clients + (i < args.jobs % args.clients) for i in range(args.clients)]
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                for i, count in enumerate(per_client):
                    pool.submit(client, stack.base_url, i, count, ledger, random.Random(args.seed + i))
            submitted = time.monotonic() - started
            print(f"submitted {len(ledger.accepted)} jobs in {submitted:.1f} s with {args.clients} clients")

            session = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
            )
            dynamodb = session.client("dynamodb", endpoint_url=stack.dynamodb_endpoint)
            sqs = session.client("sqs", endpoint_url=stack.aws_endpoint)
            table = stack.physical["JobsTable"]
            queues = {name: stack.physical[name] for name in QUEUES + DEAD_LETTER_QUEUES}
            deadline = time.monotonic() + args.settle_timeout
            while True:
                items = scan(dynamodb, table)
                open_jobs = [job_id for job_id, item in items.items() if item["status"] not in TERMINAL]
                busy = sum(queue_depth(sqs, url) for url in queues.values())
                if (not open_jobs and busy == 0) or time.monotonic() > deadline:
                    break
                time.sleep(2)
            settled = time.monotonic() - started
            time.sleep(1)
            items = scan(dynamodb, table)
            left = {name: queue_depth(sqs, queues[name]) for name in QUEUES}
            dead = {name: drain(sqs, queues[name]) for name in DEAD_LETTER_QUEUES}
            writes = final_writes(stack.log)

    accepted, deleted = set(ledger.accepted), ledger.deleted
    present = set(items)
    by_status = collections.Counter(item["status"] for item in items.values())
    open_statuses = {item["status"] for item in items.values()} - TERMINAL
    accepted_cancels = {job_id for job_id, (status, _) in ledger.cancels.items() if status == 200}
    found_as = collections.Counter(
        returned if status == 200 else str(status) for status, returned in ledger.cancels.values()
    )
    cancelled = {job_id for job_id, item in items.items() if item["status"] == "CANCELLED"}
    dead_messages = [message for messages in dead.values() for message in messages]
    dead_statuses = [items.get(json.loads(m["Body"]).get("job_id", ""), {}).get("status") for m in dead_messages]
    dead_open = [status for status in dead_statuses if status is not None and status not in TERMINAL]
    kept = {job_id: item for job_id, item in items.items() if job_id in accepted}
    by_priority = collections.Counter(item["priority"] for item in kept.values())
    by_owner = collections.Counter(item["owner"] for item in kept.values())
    wrong_priority = [
        job_id
        for job_id, item in kept.items()
        if item["priority"] != ledger.asked[job_id] or ledger.priorities[job_id] != ledger.asked[job_id]
    ]
    scheduled = {job_id: item for job_id, item in kept.items() if job_id in ledger.scheduled}
    # Both timestamps are RFC 3339 in UTC with milliseconds, so their string order is their time order.
    early = [
        job_id
        for job_id, item in scheduled.items()
        if item["started_at"] is not None and item["started_at"] < ledger.scheduled[job_id]
    ]
    lost_start = [job_id for job_id, item in scheduled.items() if item["not_before"] != ledger.scheduled[job_id]]
    late = sorted(
        (parse(item["started_at"]) - parse(ledger.scheduled[job_id])).total_seconds()
        for job_id, item in scheduled.items()
        if item["started_at"] is not None
    )
    figures = {
        "accepted (201)": len(accepted),
        "deleted (204)": len(deleted),
        "in the table": len(present),
        **{f"  owner {owner}": by_owner.get(owner, 0) for owner in OWNERS},
        **{f"  priority {level}": by_priority.get(level, 0) for level in ("HIGH", "NORMAL", "LOW")},
        **{f"  {status}": by_status.get(status, 0) for status in ("SUCCEEDED", "FAILED", "CANCELLED")},
        **{f"  {status}": by_status.get(status, 0) for status in sorted(open_statuses | {"QUEUED", "RUNNING"})},
        "cancels asked": len(ledger.cancels),
        **{f"  answered {what}": count for what, count in sorted(found_as.items())},
        "cancel accepted (200), job not CANCELLED": len(accepted_cancels - cancelled),
        "CANCELLED without an accepted cancel": len(cancelled - accepted_cancels),
        "lost (accepted, not deleted, not in the table)": len(accepted - deleted - present),
        "not terminal": sum(by_status[status] for status in open_statuses),
        "unknown jobs in the table (duplicated)": len(present - accepted),
        "resurrected (deleted, back in the table)": len(deleted & present),
        "final status written twice": sum(1 for count in writes.values() if count > 1),
        "final statuses written": sum(writes.values()),
        "messages left in the job queues": dict(left),
        "DLQ messages left": {name: len(messages) for name, messages in dead.items()},
        "DLQ messages of jobs not final": len(dead_open),
        "priority not as asked": len(wrong_priority),
        "scheduled (not_before set)": len(scheduled),
        **{
            f"  scheduled, {status}": count
            for status, count in sorted(collections.Counter(item["status"] for item in scheduled.values()).items())
        },
        "  not_before not stored as returned": len(lost_start),
        "  started after not_before, s (min, p50, max)": (
            (round(late[0], 3), round(late[len(late) // 2], 3), round(late[-1], 3)) if late else None
        ),
        "scheduled job started before its not_before": len(early),
        "HTTP statuses": dict(sorted(ledger.statuses.items())),
        "seconds to submit": round(submitted, 1),
        "seconds until settled": round(settled, 1),
    }
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    broken = [
        "lost (accepted, not deleted, not in the table)",
        "not terminal",
        "unknown jobs in the table (duplicated)",
        "resurrected (deleted, back in the table)",
        "final status written twice",
        "DLQ messages of jobs not final",
        "cancel accepted (200), job not CANCELLED",
        "CANCELLED without an accepted cancel",
        "priority not as asked",
        "  not_before not stored as returned",
        "scheduled job started before its not_before",
    ]
    violated = [name for name in broken if figures[name]]
    if sum(left.values()):
        violated.append("messages left in the job queues")
    print("invariants:", "OK" if not violated else f"VIOLATED: {violated}")
    return 1 if violated else 0


def parse(text: str) -> datetime:
    """An RFC 3339 timestamp as the table stores it (``2026-11-29T10:52:06.750Z``)."""
    return datetime.fromisoformat(text)


if __name__ == "__main__":
    sys.exit(main())
