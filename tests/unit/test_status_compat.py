"""Compatibility of readers with statuses they do not know (issue 14, section 2): a status added by a newer
version, or met after a rollback, is read, shown and waited on, never a crash; requests still name known ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from jobs.models import Job, JobCreate, JobStatus, KnownStatus
from jobs.store import item_to_job, job_to_item

NOW = datetime(2026, 11, 29, 10, 43, 19, 123000, tzinfo=UTC)


def job(status: str, **fields: Any) -> Job:
    base = {
        "owner_id": "alice",
        "job_id": "019aced2-2b5b-7cc3-a1b1-4f1f1f1f1f1f",
        "title": "t",
        "type": "noop",
        "status": status,
        "payload": {},
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Job.model_validate(base | fields)


@pytest.mark.parametrize("status", ["PAUSED", "WAITING_FOR_INPUT", "ARCHIVED", "X"])
def test_a_status_this_version_does_not_know_is_read_and_written_back_unchanged(status: str) -> None:
    read = job(status)

    assert read.status == status
    assert not read.status.is_known
    assert not read.status.is_terminal
    assert read.model_dump(mode="json")["status"] == status
    assert item_to_job(job_to_item(read)) == read  # a DynamoDB item in a status this version does not know
    assert status not in [member.value for member in JobStatus]  # iteration is the known statuses only


@pytest.mark.parametrize("status", ["queued", "", "1ST", "A" * 40, "NOT A STATUS", 5, None])
def test_text_that_is_no_status_name_is_still_refused(status: object) -> None:
    with pytest.raises(ValidationError):
        job(status)  # type: ignore[arg-type]


def test_an_unknown_status_is_finished_exactly_when_finished_at_is_set() -> None:
    assert not job("PAUSED").is_finished
    assert job("ARCHIVED", finished_at=NOW).is_finished
    assert job("SUCCEEDED", finished_at=NOW).is_finished
    assert not job("RUNNING").is_finished


@pytest.mark.parametrize("status", ["PAUSED", "CANCELLEDX", "queued"])
def test_a_request_may_only_name_a_known_status(status: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(KnownStatus).validate_python(status)


def test_a_known_status_passes_the_request_rule() -> None:
    assert TypeAdapter(KnownStatus).validate_python("RUNNING") is JobStatus.RUNNING


def test_the_schema_of_a_jobs_status_stays_open_to_later_statuses() -> None:
    schema = Job.model_json_schema(mode="serialization")
    status = schema["properties"]["status"]

    assert status["anyOf"][0] == {"$ref": "#/$defs/JobStatus"}
    assert status["anyOf"][1]["type"] == "string"
    assert "enum" not in status["anyOf"][1]


class LaterJobCreate(JobCreate):
    """JobCreate as a later version may grow it: a field with a default."""

    channel: str = "default"  # not priority, which JobCreate has now (JobPriority or None)


def test_a_field_added_to_the_request_leaves_the_idempotency_view_of_requests_that_do_not_use_it() -> None:
    old_dump = {"title": "Audit", "type": "report", "payload": {"n": 1}}  # what the first JobCreate dumped

    unused = LaterJobCreate.model_validate({"title": "Audit", "payload": {"n": 1}})
    explicit_default = LaterJobCreate.model_validate({"title": "Audit", "payload": {"n": 1}, "channel": "default"})
    used = LaterJobCreate.model_validate({"title": "Audit", "payload": {"n": 1}, "channel": "email"})

    assert unused.idempotency_view() == old_dump
    assert explicit_default.idempotency_view() == old_dump
    assert used.idempotency_view() == old_dump | {"channel": "email"}
    assert JobCreate.model_validate(old_dump).idempotency_view() == old_dump
