"""The README's command-line scenario, and the Python client, against the local stack over HTTP.

The installed console script runs as a subprocess (as a user runs it); the other cases run the same command
in-process through typer's CliRunner, with the client that ``jobsctl`` itself builds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from jobs.models import JobStatus
from jobs_client import JobsClient, NotFound, Unauthorized, ValidationFailed
from jobs_client.cli import ExitCode, build_app
from tests.e2e.support import RunningStack, token
from tests.helpers import ROOT, load_event

pytestmark = pytest.mark.e2e

SEED_PAYLOAD = load_event("seed-report-payload.json")
BIN = Path(sys.executable).parent


def user() -> str:
    """A subject of its own for one test: the session's stack is shared."""
    return f"cli-{uuid.uuid4().hex[:12]}"


def cli(stack: RunningStack, sub: str, *args: str) -> Result:
    """``jobsctl ARGS`` in-process, configured by JOBS_API_URL and JOBS_TOKEN as a user would."""
    environment = {"JOBS_API_URL": f"{stack.base}/api/v1/jobs", "JOBS_TOKEN": token(sub)}
    return CliRunner().invoke(build_app(), list(args), env=environment)


def test_the_installed_command_runs_the_seed_job_to_succeeded_and_prints_its_result(stack: RunningStack) -> None:
    # Given the environment the README tells a user to set
    environment = {"PATH": str(BIN), "JOBS_API_URL": stack.base, "JOBS_TOKEN": token(user())}

    # When they submit the seed job and wait for it
    done = subprocess.run(
        [
            BIN / "jobsctl",
            "submit",
            "--title",
            "Triple Roundhouse",
            "--payload",
            "@events/seed-report-payload.json",
            "--wait",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it reaches SUCCEEDED and its result, the quarterly audit, is printed
    assert done.returncode == 0, done.stderr
    assert "SUCCEEDED" in done.stdout
    assert '"report_type": "quarterly_audit"' in done.stdout
    assert '"complexity_level": 9000' in done.stdout


def test_the_command_is_also_installed_as_jobs(stack: RunningStack) -> None:
    sub = user()
    environment = {"PATH": str(BIN), "JOBS_API_URL": stack.base, "JOBS_TOKEN": token(sub)}
    JobsClient(stack.base, token(sub)).submit("listed", job_type="noop")

    listed = subprocess.run(
        [BIN / "jobs", "list", "--json"], env=environment, capture_output=True, text=True, timeout=60, check=False
    )

    assert listed.returncode == 0, listed.stderr
    assert [job["title"] for job in json.loads(listed.stdout)] == ["listed"]


def test_a_failed_job_exits_non_zero_and_shows_its_error(stack: RunningStack) -> None:
    result = cli(
        stack, user(), "submit", "--title", "boom", "--type", "fail", "--payload", '{"message": "missed"}', "--wait"
    )

    assert result.exit_code == ExitCode.JOB_FAILED
    assert "FAILED" in result.stdout
    assert "ProcessorError: missed" in result.stderr


def test_list_get_and_delete_show_what_the_api_shows(stack: RunningStack) -> None:
    sub = user()
    submitted = cli(stack, sub, "submit", "--title", "roundhouse", "--type", "noop", "--wait", "--json")
    job = json.loads(submitted.stdout)
    path = f"/api/v1/jobs/{job['job_id']}"

    listed = cli(stack, sub, "list", "--json")
    got = cli(stack, sub, "get", job["job_id"], "--json")

    assert (submitted.exit_code, listed.exit_code, got.exit_code) == (0, 0, 0)
    assert job["status"] == "SUCCEEDED"
    assert json.loads(listed.stdout) == stack.request("GET", "/api/v1/jobs", token=token(sub)).body["items"]
    assert json.loads(got.stdout) == stack.request("GET", path, token=token(sub)).body

    deleted = cli(stack, sub, "delete", job["job_id"])
    gone = cli(stack, sub, "get", job["job_id"])

    assert deleted.exit_code == ExitCode.OK
    assert f"Deleted job {job['job_id']}" in deleted.stdout
    assert gone.exit_code == ExitCode.API_ERROR
    assert "404" in gone.stderr
    assert stack.request("GET", path, token=token(sub)).status == 404


def test_another_user_can_neither_get_nor_delete_a_job(stack: RunningStack) -> None:
    owner = user()
    job = JobsClient(stack.base, token(owner)).submit("mine", job_type="noop")

    got = cli(stack, user(), "get", job.job_id)
    deleted = cli(stack, user(), "delete", job.job_id)

    assert got.exit_code == deleted.exit_code == ExitCode.API_ERROR
    assert "404 Not Found: No such job." in got.stderr
    assert cli(stack, owner, "get", job.job_id).exit_code == ExitCode.OK


def test_list_status_shows_only_jobs_in_that_status(stack: RunningStack) -> None:
    sub = user()
    client = JobsClient(stack.base, token(sub))
    failed = client.wait(client.submit("bad", job_type="fail").job_id, timeout=30)
    client.wait(client.submit("good", job_type="noop").job_id, timeout=30)

    result = cli(stack, sub, "list", "--status", "FAILED", "--all", "--json")

    assert result.exit_code == ExitCode.OK
    assert [job["job_id"] for job in json.loads(result.stdout)] == [failed.job_id]


# --- the Python client -----------------------------------------------------------------------------------------


def test_the_client_waits_for_the_seed_job_and_returns_the_apis_model(stack: RunningStack) -> None:
    sub = user()
    with JobsClient(stack.base, token(sub)) as client:
        created = client.submit("Triple Roundhouse", SEED_PAYLOAD)
        done = client.wait(created.job_id, timeout=30)

    assert created.status == JobStatus.QUEUED
    assert done.status == JobStatus.SUCCEEDED
    assert done.owner_id == sub
    assert done.result is not None
    assert done.result["requested"]["complexity_level"] == 9000


def test_the_client_pages_through_every_job_newest_first(stack: RunningStack) -> None:
    with JobsClient(stack.base, token(user())) as client:
        created = [client.submit(f"job {n}", job_type="noop").job_id for n in range(5)]

        listed = [job.job_id for job in client.list(page_size=2)]

    assert listed == list(reversed(created))


def test_the_apis_errors_arrive_as_typed_exceptions(stack: RunningStack) -> None:
    with JobsClient(stack.base, token(user())) as client:
        with pytest.raises(NotFound):
            client.get("01a226ee-fede-7c74-8f78-000000000000")
        with pytest.raises(ValidationFailed) as invalid:
            client.submit("x", job_type="roundhouse")
    with JobsClient(stack.base, "not-a-token") as stranger, pytest.raises(Unauthorized):
        stranger.get("01a226ee-fede-7c74-8f78-000000000000")

    assert [error["loc"] for error in invalid.value.errors] == [["body", "type"]]
