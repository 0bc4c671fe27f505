"""Job State Change events: what a record of the Jobs table's stream says changed, and its publication on
EventBridge (``PutEvents``).

The publisher (functions/publish_events) is the stream's second reader, after the outbox relay. A record
publishes an event only when the job's status changed:

- ``INSERT``: the job was created (``status`` QUEUED, ``previous_status`` null);
- ``MODIFY`` whose old and new images hold different statuses (RUNNING, SUCCEEDED, FAILED, CANCELLED, or QUEUED
  again for a retry); a write that keeps the status (progress, a checkpoint, a continuation, which stays RUNNING
  released, a lease taken over, ``reconciled_at``, ``cancel_requested_at``, ``expires_at``) publishes nothing;
- ``REMOVE``: the job was deleted: ``status`` ``DELETED`` (a status of events only: the job is gone, GET answers
  404), ``previous_status`` its last status, and ``deleted_by`` ``expiry`` when DynamoDB's TTL deleted it (the
  record's ``userIdentity`` is ``{"type": "Service", "principalId": "dynamodb.amazonaws.com"}``: "Time to Live
  (TTL) and DynamoDB Streams", DynamoDB developer guide) or ``owner`` otherwise (the API's DELETE).

The event: ``Source`` ``EVENT_SOURCE``, ``DetailType`` ``Job State Change``, ``Time`` the change's (the new
image's ``updated_at``; for a delete, the record's ``ApproximateCreationDateTime``), ``Detail`` ``JobStateChange``
(docs/job-state-change.schema.json): never the payload, the result, the checkpoint or the progress.
``version`` is the record's ``SequenceNumber``: one per change, the same when a record is delivered again (the
delivery is at least once), and growing with each change of one job, as the stream gives one item's changes in
order ("Change data capture for DynamoDB Streams": "each stream record appears exactly once in the stream" and
"in the same sequence as the actual modifications to the item"). Compare versions as integers (up to 40 digits).

PutEvents takes at most 10 entries per call ("PutEvents", EventBridge API reference:
https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html), whose sizes, counted as
"Calculating PutEvents event entry size" says (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html),
must total less than 1 MB since 29 January 2026 (256 KB before; AWS Compute Blog, "More room to build:
serverless services now support payloads up to 1 MB"). A detail is at most a few KB (``error.message`` is at
most 1,024 characters, ``owner_id`` 255, the other fields short), so ten entries always fit, under either limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs import aws
from jobs.models import ServiceUnavailable
from jobs.store import from_attribute_value

#: The events' ``source``: the system's name; rules match on it.
EVENT_SOURCE = "chuck-norris.jobs"
#: The events' ``detail-type``.
DETAIL_TYPE = "Job State Change"
#: The ``status`` of a delete's event (a job never holds it).
DELETED = "DELETED"
#: PutEvents' most entries per call.
MAX_ENTRIES_PER_CALL = 10
#: The ``userIdentity`` of a stream record written by DynamoDB's TTL.
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


class JobError(BaseModel):
    """Why a job FAILED: its error's ``type`` and ``message``."""

    model_config = ConfigDict(extra="ignore")

    type: str | None = None
    message: str | None = None


class JobStateChange(BaseModel):
    """The ``detail`` of a Job State Change event (docs/job-state-change.schema.json is its JSON Schema).

    Timestamps are RFC 3339 text in UTC with milliseconds, as the API writes them; ``attempts`` counts the runs
    started; ``version`` is the stream record's sequence number (digits; compare as integers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    owner_id: str
    type: str | None
    priority: str
    status: str
    previous_status: str | None
    attempts: int
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    not_before: str | None
    error: JobError | None
    deleted_by: Literal["owner", "expiry"] | None = Field(description="Who deleted the job; null unless DELETED.")
    has_callback: bool = Field(
        default=False,
        description="True when the job was submitted with a callback_url (never the URL itself: it may hold a "
        "client's token); the callback rule matches final statuses with it.",
    )
    version: str = Field(pattern=r"^\d{1,40}$")


@dataclass(frozen=True)
class Change:
    """One stream record's event: its sequence number, ``detail``, and ``time`` (aware datetime)."""

    sequence_number: str
    detail: JobStateChange
    time: datetime

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The ``PutEventsRequestEntry`` of this change on ``bus_name``."""
        return {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": self.detail.model_dump_json(),
            "Time": self.time,
            "EventBusName": bus_name,
        }


def _image(change: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    image = change.get(name)
    if not isinstance(image, Mapping):
        return None
    return {key: from_attribute_value(value) for key, value in image.items()}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(text: Any, fallback: Any) -> datetime:
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    if isinstance(fallback, int | float) and not isinstance(fallback, bool):
        return datetime.fromtimestamp(float(fallback), UTC)
    return datetime.now(UTC)


def change_of(record: Mapping[str, Any]) -> Change | None:
    """The event a stream record (Lambda's DynamoDB event format, ``NEW_AND_OLD_IMAGES``) publishes, or None
    when it publishes none: not a status change, or a record without the image it needs or a sequence number
    (a malformed record: retrying cannot help, so it is settled)."""
    change = record.get("dynamodb")
    if not isinstance(change, Mapping) or not isinstance(change.get("SequenceNumber"), str):
        return None
    name = record.get("eventName")
    old, new = _image(change, "OldImage"), _image(change, "NewImage")
    if name == "INSERT" and new is not None:
        image, status, previous = new, new.get("status"), None
    elif name == "MODIFY" and new is not None and old is not None and old.get("status") != new.get("status"):
        image, status, previous = new, new.get("status"), old.get("status")
    elif name == "REMOVE" and old is not None:
        image, status, previous = old, DELETED, old.get("status")
    else:
        return None
    if not (isinstance(image.get("job_id"), str) and isinstance(image.get("owner_id"), str)) or not status:
        return None
    deleted_by: Literal["owner", "expiry"] | None = None
    if name == "REMOVE":
        deleted_by = "expiry" if record.get("userIdentity") == TTL_IDENTITY else "owner"
    error = image.get("error")
    attempts = image.get("attempts", 0)
    detail = JobStateChange(
        job_id=image["job_id"],
        owner_id=image["owner_id"],
        type=_text(image.get("type")),
        priority=_text(image.get("priority")) or "NORMAL",
        status=str(status),
        previous_status=_text(previous),
        attempts=attempts if isinstance(attempts, int) else 0,
        created_at=_text(image.get("created_at")),
        updated_at=_text(image.get("updated_at")),
        started_at=_text(image.get("started_at")),
        finished_at=_text(image.get("finished_at")),
        not_before=_text(image.get("not_before")),
        error=JobError.model_validate(error) if isinstance(error, Mapping) else None,
        deleted_by=deleted_by,
        has_callback=isinstance(image.get("callback_url"), str),
        version=change["SequenceNumber"],
    )
    when = change.get("ApproximateCreationDateTime")
    return Change(change["SequenceNumber"], detail, _time(None if name == "REMOVE" else image.get("updated_at"), when))


class EventPublisher:
    """Publishes changes on one EventBridge bus, ten per ``PutEvents`` call, in order.

    Args:
        bus_name: the bus's name or ARN.
        client: a boto3 ``events`` client; the process's cached one when omitted.
        published: called with each change EventBridge accepted and its event id (the publisher's log line).
    """

    def __init__(
        self,
        bus_name: str,
        client: Any | None = None,
        published: Callable[[Change, str], None] | None = None,
    ) -> None:
        self.bus_name = bus_name
        self._client = client
        self._published = published

    @property
    def client(self) -> Any:
        """The boto3 EventBridge client, created on first use."""
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, changes: Sequence[Change]) -> int:
        """Put ``changes`` on the bus in order; returns how many, from the first, EventBridge accepted.

        A call that fails for a reason a retry may cure (throttled, EventBridge's own failure, no time left in the
        invocation), or whose response lists an entry as failed (``FailedEntryCount``, ``Entries[].ErrorCode``),
        stops there: the changes from the first one not accepted on are not tried (entries after a failed one in
        the same call may have been put, and are put again when the stream gives them back: same ``version``).

        Raises:
            botocore.exceptions.ClientError: a refusal a retry cannot cure (access denied, a bus that does not
                exist, a request EventBridge finds invalid).
        """
        done = 0
        for start in range(0, len(changes), MAX_ENTRIES_PER_CALL):
            chunk = changes[start : start + MAX_ENTRIES_PER_CALL]
            try:
                with aws.transient_errors_as_unavailable("PutEvents"):
                    response = self.client.put_events(Entries=[change.entry(self.bus_name) for change in chunk])
            except ServiceUnavailable:
                return done
            for change, result in zip(chunk, response.get("Entries", []), strict=False):
                if result.get("ErrorCode") or not result.get("EventId"):
                    return done
                if self._published is not None:
                    self._published(change, str(result["EventId"]))
                done += 1
            if len(response.get("Entries", [])) < len(chunk):
                return done
        return done


def detail_json(change: Change) -> dict[str, Any]:
    """The ``detail`` of ``change`` as JSON data (what a subscriber receives)."""
    data: dict[str, Any] = json.loads(change.detail.model_dump_json())
    return data
