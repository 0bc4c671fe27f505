"""What every benchmark shares: moto's server in a process of its own, the template's resources in it, the
functions' environments as the template sets them, the sample events, and small statistics helpers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from local.ports import free_port, wait_for_port
from local.resources import FunctionSpec, LocalStack
from local.stack import DEVELOPMENT_SECRET, LOCAL_CREDENTIALS
from local.template import REGION

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
PEER = ROOT / "bench" / "peer"
PYTHON = sys.executable


class LambdaContext:
    """The Lambda context a benchmark passes to a handler it calls in process: a function's name, its ARN and
    one request id, with 10 s left."""

    function_version = "$LATEST"
    memory_limit_in_mb = 512

    def __init__(self, function_name: str, aws_request_id: str = "00000000-0000-4000-8000-000000000001") -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.aws_request_id = aws_request_id

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left: always 10 s."""
        return 10_000


#: The template's route throttling (its ThrottleRateLimit/ThrottleBurstLimit defaults, 429s beyond them) is a
#: per-account guard for AWS; the load benchmark and the soak measure the stack, so they raise it far above
#: what they send (parameter overrides, as ``sam deploy --parameter-overrides`` takes them).
UNTHROTTLED = "ThrottleRateLimit=100000 ThrottleBurstLimit=100000"
#: The job the get/delete events and the first SQS record name (owner ``alice``, the events' token's ``sub``).
EVENT_JOB_ID = "01a226ee-fede-7c74-8f78-130f6101394b"
SECOND_JOB_ID = "01a226ef-0000-7000-8000-000000000001"


@dataclass(frozen=True)
class Handler:
    """A Lambda handler to run: its file, the module name it is imported as, the function, code and layers."""

    name: str
    path: Path
    module: str
    function: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]


@dataclass
class Aws:
    """moto's server with the template's resources: endpoint, physical ids, and the functions' specs."""

    endpoint: str
    physical: dict[str, dict[str, str]]
    functions: dict[str, FunctionSpec]

    def client(self, service: str) -> Any:
        return client(service, self.endpoint)

    def environment(self, logical_id: str = "ApiFunction") -> dict[str, str]:
        """A function's environment as the local stack gives it: the template's variables, the region,
        credentials and moto's endpoint; no proxy, no user site, no bytecode written."""
        return lambda_environment(self.functions[logical_id].environment, self.endpoint)

    def handler(self, name: str) -> Handler:
        """``api``, ``consumer`` (ours, from the template) or ``peer`` (bench/peer/app.py, the API's environment)."""
        if name == "peer":
            api = self.functions["ApiFunction"]
            environment = {**self.environment("ApiFunction"), "POWERTOOLS_SERVICE_NAME": "jobs-api-peer"}
            return Handler("peer", PEER / "app.py", "app", "handler", PEER, api.layer_dirs, environment)
        logical_id = {"api": "ApiFunction", "consumer": "ProcessJobsFunction"}[name]
        spec = self.functions[logical_id]
        module, function = spec.handler.rsplit(".", 1)
        return Handler(
            name,
            spec.code_dir / f"{module}.py",
            module,
            function,
            spec.code_dir,
            spec.layer_dirs,
            self.environment(logical_id),
        )

    def put_job(
        self, job_id: str = EVENT_JOB_ID, *, owner: str = "alice", status: str = "QUEUED", **extra: Any
    ) -> None:
        """Write a job item as the API would have (the get/delete events and the SQS batch name these)."""
        item: dict[str, Any] = {
            "owner_id": owner,
            "job_id": job_id,
            "title": "bench",
            "type": "noop",
            "status": status,
            "payload": {},
            "created_at": "2026-11-29T10:52:07.000Z",
            "updated_at": "2026-11-29T10:52:07.000Z",
            "attempts": Decimal(0),
            **extra,
        }
        boto3.session.Session(**_SESSION).resource("dynamodb", endpoint_url=self.endpoint).Table(
            self.physical["JobsTable"]["Ref"]
        ).put_item(Item=item)


_SESSION = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}


def client(service: str, endpoint: str) -> Any:
    """A boto3 client for moto's server (the benchmark's side, not the function's)."""
    return boto3.session.Session(**_SESSION).client(service, endpoint_url=endpoint)


def lambda_environment(variables: dict[str, str], endpoint: str | None) -> dict[str, str]:
    """What Lambda (here, the local stack) sets around a function's own variables."""
    environment = {
        **LOCAL_CREDENTIALS,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - where boto3 looks for a config that is not there
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **variables,
    }
    if endpoint is not None:
        environment["AWS_ENDPOINT_URL"] = endpoint
    return environment


@contextmanager
def moto_server() -> Iterator[Aws]:
    """moto's server on a free loopback port, with the template's table, queues and the JWT secret in SSM."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [PYTHON, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        if not wait_for_port(port, process, 30):
            raise RuntimeError("moto's server did not start")
        stack = LocalStack(ROOT / "template.yaml", lambda service: client(service, endpoint))
        physical = stack.create_all()
        functions = {spec.logical_id: spec for spec in stack.functions()}
        parameter = functions["ApiFunction"].environment["JWT_SECRET_PARAMETER"]
        client("ssm", endpoint).put_parameter(
            Name=parameter, Value=DEVELOPMENT_SECRET, Type="SecureString", Overwrite=True
        )
        yield Aws(endpoint, physical, functions)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def event_path(name: str) -> Path:
    """``events/<name>`` (``api/create_job.json``, ``sqs/job_batch.json``)."""
    return EVENTS / name


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads(event_path(name).read_text(encoding="utf-8")))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(ours: float, peer: float) -> str:
    return f"{ours / peer:.2f}x" if peer > 0 else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_child(module: str, *arguments: str) -> dict[str, Any]:
    """Run ``python -m <module> --child <file> <arguments>`` in a process of its own (powertools reads its
    configuration when first imported, as in Lambda) and return the JSON it wrote to the file."""
    with tempfile.TemporaryDirectory(prefix=f"jobs-{module.replace('.', '-')}-") as directory:
        output = Path(directory) / "results.json"
        subprocess.run(  # noqa: S603 - our own interpreter and module
            [PYTHON, "-m", module, "--child", str(output), *arguments],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "jobs")])},
            stdout=subprocess.DEVNULL,
            check=True,
        )
        results: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return results
