"""Faults injected into the running local stack: a worker that dies mid-job, retries, the dead-letter path, and
a delete in flight. The stack runs a copy of template.yaml with short timeouts, so that visibility timeouts
and leases expire within the test (the rules are the same, only the numbers shrink)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import RunningStack, running_stack, short_template
from tests.helpers import sign

pytestmark = pytest.mark.e2e

SECRET = "e2e-faults-secret-that-is-long-enough-for-hs256-0123"


class Client:
    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    def call(self, method: str, path: str, sub: str, body: Any = None) -> tuple[int, Any]:
        reply = RunningStack(self.base, self.log).request(method, path, token=sign(sub, secret=SECRET), body=body)
        return reply.status, reply.body

    def submit(self, job_type: str, payload: dict[str, Any]) -> str:
        status, job = self.call(
            "POST", "/api/v1/jobs", "faults", {"title": job_type, "type": job_type, "payload": payload}
        )
        assert status == 201, job
        return str(job["job_id"])

    def wait(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, job = self.call("GET", f"/api/v1/jobs/{job_id}", "faults")
            if status != 200 or job["status"] in statuses or time.monotonic() > deadline:
                return {"http_status": status, **(job or {})}
            time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    directory = tmp_path_factory.mktemp("faults")
    with running_stack(
        directory,
        secret=SECRET,
        # One message per batch: a worker that dies fails its whole batch, and every message in it loses a
        # delivery from its retry budget (as in Lambda); the fault jobs below are sent together, so a batch of
        # several would make each test's outcome depend on which messages shared a batch with a crash.
        template=short_template(directory, consumer_batch=1),
        function_environment={"Parameters": {"JOBS_FAULT_INJECTION": "1", "JOBS_RETRY_BASE_SECONDS": "1"}},
    ) as process:
        yield Client(process.base_url, process.log)


@pytest.fixture(scope="module")
def submitted(stack: Client) -> dict[str, str]:
    """The fault jobs, submitted together at the start so that their retries and leases run side by side."""
    return {
        "crash once": stack.submit("crash", {"attempts": 1}),
        "flaky twice": stack.submit("flaky", {"attempts": 2}),
        "flaky always": stack.submit("flaky", {"attempts": 0, "message": "never works"}),
        "crash always": stack.submit("crash", {"attempts": 0}),
    }


def test_a_worker_that_dies_mid_job_is_taken_over_after_its_lease(stack: Client, submitted: dict[str, str]) -> None:
    job = stack.wait(submitted["crash once"], {"SUCCEEDED", "FAILED"}, timeout=40)

    assert (job["status"], job["attempts"]) == ("SUCCEEDED", 2)
    assert job["result"] == {"survived_attempt": 2}


def test_a_retryable_failure_is_retried_until_it_succeeds(stack: Client, submitted: dict[str, str]) -> None:
    job = stack.wait(submitted["flaky twice"], {"SUCCEEDED", "FAILED"}, timeout=40)

    assert (job["status"], job["attempts"], job["result"]) == ("SUCCEEDED", 3, {"attempts_needed": 3})


def test_a_retryable_failure_on_every_delivery_fails_on_the_last(stack: Client, submitted: dict[str, str]) -> None:
    job = stack.wait(submitted["flaky always"], {"SUCCEEDED", "FAILED"}, timeout=40)

    assert (job["status"], job["attempts"]) == ("FAILED", 3)
    assert job["error"] == {"type": "RetryableProcessorError", "message": "never works (attempt 3)"}


def test_a_job_whose_worker_always_dies_is_failed_by_the_dead_letter_handler(
    stack: Client, submitted: dict[str, str]
) -> None:
    job = stack.wait(submitted["crash always"], {"SUCCEEDED", "FAILED"}, timeout=60)

    assert job["status"] == "FAILED"
    assert job["error"]["type"] == "DeadLettered"


def test_a_job_deleted_while_it_runs_stays_deleted(stack: Client) -> None:
    # 1 s: a run must end with one AWS attempt and the margin left of the 3 s Timeout (jobs.aws's time budget,
    # 1.75 s in short_template) to write its outcome.
    job_id = stack.submit("sleep", {"seconds": 1})
    assert stack.wait(job_id, {"RUNNING"}, timeout=10)["status"] == "RUNNING"

    status, _ = stack.call("DELETE", f"/api/v1/jobs/{job_id}", "faults")
    time.sleep(3)

    assert status == 204
    assert stack.call("GET", f"/api/v1/jobs/{job_id}", "faults")[0] == 404
    assert f"Job {job_id} was deleted while it ran" in stack.log.read_text()
