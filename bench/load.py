"""Benchmark 4: the local stack (``python -m local.stack``, as ``make run`` starts it) under load. With 1, 4 and
16 concurrent clients, each submitting ``noop`` jobs back to back for a few seconds: the submit rate (201s per
second) and the latency from each 201 (the client's clock) to SUCCEEDED (the job's ``finished_at``, written by
the consumer on the same machine), p50 and p99, once every job of the level has finished; and where that time
goes, from the jobs' own timestamps: create to 201, queue wait (started - created), processing.

It runs twice: with the tables in moto's server (``make run`` on a machine without java), then in DynamoDB Local
(``make run``'s default where ``make dynamodb-local`` has installed it); SQS and SSM are on moto's server in
both. The template's route throttling is raised out of the way (``UNTHROTTLED``).

    .venv/bin/python -m bench.load --seconds 8 --clients 1 4 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import UNTHROTTLED, client, median, percentile, table
from jobs.auth import issue_token
from local import dynamodb_local
from tests.e2e.support import StackProcess, running_stack

SECRET = "bench-load-secret-long-enough-for-hs256-0123456789"
BODY = json.dumps({"title": "load", "type": "noop", "payload": {}}).encode()


@dataclass
class Level:
    clients: int
    seconds: float
    engine: str = "moto"
    accepted: dict[str, float] = field(default_factory=dict)  # job_id -> when the 201 arrived (epoch s)
    failures: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    phases_ms: dict[str, list[float]] = field(default_factory=dict)
    unfinished: int = 0
    finished_span_s: float = 0.0  # first 201 to last SUCCEEDED
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process kind, over the whole level
    wall_s: float = 0.0  # the level's wall time: submitting and draining
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Pause between the benchmark's reads of the table while the level drains, seconds: the finish times come from
#: the items themselves, so reading less often changes no figure but leaves the stack's CPU to the stack.
DRAIN_POLL_SECONDS = 2.0
#: What each process of the stack is, by its command line (``/proc/<pid>/cmdline``).
PROCESS_KINDS = (
    ("DynamoDBLocal.jar", "DynamoDB Local (JVM)"),
    ("moto_server", "moto's server"),
    ("multiprocessing", "function workers"),
    ("local.stack", "stack: gateway, pollers"),
)


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root`` and every process under it, by kind (Linux /proc),
    and by this process's load clients."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    totals: dict[str, float] = {}
    for pid in tree:
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        kind = next((name for marker, name in PROCESS_KINDS if marker in command), "other")
        totals[kind] = totals.get(kind, 0.0) + used.get(pid, 0.0)
    own = resource.getrusage(resource.RUSAGE_SELF)
    totals["load clients (the benchmark)"] = own.ru_utime + own.ru_stime
    return totals


def submit(stack: StackProcess, level: Level, owner: str, deadline: float) -> None:
    token = issue_token(SECRET, owner)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        url = f"{stack.base_url}/api/v1/jobs"
        request = urllib.request.Request(url, data=BODY, headers=headers, method="POST")  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
                job = json.loads(response.read())
                arrived = time.time()
                with level.lock:
                    level.accepted[job["job_id"]] = arrived
        except urllib.error.HTTPError as error:
            with level.lock:
                level.failures[error.code] = level.failures.get(error.code, 0) + 1


def timestamps(dynamodb: Any, table_name: str, owners: list[str]) -> dict[str, dict[str, float]]:
    """``created``, ``started``, ``finished`` (epoch s) of every job of these owners, as far as written."""
    found: dict[str, dict[str, float]] = {}
    for owner in owners:
        request: dict[str, Any] = {
            "TableName": table_name,
            "KeyConditionExpression": "owner_id = :o",
            "ExpressionAttributeValues": {":o": {"S": owner}},
            "ConsistentRead": True,
            "ProjectionExpression": "job_id, #s, created_at, started_at, finished_at",
            "ExpressionAttributeNames": {"#s": "status"},
        }
        while True:
            page = dynamodb.query(**request)
            for item in page["Items"]:
                stamps = {
                    name: datetime.fromisoformat(item[f"{name}_at"]["S"].replace("Z", "+00:00")).timestamp()
                    for name in ("created", "started", "finished")
                    if f"{name}_at" in item
                }
                if item["status"]["S"] != "SUCCEEDED":
                    stamps.pop("finished", None)
                found[item["job_id"]["S"]] = stamps
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return found


def run_level(stack: StackProcess, dynamodb: Any, clients: int, seconds: float, drain_seconds: float = 120) -> Level:
    level = Level(clients, seconds)
    cpu_before, began = cpu_seconds(stack.pid), time.monotonic()
    owners = [f"load-{clients}-{n}-{time.time_ns()}" for n in range(clients)]
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=submit, args=(stack, level, owner, deadline)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    give_up = time.monotonic() + drain_seconds
    while True:
        stamps = timestamps(dynamodb, stack.physical["JobsTable"], owners)
        pending = [job for job in level.accepted if "finished" not in stamps.get(job, {})]
        if not pending or time.monotonic() > give_up:
            break
        time.sleep(DRAIN_POLL_SECONDS)
    level.unfinished = len(pending)
    level.wall_s = time.monotonic() - began
    cpu_after = cpu_seconds(stack.pid)
    level.cpu_s = {kind: cpu_after[kind] - cpu_before.get(kind, 0.0) for kind in cpu_after}
    done = {job: times for job, times in stamps.items() if "finished" in times and job in level.accepted}
    level.latencies_ms = [(times["finished"] - level.accepted[job]) * 1000 for job, times in done.items()]
    if done:
        level.finished_span_s = max(times["finished"] for times in done.values()) - min(level.accepted.values())
    level.phases_ms = {
        "api": [(level.accepted[job] - times["created"]) * 1000 for job, times in done.items()],
        "queue": [(times["started"] - times["created"]) * 1000 for job, times in done.items()],
        "processing": [(times["finished"] - times["started"]) * 1000 for job, times in done.items()],
    }
    return level


#: The stack's ``--dynamodb`` for each engine the table reports.
ENGINES = {"moto": "moto", "DynamoDB Local": "local"}


def measure(
    seconds: float, levels: list[int], concurrency: int = 2, engines: tuple[str, ...] = tuple(ENGINES)
) -> dict[str, Any]:
    """Every level on the stack with its tables in moto's server, then in DynamoDB Local (``make run``'s
    default where it is installed); an engine that is not installed is left out."""
    results: list[Level] = []
    for engine in engines:
        if ENGINES[engine] == "local" and dynamodb_local.find().jar is None:
            continue
        with (
            tempfile.TemporaryDirectory(prefix="jobs-bench-load-") as directory,
            running_stack(
                Path(directory),
                secret=SECRET,
                concurrency=concurrency,
                parameter_overrides=UNTHROTTLED,
                dynamodb=ENGINES[engine],
            ) as stack,
        ):
            results += run_levels(stack, client("dynamodb", stack.dynamodb_endpoint), engine, seconds, levels)
    return {"seconds": seconds, "concurrency": concurrency, "levels": results}


def run_levels(stack: StackProcess, dynamodb: Any, engine: str, seconds: float, levels: list[int]) -> list[Level]:
    run_level(stack, dynamodb, 2, 1.0)  # every worker imports and serves a first request before the timing
    measured = []
    for clients in levels:
        level = run_level(stack, dynamodb, clients, seconds)
        level.engine = engine
        measured.append(level)
    return measured


def report(results: dict[str, Any]) -> str:
    rows = []
    for level in results["levels"]:
        latencies = level.latencies_ms
        rows.append(
            [
                level.engine,
                level.clients,
                len(level.accepted),
                f"{len(level.accepted) / level.seconds:.1f}",
                f"{len(level.latencies_ms) / level.finished_span_s:.1f}" if level.finished_span_s else "n/a",
                f"{median(latencies):.0f}",
                f"{percentile(latencies, 0.99):.0f}",
                f"{median(level.phases_ms['api']):.0f}",
                f"{median(level.phases_ms['queue']):.0f}",
                f"{median(level.phases_ms['processing']):.0f}",
                level.unfinished,
                ", ".join(f"{code}: {count}" for code, count in sorted(level.failures.items())) or "none",
            ]
        )
    header = ["DynamoDB on", "clients", "jobs", "submit jobs/s", "done jobs/s", "201→SUCCEEDED p50 ms", "p99 ms"]
    header += ["create→201 p50", "queue wait p50", "processing p50", "unfinished", "non-201"]
    kinds = [name for _, name in PROCESS_KINDS] + ["load clients (the benchmark)"]
    cpu_rows = [
        [
            level.engine,
            level.clients,
            f"{level.wall_s:.0f}",
            *(f"{level.cpu_s.get(kind, 0.0) / level.wall_s:.2f}" for kind in kinds),
            f"{sum(level.cpu_s.values()) / level.wall_s:.2f} of {os.cpu_count()}",
        ]
        for level in results["levels"]
        if level.wall_s
    ]
    return "\n\n".join(
        [
            f"Each level submits for {results['seconds']:g} s; the local stack runs {results['concurrency']} "
            "worker processes per function and as many SQS pollers (its default); SQS and SSM on moto's server; "
            f"route throttling raised out of the way ({UNTHROTTLED}). "
            "Phases are medians from the jobs' own timestamps (ms).",
            table(header, rows),
            "Done jobs/s: jobs finished over the time from the first 201 to the last SUCCEEDED. Where the CPU went "
            "during each level (submitting and draining), in cores: CPU seconds (/proc) over wall seconds, by "
            "process; the function workers are the four functions' processes together.",
            table(["DynamoDB on", "clients", "wall s", *kinds, "all"], cpu_rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    print(report(measure(args.seconds, args.clients, args.concurrency)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
