"""Priority (issue 15, part 2): which level a request asks for, how stored jobs read it back, the token's scopes
that may gate HIGH, the owner's message group, and which queue each level's message goes to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws
from pydantic import ValidationError

from jobs.auth import Principal, issue_token
from jobs.models import Job, JobCreate, JobMessage, JobPriority
from jobs.queue import Dispatch, SqsJobQueue, message_group_id
from jobs.store import item_to_job, job_to_item
from local import token as local_token

NOW = datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=UTC)

# --- the effective priority of a request ------------------------------------------------------------------


@pytest.mark.parametrize("level", ["HIGH", "NORMAL", "LOW"])
def test_a_top_level_priority_is_the_jobs_priority(level: str) -> None:
    request = JobCreate.model_validate({"title": "t", "priority": level})

    assert request.priority == level
    assert request.effective_priority == JobPriority(level)


@pytest.mark.parametrize(("top", "payload"), [("LOW", "HIGH"), ("NORMAL", "HIGH"), ("HIGH", "LOW")])
def test_the_top_level_priority_wins_over_the_payloads(top: str, payload: str) -> None:
    request = JobCreate.model_validate({"title": "t", "priority": top, "payload": {"priority": payload}})

    assert request.effective_priority == JobPriority(top)
    assert request.payload == {"priority": payload}  # the payload is kept as sent


@pytest.mark.parametrize("level", ["HIGH", "NORMAL", "LOW"])
def test_without_a_top_level_priority_the_payloads_exact_level_is_taken(level: str) -> None:
    request = JobCreate.model_validate({"title": "t", "payload": {"priority": level}})

    assert request.priority is None
    assert request.effective_priority == JobPriority(level)


@pytest.mark.parametrize("value", ["high", "High", " HIGH", "HIGH ", 3, 1.5, None, True, "URGENT", ["HIGH"], {}])
def test_any_other_payload_priority_stays_payload_data_and_the_job_is_normal(value: object) -> None:
    request = JobCreate.model_validate({"title": "t", "payload": {"priority": value}})

    assert request.effective_priority == JobPriority.NORMAL
    assert request.payload == {"priority": value}


def test_no_priority_anywhere_is_normal() -> None:
    assert JobCreate.model_validate({"title": "t"}).effective_priority == JobPriority.NORMAL


@pytest.mark.parametrize("value", ["URGENT", "high", "", "CRITICAL", "HIGH ", 1, True, ["HIGH"], {"level": "HIGH"}])
def test_an_unknown_top_level_priority_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        JobCreate.model_validate({"title": "t", "priority": value})

    assert [error["loc"] for error in raised.value.errors()] == [("priority",)]


def test_a_null_top_level_priority_is_as_absent() -> None:
    request = JobCreate.model_validate({"title": "t", "priority": None, "payload": {"priority": "LOW"}})

    assert request.effective_priority == JobPriority.LOW


# --- stored jobs ---------------------------------------------------------------------------------------------


def job_item(**fields: Any) -> dict[str, Any]:
    base = {
        "owner_id": "alice",
        "job_id": "019aced2-2b5b-7cc3-a1b1-4f1f1f1f1f1f",
        "title": "t",
        "type": "noop",
        "status": "QUEUED",
        "payload": {},
        "created_at": NOW,
        "updated_at": NOW,
    }
    return base | fields


def test_a_job_stored_before_priorities_reads_as_normal() -> None:
    item = job_to_item(Job.model_validate(job_item()))
    item.pop("priority", None)

    job = item_to_job(item)

    assert job.priority == JobPriority.NORMAL
    assert job.model_dump(mode="json")["priority"] == "NORMAL"


@pytest.mark.parametrize("level", ["HIGH", "NORMAL", "LOW"])
def test_a_stored_priority_comes_back(level: str) -> None:
    job = Job.model_validate(job_item(priority=level))

    assert item_to_job(job_to_item(job)).priority == JobPriority(level)


@pytest.mark.parametrize("level", ["URGENT", "BACKGROUND", "BULK_LATER"])
def test_a_level_a_later_version_stored_is_read_and_written_back_unchanged(level: str) -> None:
    job = Job.model_validate(job_item(priority=level))

    assert job.priority == level
    assert not job.priority.is_known
    assert job.model_dump(mode="json")["priority"] == level
    assert item_to_job(job_to_item(job)) == job
    assert level not in [member.value for member in JobPriority]


# --- the token's scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({}, set()),
        ({"scope": "jobs:high"}, {"jobs:high"}),
        ({"scope": "jobs:read jobs:high"}, {"jobs:read", "jobs:high"}),
        ({"scope": "a  b "}, {"a", "b"}),
        ({"scope": ""}, set()),
        ({"scp": ["jobs:high", "jobs:read"]}, {"jobs:high", "jobs:read"}),
        ({"scp": "jobs:high jobs:read"}, {"jobs:high", "jobs:read"}),
        ({"scp": []}, set()),
        ({"scope": "a b", "scp": ["c"]}, {"a", "b", "c"}),
        ({"scope": "a", "scp": "a b"}, {"a", "b"}),
    ],
)
def test_scopes_come_from_the_scope_and_scp_claims(claims: dict[str, Any], scopes: set[str]) -> None:
    assert Principal("alice", {"sub": "alice", **claims}).scopes == scopes


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": 5},
        {"scope": None},
        {"scope": {"jobs:high": True}},
        {"scp": 1},
        {"scp": [1, None, {"a": 1}, ["nested"]]},
        {"scp": {"jobs:high": True}},
        {"scp": True},
    ],
)
def test_a_scope_claim_of_another_shape_grants_nothing(claims: dict[str, Any]) -> None:
    assert Principal("alice", {"sub": "alice", **claims}).scopes == frozenset()


def test_only_the_strings_of_a_mixed_scp_list_count() -> None:
    assert Principal("alice", {"scp": ["jobs:high", 7, None]}).scopes == {"jobs:high"}


# --- routing -------------------------------------------------------------------------------------------------


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def queues(sqs: Any, *levels: JobPriority) -> dict[JobPriority, str]:
    return {level: sqs.create_queue(QueueName=f"jobs-{level.value}")["QueueUrl"] for level in levels}


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", []):
        found.extend(batch)
    return found


def dispatch(job_id: str, priority: JobPriority, owner: str = "alice") -> Dispatch:
    return Dispatch(message=JobMessage(owner_id=owner, job_id=job_id), priority=priority)


def job_ids(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(json.loads(message["Body"])["job_id"] for message in messages)


def test_each_dispatch_lands_on_its_prioritys_queue_with_its_owners_group(sqs: Any) -> None:
    urls = queues(sqs, *JobPriority)
    queue = SqsJobQueue(urls, client=sqs)
    long_owner = "o" * 200
    sent = [
        dispatch("h1", JobPriority.HIGH),
        dispatch("n1", JobPriority.NORMAL),
        dispatch("l1", JobPriority.LOW, owner=long_owner),
        dispatch("h2", JobPriority.HIGH, owner="bob"),
        dispatch("n2", JobPriority.NORMAL, owner=long_owner),
    ]

    results = queue.send_batch(sent)

    assert all(result.sent for result in results)
    received = {level: drain(sqs, url) for level, url in urls.items()}
    assert job_ids(received[JobPriority.HIGH]) == ["h1", "h2"]
    assert job_ids(received[JobPriority.NORMAL]) == ["n1", "n2"]
    assert job_ids(received[JobPriority.LOW]) == ["l1"]
    groups = {
        json.loads(m["Body"])["job_id"]: m["Attributes"]["MessageGroupId"] for ms in received.values() for m in ms
    }
    assert groups == {
        "h1": "alice",
        "n1": "alice",
        "h2": "bob",
        "l1": message_group_id(long_owner),
        "n2": message_group_id(long_owner),
    }


def test_a_level_without_a_queue_url_goes_to_normals(sqs: Any) -> None:
    urls = queues(sqs, JobPriority.NORMAL)
    queue = SqsJobQueue(urls, client=sqs)

    results = queue.send_batch([dispatch("h", JobPriority.HIGH), dispatch("l", JobPriority.LOW)])

    assert all(result.sent for result in results)
    assert job_ids(drain(sqs, urls[JobPriority.NORMAL])) == ["h", "l"]
    assert queue.queue_url(JobPriority("URGENT")) == urls[JobPriority.NORMAL]  # a later version's level


def test_a_level_a_later_version_added_goes_to_normals_queue(sqs: Any) -> None:
    urls = queues(sqs, *JobPriority)
    queue = SqsJobQueue(urls, client=sqs)

    (result,) = queue.send_batch([dispatch("u", JobPriority("URGENT"))])

    assert result.sent
    assert job_ids(drain(sqs, urls[JobPriority.NORMAL])) == ["u"]


def test_the_queue_a_record_came_from_names_its_priority(sqs: Any) -> None:
    urls = queues(sqs, *JobPriority)
    queue = SqsJobQueue(urls, client=sqs)

    for level, url in urls.items():
        name = url.rsplit("/", 1)[-1]
        assert queue.priority_of(f"arn:aws:sqs:us-east-1:123456789012:{name}") == level
    assert queue.priority_of("arn:aws:sqs:us-east-1:123456789012:some-other-queue") == JobPriority.NORMAL


def test_a_queue_without_normals_url_is_refused() -> None:
    with pytest.raises(ValueError, match="NORMAL"):
        SqsJobQueue({JobPriority.HIGH: "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-HIGH"})


# --- the local token tool ------------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_the_token_tool_adds_the_scopes_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_token.main(["--sub", "alice", "--scope", "jobs:high  jobs:read"]) == 0

    claims = claims_of(capsys.readouterr().out.strip())

    assert claims["scope"] == "jobs:high jobs:read"
    assert Principal("alice", claims).scopes == {"jobs:high", "jobs:read"}


@pytest.mark.parametrize(
    "argv", [["--sub", "alice"], ["--sub", "alice", "--scope", ""], ["--sub", "alice", "--scope", "  "]]
)
def test_without_scopes_the_token_has_no_scope_claim(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert local_token.main(argv) == 0

    assert "scope" not in claims_of(capsys.readouterr().out.strip())


@pytest.mark.parametrize("scopes", [[""], ["a b"], ["ok", ""]])
def test_issue_token_refuses_a_scope_that_is_not_one_word(scopes: list[str]) -> None:
    with pytest.raises(ValueError, match="scope"):
        issue_token("secret-long-enough-for-hs256-0123456789abcdef", "alice", scopes=scopes)
