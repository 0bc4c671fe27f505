"""Benchmark 3: AWS calls per operation, counted with botocore event hooks (``before-call`` per API call,
``before-send`` per HTTP attempt), with the DynamoDB capacity each consumed (``ReturnConsumedCapacity`` is
added to every DynamoDB request by a ``before-parameter-build`` hook, and read back by ``after-call``).

The handlers run in this process against moto's server; DynamoDB calls go to DynamoDB Local when it is
installed (``make test`` installs it; it computes capacity units as DynamoDB does, moto does not). Each
operation is measured warm (after one request has fetched the token secret: one SSM call per sandbox per
five minutes, not per request).

    .venv/bin/python -m bench.calls
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import ROOT, Aws, LambdaContext, client, load_event, moto_server, run_child, table
from local.dynamodb_local import running as dynamodb_local
from local.resources import LocalStack

#: What the design allows, and why (DESIGN.md; the outbox note: create becomes one PutItem).
TARGETS = {
    "create": (1, "PutItem; the table's stream (the outbox relay) sends the message"),
    "get": (1, "GetItem"),
    "list (one page)": (1, "Query (Limit = page + 1, so no empty next page)"),
    "delete": (1, "DeleteItem (conditional: 404 without a read first)"),
    "one processed job": (2, "UpdateItem QUEUED→RUNNING, UpdateItem RUNNING→SUCCEEDED"),
}


@dataclass
class Tally:
    calls: list[str] = field(default_factory=list)
    attempts: int = 0
    capacity: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class Hooks:
    """botocore hooks on every session created after ``install()``: count calls, ask for and add capacity."""

    def __init__(self) -> None:
        self.tally = Tally()

    def handlers(self) -> list[tuple[str, Any]]:
        return [
            ("before-call", self._call),
            ("before-send", self._send),
            ("before-parameter-build.dynamodb", self._ask_capacity),
            ("after-call.dynamodb", self._capacity),
        ]

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The hooks on every botocore session created meanwhile (botocore's built-in handler list)."""
        from botocore.handlers import BUILTIN_HANDLERS

        added = self.handlers()
        BUILTIN_HANDLERS.extend(added)
        try:
            yield
        finally:
            for handler in added:
                BUILTIN_HANDLERS.remove(handler)

    def _call(self, model: Any, **kwargs: Any) -> None:  # noqa: ARG002 - botocore passes more
        self.tally.calls.append(f"{model.service_model.service_name}.{model.name}")

    def _send(self, **kwargs: Any) -> None:  # noqa: ARG002 - botocore passes more
        self.tally.attempts += 1

    def _ask_capacity(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:  # noqa: ARG002 - botocore passes more
        if model.input_shape is not None and "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _capacity(self, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:  # noqa: ARG002 - botocore passes more
        consumed = parsed.get("ConsumedCapacity")
        if consumed:
            kind = "RCU" if model.name in ("GetItem", "Query", "Scan", "BatchGetItem") else "WCU"
            self.tally.capacity[kind] += float(consumed.get("CapacityUnits", 0))

    @contextmanager
    def counting(self) -> Iterator[Tally]:
        counted = self.tally = Tally()
        try:
            yield counted
        finally:
            self.tally = Tally()  # what happens outside a counted block goes nowhere


def load(name: str, path: str, layer: str) -> ModuleType:
    folder = ROOT / path
    for entry in (str(folder.parent), layer):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    spec = importlib.util.spec_from_file_location(name, folder)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def api_event(name: str, job_id: str | None = None) -> dict[str, Any]:
    event = load_event(f"api/{name}.json")
    if job_id is not None:
        event["pathParameters"] = {"job_id": job_id}
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/api/v1/jobs/{job_id}"
    return event


def sqs_event(aws: Aws, owner: str, job_id: str) -> dict[str, Any]:
    event = load_event("sqs/job_batch.json")
    record = event["Records"][0]
    record["body"] = json.dumps({"owner_id": owner, "job_id": job_id})
    record["eventSourceARN"] = aws.physical["JobsQueue"]["Arn"]
    return {"Records": [record]}


def measure() -> dict[str, Any]:
    """Calls and capacity per operation, for ours and the peer, counted in a process of their own (powertools
    reads its configuration when first imported, as in Lambda)."""
    return run_child("bench.calls")


def measure_here() -> dict[str, Any]:
    """``measure()``'s work, in this process."""
    hooks = Hooks()
    with hooks.installed(), moto_server() as aws, dynamodb_local() as dynamodb_endpoint:
        if dynamodb_endpoint is not None:
            stack = LocalStack(
                ROOT / "template.yaml",
                lambda service: client(service, dynamodb_endpoint if service == "dynamodb" else aws.endpoint),
            )
            stack.physical("JobsTable")
        environment = aws.environment("ApiFunction")
        consumer_environment = aws.environment("ProcessJobsFunction")
        relay_environment = aws.environment("EnqueueJobsFunction")
        saved = dict(os.environ)
        os.environ.update(
            {
                **relay_environment,
                **consumer_environment,
                **environment,
                # The consumer's own queues (one per priority), as its template environment names them.
                "JOBS_SOURCE_QUEUE_URLS": ",".join(
                    aws.physical[queue]["Ref"]
                    for queue in ("JobsHighPriorityQueue", "JobsQueue", "JobsLowPriorityQueue")
                ),
            }
        )
        if dynamodb_endpoint is not None:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_endpoint
        layer = str(ROOT / "layers" / "jobs")
        try:
            with redirect_stdout(StringIO()):
                handlers = {
                    "ours": load("bench_calls_api", "functions/api/app.py", layer).lambda_handler,
                    "peer": load("bench_calls_peer", "bench/peer/app.py", layer).handler,
                }
                consumer = load("bench_calls_consumer", "functions/process_jobs/app.py", layer).lambda_handler
                results: dict[str, Any] = {"engine": "DynamoDB Local" if dynamodb_endpoint else "moto", "sides": {}}
                for side, handler in handlers.items():
                    results["sides"][side] = run_operations(aws, hooks, handler, consumer)
                relay = load("bench_calls_relay", "functions/enqueue_jobs/app.py", layer).lambda_handler
                results["relay"] = run_relay(hooks, relay)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return results


def run_operations(aws: Aws, hooks: Hooks, handler: Any, consumer: Any) -> dict[str, Any]:
    context = LambdaContext("bench-calls", "00000000-0000-4000-8000-000000000003")
    handler(api_event("list_jobs"), context)  # the sandbox's first request fetches the token secret
    seen: dict[str, tuple[Tally, Any]] = {}
    with hooks.counting() as tally:
        response = handler(api_event("create_job"), context)
    job_id = json.loads(response["body"])["job_id"]
    seen["create"] = (tally, response["statusCode"])
    with hooks.counting() as tally:
        response = handler(api_event("get_job", job_id), context)
    seen["get"] = (tally, response["statusCode"])
    with hooks.counting() as tally:
        response = handler(api_event("list_jobs"), context)
    seen["list (one page)"] = (tally, response["statusCode"])
    with hooks.counting() as tally:
        response = handler(api_event("delete_job", job_id), context)
    seen["delete"] = (tally, response["statusCode"])
    noop = api_event("create_job")
    noop["body"] = json.dumps({"title": "noop", "type": "noop", "payload": {}})
    job_id = json.loads(handler(noop, context)["body"])["job_id"]
    with hooks.counting() as tally:
        response = consumer(sqs_event(aws, "alice", job_id), context)
    seen["one processed job"] = (tally, json.dumps(response))
    return {
        operation: {
            "calls": tally.calls,
            "attempts": tally.attempts,
            "capacity": dict(tally.capacity),
            "status": status,
        }
        for operation, (tally, status) in seen.items()
    }


#: Stream batches the outbox relay is measured with (INSERT records; the mapping's BatchSize is 100).
RELAY_BATCHES = (1, 10, 25, 100)


def run_relay(hooks: Hooks, relay: Any) -> dict[str, list[str]]:
    """The relay's AWS calls for stream batches of ``RELAY_BATCHES`` inserted jobs."""
    template = load_event("dynamodb/job_inserted.json")["Records"][0]
    seen: dict[str, list[str]] = {}
    for size in RELAY_BATCHES:
        records = []
        for n in range(size):
            record = json.loads(json.dumps(template))
            record["dynamodb"]["SequenceNumber"] = str(10**27 + n)
            job_id = f"01a226ee-fede-7c74-8f78-1301{n:08x}"
            record["dynamodb"]["Keys"]["job_id"]["S"] = job_id
            # The stream's new image (NEW_AND_OLD_IMAGES) names the same job: the relay sends without a read.
            record["dynamodb"]["NewImage"]["job_id"]["S"] = job_id
            record["dynamodb"]["NewImage"]["status_job_id"]["S"] = f"QUEUED#{job_id}"
            records.append(record)
        with hooks.counting() as tally:
            response = relay({"Records": records}, LambdaContext("bench-calls", "00000000-0000-4000-8000-000000000003"))
        if response != {"batchItemFailures": []}:
            raise RuntimeError(f"the relay failed records: {response}")
        seen[str(size)] = tally.calls
    return seen


def report(results: dict[str, Any]) -> str:
    rows = []
    for operation, (target, why) in TARGETS.items():
        ours = results["sides"]["ours"][operation]
        peer = results["sides"]["peer"][operation]
        capacity = ", ".join(f"{value:g} {unit}" for unit, value in sorted(ours["capacity"].items())) or "0"
        rows.append(
            [
                operation,
                len(ours["calls"]),
                ", ".join(ours["calls"]),
                ours["attempts"],
                capacity,
                len(peer["calls"]),
                target,
                why,
                ours["status"],
            ]
        )
    header = [
        "operation",
        "calls ours",
        "which",
        "HTTP attempts",
        "capacity ours",
        "calls peer",
        "design minimum",
        "why",
        "status",
    ]
    return "\n\n".join(
        [
            f"Warm requests (the token secret already cached: 1 SSM GetParameter per sandbox per 5 minutes). "
            f"DynamoDB on {results['engine']}. Capacity: consumed read/write units as DynamoDB reports them with "
            "ReturnConsumedCapacity=TOTAL (strongly consistent reads; items of a few hundred bytes).",
            table(header, rows),
            "The outbox relay (EnqueueJobsFunction) sends the messages of a stream batch ten per SendMessageBatch "
            "call, the most SQS takes; it reads nothing from DynamoDB (each record's new image names the job, its "
            "priority's queue and its start; one SendMessageBatch per queue among the batch's jobs):",
            table(
                ["inserted jobs in the stream batch", "calls", "which", "SQS requests per job"],
                [
                    [size, len(calls), ", ".join(sorted(set(calls))), f"{len(calls) / int(size):.2f}"]
                    for size, calls in results.get("relay", {}).items()
                ],
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, help="measure in this process and write the results there (JSON)")
    args = parser.parse_args(argv)
    if args.child:
        warnings.filterwarnings("ignore", "No application metrics to publish")
        args.child.write_text(json.dumps(measure_here()), encoding="utf-8")
        return 0
    print(report(measure()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
