"""Test helpers: sample events from ``events/``, the Jobs table stream's records, functions imported by path, tokens,
a Lambda context, an endpoint that never answers."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest

from jobs.models import Job
from jobs.store import job_to_item

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
TEST_SECRET = "test-secret-long-enough-for-hs512-which-wants-64-bytes-0123456789abcdef"
SECRET_PARAMETER = "/jobs/jwt-secret"
#: The callback key parameters the tests store (template.yaml's defaults).
WEBHOOK_SIGNING_KEY_PARAMETER = "/chuck-norris-jobs/webhooks/signing-key"
WEBHOOK_PUBLIC_KEY_PARAMETER = "/chuck-norris-jobs/webhooks/public-key"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>`` (e.g. ``api/create_job.json``)."""
    return copy.deepcopy(json.loads((EVENTS / name).read_text(encoding="utf-8")))


#: The ARN of the Jobs table's stream in the sample events (events/dynamodb).
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs-local-JobsTable/stream/2026-11-29T10:52:00.000"


def inserted_record(job: Job, sequence_number: str | int, *, keys_only: bool = False) -> dict[str, Any]:
    """The INSERT record the Jobs table's stream holds for ``job`` written by PutItem (the API's write).

    A ``NEW_AND_OLD_IMAGES`` stream (the template's) writes the item's key attributes (``Keys``) and the whole new
    item (``NewImage``, here ``jobs.store.job_to_item(job)``, exactly what the store puts), and no ``OldImage``
    (an INSERT has none); ``keys_only`` gives the record a ``KEYS_ONLY`` stream wrote before the upgrade: ``Keys``
    only. Shape: "StreamRecord" and "Record", Amazon DynamoDB Streams API reference.
    """
    image = job_to_item(job)
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": int(job.created_at.timestamp()),
        "Keys": {"owner_id": image["owner_id"], "job_id": image["job_id"]},
        "SequenceNumber": str(sequence_number),
        "SizeBytes": len(json.dumps(image)),
        "StreamViewType": "KEYS_ONLY" if keys_only else "NEW_AND_OLD_IMAGES",
    }
    if not keys_only:
        change["NewImage"] = image
    return {
        "eventID": f"{int(sequence_number):032x}"[-32:],
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": STREAM_ARN,
    }


def api_event(
    name: str,
    *,
    token: str | None,
    body: Any = ...,
    raw_body: str | None = None,
    job_id: str | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API event from ``events/api/<name>.json`` with its token, body, path id or query replaced.

    ``token=None`` removes the Authorization header; ``body`` is JSON-encoded, ``raw_body`` sent as is.
    """
    event = load_event(f"api/{name}.json")
    event["headers"].pop("authorization", None)
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    if raw_body is not None:
        event["body"] = raw_body
    elif body is not ...:
        event["body"] = json.dumps(body)
    if job_id is not None:
        event["pathParameters"] = {"job_id": job_id}
        suffix = "/cancel" if event["rawPath"].endswith("/cancel") else ""
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/api/v1/jobs/{job_id}{suffix}"
    if query is not None:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def load_function(name: str) -> ModuleType:
    """``functions/<name>/app.py`` imported by path as module ``<name>_app`` (both functions are app.py)."""
    module_name = f"{name}_app"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def sign(sub: str | None = "alice", *, secret: str = TEST_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """An HS token with ``sub`` and ``exp`` one hour ahead, plus ``claims`` (None removes a claim)."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + 3600, **claims}
    body = {key: value for key, value in body.items() if value is not None}
    return jwt.encode(body, secret, algorithm=algorithm)


def sign_sub(sub: object, *, secret: str = TEST_SECRET, **claims: Any) -> str:
    """An HS256 token whose ``sub`` is exactly ``sub`` (None is a JSON null, not a missing claim)."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 3600, **claims}, secret, algorithm="HS256")


#: Subjects that break the identity rule (jobs.models.is_owner_id), by kind: (case, sub). Each is a 401.
BAD_SUBS: list[tuple[str, object]] = [
    ("lone surrogate", "al\ud800ice"),
    ("U+FFFF", "alice\uffff"),
    ("U+FFFE", "\ufffealice"),
    ("space inside", "al ice"),
    ("leading space", " alice"),
    ("trailing space", "alice "),
    ("tab", "al\tice"),
    ("DEL 0x7F", "alice\x7f"),
    ("NUL", "alice\x00"),
    ("newline at the end", "alice\n"),
    ("e acute", "caf\u00e9"),
    ("emoji", "alice\U0001f600"),
    ("256 characters", "a" * 256),
    ("2049 bytes", "a" * 2049),
    ("empty", ""),
    ("number", 42),
    ("list", ["alice"]),
    ("null", None),
]

#: Subjects at the edges of the identity rule, each accepted: (case, sub).
GOOD_SUBS: list[tuple[str, str]] = [
    ("1 character", "a"),
    ("255 characters", "a" * 255),
    ("every printable ASCII character but space", "".join(chr(c) for c in range(0x21, 0x7F))),
    ("a Cognito sub", "8a5f3c1e-0b7d-4e2a-9c6f-1d2e3f4a5b6c"),
    ("an Auth0 sub", "auth0|64b1f0c2e4a5b6c7d8e9f0a1"),
]


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object that powertools reads."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    remaining_millis: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def local_lambda(port: int, **options: Any) -> Any:
    """A boto3 Lambda client for the local Lambda API on ``port`` (``local.lambda_api``); ``options`` go to
    ``boto3.client`` (a ``config``, say)."""
    import boto3

    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        **options,
    )


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; each result is the return value or the exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def target(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - the outcome under test
            results[index] = error

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@dataclass
class SilentEndpoint:
    """An HTTP endpoint on loopback that accepts every connection and never sends a byte: ``url``, and the
    connections it has accepted."""

    url: str
    accepted: list[socket.socket]


@contextmanager
def silent_http_endpoint() -> Iterator[SilentEndpoint]:
    """Serve a ``SilentEndpoint`` (an AWS endpoint that hangs rather than refuses) until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)  # kept open, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield SilentEndpoint(f"http://127.0.0.1:{listener.getsockname()[1]}", accepted)
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"


def transform_file(template: Path, output: Path) -> dict[str, Any]:
    """``template`` translated into the CloudFormation AWS would receive (``local.sam_transform``)."""
    if not SAM_PYTHON.exists():
        pytest.fail(f"{SAM_PYTHON} is missing: `make test` and `make rehearse` create it (requirements-sam.txt)")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"}
    finished = subprocess.run(
        [str(SAM_PYTHON), "-m", "local.sam_transform", str(template), str(output)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    result: dict[str, Any] = json.loads(output.read_text())
    return result


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
