"""How long a job's callback takes after the job finished, on the local stack, with and without another owner's
slow receiver.

Starts the local stack with the documented loopback flag (``JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK=1``) and a
``trustme`` test authority, runs ``--warmup`` callback jobs (the workers' cold starts are not measured), then two
phases of ``--jobs`` noop jobs of owner B, submitted ``--interval`` seconds apart, each with a callback to a fast
receiver (204 at once):

- ``quiet``: B alone;
- ``A slow``: first ``--slow-jobs`` jobs of owner A whose receiver answers only after ``--slow-seconds`` (past the
  callback timeout, so each of A's attempts hangs for the whole timeout), then B's jobs while A's attempts hang.

For each of B's jobs the delay is when its receiver got the POST (``time.time()``) minus the job's ``finished_at``
(in the delivered body). It also prints each phase's job run time (``finished_at`` minus ``created_at``) for B:
a callback cannot change it, since the job is finished before its event is published. Prints p50, p90, p99 and the
maximum; never passes or fails on time. The figures are the local stack's (two worker processes per function,
moto's EventBridge and SQS, the stream poller's 0.25 s polls), not AWS's.

    .venv/bin/python -m bench.callback_delay --jobs 30 --slow-jobs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme

from bench.common import percentile
from tests.e2e.support import running_stack
from tests.helpers import sign
from tests.webhook_receiver import Receiver, ca_bundle, receiving

SECRET = "callback-delay-bench-secret-that-is-long-enough-for-hs256"


def submit(base: str, owner: str, callback_url: str) -> str:
    """Submit a noop job with ``callback_url`` as ``owner``; its id."""
    body = json.dumps({"title": "callback", "type": "noop", "callback_url": callback_url}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base}/api/v1/jobs",
        data=body,
        headers={"Authorization": f"Bearer {sign(owner, secret=SECRET)}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 # nosec B310
        return str(json.loads(response.read())["job_id"])


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def delays(receiver: Receiver, count: int, timeout: float) -> tuple[list[float], list[float]]:
    """Once ``count`` deliveries came: their delays after the job finished, and the jobs' run times (seconds)."""
    got = receiver.wait_for(count, timeout)
    assert len(got) >= count, f"{len(got)} of {count} callbacks came in {timeout:.0f} s"
    after, runs = [], []
    for request in got[:count]:
        job = json.loads(request.body)
        after.append(request.wall - _seconds(job["finished_at"]))
        runs.append(_seconds(job["finished_at"]) - _seconds(job["created_at"]))
    return after, runs


def phase(base: str, ca: trustme.CA, jobs: int, interval: float) -> tuple[list[float], list[float]]:
    """B's jobs, each with a callback to a fast receiver: the delays and run times."""
    with receiving(ca) as fast:
        for _ in range(jobs):
            submit(base, "owner-b", fast.url())
            time.sleep(interval)
        return delays(fast, jobs, 120 + jobs)


def measure(
    jobs: int, slow_jobs: int, slow_seconds: float, interval: float, warmup: int = 4, concurrency: int = 2
) -> dict[str, Any]:
    """Both phases; the figures by phase. ``concurrency``: the stack's worker processes per function (``make run``'s
    ``JOBS_LOCAL_CONCURRENCY``; the template's ``CallbacksMaximumConcurrency`` is 5)."""
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        environment = {
            "JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK": "1",
            "JOBS_LOCAL_CALLBACK_CA_BUNDLE": str(ca_bundle(ca, directory)),
        }
        with running_stack(directory, secret=SECRET, environment=environment, concurrency=concurrency) as stack:
            with receiving(ca) as warm:
                for _ in range(warmup):
                    submit(stack.base_url, "owner-warm", warm.url())
                delays(warm, warmup, 120)
            quiet = phase(stack.base_url, ca, jobs, interval)
            with receiving(ca, delay=slow_seconds) as slow:
                for _ in range(slow_jobs):
                    submit(stack.base_url, "owner-a", slow.url())
                slow.wait_for(1, 60)  # A's first attempts are hanging
                behind = phase(stack.base_url, ca, jobs, interval)
                hanging = len(slow.requests)
            deferred = deferrals(stack.log)
    return {"quiet": quiet, "A slow": behind, "A attempts meanwhile": hanging, "deferrals": deferred}


def deferrals(log: Path) -> dict[str, int]:
    """How many times each owner's records were deferred (``Callback deferred`` lines of the stack's log)."""
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if '"Callback deferred' in line:
            owner = str(json.loads(line).get("owner_id"))
            counts[owner] = counts.get(owner, 0) + 1
    return counts


def summary(values: list[float]) -> str:
    """p50 / p90 / p99 / max, in seconds."""
    points = (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99), max(values))
    return " / ".join(f"{value:.2f}" for value in points)


def report(figures: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| phase | B's callback after its job finished, s (p50 / p90 / p99 / max) | B's job run time, s (median) |",
        "| --- | --- | --- |",
    ]
    for name in ("quiet", "A slow"):
        after, runs = figures[name]
        lines.append(f"| {name} | {summary(after)} | {statistics.median(runs):.2f} |")
    lines.append(f"\nA's attempts that reached its slow receiver while B's jobs ran: {figures['A attempts meanwhile']}")
    counts = figures["deferrals"]
    lines.append(
        f"Deferrals (an owner's slot held by another invocation): A {counts.get('owner-a', 0)}, "
        f"B {counts.get('owner-b', 0)}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30, help="owner B's jobs per phase")
    parser.add_argument("--slow-jobs", type=int, default=20, help="owner A's jobs with a slow receiver")
    parser.add_argument("--slow-seconds", type=float, default=30.0, help="how long A's receiver waits to answer")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between two of B's submits")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes per function (sender included)")
    args = parser.parse_args()
    figures = measure(args.jobs, args.slow_jobs, args.slow_seconds, args.interval, concurrency=args.concurrency)
    print(report(figures))


if __name__ == "__main__":
    main()
