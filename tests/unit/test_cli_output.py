"""What ``jobsctl`` reads and writes at its edges (README, "Inputs and their rules"): the list's columns in a
terminal of any width and one job per line elsewhere, a closed output, and the server's headers and content
types read defensively."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
from rich.console import Console

from jobs.models import Job
from jobs_client import render
from jobs_client.cli import ExitCode
from jobs_client.client import parse_retry_after
from jobs_client.errors import UnexpectedResponse
from tests.client_fakes import JOB_ID, job_body, ok, problem, scripted_client
from tests.helpers import ROOT
from tests.unit.test_cli import run

LONG_TITLE = "Chuck Norris Job: Triple Roundhouse Compliance Report"
STATUSES = ["SUCCEEDED", "FAILED", "RUNNING", "QUEUED", "SUCCEEDED", "QUEUED"]


def six_jobs() -> list[Job]:
    return [
        Job.model_validate(
            {**job_body(status, job_id=f"01a226ee-fede-7c74-8f78-00000000000{n}", title=LONG_TITLE), "owner_id": "a"}
        )
        for n, status in enumerate(STATUSES)
    ]


class Terminal(io.StringIO):
    """What rich writes to a terminal: a file that says it is one."""

    def isatty(self) -> bool:
        return True


def shown_in_terminal(width: int, jobs: list[Job]) -> list[str]:
    out = Terminal()
    render.print_jobs(Console(file=out, width=width, color_system=None), jobs)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [200, 120, 100, 90, 80, 77, 76, 70, 67])
def test_in_a_terminal_each_job_is_one_line_with_id_status_and_created_whole(width: int) -> None:
    jobs = six_jobs()

    lines = shown_in_terminal(width, jobs)

    assert len(lines) == 2 + len(jobs)  # header, rule, one line per job
    for line, job in zip(lines[2:], jobs, strict=True):
        assert line.startswith(f"{job.job_id}   {job.status.value}")
        assert "2026-11-29 10:52" in line
    assert all(len(line) <= width for line in lines)


def test_the_columns_give_way_in_the_documented_order() -> None:
    jobs = six_jobs()

    layouts = {width: render.list_layout(jobs, width) for width in (200, 90, 80, 77, 67, 66, 60)}

    assert layouts == {
        200: ("id", "status", "type", "created", "title"),
        90: ("id", "status", "type", "created", "title"),  # the title shortened
        80: ("id", "status", "created", "title"),  # then TYPE dropped
        77: ("id", "status", "created"),  # then TITLE dropped
        67: ("id", "status", "created"),
        66: ("stacked",),  # then two lines per job
        60: ("stacked",),
    }
    assert render.list_layout(jobs, None) == ("id", "status", "type", "created", "title")


def test_at_80_columns_the_title_is_shortened_not_folded() -> None:
    lines = shown_in_terminal(80, six_jobs())

    assert lines[0].split() == ["JOB", "ID", "STATUS", "CREATED", "(UTC)", "TITLE"]
    assert lines[2].endswith("Chuck Nor…")


def test_at_60_columns_each_job_takes_two_lines_and_keeps_id_status_and_created_whole() -> None:
    jobs = six_jobs()

    lines = shown_in_terminal(60, jobs)

    assert len(lines) == 2 * len(jobs)
    for n, job in enumerate(jobs):
        assert lines[2 * n].rstrip() == job.job_id
        assert lines[2 * n + 1].split()[:3] == [job.status.value, "2026-11-29", "10:52"]
    assert all(len(line) <= 60 for line in lines)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"FORCE_COLOR": "1"},
        {"TTY_COMPATIBLE": "1"},
        {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "60"},
        {"COLUMNS": "40"},
    ],
    ids=["plain", "FORCE_COLOR", "TTY_COMPATIBLE", "both at 60 columns", "COLUMNS=40"],
)
def test_when_not_a_terminal_each_job_is_one_whole_line_whatever_the_environment(env: dict[str, str]) -> None:
    jobs = [
        job_body(status, job_id=f"01a226ee-fede-7c74-8f78-00000000000{n}", title=LONG_TITLE)
        for n, status in enumerate(STATUSES)
    ]

    result, _ = run("list", answers=[ok({"items": jobs, "next_token": None})], env=env)

    lines = [line for line in result.stdout.splitlines() if "01a226ee" in line]
    assert result.exit_code == ExitCode.OK
    assert len(lines) == len(jobs)
    for line, job in zip(lines, jobs, strict=True):
        plain = line.replace("\x1b[32m", "").replace("\x1b[0m", "")
        for text in (job["job_id"], "report", "2026-11-29 10:52", LONG_TITLE):
            assert text in plain


# --- a closed output ------------------------------------------------------------------------------------------


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m jobs_client ARGS`` (this checkout's code) writing to a pipe whose reader has gone."""
    reader, writer = os.pipe()
    os.close(reader)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / part) for part in ("client", "layers/jobs", "."))}
    try:
        return subprocess.run(
            [sys.executable, "-m", "jobs_client", *args], stdout=writer, stderr=subprocess.PIPE, env=env, timeout=60
        )
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    "args",
    [("token", "--sub", "alice"), ("--help",), ("list", "--help"), ()],
    ids=["token", "help", "list help", "no args"],
)
def test_a_closed_output_ends_quietly_with_141(args: tuple[str, ...]) -> None:
    finished = run_into_closed_pipe(*args)

    assert finished.returncode == ExitCode.CLOSED_PIPE
    assert int(ExitCode.CLOSED_PIPE) == 141
    assert finished.stderr == b""


def test_141_is_no_other_documented_outcome() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    assert ExitCode.CLOSED_PIPE not in (ExitCode.JOB_FAILED, ExitCode.USAGE, ExitCode.API_ERROR)


# --- what the client reads from a server ----------------------------------------------------------------------

MALFORMED_RETRY_AFTER = [
    "1.5",
    "-1",
    "5e3",
    "+5",
    "0x10",
    "\uff15",  # a fullwidth 5
    "\u00b2",  # a superscript 2, which str.isdigit() accepts and float() refuses
    "5, 5",  # a repeated header, joined
    "5,",
    ",",
    "soon",
    "Mon, 99 Nov 2026 10:00:00 GMT",
    "Sun, 29 Nov 2026 10:00:30",  # no zone
    "Thu, 01 Jan 99999 00:00:00 GMT",
    "x" * 10_000,
    "\x00",
]


@pytest.mark.parametrize("value", MALFORMED_RETRY_AFTER, ids=[repr(v[:20]) for v in MALFORMED_RETRY_AFTER])
def test_a_malformed_retry_after_is_treated_as_absent(value: str) -> None:
    assert parse_retry_after(value, now=datetime(2026, 11, 29, 10, 0, tzinfo=UTC)) is None


def test_a_retry_after_of_many_digits_is_capped_not_an_error() -> None:
    assert parse_retry_after("9" * 5000) == float("inf")
    client, _, clock = scripted_client(problem(503, "Busy.", retry_after="9" * 5000), ok(job_body()))

    client.get(JOB_ID)

    assert clock.sleeps == [client.retry.max_retry_after]


@pytest.mark.parametrize("value", ["5, 5", "soon", "\u00b2"])
def test_a_503_with_a_malformed_retry_after_is_retried_on_the_backoff(value: str) -> None:
    busy = httpx.Response(503, json={"title": "Busy"}, headers=[(b"Retry-After", value.encode("utf-8"))])
    client, api, clock = scripted_client(busy, ok(job_body()))

    assert client.get(JOB_ID).job_id == JOB_ID
    assert clock.sleeps == [client.retry.initial_delay]
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    "location",
    ["", "not a url", "http://[::1", "/api/v1/jobs/other", "\u00e9"],
    ids=["empty", "words", "bad", "other", "e"],
)
def test_location_is_never_read_the_job_comes_from_the_body(location: str) -> None:
    created = httpx.Response(201, json=job_body(), headers=[(b"Location", location.encode("utf-8"))])
    client, _, _ = scripted_client(created)

    assert client.submit("Audit").job_id == JOB_ID


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/html", b"<html>502 Bad Gateway</html>"),
        ("application/json", b"[" * 100_000),
        ("application/json; charset=no-such-charset", b"\xff\xfe"),
        ("", b""),
        ("application/json", b'{"job_id": 5}'),
    ],
    ids=["html", "too deep", "unknown charset", "no body", "not a job"],
)
def test_an_answer_that_is_not_a_job_is_an_unexpected_response(content_type: str, content: bytes) -> None:
    client, _, _ = scripted_client(httpx.Response(200, content=content, headers={"Content-Type": content_type}))

    with pytest.raises(UnexpectedResponse):
        client.get(JOB_ID)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/html", b"<html>Bad Gateway</html>"),
        ("application/problem+json; charset=bogus", b'{"title": "T", "detail": "D", "errors": [{"loc": 5}, 7]}'),
        ("application/json", b"[" * 100_000),
        ("application/problem+json", b'{"errors": {"loc": ["body"]}}'),
    ],
    ids=["html", "loc not a list", "too deep", "errors not a list"],
)
def test_an_error_answer_of_any_shape_is_shown_and_exits_3(content_type: str, content: bytes) -> None:
    answer = httpx.Response(400, content=content, headers={"Content-Type": content_type})

    result, _ = run("get", JOB_ID, answers=[answer])

    assert result.exit_code == ExitCode.API_ERROR
    assert "Error 400" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("payload", "message"),
    [('{"a": 1, "a": 2}', "appears more than once"), ('{"a": {"b": [{"c": 1, "c": 1}]}}', "appears more than once")],
)
def test_a_payload_naming_a_member_twice_is_a_usage_error(payload: str, message: str) -> None:
    result, api = run("submit", "--title", "t", "--payload", payload)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert api.requests == []


def test_a_payload_number_the_api_could_not_return_as_written_is_refused_before_sending() -> None:
    result, api = run("submit", "--title", "t", "--payload", '{"pi": 3.14159265358979323846}')

    assert result.exit_code == ExitCode.API_ERROR
    assert "would not come back as sent" in result.stderr
    assert api.requests == []


def test_a_payload_is_sent_with_its_members_in_order_and_numbers_as_written() -> None:
    result, api = run(
        "submit", "--title", "t", "--payload", '{"c": 1e100, "b": 1.0, "a": -0.0}', answers=[ok(job_body(), 201)]
    )

    assert result.exit_code == ExitCode.OK
    assert json.loads(api.requests[0].content, object_pairs_hook=list)[1] == (
        "payload",
        [("c", 1e100), ("b", 1.0), ("a", -0.0)],
    )
    assert b'"c":1e+100,"b":1.0,"a":-0.0' in api.requests[0].content


@pytest.mark.parametrize(
    ("callback", "shown"),
    [
        (None, "https://hooks.example.com/jobs?…"),
        ({"status": "PENDING", "attempts": 0}, "https://hooks.example.com/jobs?… PENDING"),
        ({"status": "DELIVERED", "attempts": 1}, "https://hooks.example.com/jobs?… DELIVERED after 1 attempt"),
        (
            {"status": "RETRYING", "attempts": 2, "last_error": "HTTP 500"},
            "https://hooks.example.com/jobs?… RETRYING after 2 attempts (last: HTTP 500)",
        ),
    ],
)
def test_the_callback_line_hides_the_query_and_tells_the_delivery(callback: object, shown: str) -> None:
    job = Job.model_validate(
        {**job_body(), "owner_id": "alice", "callback_url": "https://hooks.example.com/jobs?token=s3cret"}
        | ({"callback": callback} if callback is not None else {})
    )

    assert render.callback_text(job) == shown
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render.job_detail(job))
    assert "s3cret" not in console.file.getvalue()  # type: ignore[attr-defined]
