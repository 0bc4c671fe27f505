"""A scheduled start through the running local stack: the relay delays the job's message to its ``not_before`` (the
local SQS holds ``DelaySeconds`` to 0-900 as AWS), the job stays QUEUED until then and starts no earlier; one
cancelled while it waits ends CANCELLED and never runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.support import RunningStack, token

pytestmark = pytest.mark.e2e

OWNER = "scheduler"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def call(stack: RunningStack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    reply = stack.request(method, path, token=token(OWNER), body=body)
    return reply.status, reply.body


def submit_at(stack: RunningStack, start: datetime) -> dict[str, Any]:
    body = {"title": "scheduled", "type": "noop", "not_before": start.isoformat()}
    status, job = call(stack, "POST", "/api/v1/jobs", body)
    assert status == 201, job
    return dict(job)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_job_scheduled_4_s_ahead_waits_queued_and_starts_no_earlier(stack: RunningStack) -> None:
    start = datetime.now(UTC) + timedelta(seconds=4)
    job = submit_at(stack, start)
    assert parse(job["not_before"]) == start.replace(microsecond=start.microsecond // 1000 * 1000)
    seen: list[str] = []
    while datetime.now(UTC) < start - timedelta(seconds=0.3):
        status, found = call(stack, "GET", f"/api/v1/jobs/{job['job_id']}")
        assert status == 200
        seen.append(found["status"])
        time.sleep(0.2)
    assert set(seen) == {"QUEUED"}
    deadline = time.monotonic() + 30
    while (found := call(stack, "GET", f"/api/v1/jobs/{job['job_id']}")[1])["status"] not in FINAL:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["status"] == "SUCCEEDED"
    assert found["attempts"] == 1
    assert parse(found["started_at"]) >= parse(found["not_before"])
    assert found["not_before"] == job["not_before"]


def test_a_job_cancelled_while_it_waits_never_runs(stack: RunningStack) -> None:
    start = datetime.now(UTC) + timedelta(seconds=4)
    job = submit_at(stack, start)
    status, cancelled = call(stack, "POST", f"/api/v1/jobs/{job['job_id']}/cancel")
    assert status == 200, cancelled
    assert cancelled["status"] == "CANCELLED"
    time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 3)  # its message comes and is acknowledged
    status, found = call(stack, "GET", f"/api/v1/jobs/{job['job_id']}")
    assert found["status"] == "CANCELLED"
    assert found["started_at"] is None
    assert f"Job {job['job_id']} started" not in stack.logs()
