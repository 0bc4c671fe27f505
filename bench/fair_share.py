"""A fair share between owners on the local stack (issue 15, part 3): owner A submits 1,000 ``noop`` jobs, then owner
B submits 10; B's queue wait (``started_at - created_at``, from the jobs' own timestamps) p50 and p99, with the
local SQS's fair-queues rule on and off (``JOBS_LOCAL_SQS_FAIR_QUEUES``, ``local/moto_server.py``), and the NORMAL
queue's in-flight count (``ApproximateNumberOfMessagesNotVisible``) sampled while B's jobs waited: every in-flight
message is A's then, so A holds all of them, and the rule engages once that is 30 or more.

B's wait is split in two: from ``created_at`` to the relay's "Job ... enqueued" log line (the outbox: the stream and
the relay, which send in order), and from there to ``started_at`` (the queue, where the rule acts).

The stack runs with ``--concurrency 6``: six pollers of ten messages, 60 in flight, of which 50 while one poller
receives (its own batch was deleted first). ``make run``'s default (2) allows only 20, under the 30 that SQS needs to
call a tenant noisy, so the rule cannot engage there (README, "The local stack"); on AWS the template's default
``ConsumerMaximumConcurrency`` (10) times ``BatchSize`` (10) allows 100.

    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.fair_share [--jobs 1000] [--quiet-jobs 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import UNTHROTTLED, client, percentile, table
from bench.load import timestamps
from jobs.auth import issue_token
from local.moto_server import FAIR_QUEUES_VARIABLE
from tests.e2e.support import StackProcess, running_stack

SECRET = "bench-fair-share-secret-long-enough-for-hs256-0123"
BODY = json.dumps({"title": "fair share", "type": "noop", "payload": {}}).encode()
#: Local pollers per queue (each holds one batch of up to 10 messages): 60 in flight.
CONCURRENCY = 6


def submit(stack: StackProcess, owner: str, count: int, clients: int = 8) -> list[str]:
    """``count`` jobs of ``owner`` from ``clients`` threads; their ids."""
    headers = {"Authorization": f"Bearer {issue_token(SECRET, owner)}", "Content-Type": "application/json"}

    def one(_: int) -> str:
        url = f"{stack.base_url}/api/v1/jobs"
        request = urllib.request.Request(url, data=BODY, headers=headers, method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
            return str(json.loads(response.read())["job_id"])

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(count)))


def run(fair: bool, jobs: int, quiet_jobs: int) -> dict[str, Any]:
    """One stack, the rule on or off: A's burst, then B's jobs; B's waits and the in-flight samples."""
    with (
        tempfile.TemporaryDirectory(prefix="jobs-bench-fair-") as directory,
        running_stack(
            Path(directory),
            secret=SECRET,
            concurrency=CONCURRENCY,
            parameter_overrides=UNTHROTTLED,
            environment={FAIR_QUEUES_VARIABLE: "1" if fair else "0"},
        ) as stack,
    ):
        sqs, dynamodb = client("sqs", stack.aws_endpoint), client("dynamodb", stack.dynamodb_endpoint)
        queue = stack.physical["JobsQueue"]
        table_name = stack.physical["JobsTable"]
        submit(stack, "warm-up", 4)  # every worker imports and serves a first request before the timing
        suffix = time.time_ns()
        noisy, quiet = f"owner-a-{suffix}", f"owner-b-{suffix}"
        submit(stack, noisy, jobs)
        in_flight: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                attributes = sqs.get_queue_attributes(
                    QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
                )["Attributes"]
                in_flight.append(int(attributes["ApproximateNumberOfMessagesNotVisible"]))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        submit(stack, quiet, quiet_jobs, clients=2)
        backlog_at_b = sum(
            1 for stamps in timestamps(dynamodb, table_name, [noisy]).values() if "started" not in stamps
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            found = timestamps(dynamodb, table_name, [quiet])
            if len(found) == quiet_jobs and all("started" in stamps for stamps in found.values()):
                break
            time.sleep(0.5)
        stop.set()
        sampler.join()
        quiet_waits = [stamps["started"] - stamps["created"] for stamps in found.values() if "started" in stamps]
        sent = enqueued_at(stack.log, set(found))
        outbox = [sent[job_id] - found[job_id]["created"] for job_id in found if job_id in sent]
        queued = [
            found[job_id]["started"] - sent[job_id] for job_id in found if job_id in sent and "started" in found[job_id]
        ]
        while time.monotonic() < deadline:  # let A's backlog drain, so A's waits are complete too
            noisy_found = timestamps(dynamodb, table_name, [noisy])
            if all("started" in stamps for stamps in noisy_found.values()):
                break
            time.sleep(1)
        noisy_waits = [stamps["started"] - stamps["created"] for stamps in noisy_found.values() if "started" in stamps]
        return {
            "fair": fair,
            "quiet_waits": quiet_waits,
            "quiet_outbox": outbox,
            "quiet_queue": queued,
            "noisy_waits": noisy_waits,
            "backlog_at_b": backlog_at_b,
            "in_flight": in_flight,
        }


def enqueued_at(log: Path, job_ids: set[str]) -> dict[str, float]:
    """When the relay sent each of ``job_ids``' message (epoch s): its "Job ... enqueued" line in the stack's log."""
    found: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "enqueued" not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        job_id = record.get("job_id")
        if job_id in job_ids and str(record.get("message", "")).endswith("enqueued"):
            found[job_id] = datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
    return found


def measure(jobs: int = 1000, quiet_jobs: int = 10, modes: tuple[bool, ...] = (True, False)) -> dict[str, Any]:
    """The scenario once per mode (fair queues on, off), each on a stack of its own."""
    return {"jobs": jobs, "quiet_jobs": quiet_jobs, "runs": [run(fair, jobs, quiet_jobs) for fair in modes]}


def report(measured: dict[str, Any]) -> str:
    """The table of the runs."""
    jobs, quiet_jobs = measured["jobs"], measured["quiet_jobs"]
    rows = []
    for result in measured["runs"]:
        quiet, noisy, samples = result["quiet_waits"], result["noisy_waits"], result["in_flight"] or [0]
        rows.append(
            [
                "on" if result["fair"] else "off",
                result["backlog_at_b"],
                f"{len(quiet)}/{quiet_jobs}",
                f"{percentile(quiet, 0.5):.2f}" if quiet else "-",
                f"{percentile(quiet, 0.99):.2f}" if quiet else "-",
                _p50(result["quiet_outbox"]),
                _p50(result["quiet_queue"]),
                f"{percentile(noisy, 0.5):.2f}" if noisy else "-",
                f"{percentile(noisy, 0.99):.2f}" if noisy else "-",
                f"{min(samples)}-{max(samples)} (median {sorted(samples)[len(samples) // 2]})",
            ]
        )
    header = [
        "fair queues",
        "A's jobs not started when B submitted",
        "B started",
        "B wait p50 (s)",
        "B wait p99 (s)",
        "B: outbox p50 (s)",
        "B: in the queue p50 (s)",
        f"A ({jobs}) wait p50 (s)",
        "A wait p99 (s)",
        "in flight while B waited (all A's)",
    ]
    return table(header, rows)


def _p50(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.2f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="owner A's burst")
    parser.add_argument("--quiet-jobs", type=int, default=10, help="owner B's jobs")
    args = parser.parse_args(argv)
    print(report(measure(args.jobs, args.quiet_jobs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
