"""Models at every boundary (request, response, DynamoDB item, SQS message) and the domain errors.

Timestamps are timezone-aware UTC ``datetime`` values, written as RFC 3339 strings with millisecond
precision and a ``Z`` suffix (``2026-11-29T10:43:19.123Z``), so that their string order is their time order.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    PlainSerializer,
    PrivateAttr,
    RootModel,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue

#: DynamoDB allows 32 levels of nested attributes (DynamoDB developer guide, "Quotas": nested attributes).
MAX_PAYLOAD_DEPTH = 32
#: A payload's size as compact UTF-8 JSON, bytes: far below DynamoDB's 400 KB item limit, with room for the
#: result and the other attributes.
MAX_PAYLOAD_BYTES = 64 * 1024
#: A result's size, measured as a payload's: twice the payload's limit, since a result may record what its payload
#: held (the report records ``target_user_ids`` as given). With every other field at its limit an item stays far
#: under DynamoDB's 400 KB (a payload or result of N bytes of JSON takes at most 1.5 N in DynamoDB: a list of
#: one-digit numbers), and a job's JSON, escaped into the API function's response, at most about 600 KB.
MAX_RESULT_BYTES = 128 * 1024
#: The longest ``error.message`` stored, characters; a longer one (an exception's text) is cut to this length.
MAX_ERROR_MESSAGE_LENGTH = 1024
#: The longest ``error.type`` stored, characters.
MAX_ERROR_TYPE_LENGTH = 128
MAX_TITLE_LENGTH = 200
#: The longest ``callback_url``, in characters (the common 2,048 limit of browsers and CDNs for a URL; the rest of
#: the rule is ``jobs.webhooks.check_callback_url``'s).
MAX_CALLBACK_URL_LENGTH = 2048
#: The longest delay this system asks of ChangeMessageVisibility for a retry, seconds.
MAX_VISIBILITY_SECONDS = 900
#: SQS's longest visibility timeout, seconds: 12 hours, counted from the message's receive (ChangeMessageVisibility,
#: SQS API reference); a scheduled job's message hides at most this long per receive.
SQS_MAX_VISIBILITY_SECONDS = 43200
#: The largest request body the API reads, bytes as sent: room for a full payload with escapes and the other
#: fields, far below Lambda's 6 MB request limit. A larger body is a 413 before it is parsed.
MAX_REQUEST_BYTES = 256 * 1024
#: Characters no title holds: C0 and C1 controls (tab and newline included) and lone surrogates, which are not
#: Unicode scalar values and cannot be encoded as UTF-8 for DynamoDB.
_TEXT_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: Characters no payload string or key holds: the same, except tab, newline and carriage return.
_PAYLOAD_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: DynamoDB numbers: up to 38 significant digits, magnitude from 1E-130 to 9.9999999999999999999999999999999999999E+125
#: (DynamoDB developer guide, "Supported data types: Number").
DYNAMODB_NUMBER_MAX = 1e126
DYNAMODB_NUMBER_MIN = 1e-130


#: The identity rule: an owner id (a token's ``sub``) is 1 to 255 printable ASCII characters without space
#: (0x21 to 0x7E). OpenID Connect Core 1.0 section 2 allows at most 255 ASCII characters for ``sub``; space and
#: controls are refused too, because the owner id is a DynamoDB partition key, travels in every queue message and
#: names log lines. Everything AWS limits further (a ``MessageGroupId``, a metric dimension) is derived from it so
#: that every valid owner id fits. Owner ids are compared exactly (no case folding, no normalisation).
OWNER_ID_PATTERN = re.compile(r"[!-~]{1,255}")


#: RFC 6750 section 3: an ``error_description`` is %x20-21 / %x23-5B / %x5D-7E (no ``"``, no ``\\``).
_ERROR_DESCRIPTION = re.compile(r"[ !#-\[\]-~]+")


def is_owner_id(value: object) -> bool:
    """True when ``value`` is a string that follows the identity rule (``OWNER_ID_PATTERN``)."""
    return isinstance(value, str) and OWNER_ID_PATTERN.fullmatch(value) is not None


def utc_now() -> datetime:
    """The current time, UTC, truncated to milliseconds (the precision the table stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 text of an aware datetime in UTC with milliseconds (cut, not rounded): ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    A list page writes four of these per job, so this is written for speed (``bench.warm``): the datetimes read
    from the table carry pydantic's own UTC ``tzinfo`` (not ``datetime.UTC``), so a zero offset is tested rather
    than converted, and ``isoformat()`` without arguments, cut to milliseconds, takes half the time of
    ``isoformat(timespec="milliseconds")``.
    """
    if value.tzinfo is not UTC:
        offset = value.utcoffset()
        if offset is None or offset:  # a naive time is taken as local time, as astimezone does
            value = value.astimezone(UTC)
    text = value.replace(tzinfo=None).isoformat()  # YYYY-MM-DDTHH:MM:SS, then .ffffff unless microsecond is 0
    return text[:23] + "Z" if len(text) > 19 else text + ".000Z"


#: A point in time: RFC 3339 in UTC with milliseconds (``format: date-time`` in the OpenAPI document).
Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _check_text(value: str) -> str:
    if _TEXT_FORBIDDEN.search(value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


class DuplicateMemberName(ValueError):
    """A JSON object names one member twice (``name``: the name, as parsed)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"member name {name[:64]!r} appears more than once in one object")
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMemberName(name)
            seen.add(name)
    return found


def _read_int(text: str) -> int | Decimal:
    # Python refuses to parse integers of more than 4,300 digits (ValueError); past 100 a Decimal, which the
    # payload rule refuses by name (at most 38 digits).
    return int(text) if len(text) <= 100 else Decimal(text)


def _read_float(text: str) -> float | Decimal:
    value = float(text)
    try:
        written = Decimal(text)
    except ArithmeticError:  # an exponent past even Decimal's range: no double holds it
        return Decimal("Infinity")
    if written != Decimal(repr(value)):  # rounded, overflowed to infinity or underflowed to 0
        return written
    return value


def read_json(text: str | bytes) -> Any:
    """A JSON text read by the one rule this system has for JSON it receives (RFC 8259):

    - **member names are unique** in every object, at every depth (compared after unescaping, code point by code
      point, as RFC 8259 section 8.3 compares strings): a repeat raises ``DuplicateMemberName`` instead of
      keeping the last value silently;
    - **an integer** (no fraction, no exponent) is read exactly, as ``int``; one of more than 100 digits as a
      ``Decimal``, which the payload rule refuses;
    - **a number with a fraction or an exponent** is an IEEE 754 double (RFC 8259 section 6): read as ``float``
      when the double is the number as written (``0.1``, ``1e100``, ``1.0``, ``-0.0``, ``1.50``), else as a
      ``Decimal`` that the payload rule refuses (``3.14159265358979323846``, ``1e400``, ``1e-400``: they
      would come back as another number);
    - ``NaN`` and ``Infinity`` (which Python's reader accepts) as floats, refused by the payload rule.

    Member order is kept (a ``dict`` keeps insertion order).

    Raises:
        DuplicateMemberName: an object names a member twice.
        json.JSONDecodeError: not JSON.
        ValueError, RecursionError: as Python's reader raises them for text it cannot read.
    """
    return json.loads(text, object_pairs_hook=_unique_members, parse_int=_read_int, parse_float=_read_float)


def payload_text(payload: dict[str, Any]) -> str:
    """A payload as stored: compact JSON text, members in their order, non-ASCII as is, every number as
    ``read_json`` read it (an ``int`` exactly, a ``float`` as the shortest text that reads back as it)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_payload_numbers(value: Any) -> Any:
    """Refuse the numbers ``read_json`` could not keep as sent, by name (before the JSON value rule, which
    would only say "not a valid JSON value")."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, Decimal):
            text = str(node)[:40]
            if node.is_finite() and node == node.to_integral_value() and node.as_tuple().exponent == 0:
                raise ValueError(f"payload integers must have at most 38 digits ({text}...)")
            raise ValueError(
                f"payload number {text} would not come back as sent: a number with a fraction or an exponent "
                "must be one an IEEE 754 double holds exactly as written (about 17 significant digits)"
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return value


def _check_payload(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    def depth(node: object, level: int) -> None:
        if level > MAX_PAYLOAD_DEPTH:
            raise ValueError(f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")
        if isinstance(node, str) and _PAYLOAD_FORBIDDEN.search(node):
            raise ValueError("payload strings hold no control characters (but tab, CR, LF) or lone surrogates")
        if isinstance(node, dict):
            for key, child in node.items():
                depth(key, level)
                depth(child, level + 1)
        elif isinstance(node, list):
            for child in node:
                depth(child, level + 1)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError("payload numbers must be finite")
            if abs(node) >= DYNAMODB_NUMBER_MAX or 0 < abs(node) < DYNAMODB_NUMBER_MIN:
                raise ValueError("payload number is out of DynamoDB's range (1e-130 to 9.9e125)")
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 10**38:
            raise ValueError("payload integers must have at most 38 digits")

    depth(value, 1)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}")
    return value


Payload = Annotated[dict[str, JsonValue], BeforeValidator(_check_payload_numbers), AfterValidator(_check_payload)]


def json_bytes(value: object) -> int:
    """The size of ``value`` as compact UTF-8 JSON, bytes: how ``payload`` and ``result`` are measured."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


#: What a status this version does not know looks like: the names every version uses (upper case, underscores).
_STATUS_NAME = re.compile(r"[A-Z][A-Z_]{0,31}")


class OpenEnum(StrEnum):
    """A string enum open to values a later version adds: an unknown name (upper case and ``_``, at most 32
    characters) reads as a pseudo-member of its own name, not an error, so readers of stored items keep working;
    ``is_known`` tells the values this version defines (iteration yields only those)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str) and _STATUS_NAME.fullmatch(value):
            member = str.__new__(cls, value)
            member._name_ = value
            member._value_ = value
            return member
        return None

    @property
    def is_known(self) -> bool:
        """True for the values this version defines."""
        return self._name_ in type(self).__members__


# The set is open: a status this version does not know (written by a newer version, or met after a rollback) is
# read as a pseudo-member of its own name (``JobStatus("PAUSED")``), not an error, so that every reader (the API's
# item parsing, the client, the command line) keeps working when statuses are added. Such a status is neither
# known nor terminal; ``Job.is_finished`` tells whether the job reached its end (``finished_at`` is set then).
# Requests still name known statuses only (``KnownStatus``). The docstring is the OpenAPI document's description.
class JobStatus(OpenEnum):
    """Where a job is in its lifecycle: QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED. Later versions may add
    statuses: a job in a status you do not know is finished when its finished_at is set."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """True for the known final statuses (SUCCEEDED, FAILED, CANCELLED), which never change again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _known_status(status: JobStatus) -> JobStatus:
    if not status.is_known:
        raise ValueError(f"status must be one of {', '.join(JobStatus)}")
    return status


#: A status named in a request (the list's filter): one this version defines, nothing else.
KnownStatus = Annotated[JobStatus, AfterValidator(_known_status)]


class _OpenEnumSchema:
    """The JSON schema of a value a reader must accept: the known values, or any other string (one added later),
    so that a client generated from the document does not fail on a value it has not met yet."""

    def __init__(self, other: str) -> None:
        self.other = other

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        known = handler(core_schema)
        return {"anyOf": [known, {"type": "string", "description": self.other}]}


#: A job's status as responses carry it: a ``JobStatus`` whose schema stays open to statuses added later.
OpenStatus = Annotated[
    JobStatus, _OpenEnumSchema("A status added after this document; the job is finished when finished_at is set.")
]


class JobPriority(OpenEnum):
    """Which queue a job waits in: HIGH has consumer capacity of its own, NORMAL is the default, LOW waits behind
    the others' capacity. Later versions may add levels: a job of a level you do not know runs like any other."""

    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"


def _known_priority(priority: JobPriority) -> JobPriority:
    if not priority.is_known:
        raise ValueError(f"priority must be one of {', '.join(JobPriority)}")
    return priority


#: A priority named in a request: one this version defines.
KnownPriority = Annotated[JobPriority, AfterValidator(_known_priority)]
#: A job's priority as responses carry it, open to levels added later.
OpenPriority = Annotated[JobPriority, _OpenEnumSchema("A priority added after this document.")]

#: How far ahead ``not_before`` may be, seconds: 7 days.
MAX_NOT_BEFORE_SECONDS = 7 * 86400
#: RFC 3339 ``date-time`` (section 5.6): a full date, ``T``, a time with optional fraction, and an offset (``Z`` or
#: ``+hh:mm``); no other ISO 8601 spelling (a date alone, a time without offset, a week date) is taken.
_RFC3339 = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)


def _rfc3339(value: object) -> object:
    """An RFC 3339 timestamp as an aware UTC ``datetime`` truncated to milliseconds (the stored precision).

    Raises:
        ValueError: not a string in RFC 3339's ``date-time`` form, or no such time (February 30, or a time whose
            offset moves it out of Python's years 1 to 9999 in UTC).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs an offset (Z for UTC)")
        try:
            moment = value.astimezone(UTC)
        except OverflowError as error:  # the offset moves it out of years 1 to 9999
            raise ValueError(f"no such time: {error}") from None
    else:
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ValueError("not an RFC 3339 date-time with an offset, such as 2026-12-01T09:00:00Z")
        text = value.upper().replace("Z", "+00:00")
        date, _, rest = text.partition("T")
        clock, sign, offset = re.split(r"([+-])", rest, maxsplit=1)
        seconds, dot, fraction = clock.partition(".")
        seconds = seconds.replace(":60", ":59")  # a leap second: the last whole second before it
        try:
            moment = datetime.fromisoformat(f"{date}T{seconds}{dot}{fraction[:6]}{sign}{offset}").astimezone(UTC)
        except (ValueError, OverflowError) as error:  # OverflowError: the offset moves it out of years 1 to 9999
            raise ValueError(f"no such time: {error}") from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


#: A requested start time: RFC 3339 with an offset, kept in UTC with milliseconds.
StartTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
#: Reads a ``StartTime`` outside a model (a message attribute); raises ``pydantic.ValidationError``.
START_TIME: TypeAdapter[datetime] = TypeAdapter(StartTime)


def _cut(text: object, length: int) -> object:
    """``text`` cut to ``length`` characters (an ellipsis in the last place), so an error of any length is stored."""
    if isinstance(text, str) and len(text) > length:
        return text[: length - 1] + "\u2026"
    return text


class JobError(BaseModel):
    """Why a job FAILED: the error's type (an exception class name) and a human message."""

    # Both are cut to MAX_ERROR_TYPE_LENGTH and MAX_ERROR_MESSAGE_LENGTH characters, so that an item holding an
    # exception's text of any length stays within DynamoDB's 400 KB (this docstring is the OpenAPI description).
    model_config = ConfigDict(frozen=True)

    type: Annotated[str, BeforeValidator(lambda text: _cut(text, MAX_ERROR_TYPE_LENGTH))]
    message: Annotated[str, BeforeValidator(lambda text: _cut(text, MAX_ERROR_MESSAGE_LENGTH))]


#: The longest progress message, characters.
MAX_PROGRESS_MESSAGE_LENGTH = 200


class CallbackStatus(OpenEnum):
    """Where a job's callback is: PENDING (not tried yet), RETRYING (an attempt failed; another follows),
    DELIVERED (the receiver answered 2xx), FAILED (given up: attempts for over a day, a 410, or a refused
    address). Later versions may add values."""

    PENDING = "PENDING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class JobCallback(BaseModel):
    """The delivery state of a job's callback, as the sender last wrote it."""

    model_config = ConfigDict(frozen=True)

    status: Annotated[CallbackStatus, _OpenEnumSchema("A callback status added after this document.")]
    attempts: int = Field(default=0, description="How many deliveries were tried.")
    last_attempt_at: Timestamp | None = Field(default=None, description="When the last delivery was tried.")
    next_attempt_at: Timestamp | None = Field(default=None, description="When the next delivery is due (RETRYING).")
    delivered_at: Timestamp | None = Field(default=None, description="When the receiver answered 2xx.")
    last_status_code: int | None = Field(default=None, description="The HTTP status of the last answer, if any.")
    last_error: Annotated[str, BeforeValidator(lambda text: _cut(text, MAX_ERROR_MESSAGE_LENGTH))] | None = Field(
        default=None, description="Why the last attempt failed."
    )


class JobProgress(BaseModel):
    """How far a RUNNING job's processor says it is: a percentage and a short message."""

    model_config = ConfigDict(frozen=True)

    percent: float = Field(ge=0, le=100, description="0 to 100.")
    message: str = Field(default="", max_length=MAX_PROGRESS_MESSAGE_LENGTH, description="At most 200 characters.")
    updated_at: Timestamp = Field(description="When the processor reported it.")


class JobCreate(BaseModel):
    """Body of POST /api/v1/jobs: a title, an optional job type and a payload. Unknown fields are refused; no
    text may hold a lone surrogate; valid Unicode is kept exactly as sent (no normalisation)."""

    # The numbers in the descriptions come from the constants, so the OpenAPI document states the real limits.
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_LENGTH),
        AfterValidator(_check_text),
    ] = Field(
        description=f"Trimmed, then 1 to {MAX_TITLE_LENGTH} characters without control characters.",
        examples=["Chuck Norris Job: Triple Roundhouse Compliance Report"],
    )
    type: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_text)] = Field(
        default="report",
        description="The job type; report, the default, runs the quarterly audit of your jobs.",
    )
    payload: Payload = Field(
        default_factory=dict,
        description=f"Any JSON object of finite numbers (at most 38 digits, 1e-130 to 9.9e125), at most "
        f"{MAX_PAYLOAD_DEPTH} levels deep and {MAX_PAYLOAD_BYTES} bytes as compact UTF-8 JSON, whose strings and "
        "keys hold no control characters but tab, CR and LF. A report's: report_type (quarterly_audit), "
        "target_user_ids, complexity_level, priority.",
    )
    priority: KnownPriority | None = Field(
        default=None,
        description="HIGH, NORMAL or LOW. When absent, a payload.priority holding one of the three is the job's "
        "priority (any other value there stays payload data); else NORMAL. HIGH may need a scope of the token "
        "(403 without it).",
    )
    not_before: StartTime | None = Field(
        default=None,
        description="Start no earlier than this time: RFC 3339 with an offset (Z for UTC), at most 7 days ahead; "
        "a past time starts at once.",
        examples=["2026-12-01T09:00:00Z"],
    )
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CALLBACK_URL_LENGTH)] | None = Field(
        default=None,
        description=f"When the job reaches a final status, the job (as GET returns it) is POSTed here, signed "
        f"(Standard Webhooks, v1a: Ed25519; the key is at GET /api/v1/webhooks/public-key). An https URL of at "
        f"most {MAX_CALLBACK_URL_LENGTH} characters, without user info or fragment, whose host is public: a "
        "loopback, private, link-local, carrier-grade NAT, multicast or metadata address is refused, here and "
        "at each delivery.",
        examples=["https://example.com/hooks/jobs"],
    )

    @property
    def effective_priority(self) -> JobPriority:
        """The job's priority: ``priority`` when sent; else the seed's ``payload.priority`` when it names a level
        (HIGH, NORMAL or LOW, exactly); else NORMAL. The one place that rule is written."""
        if self.priority is not None:
            return self.priority
        named = self.payload.get("priority")
        if isinstance(named, str) and named in JobPriority.__members__:
            return JobPriority(named)
        return JobPriority.NORMAL

    def idempotency_view(self) -> dict[str, Any]:
        """What an ``Idempotency-Key`` record hashes of this request: the ``IDEMPOTENCY_BASE_FIELDS`` as JSON, and
        any later field only when it differs from its default, so adding a field to this model does not change the
        hash of a request that does not use it (a retry spanning a deploy still matches its first attempt)."""
        everything = self.model_dump(mode="json")
        used = self.model_dump(mode="json", exclude_defaults=True)
        return {name: value for name, value in everything.items() if name in IDEMPOTENCY_BASE_FIELDS or name in used}


#: The fields of the first ``JobCreate``. An ``Idempotency-Key`` record holds a hash of the request it was first
#: used with (``jobs.idempotency``), and a retry may span a deploy: a field added later joins the hash only when a
#: request sets it to something other than its default, so a request that does not use it hashes as before.
IDEMPOTENCY_BASE_FIELDS = frozenset({"title", "type", "payload"})


#: A job's id: a lowercase UUID (a UUIDv7, so ids sort by creation time).
JobIdText = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


class Job(BaseModel):
    """A job: what was submitted, where it is in its lifecycle, its result or its error."""

    model_config = ConfigDict(frozen=True)

    # The owner (the JWT sub) keys every read and write; it is never part of a response.
    owner_id: str = Field(exclude=True)
    job_id: JobIdText
    title: str
    type: str = Field(description="The job type (a name the API knew when the job was submitted).")
    status: OpenStatus
    payload: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = Field(
        default=None, description="When the job reached its final status; set then and only then."
    )
    attempts: int = Field(default=0, description="How many runs started (a retry is another).")
    priority: OpenPriority = Field(default=JobPriority.NORMAL, description="The queue the job waits in.")
    not_before: Timestamp | None = Field(default=None, description="The job starts no earlier than this time.")
    result: dict[str, Any] | None = Field(default=None, description="What the job's processor returned.")
    error: JobError | None = Field(default=None, description="Why the job FAILED.")
    cancel_requested_at: Timestamp | None = Field(
        default=None, description="When a cancel was asked of the job while it ran; its run then ends it CANCELLED."
    )
    progress: JobProgress | None = Field(default=None, description="What the job's processor last reported.")
    callback_url: str | None = Field(default=None, description="Where the job is POSTed when it is finished.")
    callback: JobCallback | None = Field(
        default=None, description="How the callback's delivery went; set when the job has a callback_url."
    )
    # The run's own state, never part of a response: the lease token of the run that holds the job, when that run
    # took it (RFC 3339), when it asked to be continued, and the checkpoint the next run resumes from.
    run_id: str | None = Field(default=None, exclude=True)
    leased_at: str | None = Field(default=None, exclude=True)
    continued_at: str | None = Field(default=None, exclude=True)
    checkpoint: dict[str, Any] | None = Field(default=None, exclude=True)

    @property
    def is_finished(self) -> bool:
        """True when the job reached a final status: a known terminal one, or, for a status this version does not
        know, when ``finished_at`` is set (every version sets it exactly when a job ends)."""
        return self.status.is_terminal or (not self.status.is_known and self.finished_at is not None)


#: The attributes of a job that its responses leave out, which its stored item keeps.
HIDDEN_JOB_FIELDS = ("owner_id", "run_id", "leased_at", "continued_at", "checkpoint")


def job_record(job: Job) -> dict[str, Any]:
    """Every attribute of a job as JSON-like values, the hidden ones included; None values left out."""
    data = job.model_dump(mode="json", exclude_none=True)
    data.update({name: getattr(job, name) for name in HIDDEN_JOB_FIELDS if getattr(job, name) is not None})
    return data


class JobPage(BaseModel):
    """Body of GET /api/v1/jobs: jobs newest first, and the opaque token of the next page (or null)."""

    items: list[Job]
    next_token: str | None = None
    # Each item with its JSON text, when whoever built the page already wrote it (``written``); never data.
    _item_texts: tuple[tuple[Job, str], ...] = PrivateAttr(default=())

    @classmethod
    def written(cls, items: list[Job], texts: list[str], next_token: str | None) -> JobPage:
        """A page that keeps ``texts``, each item's ``model_dump_json()`` (the service writes every job of a page
        once, to size the page), so that ``json_text`` does not write them again."""
        page = cls(items=items, next_token=next_token)
        page._item_texts = tuple(zip(items, texts, strict=True))
        return page

    def json_text(self) -> str:
        """The page as ``model_dump_json()`` writes it, byte for byte, from the items' kept texts when it holds one
        for each of its items as they are now (``written``; the same job objects, which are frozen models whose
        dicts nothing changes in place); else written in full. Half the cost of writing a page
        of 20 jobs twice (bench/RESULTS.md, the warm benchmark)."""
        kept, items = self._item_texts, self.items
        if len(kept) != len(items) or any(job is not item for (job, _), item in zip(kept, items, strict=True)):
            return self.model_dump_json()
        rest = self.model_dump_json(exclude={"items"})  # the other fields, after items: "{...}"
        start = '{"items":[' + ",".join(text for _, text in kept) + "]"
        return start + ("}" if rest == "{}" else "," + rest[1:])


class WebhookPublicKey(BaseModel):
    """One public key of callback signatures: an RFC 8037 OKP JSON Web Key (Ed25519), with the Standard Webhooks
    form of the same key in whpk."""

    kty: Literal["OKP"] = "OKP"
    crv: Literal["Ed25519"] = "Ed25519"
    x: str = Field(description="The 32-byte public key, base64url without padding (RFC 8037).")
    kid: str = Field(description="The key's RFC 7638 thumbprint.")
    use: Literal["sig"] = "sig"
    alg: Literal["EdDSA"] = "EdDSA"
    whpk: str = Field(description="The same key as Standard Webhooks writes it: whpk_ + base64 of its 32 bytes.")


class WebhookPublicKeys(BaseModel):
    """The keys that verify callback deliveries (a JSON Web Key Set, RFC 7517): a delivery's webhook-signature
    holds one v1a signature per signing key; one of them verifying with one of these keys authenticates it.
    During a rotation the set holds the old and the new key."""

    keys: list[WebhookPublicKey]


class ValidationIssue(BaseModel):
    """One reason a request is not valid: where (loc, e.g. ["body", "title"]), why (msg), and its kind (type)."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error the function produces, as application/problem+json (RFC 9457)."""

    type: str = Field(default="about:blank", description="Always about:blank: the status says it all.")
    title: str = Field(description="The status code's phrase.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, for a human.")
    errors: list[ValidationIssue] | None = Field(default=None, description="What is wrong with the request (4xx).")


class GatewayError(BaseModel):
    """An error API Gateway itself produces (no route, throttled, function crashed or timed out)."""

    message: str


class ErrorBody(RootModel[Problem | GatewayError]):
    """The body of an error status both the function and API Gateway may answer: a Problem, or API Gateway's own
    GatewayError."""


class JobMessage(BaseModel):
    """Body of a message on the jobs queue: a reference to one job, never its payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner_id: Annotated[str, StringConstraints(min_length=1)]
    job_id: Annotated[str, StringConstraints(min_length=1)]


# Domain errors. They carry no HTTP knowledge: jobs.http maps each to a status code in one table.


class JobsError(Exception):
    """Base class of the errors this package raises on purpose."""


class JobNotFound(JobsError):
    """No job with this id belongs to the caller (it never existed, was deleted, or is someone else's)."""


class UnknownJobType(JobsError):
    """``type`` names no registered processor."""


class InvalidPayload(JobsError):
    """The payload does not fit its job type; ``errors`` is the pydantic error list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("payload does not fit the job type")
        self.errors = errors


class InvalidPageToken(JobsError):
    """A ``next_token`` that this API did not issue to this caller."""


class Unauthenticated(JobsError):
    """No usable bearer token; ``missing`` is True when the request carried none (RFC 6750 section 3.1).

    ``description`` is what the caller may be told (the ``error_description`` of the challenge, RFC 6750 section
    3): set only where the reason is safe to tell, a claim rule of a token whose signature was verified, and
    never with a token's or a claim's value in it. It is printable ASCII without ``"`` or ``\\``.
    """

    def __init__(self, reason: str, *, missing: bool = False, description: str | None = None) -> None:
        super().__init__(reason)
        self.missing = missing
        if description is not None and not _ERROR_DESCRIPTION.fullmatch(description):
            raise ValueError("an error_description is printable ASCII without quote or backslash (RFC 6750)")
        self.description = description


class AuthUnavailable(JobsError):
    """Tokens cannot be verified right now (the JWKS or the secret could not be fetched)."""


class ServiceUnavailable(JobsError):
    """A dependency (DynamoDB, SQS) refused or failed; the request may be retried after ``retry_after`` s."""

    def __init__(self, reason: str, *, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class IdempotencyKeyReused(JobsError):
    """An ``Idempotency-Key`` already used by this caller with another request body (422)."""


class IdempotencyInProgress(JobsError):
    """The first request with this ``Idempotency-Key`` has not finished yet (409, retry later)."""


class IdempotencyUnavailable(JobsError):
    """The idempotency records could not be read or written (503); the reason names powertools' error class."""


class WriteRefused(JobsError):
    """DynamoDB refused a write for what the item or the request holds (``ValidationException``: an item grown
    past 400 KB, say), so the same write can never succeed; ``code`` is DynamoDB's error code."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.code = code


class TransitionRejected(JobsError):
    """A conditional status write found the job missing (``current`` is None) or in another status."""

    def __init__(self, current: Job | None) -> None:
        super().__init__("job is gone" if current is None else f"job is {current.status}")
        self.current = current


class JobFinished(JobsError):
    """A cancel asked of a job that already SUCCEEDED or FAILED (409); ``status`` is its status."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}, it can no longer be cancelled")
        self.status = status


class InvalidRequest(JobsError):
    """A request that fits the schema but breaks a rule the service checks (422); ``errors`` are
    ``{"loc", "msg", "type"}`` dicts, ``loc`` from the body (``["body", "not_before"]``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors))
        self.errors = errors


class Forbidden(JobsError):
    """The caller is authenticated but its token lacks what the request needs (403): ``reason`` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(JobsError):
    """This delivery cannot finish now; its message should come back after ``delay_seconds`` (0 to
    ``max_delay_seconds``)."""

    max_delay_seconds = MAX_VISIBILITY_SECONDS

    def __init__(self, reason: str, *, delay_seconds: int) -> None:
        super().__init__(reason)
        self.delay_seconds = max(0, min(delay_seconds, self.max_delay_seconds))


class NotYetDue(RetryLater):
    """The job's ``not_before`` has not come: its message hides until then, or as long as SQS allows (12 hours
    from its receive; ChangeMessageVisibility, SQS API reference)."""

    max_delay_seconds = SQS_MAX_VISIBILITY_SECONDS


class JobInProgress(RetryLater):
    """The job is RUNNING under another delivery whose lease has not expired."""


class ProcessorError(JobsError):
    """A processor could not finish a job. ``retryable`` asks for another delivery instead of FAILED."""

    retryable: bool = False


class ContinueLater(JobsError):
    """Raised by ``JobContext.continue_later``: the run saved ``checkpoint`` and asks a new delivery to resume from
    it (not a retry: no attempt is spent)."""

    def __init__(self, checkpoint: dict[str, Any]) -> None:
        super().__init__("the run asks to be continued")
        self.checkpoint = checkpoint


class RetryableProcessorError(ProcessorError):
    """A transient processor failure: the message goes back to the queue until its last receive."""

    retryable = True
