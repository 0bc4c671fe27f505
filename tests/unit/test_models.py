"""Request and record models: what a job request may hold, and how jobs serialise."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from jobs.models import MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, Job, JobCreate, JobStatus, format_timestamp


def test_a_request_defaults_to_a_report_with_an_empty_payload() -> None:
    request = JobCreate.model_validate({"title": "  Audit  "})

    assert (request.title, request.type, request.payload) == ("Audit", "report", {})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": 5},
        {"title": "x" * 201},
        {"title": "ok", "payload": []},
        {"title": "ok", "payload": "text"},
        {"title": "ok", "unknown": 1},
        {"title": "ok", "type": ""},
        {"title": "ok", "payload": {"n": float("nan")}},
        {"title": "ok", "payload": {"n": float("inf")}},
        {"title": "ok", "payload": {"n": 10**38}},
        {"title": "ok", "payload": {"n": 1e130}},
    ],
)
def test_malformed_requests_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobCreate.model_validate(body)


def test_a_payload_nested_deeper_than_dynamodb_allows_is_rejected() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(MAX_PAYLOAD_DEPTH):
        node["d"] = {}
        node = node["d"]  # type: ignore[assignment]

    with pytest.raises(ValidationError, match="deeper"):
        JobCreate.model_validate({"title": "deep", "payload": deep})


def test_a_payload_larger_than_the_limit_is_rejected() -> None:
    with pytest.raises(ValidationError, match="bytes"):
        JobCreate.model_validate({"title": "big", "payload": {"blob": "x" * MAX_PAYLOAD_BYTES}})


def test_a_job_never_serialises_its_owner() -> None:
    now = datetime(2026, 11, 29, 10, 43, 19, 123000, tzinfo=UTC)
    job = Job(
        owner_id="alice",
        job_id="01a226ee-fede-7c74-8f78-130f6101394b",
        title="t",
        type="noop",
        status=JobStatus.QUEUED,
        payload={},
        created_at=now,
        updated_at=now,
    )

    data = json.loads(job.model_dump_json())

    assert "owner_id" not in data
    assert data["created_at"] == "2026-11-29T10:43:19.123Z"


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"


def _reference_text(value: datetime) -> str:
    """The rule format_timestamp follows, written the slow, obvious way."""
    m = value.astimezone(UTC)
    day = f"{m.year:04d}-{m.month:02d}-{m.day:02d}"
    return f"{day}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond // 1000:03d}Z"


#: Every kind of aware datetime a model holds: datetime.UTC, pydantic's own UTC tzinfo (what validating a stored
#: "...Z" gives), other zero offsets, non-zero offsets (either side, minutes included), whole seconds, sub-millisecond
#: parts (cut, never rounded), years below 1000, and both ends of the calendar.
_TIMESTAMP_TEXTS = [
    "2026-12-01T07:54:47.123Z",
    "2026-12-01T07:54:47Z",
    "2026-12-01T07:54:47.000Z",
    "2026-12-01T07:54:47.999999Z",
    "2026-12-01T07:54:47.000999Z",
    "2026-12-01T07:54:47.5+00:00",
    "2026-12-01T07:54:47.5-00:00",
    "2026-12-01T00:30:00.250+01:00",
    "2026-12-31T23:59:59.999-05:30",
    "0999-01-01T00:00:00.001Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
]


@pytest.mark.parametrize("text", _TIMESTAMP_TEXTS)
def test_a_timestamp_of_any_offset_or_precision_is_written_in_utc_with_milliseconds(text: str) -> None:
    parsed = TypeAdapter(datetime).validate_python(text)  # pydantic's tzinfo, as read from the table
    values = [parsed, parsed.astimezone(UTC)]
    if parsed.year > 1:
        values.append(parsed.astimezone(timezone(timedelta(hours=-7))))
    for value in values:
        assert format_timestamp(value) == _reference_text(value)


def test_many_timestamps_match_the_rule() -> None:
    chance = random.Random(20261201)  # noqa: S311 - test data, seeded
    for _ in range(5_000):
        offset = timezone(timedelta(minutes=chance.randrange(-1439, 1440)))
        moment = datetime(1, 1, 2, tzinfo=UTC) + timedelta(microseconds=chance.randrange(315_500_000_000_000_000))
        value = moment.astimezone(offset)
        assert format_timestamp(value) == _reference_text(value), value


def test_only_succeeded_failed_and_cancelled_are_terminal() -> None:
    assert [s for s in JobStatus if s.is_terminal] == [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


@pytest.mark.parametrize(
    "title",
    [
        "nul\x00here",
        "tab\there",
        "new\nline",
        "escape\x1b[31m",
        "del\x7f",
        "next\x85line",
        "lone \ud800 surrogate",
        "\udfff",
    ],
    ids=["NUL", "tab", "newline", "ESC", "DEL", "NEL (C1)", "high surrogate", "low surrogate"],
)
def test_a_title_with_a_control_character_or_a_lone_surrogate_is_rejected(title: str) -> None:
    with pytest.raises(ValidationError):
        JobCreate.model_validate({"title": title})


@pytest.mark.parametrize(
    "payload",
    [{"s": "nul\x00"}, {"s": "bell\x07"}, {"k\x00ey": 1}, {"s": "\ud83d"}, {"\udc00": 1}, {"list": ["ok", "\x1f"]}],
    ids=["NUL in a value", "BEL in a value", "NUL in a key", "lone surrogate value", "lone surrogate key", "in a list"],
)
def test_a_payload_with_a_control_character_or_a_lone_surrogate_is_rejected(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobCreate.model_validate({"title": "ok", "payload": payload})


VALID_UNICODE = (
    "Chuck 🥋 Norris — 空手 ﷽ עברית e\u0301 👩‍👩‍👧 \U0001f600 \u00a0\u200b\u2028 \U0001d518\U0001d52b\U0001d526"
)


def test_valid_unicode_is_kept_exactly_with_tab_cr_lf_allowed_in_payload_strings() -> None:
    payload = {"text": VALID_UNICODE, VALID_UNICODE: "key", "multi": "line 1\r\nline 2\tend"}

    request = JobCreate.model_validate({"title": VALID_UNICODE, "payload": payload})

    assert request.title == VALID_UNICODE
    assert request.payload == payload
