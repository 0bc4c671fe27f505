"""The ``jobs`` command against a scripted API: output for people and for scripts, exit statuses, usage errors."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from jobs.models import Job, format_timestamp
from jobs_client import JobsClient, render
from jobs_client.cli import ExitCode, build_app, parse_not_before
from jobs_client.dev_token import repository_root
from local.stack import DEVELOPMENT_SECRET
from tests.client_fakes import API, JOB_ID, Answer, FakeClock, ScriptedApi, job_body, ok, problem
from tests.helpers import EVENTS, ROOT, load_event, sign

TOKEN = sign("alice")


def run(
    *args: str, answers: list[Answer] | None = None, env: dict[str, str] | None = None
) -> tuple[Result, ScriptedApi]:
    """Run ``jobs ARGS`` with a client whose transport answers from ``answers`` and whose sleeps are instant."""
    api = ScriptedApi(list(answers or []))
    clock = FakeClock()

    def make_client(api_url: str, token: str | None) -> JobsClient:
        return JobsClient(api_url, token, sleep=clock.sleep, clock=clock, transport=httpx.MockTransport(api))

    environment = {"JOBS_API_URL": API, "JOBS_TOKEN": TOKEN, **(env or {})}
    return CliRunner().invoke(build_app(make_client), list(args), env=environment), api


def test_submit_reads_the_payload_from_a_file_and_shows_the_queued_job() -> None:
    result, api = run(
        "submit",
        "--title",
        "Audit",
        "--payload",
        f"@{EVENTS / 'seed-report-payload.json'}",
        answers=[ok(job_body(), status=201)],
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert api.bodies() == [{"title": "Audit", "payload": load_event("seed-payload.json")["payload"]}]
    assert JOB_ID in result.stdout
    assert "QUEUED" in result.stdout


def test_submit_sends_the_idempotency_key_it_was_given() -> None:
    result, api = run("submit", "--title", "Audit", "--idempotency-key", "order-42", answers=[ok(job_body(), 201)])

    assert result.exit_code == ExitCode.OK, result.output
    assert api.requests[0].headers["idempotency-key"] == "order-42"


def test_submit_without_a_key_sends_a_new_uuid_and_prints_only_the_job() -> None:
    result, api = run("submit", "--title", "Audit", "--json", answers=[ok(job_body(), 201)])

    key = api.requests[0].headers["idempotency-key"]
    assert str(uuid.UUID(key)) == key
    assert json.loads(result.stdout) == job_body()
    assert result.stderr == ""


@pytest.mark.parametrize("key", ["", "two words", "x" * 256])
def test_an_idempotency_key_that_breaks_the_apis_rule_is_a_usage_error(key: str) -> None:
    result, api = run("submit", "--title", "Audit", "--idempotency-key", key)

    assert result.exit_code == ExitCode.USAGE
    assert "visible ASCII" in result.stderr
    assert api.requests == []


def test_a_submit_left_without_an_answer_names_the_key_to_repeat_it_with() -> None:
    # Given an API whose answers are lost on every try (the job may exist)
    result, api = run("submit", "--title", "Audit", answers=[httpx.ReadTimeout("slow")] * 5)

    # Then every try carried the same key, and the message says how to repeat the submit safely
    keys = {request.headers["idempotency-key"] for request in api.requests}
    assert len(api.requests) == 5
    assert len(keys) == 1
    assert result.exit_code == ExitCode.API_ERROR
    assert f"--idempotency-key {keys.pop()}" in result.stderr


def test_a_wait_that_loses_the_api_after_the_submit_gives_no_key_hint() -> None:
    result, _ = run(
        "submit", "--title", "Audit", "--wait", answers=[ok(job_body(), 201), *[httpx.ConnectError("refused")] * 5]
    )

    assert result.exit_code == ExitCode.API_ERROR
    assert "cannot reach the jobs API" in result.stderr
    assert "--idempotency-key" not in result.stderr


def test_the_seed_report_payload_is_the_curl_walkthroughs_payload() -> None:
    assert load_event("seed-report-payload.json") == load_event("seed-payload.json")["payload"]


def test_submit_wait_follows_the_job_and_prints_its_result() -> None:
    result, api = run(
        "submit",
        "--title",
        "Audit",
        "--type",
        "report",
        "--payload",
        '{"report_type": "quarterly_audit"}',
        "--wait",
        answers=[ok(job_body(), status=201), ok(job_body("RUNNING")), ok(job_body("SUCCEEDED"))],
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert api.bodies()[0]["type"] == "report"
    assert "SUCCEEDED" in result.stdout
    assert '"total_jobs": 1' in result.stdout
    assert "is RUNNING" in result.stderr


def test_a_waited_job_that_fails_exits_1_and_shows_its_error() -> None:
    result, _ = run(
        "submit", "--title", "Boom", "--type", "fail", "--wait", answers=[ok(job_body(), 201), ok(job_body("FAILED"))]
    )

    assert result.exit_code == ExitCode.JOB_FAILED
    assert "FAILED" in result.stdout
    assert "ProcessorError: it broke" in result.stderr


def test_json_output_is_the_apis_job() -> None:
    result, _ = run("get", JOB_ID, "--json", answers=[ok(job_body("SUCCEEDED"))])

    assert result.exit_code == ExitCode.OK
    assert json.loads(result.stdout) == job_body("SUCCEEDED")


def test_get_without_wait_shows_a_failed_job_and_exits_0() -> None:
    result, _ = run("get", JOB_ID, answers=[ok(job_body("FAILED"))])

    assert result.exit_code == ExitCode.OK
    assert "ProcessorError: it broke" in result.stdout


def test_get_wait_with_json_prints_the_finished_job_and_exits_1_when_it_failed() -> None:
    result, _ = run("get", JOB_ID, "--wait", "--json", answers=[ok(job_body("QUEUED")), ok(job_body("FAILED"))])

    assert result.exit_code == ExitCode.JOB_FAILED
    assert json.loads(result.stdout)["error"] == {"type": "ProcessorError", "message": "it broke"}


def test_a_wait_that_times_out_exits_4_with_the_last_state() -> None:
    result, _ = run("get", JOB_ID, "--wait", "--timeout", "1", "--json", answers=[ok(job_body("RUNNING"))] * 10)

    assert result.exit_code == ExitCode.TIMED_OUT
    assert json.loads(result.stdout)["status"] == "RUNNING"
    assert "Still RUNNING after 1 s" in result.stderr


def test_list_shows_the_newest_jobs_as_a_table() -> None:
    page = {"items": [job_body("SUCCEEDED", job_id="01a226ee-fede-7c74-8f78-000000000001")], "next_token": None}

    result, api = run("list", answers=[ok(page)])

    assert result.exit_code == ExitCode.OK
    assert "01a226ee-fede-7c74-8f78-000000000001" in result.stdout
    assert "SUCCEEDED" in result.stdout
    assert dict(api.requests[0].url.params) == {"limit": "20"}


def test_list_status_asks_the_api_and_filters_what_comes_back() -> None:
    page = {"items": [job_body("SUCCEEDED", job_id="a"), job_body("FAILED", job_id="b")], "next_token": None}

    result, api = run("list", "--status", "failed", "--json", answers=[ok(page)])

    assert result.exit_code == ExitCode.OK
    assert [job["job_id"] for job in json.loads(result.stdout)] == ["b"]
    assert api.requests[0].url.params["status"] == "FAILED"


def test_list_all_follows_every_page_and_limit_stops_early() -> None:
    pages = [
        ok({"items": [job_body(job_id="a"), job_body(job_id="b")], "next_token": "t1"}),
        ok({"items": [job_body(job_id="c")], "next_token": None}),
    ]

    every, _ = run("list", "--all", "--json", answers=list(pages))
    newest, api = run("list", "--limit", "1", "--json", answers=list(pages))

    assert [job["job_id"] for job in json.loads(every.stdout)] == ["a", "b", "c"]
    assert [job["job_id"] for job in json.loads(newest.stdout)] == ["a"]
    assert len(api.requests) == 1


def test_delete_says_what_it_deleted() -> None:
    result, api = run("delete", JOB_ID, answers=[httpx.Response(204)])

    assert result.exit_code == ExitCode.OK
    assert api.requests[0].method == "DELETE"
    assert f"Deleted job {JOB_ID}" in result.stdout


def test_an_api_error_is_shown_on_stderr_and_exits_3() -> None:
    errors = [{"loc": ["body", "type"], "msg": "unknown job type 'x'", "type": "unknown_job_type"}]
    result, _ = run(
        "submit", "--title", "T", "--type", "x", answers=[problem(422, "The request is not valid.", errors=errors)]
    )

    assert result.exit_code == ExitCode.API_ERROR
    assert "422" in result.stderr
    assert "body.type: unknown job type 'x'" in result.stderr
    assert "--idempotency-key" not in result.stderr  # refused: no job was created, so no repeat to make safe
    assert result.stdout == ""


def test_an_unreachable_api_exits_3() -> None:
    result, _ = run("get", JOB_ID, answers=[httpx.ConnectError("refused")] * 5)

    assert result.exit_code == ExitCode.API_ERROR
    assert "cannot reach the jobs API" in result.stderr


def test_without_a_token_nothing_is_sent_and_the_exit_is_2() -> None:
    result, api = run("list", env={"JOBS_TOKEN": ""})

    assert result.exit_code == ExitCode.USAGE
    assert "JOBS_TOKEN" in result.stderr
    assert api.requests == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [("[1, 2]", "must be a JSON object"), ("{nope", "not valid JSON"), ("@/no/such/file.json", "cannot read")],
)
def test_a_payload_that_is_not_a_json_object_is_a_usage_error(payload: str, message: str) -> None:
    result, api = run("submit", "--title", "T", "--payload", payload)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert api.requests == []


def test_the_payload_may_come_from_standard_input(tmp_path: Path) -> None:
    api = ScriptedApi([ok(job_body(), 201)])
    app = build_app(lambda url, token: JobsClient(url, token, transport=httpx.MockTransport(api)))

    result = CliRunner().invoke(
        app, ["submit", "--title", "T", "--payload", "@-"], input='{"n": 1}', env={"JOBS_TOKEN": TOKEN}
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert api.bodies() == [{"title": "T", "payload": {"n": 1}}]


def test_token_signs_for_the_local_stack_with_its_secret_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_JWT_SECRET", raising=False)
    result, _ = run("token", "--sub", "alice")

    claims = jwt.decode(result.stdout.strip(), DEVELOPMENT_SECRET, algorithms=["HS256"])

    assert result.exit_code == ExitCode.OK
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600


def test_token_uses_jobs_jwt_secret_when_set() -> None:
    secret = "a-secret-of-the-local-stack-long-enough-for-hs256"
    result, _ = run("token", "--sub", "bob", "--lifetime", "60", env={"JOBS_JWT_SECRET": secret})

    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])

    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("bob", 60)


def test_token_finds_the_checkout_it_was_installed_from() -> None:
    assert repository_root() == ROOT


def test_text_from_the_job_is_shown_as_is_never_as_markup() -> None:
    failed = job_body("FAILED", title="[/] [bold]x", error={"type": "ProcessorError", "message": "[red]boom[/]"})

    result, _ = run("get", JOB_ID, "--wait", answers=[ok(failed)])

    assert result.exit_code == ExitCode.JOB_FAILED
    assert "[/] [bold]x" in result.stdout
    assert "ProcessorError: [red]boom[/]" in result.stderr


@pytest.mark.parametrize(("args", "env"), [(("get", ""), {}), (("list",), {"JOBS_API_URL": "127.0.0.1:3000"})])
def test_a_job_id_or_url_the_client_refuses_is_a_usage_error(args: tuple[str, ...], env: dict[str, str]) -> None:
    result, api = run(*args, env=env)

    assert result.exit_code == ExitCode.USAGE
    assert "Error:" in result.stderr
    assert api.requests == []


def test_ctrl_c_while_waiting_exits_130_not_1() -> None:
    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    result, _ = run("get", JOB_ID, "--wait", answers=[ok(job_body("RUNNING")), interrupt])

    assert result.exit_code == ExitCode.INTERRUPTED


def test_cancel_wait_follows_a_running_job_to_cancelled_with_plain_progress_lines() -> None:
    asked = job_body("RUNNING", cancel_requested_at="2026-11-29T10:52:06.950Z")
    halfway = {**asked, "progress": {"percent": 50, "message": "step 1 of 2", "updated_at": "2026-11-29T10:52:07.000Z"}}
    done = {**halfway, "status": "CANCELLED", "finished_at": "2026-11-29T10:52:08.000Z"}

    result, api = run("cancel", JOB_ID, "--wait", answers=[ok(asked), ok(halfway), ok(done)])

    assert result.exit_code == 0, result.output
    assert [r.method for r in api.requests] == ["POST", "GET", "GET"]
    assert f"Job {JOB_ID} is RUNNING (cancel requested) 50% step 1 of 2" in result.stderr
    assert "CANCELLED" in result.stdout


# --- priority and not_before (issue 15) ------------------------------------------------------------------------

SCHEDULED = "2026-12-01T09:00:00.000Z"


class Terminal(io.StringIO):
    """What rich writes to a terminal: a file that says it is one."""

    def isatty(self) -> bool:
        return True


def scheduled_job(status: str = "QUEUED", **fields: Any) -> dict[str, Any]:
    """A HIGH job scheduled for ``SCHEDULED``, as the API returns it."""
    return job_body(status, **{"priority": "HIGH", "not_before": SCHEDULED, **fields})


def test_submit_sends_the_priority_and_the_start_time_in_utc() -> None:
    result, api = run(
        "submit", "--title", "Audit", "--priority", "high", "--not-before", "2026-12-01T10:00:00+01:00",
        answers=[ok(scheduled_job(), 201)],
    )  # fmt: skip

    assert result.exit_code == ExitCode.OK, result.output
    assert api.bodies() == [{"title": "Audit", "payload": {}, "priority": "HIGH", "not_before": SCHEDULED}]
    assert "HIGH" in result.stdout
    assert "2026-12-01 09:00:00" in result.stdout  # the detail's "not before" row


@pytest.mark.parametrize(("text", "seconds"), [("+90s", 90), ("+10m", 600), ("+2h", 7200), ("+1d", 86400)])
def test_a_relative_not_before_counts_from_now(text: str, seconds: int) -> None:
    now = datetime(2026, 11, 29, 10, 52, 6, 750000, tzinfo=UTC)

    sent = parse_not_before(text, now)

    assert sent == format_timestamp(now + timedelta(seconds=seconds))


def test_submit_with_a_relative_not_before_sends_a_time_that_far_ahead() -> None:
    before = datetime.now(UTC)
    result, api = run("submit", "--title", "Audit", "--not-before", "+10m", answers=[ok(scheduled_job(), 201)])

    assert result.exit_code == ExitCode.OK, result.output
    sent = datetime.fromisoformat(api.bodies()[0]["not_before"])
    assert (
        before + timedelta(minutes=10) - timedelta(milliseconds=1) <= sent <= datetime.now(UTC) + timedelta(minutes=10)
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--not-before", "2026-12-01T09:00:00"),  # no offset
        ("--not-before", "2026-12-01"),
        ("--not-before", "10m"),
        ("--not-before", "+10w"),
        ("--not-before", "+9999999d"),  # past the year 9999
        ("--not-before", "0001-01-01T00:00:00+01:00"),  # before the year 1 in UTC
        ("--priority", "URGENT"),
    ],
)
def test_a_priority_or_start_time_it_cannot_send_is_a_usage_error(option: str, value: str) -> None:
    result, api = run("submit", "--title", "Audit", option, value)

    assert result.exit_code == ExitCode.USAGE
    assert api.requests == []
    assert option in result.stderr


def test_a_high_job_refused_for_its_scope_exits_3_with_the_apis_reason() -> None:
    refused = problem(403, "A HIGH job needs the scope jobs/priority.high in the token.")
    result, _ = run("submit", "--title", "Audit", "--priority", "HIGH", answers=[refused])

    assert result.exit_code == ExitCode.API_ERROR
    assert "403" in result.stderr
    assert "jobs/priority.high" in result.stderr


def test_get_shows_the_priority_always_and_not_before_when_set() -> None:
    plain, _ = run("get", JOB_ID, answers=[ok(job_body())])
    scheduled, _ = run("get", JOB_ID, answers=[ok(scheduled_job())])

    assert "priority" in plain.stdout
    assert "NORMAL" in plain.stdout
    assert "not before" not in plain.stdout
    assert "not before" in scheduled.stdout
    assert "2026-12-01 09:00:00" in scheduled.stdout
    assert "HIGH" in scheduled.stdout


def test_list_shows_priority_and_not_before_columns_only_when_the_jobs_call_for_them() -> None:
    plain = {"items": [job_body(job_id="01a226ee-fede-7c74-8f78-000000000001")], "next_token": None}
    mixed = {
        "items": [
            scheduled_job(job_id="01a226ee-fede-7c74-8f78-000000000002"),
            job_body("SUCCEEDED", job_id="01a226ee-fede-7c74-8f78-000000000003", priority="LOW"),
        ],
        "next_token": None,
    }

    without, _ = run("list", answers=[ok(plain)])
    with_both, _ = run("list", answers=[ok(mixed)])

    assert "PRIORITY" not in without.stdout
    assert "NOT BEFORE" not in without.stdout
    header, _, first, second = with_both.stdout.splitlines()[:4]
    assert "PRIORITY" in header
    assert "NOT BEFORE (UTC)" in header
    assert "HIGH" in first
    assert "2026-12-01 09:00" in first
    assert "LOW" in second
    assert "2026-12-01" not in second


def test_a_scheduled_job_that_ran_shows_no_start_time_in_the_list() -> None:
    jobs = [Job.model_validate({**scheduled_job("SUCCEEDED"), "owner_id": "a"})]

    assert render.list_layout(jobs, None) == ("id", "status", "priority", "type", "created", "title")


@pytest.mark.parametrize("width", [200, 110, 100, 90, 80, 67, 66, 50])
def test_priority_and_not_before_give_way_before_id_status_and_created(width: int) -> None:
    jobs = [
        Job.model_validate({**scheduled_job(job_id=f"01a226ee-fede-7c74-8f78-00000000000{n}"), "owner_id": "a"})
        for n in range(3)
    ]
    out = Terminal()

    render.print_jobs(Console(file=out, width=width, color_system=None), jobs)

    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    if width >= render.ESSENTIAL_WIDTH:
        for line, job in zip(lines[2:], jobs, strict=True):
            assert line.startswith(f"{job.job_id}   QUEUED")
            assert "2026-11-29 10:52" in line
    else:
        assert lines[0].rstrip() == jobs[0].job_id
        assert lines[1].startswith("  QUEUED     2026-11-29 10:52  HIGH  not before 2")  # cut at the width


def test_the_columns_with_priority_and_not_before_give_way_in_the_documented_order() -> None:
    jobs = [Job.model_validate({**scheduled_job(), "owner_id": "a"})]

    layouts = {width: render.list_layout(jobs, width) for width in (200, 125, 115, 105, 90, 80, 66)}

    assert layouts == {
        200: ("id", "status", "priority", "type", "created", "not_before", "title"),
        125: ("id", "status", "priority", "type", "created", "not_before", "title"),  # the title shortened
        115: ("id", "status", "priority", "created", "not_before", "title"),  # then TYPE dropped
        105: ("id", "status", "created", "not_before", "title"),  # then PRIORITY
        90: ("id", "status", "created", "title"),  # then NOT BEFORE
        80: ("id", "status", "created", "title"),
        66: ("stacked",),
    }


def test_json_prints_a_newer_apis_job_as_it_came() -> None:
    newer = job_body(priority="URGENT", not_before=None, region="eu-west-1")
    shown, _ = run("get", JOB_ID, answers=[ok(newer)])
    as_json, _ = run("get", JOB_ID, "--json", answers=[ok(newer)])
    listed, _ = run("list", "--json", answers=[ok({"items": [newer], "next_token": None})])

    assert shown.exit_code == ExitCode.OK
    assert "URGENT" in shown.stdout
    assert json.loads(as_json.stdout) == newer
    assert json.loads(listed.stdout) == [newer]


def test_the_live_status_of_a_scheduled_job_says_when_it_may_start() -> None:
    queued = Job.model_validate({**scheduled_job(), "owner_id": "a"})
    started = Job.model_validate({**scheduled_job("RUNNING"), "owner_id": "a"})

    assert render.plain_progress(queued) == f"Job {JOB_ID} is QUEUED (not before 2026-12-01 09:00:00 UTC)"
    assert render.plain_progress(started) == f"Job {JOB_ID} is RUNNING"
