"""Priority (issue 15, part 2) through the handlers, against moto: the API stores and returns a job's level and
gates HIGH behind the scope HighPriorityScope names; the outbox relay sends each level's message to its own
queue; the consumer's hand-backs and continuations stay on the queue their record came from."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobs.models import JobPriority
from local.poller import to_record
from local.resources import LocalStack
from local.stack import parse_overrides
from tests.conftest import Aws
from tests.helpers import ROOT, FakeLambdaContext, api_event, load_event, load_function, sign
from tests.integration.test_api_handler import call

SEED = load_event("seed-payload.json")
#: The queue of each level (logical ids of template.yaml).
QUEUES = {"HIGH": "JobsHighPriorityQueue", "NORMAL": "JobsQueue", "LOW": "JobsLowPriorityQueue"}


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def post(api: ModuleType, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, str], Any]:
    return call(api, api_event("create_job", token=token or sign("alice"), body=body))


def stored(aws: Aws, job_id: str, owner: str = "alice") -> dict[str, Any]:
    key = {"owner_id": {"S": owner}, "job_id": {"S": job_id}}
    return dict(aws.dynamodb.get_item(TableName=aws.table_name, Key=key, ConsistentRead=True)["Item"])


def body(**fields: Any) -> dict[str, Any]:
    return {"title": "prio", "type": "noop", "payload": {}} | fields


def scope_required(monkeypatch: pytest.MonkeyPatch, scope: str) -> None:
    """Deploy with HighPriorityScope=``scope`` (the template passes it as JOBS_HIGH_PRIORITY_SCOPE)."""
    from jobs import bootstrap, settings

    monkeypatch.setenv("JOBS_HIGH_PRIORITY_SCOPE", scope)
    bootstrap.reset()
    settings.auth_settings.cache_clear()


# --- the API -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["HIGH", "NORMAL", "LOW"])
def test_a_requested_priority_is_stored_and_returned(api: ModuleType, aws: Aws, level: str) -> None:
    status, _, job = post(api, body(priority=level))

    _, _, got = call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))
    _, _, listed = call(api, api_event("list_jobs", token=sign("alice")))

    assert status == 201
    assert job["priority"] == got["priority"] == listed["items"][0]["priority"] == level
    assert stored(aws, job["job_id"])["priority"] == {"S": level}


def test_a_job_without_priority_is_normal(api: ModuleType, aws: Aws) -> None:
    status, _, job = post(api, body())

    assert (status, job["priority"]) == (201, "NORMAL")
    assert stored(aws, job["job_id"])["priority"] == {"S": "NORMAL"}


def test_the_seeds_payload_priority_is_honoured_and_kept_in_the_payload(api: ModuleType, aws: Aws) -> None:
    assert SEED["payload"]["priority"] == "HIGH"  # the seed's own example asks for HIGH this way

    status, _, job = post(api, SEED)

    assert status == 201
    assert job["priority"] == "HIGH"
    assert job["payload"] == SEED["payload"]
    assert stored(aws, job["job_id"])["priority"] == {"S": "HIGH"}


@pytest.mark.parametrize("value", ["high", 3, None, "URGENT"])
def test_another_payload_priority_is_payload_data_and_the_job_is_normal(api: ModuleType, value: object) -> None:
    status, _, job = post(api, body(payload={"priority": value}))

    assert (status, job["priority"], job["payload"]) == (201, "NORMAL", {"priority": value})


def test_the_top_level_priority_wins_over_the_payloads(api: ModuleType) -> None:
    status, _, job = post(api, body(priority="LOW", payload={"priority": "HIGH"}))

    assert (status, job["priority"]) == (201, "LOW")


@pytest.mark.parametrize("value", ["URGENT", "high", "", 1, ["HIGH"]])
def test_an_unknown_priority_is_a_422_and_nothing_is_written(api: ModuleType, aws: Aws, value: object) -> None:
    status, headers, problem = post(api, body(priority=value))

    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert any(error["loc"][-1] == "priority" for error in problem["errors"])
    assert aws.item_count() == 0


@pytest.mark.parametrize(
    "request_body", [body(priority="HIGH"), body(payload={"priority": "HIGH"}), SEED], ids=["top", "payload", "seed"]
)
def test_high_without_the_scope_is_a_403_and_nothing_is_written(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch, request_body: dict[str, Any]
) -> None:
    scope_required(monkeypatch, "jobs:high")

    for token in (sign("alice"), sign("alice", scope="jobs:read jobs:write"), sign("alice", scp=["jobs:hig"])):
        status, headers, problem = post(api, request_body, token)

        assert status == 403
        assert headers["Content-Type"] == "application/problem+json"
        assert problem["status"] == 403
        assert "jobs:high" in problem["detail"]
    assert aws.item_count() == 0


@pytest.mark.parametrize(
    "claims",
    [{"scope": "jobs:high"}, {"scope": "jobs:read jobs:high"}, {"scp": ["jobs:high"]}, {"scp": "jobs:write jobs:high"}],
)
def test_high_with_the_scope_is_created(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch, claims: dict[str, Any]
) -> None:
    scope_required(monkeypatch, "jobs:high")

    status, _, job = post(api, body(priority="HIGH"), sign("alice", **claims))

    assert (status, job["priority"]) == (201, "HIGH")
    assert aws.item_count() == 1


@pytest.mark.parametrize("request_body", [body(priority="NORMAL"), body(priority="LOW"), body()])
def test_normal_and_low_need_no_scope(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch, request_body: dict[str, Any]
) -> None:
    scope_required(monkeypatch, "jobs:high")

    assert post(api, request_body)[0] == 201


def test_an_empty_scope_setting_lets_anyone_ask_for_high(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    scope_required(monkeypatch, "")

    status, _, job = post(api, body(priority="HIGH"))

    assert (status, job["priority"]) == (201, "HIGH")


# --- the relay -----------------------------------------------------------------------------------------------


def insert_record(aws: Aws, job_id: str, sequence: int, *, keys_only: bool = False) -> dict[str, Any]:
    """The stream's INSERT record of a stored job: its new image (NEW_AND_OLD_IMAGES), or only its keys (a
    KEYS_ONLY record from before the stream's upgrade)."""
    item = stored(aws, job_id)
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": 1795949527,
        "Keys": {"owner_id": item["owner_id"], "job_id": item["job_id"]},
        "SequenceNumber": str(4421584500000000017450439000 + sequence),
        "SizeBytes": 300,
        "StreamViewType": "KEYS_ONLY" if keys_only else "NEW_AND_OLD_IMAGES",
    }
    if not keys_only:
        change["NewImage"] = item
    return {
        "eventID": f"event-{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/jobs-local-JobsTable/stream/2026-12-01",
    }


def queued(aws: Aws) -> dict[str, list[dict[str, Any]]]:
    """The messages on each level's queue (received, left in flight)."""
    return {level: aws.messages(aws.physical[name]["Ref"]) for level, name in QUEUES.items()}


def job_ids(messages: list[dict[str, Any]]) -> set[str]:
    return {json.loads(message["Body"])["job_id"] for message in messages}


@pytest.mark.parametrize("keys_only", [False, True], ids=["new image", "keys only"])
def test_the_relay_sends_each_level_to_its_own_queue(api: ModuleType, aws: Aws, keys_only: bool) -> None:
    levels = ["HIGH", "NORMAL", "LOW", "HIGH", "LOW"]
    jobs = [post(api, body(priority=level))[2] for level in levels]
    jobs.append(post(api, SEED)[2])  # HIGH from the payload
    event = {"Records": [insert_record(aws, job["job_id"], n, keys_only=keys_only) for n, job in enumerate(jobs)]}

    response = load_function("enqueue_jobs").lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    on = queued(aws)
    for level in QUEUES:
        assert job_ids(on[level]) == {job["job_id"] for job in jobs if job["priority"] == level}
    assert {m["Attributes"]["MessageGroupId"] for ms in on.values() for m in ms} == {"alice"}


# --- the consumer --------------------------------------------------------------------------------------------


def enqueue(api: ModuleType, aws: Aws, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create the jobs through the API and send their messages through the relay, as the stream would."""
    jobs = [post(api, request)[2] for request in requests]
    event = {"Records": [insert_record(aws, job["job_id"], n) for n, job in enumerate(jobs)]}
    assert load_function("enqueue_jobs").lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    return jobs


def receive(aws: Aws, level: str) -> dict[str, Any]:
    """An SQS event of the messages on ``level``'s queue, as its event source mapping builds it."""
    queue = aws.physical[QUEUES[level]]
    messages = aws.messages(queue["Ref"])
    return {"Records": [to_record(message, queue["Arn"]) for message in messages]}


@pytest.mark.parametrize("level", ["HIGH", "LOW"])
def test_a_handed_back_job_goes_back_to_the_queue_its_record_came_from(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    # Too little time left to start any job but the invocation's first: the others are sent again as new messages.
    monkeypatch.setenv("JOBS_MIN_START_SECONDS", "900")
    jobs = enqueue(api, aws, [body(priority=level) for _ in range(3)])
    event = receive(aws, level)
    assert len(event["Records"]) == 3

    response = load_function("process_jobs").lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    statuses = [call(api, api_event("get_job", token=sign("alice"), job_id=j["job_id"]))[2]["status"] for j in jobs]
    assert sorted(statuses) == ["QUEUED", "QUEUED", "SUCCEEDED"]
    on = queued(aws)
    handed_back = {job["job_id"] for job, status in zip(jobs, statuses, strict=True) if status == "QUEUED"}
    assert job_ids(on[level]) == handed_back
    assert [len(messages) for other, messages in on.items() if other != level] == [0, 0]


@pytest.mark.parametrize("level", ["HIGH", "LOW", "NORMAL"])
def test_a_continued_job_continues_on_its_own_queue(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("JOBS_FAULT_INJECTION", "1")
    (job,) = enqueue(
        api, aws, [{"title": "steps", "type": "steps", "payload": {"steps": 2, "per_run": 1}} | {"priority": level}]
    )

    first = load_function("process_jobs").lambda_handler(receive(aws, level), FakeLambdaContext())
    on = queued(aws)

    assert first == {"batchItemFailures": []}
    assert job_ids(on[level]) == {job["job_id"]}  # the continuation's message
    assert sum(len(messages) for messages in on.values()) == 1

    records = [to_record(message, aws.physical[QUEUES[level]]["Arn"]) for message in on[level]]
    second = load_function("process_jobs").lambda_handler({"Records": records}, FakeLambdaContext())
    done = call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))[2]

    assert second == {"batchItemFailures": []}
    assert (done["status"], done["priority"], done["result"]) == ("SUCCEEDED", level, {"done": 2, "runs": 2})


def test_priorities_are_the_three_the_template_has_queues_for() -> None:
    assert set(QUEUES) == {level.value for level in JobPriority}


@pytest.mark.parametrize(("overrides", "scope"), [({}, ""), ({"HighPriorityScope": "jobs:high"}, "jobs:high")])
def test_the_scope_parameter_reaches_the_api_function_locally(overrides: dict[str, str], scope: str) -> None:
    # make run: JOBS_PARAMETER_OVERRIDES="HighPriorityScope=jobs:high" (local.stack.parse_overrides)
    assert parse_overrides(" ".join(f"{k}={v}" for k, v in overrides.items())) == overrides
    with mock_aws():
        stack = LocalStack(ROOT / "template.yaml", boto3.client, parameter_overrides=overrides)
        stack.create_all()
        api = next(spec for spec in stack.functions() if spec.logical_id == "ApiFunction")

    assert api.environment["JOBS_HIGH_PRIORITY_SCOPE"] == scope
