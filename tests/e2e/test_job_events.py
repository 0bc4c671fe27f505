"""Job State Change events through the running local stack (issue 16): the publisher reads the Jobs table's
stream, puts each status change on moto's EventBridge, and the stack's local tap (a rule on the bus, the banner's
``Job events`` queue) holds what a subscriber's rule would get. Each test reads that queue: every transition
publishes exactly its documented event (docs/job-state-change.schema.json), a progress update publishes none, and
a delete by DynamoDB's TTL (played by the stack's sweeper, with TTL's ``userIdentity``) is told from the owner's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.e2e.support import RunningStack, token
from tests.e2e.test_operator_commands import run
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

SCHEMA = json.loads((ROOT / "docs" / "job-state-change.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
OWNER = "event-watcher"
#: After a job's last expected event, how long to keep reading to see that no other comes, seconds.
QUIET_SECONDS = 3.0


def client(stack: RunningStack, service: str) -> Any:
    assert stack.process is not None
    endpoint = stack.dynamodb_endpoint if service == "dynamodb" else stack.process.aws_endpoint
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service, endpoint_url=endpoint)


class Tap:
    """The local tap's queue, drained into the events of each job (in arrival order)."""

    def __init__(self, stack: RunningStack) -> None:
        assert stack.process is not None
        found = re.search(r"Job events\s+(\S+)", stack.process.banner)
        assert found is not None, stack.process.banner
        self.url = found.group(1)
        self.sqs = client(stack, "sqs")
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()

    def drain(self) -> None:
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            for message in batch:
                event = json.loads(message["Body"])
                with self._lock:
                    self.events[event["detail"]["job_id"]].append(event)
            self.sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def of(self, job_id: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The job's events once ``count`` have come and nothing more for ``QUIET_SECONDS``."""
        deadline = time.monotonic() + timeout
        while len(self.events[job_id]) < count and time.monotonic() < deadline:
            self.drain()
        quiet = time.monotonic() + QUIET_SECONDS
        while time.monotonic() < quiet:
            self.drain()
        return list(self.events[job_id])


@pytest.fixture(scope="module")
def tap(stack: RunningStack) -> Tap:
    return Tap(stack)


def submit(stack: RunningStack, job_type: str, payload: dict[str, Any], **extra: Any) -> str:
    reply = stack.request(
        "POST",
        "/api/v1/jobs",
        token=token(OWNER),
        body={"title": job_type, "type": job_type, "payload": payload, **extra},
    )
    assert reply.status == 201, reply.body
    return str(reply.body["job_id"])


def get(stack: RunningStack, job_id: str) -> dict[str, Any]:
    reply = stack.request("GET", f"/api/v1/jobs/{job_id}", token=token(OWNER))
    assert reply.status == 200, reply.body
    return dict(reply.body)


def wait_for(stack: RunningStack, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := get(stack, job_id))["status"] not in statuses and time.monotonic() < deadline:
        time.sleep(0.1)
    return job


def transitions(events: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    for event in events:
        VALIDATOR.validate(event)
        assert event["detail"]["owner_id"] == OWNER
    return [(e["detail"]["previous_status"], e["detail"]["status"]) for e in events]


def test_a_job_that_succeeds_publishes_queued_running_succeeded(stack: RunningStack, tap: Tap) -> None:
    job_id = submit(stack, "noop", {})
    job = wait_for(stack, job_id, {"SUCCEEDED"})

    events = tap.of(job_id, 3)

    assert transitions(events) == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
    last = events[-1]["detail"]
    assert {k: last[k] for k in ("status", "attempts", "finished_at", "started_at", "updated_at")} == {
        k: job[k] for k in ("status", "attempts", "finished_at", "started_at", "updated_at")
    }
    assert last["deleted_by"] is None
    assert [int(e["detail"]["version"]) for e in events] == sorted(int(e["detail"]["version"]) for e in events)


def test_a_flaky_job_publishes_its_retry(stack: RunningStack, tap: Tap) -> None:
    job_id = submit(stack, "flaky", {"attempts": 1})
    assert wait_for(stack, job_id, {"SUCCEEDED", "FAILED"})["status"] == "SUCCEEDED"

    events = tap.of(job_id, 5)

    assert transitions(events) == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert [e["detail"]["attempts"] for e in events] == [0, 1, 1, 2, 2]
    assert events[2]["detail"]["error"]["message"].startswith("injected fault")


def test_progress_publishes_nothing_and_a_cancel_of_a_running_job_publishes_cancelled(
    stack: RunningStack, tap: Tap
) -> None:
    job_id = submit(stack, "sleep", {"seconds": 8})
    deadline = time.monotonic() + 60
    while (get(stack, job_id).get("progress") or {}).get("percent", 0) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)  # several progress writes have been made
    assert stack.request("POST", f"/api/v1/jobs/{job_id}/cancel", token=token(OWNER)).status == 200
    assert wait_for(stack, job_id, {"CANCELLED"})["status"] == "CANCELLED"

    events = tap.of(job_id, 3)

    assert transitions(events) == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "CANCELLED")]
    assert all("progress" not in e["detail"] and "payload" not in e["detail"] for e in events)


def test_a_cancel_of_a_queued_job_publishes_cancelled(stack: RunningStack, tap: Tap) -> None:
    later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    job_id = submit(stack, "noop", {}, not_before=later)
    assert stack.request("POST", f"/api/v1/jobs/{job_id}/cancel", token=token(OWNER)).status == 200

    events = tap.of(job_id, 2)

    assert transitions(events) == [(None, "QUEUED"), ("QUEUED", "CANCELLED")]
    assert events[0]["detail"]["not_before"] == later


def test_a_delete_by_the_owner_and_one_by_ttl_are_told_apart(stack: RunningStack, tap: Tap) -> None:
    deleted, expiring = submit(stack, "noop", {}), submit(stack, "noop", {})
    wait_for(stack, deleted, {"SUCCEEDED"})
    wait_for(stack, expiring, {"SUCCEEDED"})
    assert stack.request("DELETE", f"/api/v1/jobs/{deleted}", token=token(OWNER)).status == 204
    # What TTL sees once FinishedJobRetentionDays have passed: expires_at in the past (the sweeper, like TTL,
    # deletes only then). The update keeps the status, so it publishes nothing.
    client(stack, "dynamodb").update_item(
        TableName=stack.physical["JobsTable"],
        Key={"owner_id": {"S": OWNER}, "job_id": {"S": expiring}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    by_owner, by_ttl = tap.of(deleted, 4), tap.of(expiring, 4)

    assert transitions(by_owner)[-1] == ("SUCCEEDED", "DELETED")
    assert transitions(by_ttl)[-1] == ("SUCCEEDED", "DELETED")
    assert len(by_owner) == len(by_ttl) == 4
    assert by_owner[-1]["detail"]["deleted_by"] == "owner"
    assert by_ttl[-1]["detail"]["deleted_by"] == "expiry"
    assert stack.request("GET", f"/api/v1/jobs/{expiring}", token=token(OWNER)).status == 404


def test_the_readmes_command_reads_the_tap_with_the_aws_cli(stack: RunningStack, tmp_path: Path) -> None:
    """The README's command, word for word, with the AWS CLI pointed at the stack by the banner's line (last in
    this module: what it receives stays hidden for the queue's visibility timeout)."""
    assert stack.process is not None
    line = re.search(r"AWS CLI\s+export (.+)", stack.process.banner)
    assert line is not None
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYENV_VERSION"))}
    environment.update(dict(item.split("=", 1) for item in line.group(1).split()))
    version = subprocess.run(
        [str(Path(sys.executable).parent / "aws"), "--version"], capture_output=True, text=True, env=environment
    )
    environment["CLI_VERSION"] = (version.stdout or version.stderr).split("/")[1].split(".")[0]
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    job_id = submit(stack, "noop", {})
    wait_for(stack, job_id, {"SUCCEEDED"})
    command = (
        'aws --endpoint-url "$AWS_ENDPOINT_URL_SQS" sqs receive-message'
        ' --queue-url "$AWS_ENDPOINT_URL_SQS/123456789012/jobs-local-JobEventsTap" --max-number-of-messages 10'
    )

    deadline, seen = time.monotonic() + 60, ""
    while job_id not in seen and time.monotonic() < deadline:
        seen += run(command, environment, tmp_path)

    assert job_id in seen
