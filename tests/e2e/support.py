"""What the end-to-end tests (and the soak benchmark) share: starting the local stack as a user does
(``python -m local.stack``), the session stack's handle and secret, and tokens signed with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.ports import free_port
from tests.helpers import ROOT, sign


def short_template(
    directory: Path, *, consumer_timeout: int = 3, lease: int = 4, visibility: int = 6, consumer_batch: int = 10
) -> Path:
    """A copy of template.yaml in ``directory`` with a short consumer Timeout, lease and visibility timeout
    (seconds), the consumer's SQS ``BatchSize``, and an AWS time budget (``jobs.aws``) that fits the short
    Timeout, so that faults play out within a test; every other value is the template's own."""
    text = (ROOT / "template.yaml").read_text()
    consumer_events = re.compile(r"(ProcessJobsFunction:\n(?:    .*\n|\n)*?            BatchSize: )10")
    text, found = consumer_events.subn(rf"\g<1>{consumer_batch}", text)
    assert found == 1, "the consumer's BatchSize was not found in template.yaml"
    text = text.replace("VisibilityTimeout: 180", f"VisibilityTimeout: {visibility}")
    text = text.replace('JOBS_LEASE_SECONDS: "35"', f'JOBS_LEASE_SECONDS: "{lease}"')
    text = re.sub(
        r"(CodeUri: functions/process_jobs/\n(?:      .*\n)*?      Timeout: )30", rf"\g<1>{consumer_timeout}", text
    )
    # The consumer's AWS time budget (jobs.aws) scaled to its short Timeout: 1.5 s attempts, 0.25 s margin.
    text, found = re.subn(
        r"(CodeUri: functions/process_jobs/\n(?:      .*\n)*?        Variables:\n)",
        r'\g<1>          JOBS_AWS_CONNECT_TIMEOUT_SECONDS: "0.5"\n          JOBS_AWS_READ_TIMEOUT_SECONDS: "1"\n'
        r'          JOBS_AWS_RESPONSE_MARGIN_SECONDS: "0.25"\n',
        text,
    )
    assert found == 1, "the consumer's Environment Variables were not found in template.yaml"
    for folder in ("functions", "layers"):
        link = directory / folder
        if not link.exists():
            link.symlink_to(ROOT / folder)
    path = directory / "template.yaml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class StackProcess:
    """A running ``python -m local.stack``: its API base URL, AWS endpoint (moto's server), DynamoDB endpoint
    (moto's or DynamoDB Local's), stdout log file and process id."""

    base_url: str
    aws_endpoint: str
    dynamodb_endpoint: str
    log: Path
    physical: dict[str, str]
    banner: str
    pid: int
    lambda_url: str = ""


@contextmanager
def running_stack(
    directory: Path,
    *,
    secret: str,
    template: Path | None = None,
    function_environment: Mapping[str, Mapping[str, str]] | None = None,
    concurrency: int = 2,
    parameter_overrides: str = "",
    dynamodb: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> Iterator[StackProcess]:
    """Start the local stack on free ports, wait for its banner, and stop it on exit. ``dynamodb`` is its
    ``--dynamodb`` (None: the stack's default, ``auto``); ``environment`` adds to the stack's own environment
    (``JOBS_LOCAL_*`` switches)."""
    port = free_port()
    log = directory / "stdout.jsonl"
    command = [sys.executable, "-m", "local.stack", "--port", str(port), "--aws-port", "0", "--lambda-port", "0"]
    command += ["--concurrency", str(concurrency)]
    if parameter_overrides:
        command += ["--parameter-overrides", parameter_overrides]
    if template is not None:
        command += ["--template", str(template)]
    if dynamodb is not None:
        command += ["--dynamodb", dynamodb]
    if function_environment:
        env_vars = directory / "env.json"
        env_vars.write_text(json.dumps(function_environment))
        command += ["--env-vars", str(env_vars)]
    variables = {**os.environ, **(environment or {}), "JOBS_JWT_SECRET": secret, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=variables, stdout=out, stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            banner: list[str] = []
            while not banner or ("Ready." not in banner[-1] and banner[-1]):
                banner.append(process.stderr.readline().decode())
            text = "".join(banner)
            if "Ready." not in text:
                raise RuntimeError(f"the local stack did not start:\n{text}")
            endpoint = re.search(r"AWS endpoint\s+(\S+)", text)
            dynamodb_endpoint = re.search(r"DynamoDB\s+(http\S+)", text)
            resources = re.search(r"Resources\s+(\{.*\})", text)
            lambda_api = re.search(r"Lambda API\s+(\S+)", text)
            assert lambda_api is not None
            assert endpoint is not None
            assert dynamodb_endpoint is not None
            assert resources is not None
            physical: dict[str, Any] = json.loads(resources.group(1))
            yield StackProcess(
                f"http://127.0.0.1:{port}",
                endpoint.group(1),
                dynamodb_endpoint.group(1),
                log,
                physical,
                text,
                process.pid,
                lambda_api.group(1),
            )
        finally:
            process.terminate()
            process.wait(timeout=30)


#: The HS256 secret the session's stack is started with (its JOBS_JWT_SECRET).
SECRET = "e2e-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class RunningStack:
    """The local stack of the test session: its gateway's base URL, the file its stdout goes to, and where its
    tables live (DynamoDB's endpoint, the resources' physical ids), to look at what a request wrote."""

    base: str
    log: Path
    dynamodb_endpoint: str = ""
    physical: dict[str, str] = field(default_factory=dict)
    process: StackProcess | None = None

    def items(self, logical_id: str = "JobsTable") -> list[dict[str, Any]]:
        """Every item of one of the stack's tables, as DynamoDB returns them (attribute-value maps)."""
        import boto3

        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        found: list[dict[str, Any]] = []
        for page in client.get_paginator("scan").paginate(TableName=self.physical[logical_id]):
            found.extend(page["Items"])
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - loopback only
                raw, status, found = response.read(), response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, found = error.read(), error.code, error.headers
        return Reply(status, {k.lower(): v for k, v in found.items()}, json.loads(raw) if raw else None)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def submit_noop(process: StackProcess, title: str, *, secret: str, owner: str = "alice") -> str:
    """Submit a ``noop`` job to a stack started with ``secret``, as ``owner``; its id (the answer must be a 201)."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{process.base_url}/api/v1/jobs",
        data=json.dumps({"title": title, "type": "noop"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {sign(owner, secret=secret)}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        assert response.status == 201
        return str(json.loads(response.read())["job_id"])


def token(sub: str) -> str:
    """A token the session's stack accepts for ``sub``."""
    return sign(sub, secret=SECRET)
