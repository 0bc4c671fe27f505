"""One rule per kind of input (README, "Inputs and their rules"), through the local stack: its gateway (which joins
a repeated header's values with commas, as API Gateway does), DynamoDB Local where installed, its Lambda Invoke
API, and the ``jobsctl`` command as a process in a terminal, in a pipe and in a closed pipe."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.support import RunningStack, token
from tests.helpers import ROOT

DATA = ROOT / "tests" / "integration" / "data"


def user() -> str:
    """A subject of its own for one test: the session's stack is shared."""
    return f"rules-{uuid.uuid4().hex[:12]}"


def send(
    stack: RunningStack, method: str, path: str, headers: list[tuple[str, str]], body: str | None = None
) -> tuple[int, str]:
    """A request with exactly ``headers``, repeats included, in that order."""
    host, port = stack.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.putrequest(method, path)
        data = body.encode() if body is not None else b""
        for name, value in [*headers, ("Content-Length", str(len(data)))]:
            connection.putheader(name, value)
        connection.endheaders(data)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def post(stack: RunningStack, sub: str, body: str, *extra: tuple[str, str]) -> tuple[int, str]:
    headers = [("Authorization", f"Bearer {token(sub)}"), *extra]
    if not any(name.lower() == "content-type" for name, _ in extra):
        headers.append(("Content-Type", "application/json"))
    return send(stack, "POST", "/api/v1/jobs", headers, body)


def get(stack: RunningStack, sub: str, job_id: str) -> str:
    status, body = send(stack, "GET", f"/api/v1/jobs/{job_id}", [("Authorization", f"Bearer {token(sub)}")])
    assert status == 200, body
    return body


def owned(stack: RunningStack, sub: str) -> list[dict[str, Any]]:
    return [item for item in stack.items() if item["owner_id"]["S"] == sub]


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=list)


@pytest.mark.parametrize("raw", ['[{"title": "x"}]', '[{"title": "x"}, {"title": "y"}]', "null", '"x"', "7"], ids=str)
def test_a_body_that_is_not_one_object_is_a_422_and_writes_nothing(stack: RunningStack, raw: str) -> None:
    sub = user()

    status, body = post(stack, sub, raw)

    assert status == 422, body
    assert json.loads(body)["errors"][0]["type"] == "body_not_object"
    assert owned(stack, sub) == []


@pytest.mark.parametrize(
    "raw",
    ['{"title": "x", "title": "y"}', '{"title": "x", "payload": {"a": [{"b": 1, "b": 2}]}}'],
    ids=["title", "deep in payload"],
)
def test_a_member_name_repeated_at_any_depth_is_a_400_and_writes_nothing(stack: RunningStack, raw: str) -> None:
    sub = user()

    status, body = post(stack, sub, raw)

    assert status == 400, body
    assert json.loads(body)["errors"][0]["type"] == "json_duplicate_member"
    assert owned(stack, sub) == []


@pytest.mark.parametrize(
    "sent",
    [
        "1e100",
        "1.0",
        "-0.0",
        "1e2",
        "0.1",
        "12345678901234567890123456789012345678",
        "9007199254740993",
        "-0",
        "1e-130",
    ],
)
def test_a_payload_number_round_trips_post_get_post(stack: RunningStack, sent: str) -> None:
    sub = user()
    status, created = post(stack, sub, f'{{"title": "n", "type": "noop", "payload": {{"n": {sent}}}}}')
    assert status == 201, created

    first = get(stack, sub, json.loads(created)["job_id"])
    again_status, again = post(
        stack, sub, json.dumps({"title": "n", "type": "noop", "payload": json.loads(first)["payload"]})
    )

    assert dict(exact(first))["payload"] == [("n", Decimal(sent))]
    assert again_status == 201, again
    assert dict(exact(get(stack, sub, json.loads(again)["job_id"])))["payload"] == [("n", Decimal(sent))]


def test_member_order_round_trips(stack: RunningStack) -> None:
    sub = user()
    raw = '{"title": "o", "type": "noop", "payload": {"c": 1, "b": {"z": 1, "y": 2, "x": 3}, "a": [3, 2, 1]}}'

    status, created = post(stack, sub, raw)

    assert status == 201, created
    assert dict(exact(get(stack, sub, json.loads(created)["job_id"])))["payload"] == dict(exact(raw))["payload"]


def test_a_job_the_previous_version_stored_as_a_map_is_read_and_can_be_sent_again(stack: RunningStack) -> None:
    sub = user()
    previous = json.loads((DATA / "previous_version.json").read_text(encoding="utf-8"))
    item = {**previous["job_item"], "owner_id": {"S": sub}}
    client = _dynamodb(stack)
    client.put_item(TableName=stack.physical["JobsTable"], Item=item)

    read = json.loads(get(stack, sub, item["job_id"]["S"]))
    status, again = post(stack, sub, json.dumps({"title": "again", "type": "noop", "payload": read["payload"]}))

    assert read["payload"]["a"] == [1e100, 1, 0, 12345678901234567890123456789012345678, 0.1]
    assert status == 201, again


def _dynamodb(stack: RunningStack) -> Any:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("dynamodb", endpoint_url=stack.dynamodb_endpoint)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Idempotency-Key", "K"), ("Idempotency-Key", "K")], 422),
        ([("Idempotency-Key", "a"), ("Idempotency-Key", "b")], 422),
        ([("Content-Type", "application/json"), ("Content-Type", "application/json")], 400),
        ([("Content-Type", "application/json"), ("Content-Type", "text/plain")], 400),
    ],
    ids=["Idempotency-Key twice", "two Idempotency-Keys", "Content-Type twice", "two Content-Types"],
)
def test_a_single_valued_header_sent_twice_is_refused_and_writes_nothing(
    stack: RunningStack, headers: list[tuple[str, str]], status: int
) -> None:
    sub = user()

    code, body = post(stack, sub, '{"title": "x", "type": "noop"}', *headers)

    assert code == status, body
    assert owned(stack, sub) == []


def test_a_retry_with_the_key_sent_twice_makes_no_second_job(stack: RunningStack) -> None:
    sub = user()

    first = post(stack, sub, '{"title": "x", "type": "noop"}', ("Idempotency-Key", "K"))
    twice = post(stack, sub, '{"title": "x", "type": "noop"}', ("Idempotency-Key", "K"), ("Idempotency-Key", "K"))

    assert (first[0], twice[0]) == (201, 422)
    assert len(owned(stack, sub)) == 1


def _rest_api_event(marker: str) -> dict[str, Any]:
    return {
        "resource": "/api/v1/jobs",
        "path": "/api/v1/jobs",
        "httpMethod": "GET",
        "headers": {"Authorization": f"Bearer {token('alice')}"},
        "requestContext": {"requestId": marker, "httpMethod": "GET", "stage": "prod"},
        "body": None,
        "isBase64Encoded": False,
    }


def _v2_event_without_stage(marker: str) -> dict[str, Any]:
    """A payload format 2.0 event as a hand-made test event may be: no ``requestContext.stage``, a body object."""
    return {
        "version": "2.0",
        "routeKey": "POST /api/v1/jobs",
        "rawPath": "/api/v1/jobs",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {token('alice')}", "content-type": "application/json"},
        "requestContext": {"requestId": marker, "http": {"method": "POST", "path": "/api/v1/jobs"}},
        "body": {"title": "x"},
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize("build", [_rest_api_event, _v2_event_without_stage], ids=["REST API", "2.0 without stage"])
def test_a_rest_api_event_gets_a_well_formed_500_and_one_log_line(
    stack: RunningStack, build: Callable[[str], dict[str, Any]]
) -> None:
    assert stack.process is not None
    marker = f"rest-{uuid.uuid4().hex}"
    event = build(marker)
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{stack.process.lambda_url}/2015-03-31/functions/ApiFunction/invocations",
        data=json.dumps(event).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback only
        function_error = answer.headers.get("X-Amz-Function-Error")
        payload = json.loads(answer.read())

    assert function_error is None
    assert payload["statusCode"] == 500
    assert payload["headers"] == {"Content-Type": "application/problem+json"}
    assert json.loads(payload["body"])["detail"] == "The API is not configured for this kind of request."
    deadline = time.monotonic() + 10
    while not (lines := [line for line in stack.logs().splitlines() if marker in line]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lines) == 1
    assert "PayloadFormatVersion 2.0" in lines[0]
    assert json.loads(lines[0])["level"] == "ERROR"


# --- jobsctl as a process ---------------------------------------------------------------------------------------


def jobsctl_environment(stack: RunningStack, sub: str, **extra: str) -> dict[str, str]:
    """The environment of ``python -m jobs_client`` from this checkout, against the session's stack."""
    path = os.pathsep.join(str(ROOT / part) for part in ("client", "layers/jobs", "."))
    return {**os.environ, "PYTHONPATH": path, "JOBS_API_URL": stack.base, "JOBS_TOKEN": token(sub), **extra}


def jobs_of(stack: RunningStack, sub: str, count: int) -> list[str]:
    title = "Chuck Norris Job: Triple Roundhouse Compliance Report"
    ids = []
    for _ in range(count):
        status, body = post(stack, sub, json.dumps({"title": title, "type": "noop"}))
        assert status == 201, body
        ids.append(json.loads(body)["job_id"])
    return ids


def in_terminal(environment: dict[str, str], columns: int, *args: str) -> str:
    """What ``python -m jobs_client ARGS`` shows in a terminal ``columns`` wide (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in environment.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs_client", *args], stdout=follower, stderr=follower, env=environment
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(leader)
    text = output.decode().replace("\r\n", "\n")
    for code in ("\x1b[1m", "\x1b[0m", "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[1;31m", "\x1b[2m"):
        text = text.replace(code, "")
    return text


@pytest.mark.parametrize(("columns", "lines_per_job"), [(80, 1), (60, 2)])
def test_jobsctl_list_in_a_terminal_keeps_id_status_and_created_whole(
    stack: RunningStack, columns: int, lines_per_job: int
) -> None:
    sub = user()
    ids = jobs_of(stack, sub, 6)

    shown = in_terminal(jobsctl_environment(stack, sub), columns, "list")

    lines = [line for line in shown.splitlines() if line.strip()]
    job_lines = [line for line in lines if any(job_id in line for job_id in ids)]
    assert len(job_lines) == 6
    assert all(len(line) <= columns for line in lines)
    assert len(re.findall(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b", shown)) == 6  # created, whole
    assert len(re.findall(r"\b(QUEUED|RUNNING|SUCCEEDED)\b", shown)) == 6  # status, whole
    header = 2 if lines_per_job == 1 else 0
    assert len(lines) == header + 6 * lines_per_job


def test_jobsctl_list_into_a_pipe_is_one_whole_line_per_job_whatever_the_environment(stack: RunningStack) -> None:
    sub = user()
    ids = jobs_of(stack, sub, 3)
    environment = jobsctl_environment(stack, sub, FORCE_COLOR="1", TTY_COMPATIBLE="1", COLUMNS="60")

    listed = subprocess.run(
        [sys.executable, "-m", "jobs_client", "list"], env=environment, capture_output=True, text=True, timeout=60
    )

    lines = [line for line in listed.stdout.splitlines() if any(job_id in line for job_id in ids)]
    assert listed.returncode == 0, listed.stderr
    assert len(lines) == 3
    assert all("Chuck Norris Job: Triple Roundhouse Compliance Report" in line for line in lines)


@pytest.mark.parametrize(
    "args", [("list", "--json"), ("list",), ("get", "{id}", "--wait"), ("get", "{id}")], ids=" ".join
)
def test_jobsctl_into_a_closed_pipe_exits_141_quietly(stack: RunningStack, args: tuple[str, ...]) -> None:
    sub = user()
    (job_id,) = jobs_of(stack, sub, 1)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "jobs_client", *(arg.format(id=job_id) for arg in args)],
            stdout=writer,
            stderr=subprocess.PIPE,
            env=jobsctl_environment(stack, sub),
            timeout=60,
        )
    finally:
        os.close(writer)

    assert finished.returncode == 141, finished.stderr
    assert finished.stderr == b""
