"""Which stream records publish a Job State Change, and what it says (jobs.events.change_of)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.events import DELETED, TTL_IDENTITY, change_of


def image(status: str, **extra: Any) -> dict[str, Any]:
    found = {
        "owner_id": {"S": "alice"},
        "job_id": {"S": "01a22f1e-3884-7df7-84b5-9b1a127efb2e"},
        "type": {"S": "noop"},
        "status": {"S": status},
        "attempts": {"N": "1"},
        "payload": {"S": '{"secret": 1}'},
        "created_at": {"S": "2026-12-01T10:00:00.000Z"},
        "updated_at": {"S": "2026-12-01T10:00:05.250Z"},
    }
    found.update(extra)
    return found


def record(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"SequenceNumber": "4421584500000000017450439091", "ApproximateCreationDateTime": 1.8e9}
    if old is not None:
        change["OldImage"] = old
    if new is not None:
        change["NewImage"] = new
    return {"eventName": name, "dynamodb": change, **extra}


@pytest.mark.parametrize(
    "extra",
    [
        {"progress": {"M": {"percent": {"N": "50"}}}},
        {"checkpoint": {"M": {"n": {"N": "1"}}}},
        {"reconciled_at": {"S": "2026-12-01T11:00:00.000Z"}},
        {"attempts": {"N": "2"}, "run_id": {"S": "other"}},  # a lease taken over
        {"cancel_requested_at": {"S": "2026-12-01T10:00:06.000Z"}},
        {"expires_at": {"N": "1800000000"}},
    ],
)
def test_a_write_that_keeps_the_status_publishes_nothing(extra: dict[str, Any]) -> None:
    assert change_of(record("MODIFY", image("RUNNING"), image("RUNNING", **extra))) is None


def test_a_status_change_publishes_the_new_image_without_payload() -> None:
    error = {"M": {"type": {"S": "E"}, "message": {"S": "m"}}}
    change = change_of(record("MODIFY", image("RUNNING"), image("FAILED", error=error)))

    assert change is not None
    detail = change.detail.model_dump()
    assert (detail["previous_status"], detail["status"], detail["error"]) == (
        "RUNNING",
        "FAILED",
        {"type": "E", "message": "m"},
    )
    assert "payload" not in detail
    assert detail["version"] == "4421584500000000017450439091"
    assert change.time.isoformat() == "2026-12-01T10:00:05.250000+00:00"
    assert detail["priority"] == "NORMAL"  # an item written before priorities


def test_an_insert_has_no_previous_status() -> None:
    change = change_of(record("INSERT", None, image("QUEUED")))

    assert change is not None
    assert (change.detail.previous_status, change.detail.status) == (None, "QUEUED")


@pytest.mark.parametrize(("identity", "deleted_by"), [(None, "owner"), (TTL_IDENTITY, "expiry")])
def test_a_remove_is_deleted_by_the_owner_or_by_ttl(identity: dict[str, str] | None, deleted_by: str) -> None:
    extra = {"userIdentity": identity} if identity else {}
    change = change_of(record("REMOVE", image("SUCCEEDED"), None, **extra))

    assert change is not None
    assert (change.detail.previous_status, change.detail.status) == ("SUCCEEDED", DELETED)
    assert change.detail.deleted_by == deleted_by
    assert change.time.timestamp() == 1.8e9  # the deletion's time, not the job's last write


def test_another_services_identity_is_not_ttl() -> None:
    other = {"type": "Service", "principalId": "backup.amazonaws.com"}
    change = change_of(record("REMOVE", image("SUCCEEDED"), None, userIdentity=other))

    assert change is not None
    assert change.detail.deleted_by == "owner"


@pytest.mark.parametrize(
    "broken",
    [
        record("INSERT", None, None),  # a KEYS_ONLY record from before the upgrade: no image
        record("MODIFY", None, image("RUNNING")),
        {"eventName": "INSERT", "dynamodb": {"NewImage": image("QUEUED")}},  # no sequence number
        record("INSERT", None, {"status": {"S": "QUEUED"}}),  # no keys
    ],
)
def test_a_record_without_what_it_needs_publishes_nothing(broken: dict[str, Any]) -> None:
    assert change_of(broken) is None
