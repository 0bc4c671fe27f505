"""Benchmark 6: priority on the local stack (``python -m local.stack``, as ``make run`` starts it). One owner
submits a backlog of ``noop`` jobs at NORMAL priority, then a few at HIGH; once all have finished, every job is
read back through the API (``GET /api/v1/jobs``, page by page) and each one's queue wait is taken from its own
timestamps: ``started_at - max(created_at, not_before)``, the wait the QueueWait metric reports. The table gives
the wait's p50 and p99 per priority, and how much NORMAL work was still waiting when the first HIGH job arrived.

SQS has no priorities: each level has a queue and an event source mapping of its own (template.yaml), so a HIGH
message waits only for HIGH capacity, not behind the NORMAL backlog. Locally, the three mappings' pollers share
one pool of worker processes per function (``--concurrency``), so HIGH work still waits for a worker to come free;
on AWS each mapping scales to its own ``MaximumConcurrency`` within the account's concurrency. The figures are the
local stack's, on a shared machine: they show the order of things, not AWS's latencies.

    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.priority --backlog 1000 --high 20 --concurrency 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, UNTHROTTLED, client, median, percentile, table
from jobs.auth import issue_token
from local import dynamodb_local
from local.template import load_template
from tests.e2e.support import StackProcess, running_stack

SECRET = "bench-priority-secret-long-enough-for-hs256-0123456789"
#: The template parameters of each level's event source mapping ``ScalingConfig.MaximumConcurrency``.
MAXIMUM_CONCURRENCY = {
    "HIGH": "HighPriorityMaximumConcurrency",
    "NORMAL": "ConsumerMaximumConcurrency",
    "LOW": "LowPriorityMaximumConcurrency",
}
#: Each level's queue (logical ids of template.yaml; the stack's physical ids are their URLs).
QUEUES = {"HIGH": "JobsHighPriorityQueue", "NORMAL": "JobsQueue", "LOW": "JobsLowPriorityQueue"}
#: Pause between the benchmark's reads while the jobs drain, seconds (the figures come from the jobs' own
#: timestamps, so reading less often changes none of them but leaves the CPU to the stack).
DRAIN_POLL_SECONDS = 2.0


@dataclass
class Run:
    """One run: the settings, the submitted job ids per priority, and each job as the API returned it."""

    concurrency: int
    engine: str
    backlog: int
    high: int
    submitted: dict[str, list[str]] = field(default_factory=lambda: {"NORMAL": [], "HIGH": []})
    failures: dict[int, int] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    submit_seconds: dict[str, float] = field(default_factory=dict)
    scenario: str = "streamed"
    relay_seconds: float | None = None  # queued: from the backlog's last 201 to its last message on the queue
    lock: threading.Lock = field(default_factory=threading.Lock)


def stamp(text: str | None) -> float | None:
    """An API timestamp (RFC 3339, ``Z``) as epoch seconds; None stays None."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def queue_wait_ms(job: dict[str, Any]) -> float | None:
    """``started_at - max(created_at, not_before)`` in milliseconds, or None for a job that has not started."""
    started, created, not_before = (stamp(job.get(name)) for name in ("started_at", "created_at", "not_before"))
    if started is None or created is None:
        return None
    return (started - max(created, not_before or created)) * 1000


class Api:
    """The stack's HTTP API as one owner."""

    def __init__(self, stack: StackProcess, owner: str) -> None:
        self.base = f"{stack.base_url}/api/v1/jobs"
        self.headers = {"Authorization": f"Bearer {issue_token(SECRET, owner)}", "Content-Type": "application/json"}

    def create(self, priority: str) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"title": "priority", "type": "noop", "payload": {}, "priority": priority}).encode()
        request = urllib.request.Request(self.base, data=body, headers=self.headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
                return response.status, dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return error.code, {}

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job of the owner, 100 per page."""
        found: list[dict[str, Any]] = []
        query: dict[str, str] = {"limit": "100"}
        while True:
            url = f"{self.base}?{urllib.parse.urlencode(query)}"
            request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
                page = json.loads(response.read())
            found.extend(page["items"])
            if not page["next_token"]:
                return found
            query["next_token"] = page["next_token"]


def submit(api: Api, run: Run, priority: str, count: int, clients: int) -> None:
    """``count`` jobs of ``priority`` from ``clients`` threads, back to back."""
    left = [count]

    def worker() -> None:
        while True:
            with run.lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            status, job = api.create(priority)
            with run.lock:
                if status == 201:
                    run.submitted[priority].append(job["job_id"])
                else:
                    run.failures[status] = run.failures.get(status, 0) + 1

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.submit_seconds[priority] = time.monotonic() - began


class Mapping:
    """The consumer's event source mapping of one queue, through the stack's Lambda API
    (UpdateEventSourceMapping), and that queue's depth."""

    def __init__(self, stack: StackProcess, level: str) -> None:
        self.queue_url = stack.physical[QUEUES[level]]
        self.sqs = client("sqs", stack.aws_endpoint)
        self.lambda_ = client("lambda", stack.lambda_url)
        name = self.queue_url.rsplit("/", 1)[-1]
        found = self.lambda_.list_event_source_mappings(FunctionName="ProcessJobsFunction")["EventSourceMappings"]
        self.uuid = next(m["UUID"] for m in found if m["EventSourceArn"].endswith(f":{name}"))

    def enable(self, enabled: bool) -> None:
        self.lambda_.update_event_source_mapping(UUID=self.uuid, Enabled=enabled)
        wanted = "Enabled" if enabled else "Disabled"
        while self.lambda_.get_event_source_mapping(UUID=self.uuid)["State"] != wanted:
            time.sleep(0.1)

    def depth(self) -> int:
        """Messages on the queue, visible, delayed or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)


def run_once(
    stack: StackProcess,
    *,
    concurrency: int,
    engine: str,
    backlog: int,
    high: int,
    clients: int,
    drain_seconds: float,
    queued: bool,
) -> Run:
    """The backlog, then the HIGH jobs, then wait until every job has finished (or ``drain_seconds`` passed).

    ``queued``: the NORMAL mapping is disabled while the backlog is submitted, until its queue holds every
    backlog message (the relay has caught up); the HIGH jobs are submitted then, and the NORMAL mapping is enabled
    again at the same moment, so both levels start from a full SQS backlog. Without it, the HIGH jobs follow the
    backlog at once, while the relay is still sending it."""
    run = Run(concurrency, engine, backlog, high, scenario="queued" if queued else "streamed")
    api = Api(stack, f"bench-priority-{time.time_ns()}")
    normal = Mapping(stack, "NORMAL")
    if queued:
        normal.enable(False)
    submit(api, run, "NORMAL", backlog, clients)
    if queued:
        held_from = time.monotonic()
        while normal.depth() < len(run.submitted["NORMAL"]):
            time.sleep(0.2)
        run.relay_seconds = time.monotonic() - held_from
        release = threading.Thread(target=normal.enable, args=(True,))
        release.start()
    submit(api, run, "HIGH", high, 1)
    if queued:
        release.join()
    give_up = time.monotonic() + drain_seconds
    wanted = {job for ids in run.submitted.values() for job in ids}
    while True:
        run.jobs = {job["job_id"]: job for job in api.all_jobs() if job["job_id"] in wanted}
        pending = [job for job in wanted if run.jobs.get(job, {}).get("status") != "SUCCEEDED"]
        if not pending or time.monotonic() > give_up:
            return run
        time.sleep(DRAIN_POLL_SECONDS)


def warm_up(stack: StackProcess) -> None:
    """Every worker imports and serves a first request before the timing (a few jobs of each level)."""
    api = Api(stack, f"bench-priority-warm-{time.time_ns()}")
    for priority in ("HIGH", "NORMAL", "LOW"):
        for _ in range(4):
            api.create(priority)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(job["status"] != "SUCCEEDED" for job in api.all_jobs()):
        time.sleep(0.5)


def engine_of(dynamodb: str) -> str:
    """The name the table shows for the stack's ``--dynamodb``."""
    if dynamodb == "local" or (dynamodb == "auto" and dynamodb_local.find().jar is not None):
        return "DynamoDB Local"
    return "moto"


def measure(
    *,
    backlog: int = 1000,
    high: int = 20,
    concurrencies: tuple[int, ...] = (2,),
    clients: int = 8,
    dynamodb: str = "auto",
    drain_seconds: float = 600,
) -> dict[str, Any]:
    """One run per ``--concurrency`` value, each on a fresh stack."""
    runs = []
    for concurrency in concurrencies:
        with (
            tempfile.TemporaryDirectory(prefix="jobs-bench-priority-") as directory,
            running_stack(
                Path(directory),
                secret=SECRET,
                concurrency=concurrency,
                parameter_overrides=UNTHROTTLED,
                dynamodb=dynamodb,
            ) as stack,
        ):
            warm_up(stack)
            for queued in (False, True):
                runs.append(
                    run_once(
                        stack,
                        concurrency=concurrency,
                        engine=engine_of(dynamodb),
                        backlog=backlog,
                        high=high,
                        clients=clients,
                        drain_seconds=drain_seconds,
                        queued=queued,
                    )
                )
    defaults = load_template(ROOT / "template.yaml")["Parameters"]
    maximum = {level: int(defaults[name]["Default"]) for level, name in MAXIMUM_CONCURRENCY.items()}
    return {"runs": runs, "maximum_concurrency": maximum, "clients": clients}


def report(results: dict[str, Any]) -> str:
    maximum: dict[str, int] = results["maximum_concurrency"]
    rows = []
    for run in results["runs"]:
        high_arrived = min(
            (stamp(run.jobs[job]["created_at"]) or 0.0 for job in run.submitted["HIGH"] if job in run.jobs),
            default=None,
        )
        waiting = sum(
            1
            for job in run.submitted["NORMAL"]
            if high_arrived is not None
            and (stamp(run.jobs.get(job, {}).get("started_at")) or float("inf")) > high_arrived
        )
        pollers = "/".join(str(min(run.concurrency, maximum[level])) for level in ("HIGH", "NORMAL", "LOW"))
        for priority in ("NORMAL", "HIGH"):
            ids = run.submitted[priority]
            waits = [w for job in ids if (w := queue_wait_ms(run.jobs.get(job, {}))) is not None]
            unfinished = sum(1 for job in ids if run.jobs.get(job, {}).get("status") != "SUCCEEDED")
            held = f"{run.relay_seconds:.1f}" if priority == "NORMAL" and run.relay_seconds is not None else ""
            rows.append(
                [
                    run.scenario,
                    run.engine,
                    run.concurrency,
                    pollers,
                    priority,
                    len(ids),
                    f"{len(ids) / run.submit_seconds[priority]:.0f}",
                    held,
                    waiting if priority == "HIGH" else "",
                    f"{median(waits):.0f}",
                    f"{percentile(waits, 0.99):.0f}",
                    f"{max(waits, default=float('nan')):.0f}",
                    unfinished,
                    ", ".join(f"{code}: {n}" for code, n in sorted(run.failures.items())) or "none",
                ]
            )
    header = ["HIGH sent", "DynamoDB on", "worker processes", "pollers HIGH/NORMAL/LOW", "priority", "jobs"]
    header += ["submitted jobs/s", "NORMAL held for the relay s", "NORMAL jobs not started when the first HIGH arrived"]
    header += ["queue wait p50 ms", "p99 ms", "max ms", "unfinished", "non-201"]
    return "\n\n".join(
        [
            f"One owner submits the NORMAL backlog from {results['clients']} concurrent clients, then the HIGH jobs "
            "one after the other; all `noop`. Queue wait = started_at - max(created_at, not_before), read from the "
            "jobs through the API. Consumer settings: the template's MaximumConcurrency per mapping (defaults) "
            f"HIGH {maximum['HIGH']}, NORMAL {maximum['NORMAL']}, LOW {maximum['LOW']}, BatchSize 10. Locally, "
            "ProcessJobsFunction runs `worker processes` (the stack's --concurrency), shared by the three mappings, "
            "and each mapping has min(--concurrency, its MaximumConcurrency) pollers; route throttling raised out "
            f"of the way ({UNTHROTTLED}).",
            "Two ways to send the HIGH jobs. *streamed*: right after the backlog's last 201, while the outbox relay "
            "is still sending the backlog's messages. *queued*: the NORMAL queue's mapping is disabled "
            "(UpdateEventSourceMapping) while the backlog is submitted, until the queue holds all of its messages "
            "(`NORMAL held for the relay`: seconds from the last 201 until then); then the HIGH jobs are sent and "
            "the NORMAL mapping enabled at the same moment, so the NORMAL queue wait includes that hold.",
            table(header, rows),
            "The relay reads the table's stream in order (one shard here; on AWS a partition key's records stay in "
            "order too), so a HIGH job created behind a backlog of inserts gets its message only after theirs "
            "(*streamed*): its queue wait is the relay's lag, whatever the queues do. Once its message is on the "
            "HIGH queue (*queued*), it waits for the HIGH mapping's poller and a worker, not for the NORMAL backlog. "
            "Locally the three mappings' pollers share the function's worker processes, so a HIGH batch waits for "
            "a worker to finish its current batch (up to ten NORMAL jobs); on AWS the HIGH mapping's invocations "
            "are its own (up to its MaximumConcurrency, within the account's unreserved concurrency).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1000, help="NORMAL jobs submitted first (1000)")
    parser.add_argument("--high", type=int, default=20, help="HIGH jobs submitted after them (20)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2], help="the stack's worker processes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients submitting the backlog (8)")
    parser.add_argument("--dynamodb", default="auto", help="the stack's --dynamodb (auto, local, moto)")
    args = parser.parse_args(argv)
    results = measure(
        backlog=args.backlog,
        high=args.high,
        concurrencies=tuple(args.concurrency),
        clients=args.clients,
        dynamodb=args.dynamodb,
    )
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
