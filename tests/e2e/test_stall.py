"""One user must never stall everyone, end to end on the local stack.

- An item written straight into the table (as a migration or an older version could) whose owner id no token
  can hold, and SQS cannot carry, ends FAILED; jobs other owners create after it reach SUCCEEDED as usual.
- A relay that cannot send (its queue URL broken) gives up on each record after the mapping's bounded retries;
  the batch's coordinates land on the on-failure destination, and ``make replay-stream`` (the reconciler,
  invoked through the stack's Lambda Invoke API) sends what is still QUEUED; the reconciler alone re-sends a job
  left QUEUED whose batch is gone. That stack runs moto with SQS's replacement switch on, and the poison item
  still ends in a terminal status there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import boto3
import pytest

from jobs.models import JobCreate
from jobs.service import JobService
from jobs.store import InMemoryJobStore, job_to_item
from local import invoke
from tests.e2e.support import RunningStack, StackProcess, running_stack, submit_noop, token

pytestmark = pytest.mark.e2e

SECRET = "e2e-stall-secret-that-is-long-enough-for-hs256-01234"
#: Owner ids no token can hold (the identity rule) and SQS cannot carry as they are.
POISON_OWNERS = ["poison-\uffff", "poison-\ufffe", "poison with space"]


def client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service, endpoint_url=endpoint)


def put_poison(process: StackProcess, owner_id: str) -> str:
    """A QUEUED job of ``owner_id`` written straight into the stack's table; returns its id."""
    job = JobService(InMemoryJobStore()).create_job(owner_id, JobCreate(title="poison", type="noop"))
    dynamodb = client("dynamodb", process.dynamodb_endpoint)
    dynamodb.put_item(TableName=process.physical["JobsTable"], Item=job_to_item(job))
    return job.job_id


def status_in_table(process: StackProcess, owner_id: str, job_id: str) -> dict[str, Any]:
    dynamodb = client("dynamodb", process.dynamodb_endpoint)
    key = {"owner_id": {"S": owner_id}, "job_id": {"S": job_id}}
    item = dynamodb.get_item(TableName=process.physical["JobsTable"], Key=key, ConsistentRead=True).get("Item")
    return {"status": item["status"]["S"], "error": item.get("error")} if item else {"status": "GONE"}


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.25)


def test_a_poison_item_ends_failed_and_other_owners_jobs_succeed_in_the_usual_time(stack: RunningStack) -> None:
    assert stack.process is not None
    poison = {owner: put_poison(stack.process, owner) for owner in POISON_OWNERS}
    started = time.monotonic()
    bob = token("bob")
    created = [
        stack.request("POST", "/api/v1/jobs", token=bob, body={"title": f"after {n}", "type": "noop"}) for n in range(3)
    ]
    assert [reply.status for reply in created] == [201, 201, 201]

    def succeeded(job_id: str) -> bool:
        return bool(stack.request("GET", f"/api/v1/jobs/{job_id}", token=bob).body["status"] == "SUCCEEDED")

    def failed(owner: str, job_id: str) -> dict[str, Any] | None:
        assert stack.process is not None
        found = status_in_table(stack.process, owner, job_id)
        return found if found["status"] == "FAILED" else None

    for reply in created:
        until(partial(succeeded, reply.body["job_id"]), 20, f"bob's job {reply.body['job_id']} SUCCEEDED")
    done_after = time.monotonic() - started
    print(f"\nbob's 3 jobs SUCCEEDED {done_after:.1f} s after {len(poison)} poison items were written")
    for owner, job_id in poison.items():
        found = until(partial(failed, owner, job_id), 20, f"the poison job of {owner!r} FAILED")
        assert found["error"]["M"]["type"]["S"] == "InvalidOwner"
    assert done_after < 20


@pytest.fixture(scope="module")
def broken_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A stack whose outbox relay sends to a queue that does not exist (every send fails), with SQS's
    replacement switch on; the consumer and the reconciler use the real jobs queue."""
    directory = tmp_path_factory.mktemp("broken-relay")
    missing = "http://127.0.0.1:1/123456789012/jobs-local-NoSuchQueue"
    with running_stack(
        directory,
        secret=SECRET,
        function_environment={"EnqueueJobsFunction": {"JOBS_QUEUE_URL": missing}},
        environment={"JOBS_LOCAL_SQS_INVALID_CHARACTERS": "replace"},
        dynamodb="moto",
    ) as process:
        yield process


def submit(process: StackProcess, title: str) -> str:
    return submit_noop(process, title, secret=SECRET)


def discarded(process: StackProcess) -> int:
    sqs = client("sqs", process.aws_endpoint)
    url = process.physical["OutboxDiscardedBatchesQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def drop_discarded(process: StackProcess) -> None:
    """Delete every discarded batch (as the stream's 24 hours passing would make them useless); PurgeQueue allows
    one call a minute."""
    sqs = client("sqs", process.aws_endpoint)
    url = process.physical["OutboxDiscardedBatchesQueue"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def run_reconciler(process: StackProcess, payload: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    """``make replay-stream`` / ``make reconcile``: the reconciler through the stack's Lambda Invoke API."""
    port = process.lambda_url.rsplit(":", 1)[1]
    capsys.readouterr()  # what the test printed before is not the command's output
    assert invoke.main(["ReconcileJobsFunction", "--payload", json.dumps(payload), "--port", port]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_record_the_relay_cannot_send_is_discarded_then_replayed(
    broken_relay: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = submit(broken_relay, "replayed")
    started = time.monotonic()
    until(lambda: discarded(broken_relay) >= 1, 60, "the relay gave up on the record (bounded retries)")
    print(f"\nthe relay gave up on the record after {time.monotonic() - started:.1f} s")
    assert status_in_table(broken_relay, "alice", job_id)["status"] == "QUEUED"

    result = run_reconciler(broken_relay, {"reconcile": False}, capsys)

    assert result == {"replayed": 1, "reconciled": 0}
    until(lambda: status_in_table(broken_relay, "alice", job_id)["status"] == "SUCCEEDED", 20, "SUCCEEDED")
    assert discarded(broken_relay) == 0


def test_a_job_left_queued_without_its_batch_is_reconciled(
    broken_relay: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = submit(broken_relay, "reconciled")
    until(lambda: discarded(broken_relay) >= 1, 60, "the relay gave up on the record")
    drop_discarded(broken_relay)

    result = run_reconciler(broken_relay, {"replay": False, "reconcile_after_seconds": 1}, capsys)

    assert result["reconciled"] >= 1
    until(lambda: status_in_table(broken_relay, "alice", job_id)["status"] == "SUCCEEDED", 20, "SUCCEEDED")


def test_with_the_replacement_switch_on_a_poison_item_still_ends_terminal(broken_relay: StackProcess) -> None:
    job_id = put_poison(broken_relay, POISON_OWNERS[0])

    until(
        lambda: status_in_table(broken_relay, POISON_OWNERS[0], job_id)["status"] in ("FAILED", "SUCCEEDED"),
        60,
        "the poison job is terminal",
    )


def test_upgrade_rehearsal_a_queued_job_from_before_the_index_is_backfilled_and_reconciled(
    broken_relay: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # An item as the previous version wrote it: QUEUED, no queued_shard, and (the relay failing here) no message.
    job = JobService(InMemoryJobStore()).create_job("alice", JobCreate(title="legacy", type="noop"))
    item = job_to_item(job)
    del item["queued_shard"]
    client("dynamodb", broken_relay.dynamodb_endpoint).put_item(TableName=broken_relay.physical["JobsTable"], Item=item)
    until(lambda: discarded(broken_relay) >= 1, 60, "the relay gave up on the record")
    drop_discarded(broken_relay)
    time.sleep(1.1)

    unseen = run_reconciler(broken_relay, {"replay": False, "reconcile_after_seconds": 1}, capsys)
    backfilled = run_reconciler(broken_relay, {"backfill": True, "replay": False, "reconcile_after_seconds": 1}, capsys)

    assert unseen["reconciled"] == 0  # the index cannot show it until the backfill
    assert backfilled["reconciled"] >= 1
    until(lambda: status_in_table(broken_relay, "alice", job.job_id)["status"] == "SUCCEEDED", 20, "SUCCEEDED")
