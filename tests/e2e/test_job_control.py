"""Job control through the running local stack (issue 14): a job longer than one invocation is continued from its
checkpoint and never dead-lettered, cancel in each status, and progress seen by GET and the list while a job runs.

The stack runs a copy of template.yaml with a 6 s consumer Timeout, one message per batch (so each run is the
first of its invocation and is always started) and a redrive policy of 2 receives: a job that needs five runs
would reach the dead-letter queue if a continuation spent a receive of its message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.support import RunningStack, StackProcess, running_stack, short_template
from tests.helpers import sign

pytestmark = pytest.mark.e2e

SECRET = "e2e-job-control-secret-that-is-long-enough-for-hs256"
OWNER = "controller"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


class Client:
    def __init__(self, process: StackProcess) -> None:
        self.process = process
        self.base = process.base_url
        self.log: Path = process.log

    def call(self, method: str, path: str, sub: str = OWNER, body: Any = None) -> tuple[int, Any]:
        reply = RunningStack(self.base, self.log).request(method, path, token=sign(sub, secret=SECRET), body=body)
        return reply.status, reply.body

    def submit(self, job_type: str, payload: dict[str, Any]) -> str:
        status, job = self.call("POST", "/api/v1/jobs", body={"title": job_type, "type": job_type, "payload": payload})
        assert status == 201, job
        return str(job["job_id"])

    def get(self, job_id: str) -> dict[str, Any]:
        status, job = self.call("GET", f"/api/v1/jobs/{job_id}")
        assert status == 200, job
        return dict(job)

    def wait(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in statuses or time.monotonic() > deadline:
                return job
            time.sleep(0.1)

    def dead_letter_messages(self) -> int:
        """Messages in the dead-letter queue, visible and in flight (its handler may be holding one)."""
        sqs = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("sqs", endpoint_url=self.process.aws_endpoint)
        url = self.process.physical["JobsDeadLetterQueue"]
        if not url.startswith("http"):
            url = sqs.get_queue_url(QueueName=url)["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    directory = tmp_path_factory.mktemp("job-control")
    with running_stack(
        directory,
        secret=SECRET,
        template=short_template(directory, consumer_timeout=6, lease=8, visibility=10, consumer_batch=1),
        function_environment={"Parameters": {"JOBS_FAULT_INJECTION": "1"}},
        parameter_overrides="MaxReceiveCount=2 JobMaxAttempts=1",
    ) as process:
        yield Client(process)


def test_a_job_longer_than_one_invocation_resumes_from_its_checkpoint_and_is_never_dead_lettered(
    stack: Client,
) -> None:
    # Ten 1 s steps; each 6 s invocation leaves about 2.7 s to the processor (jobs.context.remaining_seconds keeps
    # two 1.5 s AWS attempts), so a run does two steps and asks to be continued: about five runs, more than the
    # redrive policy's 2 receives.
    job_id = stack.submit("steps", {"steps": 10, "seconds": 1})
    seen_running: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while (job := stack.get(job_id))["status"] not in FINAL and time.monotonic() < deadline:
        if job["status"] == "RUNNING":
            seen_running.append(job)
        time.sleep(0.2)

    assert job["status"] == "SUCCEEDED", job
    assert job["result"]["done"] == 10
    assert job["result"]["runs"] >= 3  # resumed from its checkpoint: the count of runs carried over
    assert job["attempts"] == 1  # a continuation is no retry
    assert job["error"] is None
    assert "checkpoint" not in job
    assert {j["started_at"] for j in seen_running} == {job["started_at"]}  # the lease token is not started_at
    logs = stack.log.read_text()
    assert logs.count(f"Job {job_id} continued from its checkpoint") >= 2
    assert f"Job {job_id} FAILED: dead-lettered" not in logs
    assert stack.dead_letter_messages() == 0


def test_a_queued_job_is_cancelled_at_once_and_its_message_is_acknowledged(stack: Client) -> None:
    # Two sleeping jobs hold both workers (concurrency 2, one message a batch), so the third stays QUEUED.
    sleepers = [stack.submit("sleep", {"seconds": 3}) for _ in range(2)]
    for sleeper in sleepers:
        assert stack.wait(sleeper, {"RUNNING"}, timeout=15)["status"] == "RUNNING"
    queued = stack.submit("noop", {})
    assert stack.get(queued)["status"] == "QUEUED"

    status, job = stack.call("POST", f"/api/v1/jobs/{queued}/cancel")
    for sleeper in sleepers:
        stack.wait(sleeper, FINAL, timeout=20)
    time.sleep(2)  # its message is delivered once a worker is free

    assert (status, job["status"], job["result"]) == (200, "CANCELLED", None)
    assert job["finished_at"] is not None
    after = stack.get(queued)
    assert (after["status"], after["attempts"], after["started_at"]) == ("CANCELLED", 0, None)
    assert stack.call("POST", f"/api/v1/jobs/{queued}/cancel") == (200, after)  # again: a no-op 200


def test_a_running_job_that_is_cancelled_stops_early_and_ends_cancelled_without_its_result(stack: Client) -> None:
    job_id = stack.submit("sleep", {"seconds": 4})
    assert stack.wait(job_id, {"RUNNING"}, timeout=15)["status"] == "RUNNING"

    status, asked = stack.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    job = stack.wait(job_id, FINAL, timeout=20)

    assert (status, asked["status"]) == (200, "RUNNING")
    assert asked["cancel_requested_at"] is not None
    assert (job["status"], job["result"], job["error"]) == ("CANCELLED", None, None)
    assert job["cancel_requested_at"] == asked["cancel_requested_at"]
    assert job["finished_at"] is not None
    logs = stack.log.read_text()
    assert f"Job {job_id} CANCELLED" in logs
    assert f"Job {job_id} was cancelled while it ran; its outcome is discarded" in logs


def test_a_finished_job_cannot_be_cancelled_and_nobody_cancels_anothers(stack: Client) -> None:
    job_id = stack.submit("noop", {})
    assert stack.wait(job_id, FINAL, timeout=20)["status"] == "SUCCEEDED"
    failed = stack.submit("fail", {})
    assert stack.wait(failed, FINAL, timeout=20)["status"] == "FAILED"

    finished, problem = stack.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    failed_status, failed_problem = stack.call("POST", f"/api/v1/jobs/{failed}/cancel")
    other, _ = stack.call("POST", f"/api/v1/jobs/{job_id}/cancel", sub="someone-else")
    missing, _ = stack.call("POST", "/api/v1/jobs/01a226ee-0000-7000-8000-000000000000/cancel")

    assert (finished, failed_status, other, missing) == (409, 409, 404, 404)
    assert "SUCCEEDED" in problem["detail"]
    assert "FAILED" in failed_problem["detail"]
    assert stack.get(job_id)["status"] == "SUCCEEDED"


def test_progress_is_visible_on_get_and_in_the_list_while_a_job_runs(stack: Client) -> None:
    job_id = stack.submit("sleep", {"seconds": 4})
    reports: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while (job := stack.get(job_id))["status"] not in FINAL and time.monotonic() < deadline:
        if job["status"] == "RUNNING" and job.get("progress"):
            reports.append(job["progress"])
            status, page = stack.call("GET", "/api/v1/jobs?status=RUNNING")
            assert status == 200
            listed += [item["progress"] for item in page["items"] if item["job_id"] == job_id and item["progress"]]
        time.sleep(0.3)

    assert job["status"] == "SUCCEEDED"
    assert len({report["percent"] for report in reports}) >= 2, reports  # it moves as the job runs
    assert all(0 <= report["percent"] <= 100 and report["message"] == "sleeping" for report in reports)
    assert [report["percent"] for report in reports] == sorted(report["percent"] for report in reports)
    assert listed
