"""Benchmark 2: warm per-request overhead. Each implementation runs in a process of its own (its own module
state and peak RSS, as a Lambda sandbox has), serving thousands of in-process invocations per route from
``events/api``; every AWS call is answered at once by a canned HTTP response (a botocore ``before-send``
handler, so botocore still validates, serialises, signs and parses as it does against AWS). The two processes
take turns, block by block, so that machine noise falls on both alike.

Per request, in CPU time of the process (``clock``): **total** (the Lambda handler, end to end) and **shared**
(inside ``JobService``: the domain, the store's item conversions and the AWS SDK); **framework** = total - shared:
event parsing, routing, validation, authentication, response serialisation, logging and metrics. Many short
blocks (``make bench``: 10 of 300 requests per route and side) rather than a few long ones, so that the medians
stand when a block is hit by something else (a full garbage collection of the peer's heap costs it 170 ms).

    .venv/bin/python -m bench.warm --requests 300 --rounds 10
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from io import BytesIO
from typing import IO, Any

from bench.common import EVENT_JOB_ID, PYTHON, ROOT, Aws, LambdaContext, load_event, median, moto_server, ratio, table
from bench.probe import peak_rss_kb
from local.stack import DEVELOPMENT_SECRET

ROUTES = {"create": "api/create_job.json", "list": "api/list_jobs.json", "get": "api/get_job.json"}
ROUTES["delete"] = "api/delete_job.json"
SIDES = ("ours", "peer")
#: The CPU time of the process (user and system), seconds: what a request costs, without the time the process
#: waited while other processes of the shared machine ran (wall time counted that too, and moved the ratios by
#: whole tenths from one run to the next). Every AWS call is answered at once, in process: no request waits on
#: I/O, so on an idle machine the two clocks agree.
clock = time.process_time


def environment(aws: Aws, side: str) -> dict[str, str]:
    """The API function's environment from the template, without an endpoint: the stub answers every call."""
    variables = {
        **aws.environment("ApiFunction"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers/jobs")]),
    }
    variables.pop("AWS_ENDPOINT_URL")
    if side == "peer":
        variables["POWERTOOLS_SERVICE_NAME"] = "jobs-api-peer"
    return variables


# --- the child: one implementation, serving blocks of requests on command ------------------------------------


class _Raw(BytesIO):
    """The raw body of a canned response, as botocore reads a urllib3 response."""

    def stream(self, **kwargs: Any) -> Any:  # noqa: ARG002 - urllib3's signature
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


def canned_responses() -> dict[str, bytes]:
    """A successful AWS answer for every operation the API makes, by ``service.Operation``."""
    from jobs.models import Job, JobStatus, utc_now
    from jobs.store import job_to_item

    now = utc_now()
    payload = load_event("seed-payload.json")["payload"]

    def item(job_id: str) -> dict[str, Any]:
        job = Job(
            owner_id="alice",
            job_id=job_id,
            title="bench",
            type="report",
            status=JobStatus.SUCCEEDED,
            payload=payload,
            created_at=now,
            updated_at=now,
            started_at=now,
            finished_at=now,
            attempts=1,
            result={"report": "done"},
        )
        return job_to_item(job)

    page = [item(f"01a226ee-fede-7c74-8f78-{n:012x}") for n in range(20)]
    return {
        "dynamodb.PutItem": b"{}",
        "dynamodb.GetItem": json.dumps({"Item": item(EVENT_JOB_ID)}).encode(),
        "dynamodb.Query": json.dumps({"Items": page, "Count": 20, "ScannedCount": 20}).encode(),
        "dynamodb.DeleteItem": b"{}",
        "ssm.GetParameter": json.dumps(
            {"Parameter": {"Name": "/jobs/jwt-secret", "Type": "SecureString", "Value": DEVELOPMENT_SECRET}}
        ).encode(),
    }


def install_stub(counts: dict[str, int]) -> None:
    """Answer every AWS request of every botocore session created from now on, without a network."""
    from botocore.awsrequest import AWSResponse
    from botocore.handlers import BUILTIN_HANDLERS

    canned = canned_responses()

    def answer(request: Any, event_name: str, **kwargs: Any) -> AWSResponse:
        _, service, operation = event_name.split(".")[:3]
        key = f"{service}.{operation}"
        counts[key] += 1
        if key == "sqs.SendMessage":
            body = json.loads(request.body)["MessageBody"].encode()
            md5 = hashlib.md5(body).hexdigest()  # noqa: S324 - SQS's own checksum of the body
            content = json.dumps({"MessageId": "00000000-0000-4000-8000-000000000000", "MD5OfMessageBody": md5})
            raw = content.encode()
        else:
            raw = canned[key]
        headers = {"x-amzn-requestid": "bench", "content-type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, 200, headers, _Raw(raw))

    BUILTIN_HANDLERS.append(("before-send", answer))


def time_service(spans: dict[str, float]) -> None:
    """Time ``JobService``'s use cases: the work both implementations share."""
    from jobs.service import JobService

    for name in ("create_job", "get_job", "list_jobs", "delete_job"):
        original = getattr(JobService, name)

        def timed(*args: Any, original: Any = original, **kwargs: Any) -> Any:
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spans["shared"] += clock() - began

        setattr(JobService, name, timed)


def load_handler(side: str) -> Any:
    folder = ROOT / ("functions/api" if side == "ours" else "bench/peer")
    sys.path[:0] = [str(folder), str(ROOT / "layers" / "jobs")]
    spec = importlib.util.spec_from_file_location("app", folder / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return getattr(module, "lambda_handler" if side == "ours" else "handler")


def child(side: str) -> int:
    """Serve ``<route> <n>`` commands from stdin; answer each with one JSON line on the original stdout."""
    warnings.filterwarnings("ignore", "No application metrics to publish")  # a GET publishes none
    results: IO[str] = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the functions' logs and metrics: written, as in Lambda, but not kept
    counts: dict[str, int] = defaultdict(int)
    install_stub(counts)
    handler = load_handler(side)
    spans = {"shared": 0.0}
    time_service(spans)
    events = {route: load_event(path) for route, path in ROUTES.items()}
    context = LambdaContext("bench", "00000000-0000-4000-8000-000000000002")
    expected = {"create": 201, "list": 200, "get": 200, "delete": 204}
    for route, event in events.items():  # the first request of each route is a cold one: not measured
        status = handler(json.loads(json.dumps(event)), context)["statusCode"]
        if status != expected[route]:
            raise SystemExit(f"{side} {route}: status {status}")
    for line in sys.stdin:
        route, count = line.split()
        event = events[route]
        spans["shared"] = 0.0
        statuses: dict[int, int] = defaultdict(int)
        began = clock()
        for _ in range(int(count)):
            statuses[handler(dict(event), context)["statusCode"]] += 1
        total = clock() - began
        results.write(
            json.dumps(
                {"total": total, "shared": spans["shared"], "n": int(count), "statuses": statuses, "rss": peak_rss_kb()}
            )
            + "\n"
        )
        results.flush()
    return 0


# --- the parent: both children, block by block -------------------------------------------------------------


def measure(requests: int, rounds: int) -> dict[str, Any]:
    """``rounds`` blocks of ``requests`` per route and side, alternating sides; per-request medians, µs."""
    with moto_server() as aws:
        environments = {side: environment(aws, side) for side in SIDES}
    processes = {
        side: subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [PYTHON, "-m", "bench.warm", "--child", side],
            env=environments[side],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for side in SIDES
    }
    blocks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    try:
        for round_number in range(rounds):
            for route in ROUTES:
                order = SIDES if round_number % 2 == 0 else tuple(reversed(SIDES))
                for side in order:
                    process = processes[side]
                    assert process.stdin is not None
                    assert process.stdout is not None
                    process.stdin.write(f"{route} {requests}\n")
                    process.stdin.flush()
                    line = process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the {side} process of the warm benchmark stopped")
                    blocks[side, route].append(json.loads(line))
    finally:
        for process in processes.values():
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=60)
    results: dict[str, Any] = {"requests": requests, "rounds": rounds, "routes": {}, "rss_kb": {}}
    for (side, route), entries in blocks.items():
        total = median([entry["total"] / entry["n"] * 1e6 for entry in entries])
        shared = median([entry["shared"] / entry["n"] * 1e6 for entry in entries])
        statuses = sorted({status for entry in entries for status in entry["statuses"]})
        results["routes"].setdefault(route, {})[side] = {
            "total_us": total,
            "shared_us": shared,
            "framework_us": total - shared,
            "statuses": statuses,
        }
        results["rss_kb"][side] = max(results["rss_kb"].get(side, 0), max(entry["rss"] for entry in entries))
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for route, sides in results["routes"].items():
        ours, peer = sides["ours"], sides["peer"]
        rows.append(
            [
                route,
                f"{ours['total_us']:.0f}",
                f"{peer['total_us']:.0f}",
                ratio(ours["total_us"], peer["total_us"]),
                f"{ours['shared_us']:.0f}",
                f"{peer['shared_us']:.0f}",
                f"{ours['framework_us']:.0f}",
                f"{peer['framework_us']:.0f}",
                ratio(ours["framework_us"], peer["framework_us"]),
                "/".join(str(s) for s in ours["statuses"]) + " · " + "/".join(str(s) for s in peer["statuses"]),
            ]
        )
    header = [
        "route",
        "total ours µs",
        "total peer µs",
        "ratio",
        "shared ours µs",
        "shared peer µs",
        "framework ours µs",
        "framework peer µs",
        "ratio",
        "statuses ours · peer",
    ]
    rss = results["rss_kb"]
    return "\n\n".join(
        [
            f"Per request, microseconds of CPU time (the process's user and system time, so that the time the "
            f"shared machine gave other processes is not counted): the median over {results['rounds']} blocks of "
            f"{results['requests']} invocations per route and side, the two processes taking turns. Shared = inside "
            "JobService (domain, item conversions, botocore against an instant canned answer); framework = total - "
            "shared.",
            table(header, rows),
            f"Peak RSS after all blocks: ours {rss['ours'] / 1024:.0f} MiB, peer {rss['peer'] / 1024:.0f} MiB.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--child", choices=SIDES)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    print(report(measure(args.requests, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
