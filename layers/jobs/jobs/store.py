"""The job store: the only module that speaks DynamoDB.

Table ``Jobs``: partition key ``owner_id`` (the caller's JWT ``sub``), sort key ``job_id`` (a UUIDv7, so the
sort key follows creation time). Every operation names the owner, so one owner can never read or write
another's partition. Reads are strongly consistent. Status changes are conditional writes on the expected
current status and on the item existing: a status only moves forward, and a deleted job is never recreated.

Finished jobs carry ``expires_at`` (epoch seconds, the table's TTL attribute). DynamoDB deletes an expired item
only some time after it expires, so every read here treats an item whose ``expires_at`` has passed as gone.

``DynamoJobStore`` is the real store; ``InMemoryJobStore`` is a domain fake with the same semantics for unit
tests. ``tests/integration/test_store_contract.py`` runs one suite against both.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, cast

from aws_lambda_powertools.shared.dynamodb_deserializer import DYNAMODB_CONTEXT, TypeDeserializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from jobs import aws
from jobs.models import (
    CallbackStatus,
    Job,
    JobCallback,
    JobError,
    JobStatus,
    OpenStatus,
    Timestamp,
    TransitionRejected,
    WriteRefused,
    format_timestamp,
    job_record,
    payload_text,
)

_deserializer = TypeDeserializer()


def to_attribute_value(value: Any) -> Any:
    """A JSON-like Python value as a DynamoDB ``AttributeValue``; floats become exact ``Decimal`` text.

    ``repr`` of a float is the shortest text that reads back as the same float, so ``0.1`` is stored as
    ``0.1``, not as the binary expansion.

    Raises:
        TypeError: a value of a type DynamoDB cannot hold, NaN or an infinity.
        decimal.DecimalException: a number DynamoDB cannot hold (more than 38 significant digits, or out of its
            range), as boto3's ``TypeSerializer`` raises.
    """
    return _serialize(_decimals_in(value))


def _serialize(value: Any) -> dict[str, Any]:
    """boto3's ``TypeSerializer.serialize`` (``boto3.dynamodb.types``), whose import loads all of boto3 (tens of
    milliseconds of every cold start) for a table of conversions; the same table, for the types of the
    "Supported data types" of the DynamoDB developer guide
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": value}
    if isinstance(value, AbstractSet):
        if all(isinstance(item, int | Decimal) and not isinstance(item, bool) for item in value):
            return {"NS": [_number(item) for item in value]}
        if all(isinstance(item, str) for item in value):
            return {"SS": list(value)}
        if all(isinstance(item, bytes | bytearray) for item in value):
            return {"BS": list(value)}
    if isinstance(value, Mapping):
        return {"M": {key: _serialize(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_serialize(item) for item in value]}
    if isinstance(value, float):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    raise TypeError(f'Unsupported type "{type(value)}" for value "{value}"')


def _number(value: int | Decimal) -> str:
    number = str(DYNAMODB_CONTEXT.create_decimal(value))
    if number in ("Infinity", "-Infinity", "NaN", "sNaN", "-NaN", "-sNaN"):
        raise TypeError("Infinity and NaN not supported")
    return number


def from_attribute_value(value: Mapping[str, Any]) -> Any:
    """A DynamoDB ``AttributeValue`` as a JSON-like Python value: an integral number of at most 38 digits as
    ``int``, any other as ``float``, so ``9000`` comes back as the JSON number 9000, ``0.1`` as 0.1, and a
    ``1E+100`` (a float when it was written) as the double 1e100, never as a 101-digit integer no request could
    send back."""
    return _numbers_in(_deserializer.deserialize(cast(dict[str, Any], value)))  # it reads a mapping only


def _decimals_in(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _decimals_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals_in(item) for item in value]
    return value


#: DynamoDB holds at most 38 significant digits, so an integral number of more digits was written as a float.
_LARGEST_INT = 10**38


def _numbers_in(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < _LARGEST_INT:
            return int(value)
        return float(value)
    if isinstance(value, dict):
        return {key: _numbers_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_in(item) for item in value]
    return value


#: The attribute that holds a job's payload: the compact JSON text of the payload (``jobs.models.payload_text``),
#: a String, so that numbers and member order come back as they were sent. Items written before it hold a Map,
#: still read (``payload_of``).
PAYLOAD = "payload"


def payload_of(attribute: Mapping[str, Any] | None) -> dict[str, Any]:
    """A job's payload from its ``payload`` attribute, whichever form it is stored in: a String of JSON text
    (written since issue 13: members in order, every number as it was read), or a Map (written before: member
    order as DynamoDB returns it, numbers by ``from_attribute_value``'s rule). No attribute is an empty payload.

    Raises:
        ValueError: the attribute is neither (no version of this code writes one).
    """
    if attribute is None:
        return {}
    if "S" in attribute:
        found = json.loads(attribute["S"])
    elif "M" in attribute:
        found = from_attribute_value(attribute)
    else:
        raise ValueError(f"a payload attribute of type {sorted(attribute)} is not one this code writes")
    if not isinstance(found, dict):
        raise ValueError("a stored payload is not a JSON object")
    return found


#: The ``ByStatus`` index (partition ``owner_id``, sort ``status_job_id``): an owner's jobs of one status, newest
#: first, without reading the others (docs/decisions.md, "Status filter").
STATUS_INDEX = "ByStatus"
STATUS_KEY = "status_job_id"


def status_key(status: JobStatus | str, job_id: str) -> str:
    """The ``ByStatus`` sort key of a job: ``<STATUS>#<job_id>``, so that one status sorts by creation."""
    return f"{JobStatus(status).value}#{job_id}"


#: The ``Queued`` index (partition ``queued_shard``, sort ``job_id``, sparse): every QUEUED job of every owner and
#: no other, for the reconciler. Only a QUEUED item carries ``queued_shard``, so the index holds nothing else
#: and a query reads only QUEUED jobs. The shard, the job id's last hex digit, spreads the index's writes over
#: ``QUEUED_SHARDS`` partition key values (DynamoDB throttles one key value of an index beyond 1,000 writes/s).
QUEUED_INDEX = "Queued"
QUEUED_SHARD = "queued_shard"
#: When the reconciler last re-sent a QUEUED job's message (RFC 3339; projected into the ``Queued`` index), so
#: it re-sends one at most once per bound however long a backlog lasts. A scheduled job is written with its
#: ``not_before`` here (``reconcile_from``): its message hides in SQS until then, so the reconciler's bound counts
#: from its start time, and a week of scheduled jobs never fills a reconciler run.
RECONCILED_AT = "reconciled_at"


def reconcile_from(job: Job) -> str | None:
    """What a new job's ``reconciled_at`` starts as: its ``not_before`` when that is after its creation (RFC 3339),
    else None (the bound counts from ``updated_at``)."""
    if job.not_before is not None and job.not_before > job.updated_at:
        return format_timestamp(job.not_before)
    return None


QUEUED_SHARDS = tuple("0123456789abcdef")


def queued_shard(job_id: str) -> str:
    """The ``Queued`` index partition of a QUEUED job: the last character of its id, lowercased (a hex digit for
    every id this API makes; any other id still gets a shard the reconciler may not read, and is logged there)."""
    return job_id[-1:].lower() or "0"


#: DynamoDB's key limits (developer guide, "Quotas": partition key 2,048 bytes, sort key 1,024 bytes, UTF-8).
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024


def holdable_key(owner_id: str, job_id: str) -> bool:
    """True when DynamoDB can hold an item keyed ``(owner_id, job_id)``: both non-empty valid UTF-8 (no lone
    surrogate) within DynamoDB's key limits. A key it cannot hold names no job, so every operation on one answers
    as for a missing job instead of failing with DynamoDB's ValidationException (which no retry could fix)."""
    try:
        owner_bytes, job_bytes = len(owner_id.encode("utf-8")), len(job_id.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < owner_bytes <= MAX_PARTITION_KEY_BYTES and 0 < job_bytes <= MAX_SORT_KEY_BYTES


def job_to_item(job: Job) -> dict[str, Any]:
    """The DynamoDB item (``AttributeValue`` map) of a job, its hidden attributes included; attributes that are
    None are left out; the payload as its JSON text (``PAYLOAD``)."""
    data = job_record(job)
    data.pop("payload", None)
    data[STATUS_KEY] = status_key(job.status, job.job_id)
    if job.status == JobStatus.QUEUED:
        data[QUEUED_SHARD] = queued_shard(job.job_id)
        if (start := reconcile_from(job)) is not None:
            data[RECONCILED_AT] = start
    item = {name: to_attribute_value(value) for name, value in data.items()}
    item[PAYLOAD] = {"S": payload_text(job.payload)}
    return item


def item_to_job(item: Mapping[str, Any]) -> Job:
    """The ``Job`` of a DynamoDB item (``AttributeValue`` map), its payload in either stored form
    (``payload_of``)."""
    data = {name: from_attribute_value(value) for name, value in item.items() if name != PAYLOAD}
    return Job.model_validate({**data, "payload": payload_of(item.get(PAYLOAD))})


class JobSummary(BaseModel):
    """What the quarterly audit reads of a job (``JobStore.summary_pages``): its id, type, status and timestamps,
    without its title, payload, result or error."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    type: str
    status: OpenStatus
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    not_before: Timestamp | None = None


#: The attributes ``summary_pages`` asks DynamoDB for (a ``ProjectionExpression``; ``#type`` and ``#status`` are
#: reserved words). A projection cuts what is sent and parsed, not the read capacity: DynamoDB charges a Query on
#: the size of the items it reads, whatever attributes it returns (developer guide, "DynamoDB read and write
#: operations": https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
SUMMARY_ATTRIBUTES = ("job_id", "#type", "#status", "created_at", "started_at", "finished_at", "not_before")


@dataclass(frozen=True)
class SummaryPage:
    """One page of ``JobStore.summary_pages``: the live jobs read (``jobs``, oldest first; possibly none, when the
    page held only expired items), and ``next_after``: the ``after_job_id`` that continues the read from the end of
    this page, or None when the range is read to its end."""

    jobs: list[JobSummary]
    next_after: str | None


class JobStore(Protocol):
    """What the service needs from a job store. Implementations must keep the semantics in the docstrings."""

    def put_new(self, job: Job) -> None:
        """Write a new job. Raises ``ValueError`` if the key exists (it never does for a fresh UUIDv7)."""

    def get(self, owner_id: str, job_id: str) -> Job | None:
        """The owner's job, read strongly consistently, or None (also when it has expired)."""

    def list_page(
        self, owner_id: str, *, limit: int, after_job_id: str | None, status: JobStatus | None = None
    ) -> tuple[list[Job], str | None]:
        """Up to ``limit`` of the owner's jobs, newest first, older than ``after_job_id`` when given, and only
        those in ``status`` when given.

        Returns the jobs and the ``job_id`` to pass as ``after_job_id`` for the next page, or None when there
        is no further job (never a cursor that leads to an empty page).
        """
        ...

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        """The owner's jobs whose ids lie in ``[lowest_job_id, highest_job_id]``, oldest first."""
        ...

    def summary_pages(
        self,
        owner_id: str,
        lowest_job_id: str,
        highest_job_id: str,
        *,
        after_job_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[SummaryPage]:
        """The summaries of the owner's live jobs whose ids lie in ``[lowest_job_id, highest_job_id]`` and follow
        ``after_job_id`` when given, oldest first, page by page: at most ``page_size`` items read per page (else as
        many as one Query returns, up to 1 MB of items). Read eventually consistently: a write of the last second
        may not be seen yet (DynamoDB's eventually consistent reads cost half a strongly consistent one's)."""
        ...

    def delete(self, owner_id: str, job_id: str) -> bool:
        """Delete the owner's job whatever its status; False when there was none (or it has expired)."""
        ...

    def index_queued(self, *, limit: int = 10000) -> int:
        """Put into the ``Queued`` index up to ``limit`` QUEUED jobs written before the index existed; returns how
        many (an upgrade step)."""
        ...

    def list_queued(self, shard: str, *, updated_before_text: str) -> Iterator[tuple[str, str]]:
        """``(owner_id, job_id)`` of every QUEUED job of every owner in one ``QUEUED_SHARDS`` shard whose
        ``updated_at`` is earlier than ``updated_before_text`` (RFC 3339) and that the reconciler has not re-sent
        since then (``mark_reconciled``), in job id (creation) order; read from the sparse ``Queued`` index, which
        holds QUEUED jobs only (eventually consistent)."""
        ...

    def mark_reconciled(self, owner_id: str, job_id: str, *, now_text: str) -> None:
        """Note that the reconciler re-sent a QUEUED job's message at ``now_text`` (not a status change: the job's
        ``updated_at`` stays). Nothing happens to a job that is gone or no longer QUEUED.

        Raises:
            WriteRefused: DynamoDB refuses the write for good (an item at its size limit).
        """
        ...

    def start(
        self, owner_id: str, job_id: str, *, now_text: str, stale_before_text: str, run_id: str | None = None
    ) -> Job:
        """QUEUED → RUNNING, or take over a RUNNING job whose lease expired (the lease began before
        ``stale_before_text``) and that no cancel was asked of; sets ``started_at`` and the lease (``leased_at``) to
        ``now_text``, the lease token to ``run_id`` (``now_text`` when None), and counts one more attempt. A job that
        a run released for continuation (``save_checkpoint(..., release=True)``) is not started here but resumed
        (``resume``).

        Raises:
            TransitionRejected: the job is gone, finished, held by a live lease, released for continuation, or has a
                cancel asked of it (``current`` says which).
        """
        ...

    def resume(self, owner_id: str, job_id: str, *, now_text: str, run_id: str) -> Job:
        """Take a RUNNING job that its last run released for continuation (and no cancel was asked of): a new lease
        (``run_id``, ``leased_at`` = ``now_text``), no attempt counted, ``started_at`` and the checkpoint kept.

        Raises:
            TransitionRejected: the job is gone, not released for continuation, or has a cancel asked of it.
        """
        ...

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        run_id: str,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        expires_at: int | None = None,
    ) -> Job:
        """RUNNING → ``status`` (SUCCEEDED with ``result`` or FAILED with ``error``), only for the run whose lease
        token is ``run_id`` (a run whose lease was taken over writes nothing) and only while no cancel was asked
        (``settle_cancelled`` ends those). ``expires_at`` (epoch seconds) is when the finished job leaves every
        read, and DynamoDB's TTL deletes it. The checkpoint is dropped.

        Raises:
            TransitionRejected: the job is gone, not RUNNING under this run, or has a cancel asked of it.
        """
        ...

    def requeue(self, owner_id: str, job_id: str, *, run_id: str, now_text: str, error: JobError) -> Job:
        """RUNNING → QUEUED with the attempt's ``error``, for a retry; only for the run ``run_id`` and only while
        no cancel was asked.

        Raises:
            TransitionRejected: the job is gone, not RUNNING under this run, or has a cancel asked of it.
        """
        ...

    def fail_abandoned(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        stale_before_text: str,
        error: JobError,
        expires_at: int | None = None,
    ) -> Job:
        """QUEUED, or RUNNING with an expired lease or released for continuation, and no cancel asked → FAILED with
        ``error`` (a dead-lettered job), expiring at ``expires_at`` (epoch seconds) when given.

        Raises:
            TransitionRejected: the job is gone, finished, RUNNING within its lease, or has a cancel asked of it.
            WriteRefused: DynamoDB refuses this write for good (every transition may raise it).
        """
        ...

    def cancel_unheld(self, owner_id: str, job_id: str, *, now_text: str, expires_at: int | None = None) -> Job:
        """QUEUED, or RUNNING released for continuation (no run holds it) → CANCELLED at once.

        Raises:
            TransitionRejected: the job is gone, finished, or held by a run.
        """
        ...

    def request_cancel(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        """Ask the run that holds a RUNNING job to stop: sets ``cancel_requested_at`` (the first ask's time stays).

        Raises:
            TransitionRejected: the job is gone, not RUNNING, or released for continuation.
        """
        ...

    def settle_cancelled(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        run_id: str | None,
        stale_before_text: str,
        expires_at: int | None = None,
    ) -> Job:
        """RUNNING with a cancel asked → CANCELLED, by the run ``run_id`` that holds it, or by anyone once no run
        holds it (lease expired, or released for continuation). The result a run may have had is not stored.

        Raises:
            TransitionRejected: the job is gone, not RUNNING, no cancel was asked, or another run holds it.
        """
        ...

    def report_progress(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, percent: float, message: str
    ) -> Job:
        """Store the progress of the run ``run_id`` (``percent`` 0 to 100, ``message``); returns the job as written,
        which tells the run whether a cancel was asked.

        Raises:
            TransitionRejected: the job is gone or not RUNNING under this run.
        """
        ...

    def save_checkpoint(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, checkpoint: dict[str, Any], release: bool
    ) -> Job:
        """Store the run ``run_id``'s checkpoint; with ``release``, also release the job for continuation (it stays
        RUNNING, and the next delivery resumes it), which a job with a cancel asked is not.

        Raises:
            TransitionRejected: the job is gone, not RUNNING under this run, or (``release``) has a cancel asked.
            WriteRefused: the item would outgrow DynamoDB's 400 KB.
        """
        ...

    def record_callback(self, owner_id: str, job_id: str, callback: JobCallback) -> bool:
        """Store the delivery state of the job's callback (``callback`` replaces the last one); returns False, and
        writes nothing, when the job is gone (a callback never brings a deleted job back) or its callback is
        already DELIVERED (a late duplicate delivery's outcome does not overwrite it). Only ``callback`` changes:
        not ``updated_at``, not the status, so the write publishes no event and the relay sends nothing.

        Raises:
            ServiceUnavailable: DynamoDB failed or did not answer.
        """
        ...


class DynamoJobStore:
    """``JobStore`` on a DynamoDB table through a boto3 DynamoDB client.

    Args:
        table_name: the physical name of the ``Jobs`` table.
        client: a boto3 DynamoDB client; the process's cached one when omitted.
        clock: the current time in epoch seconds, against which ``expires_at`` is compared.

    Throttling, AWS-side failures and network errors raise ``jobs.models.ServiceUnavailable``.
    """

    def __init__(self, table_name: str, client: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self._table = table_name
        self._client = client
        self._clock = clock

    def _now(self) -> dict[str, str]:
        return {"N": str(int(self._clock()))}

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client, created on first use."""
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _key(self, owner_id: str, job_id: str) -> dict[str, Any]:
        return {"owner_id": {"S": owner_id}, "job_id": {"S": job_id}}

    def put_new(self, job: Job) -> None:
        with aws.transient_errors_as_unavailable("PutItem"):
            try:
                self.client.put_item(
                    TableName=self._table,
                    Item=job_to_item(job),
                    ConditionExpression="attribute_not_exists(job_id)",
                )
            except ClientError as error:
                if _is_condition_failure(error):
                    raise ValueError(f"job {job.job_id} exists already") from error
                raise

    def get(self, owner_id: str, job_id: str) -> Job | None:
        if not holdable_key(owner_id, job_id):
            return None
        with aws.transient_errors_as_unavailable("GetItem"):
            response = self.client.get_item(TableName=self._table, Key=self._key(owner_id, job_id), ConsistentRead=True)
        item = response.get("Item")
        if not item or Decimal(item.get(EXPIRES_AT, {}).get("N", _NEVER)) <= int(self._clock()):
            return None
        return item_to_job(item)

    def list_page(
        self, owner_id: str, *, limit: int, after_job_id: str | None, status: JobStatus | None = None
    ) -> tuple[list[Job], str | None]:
        # One item more than asked tells whether another page exists, so a cursor never leads to an empty page.
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "owner_id = :owner",
            "FilterExpression": _LIVE,
            "ExpressionAttributeValues": {":owner": {"S": owner_id}, ":now": self._now()},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": limit + 1,
        }
        if after_job_id is not None:
            request["ExclusiveStartKey"] = self._key(owner_id, after_job_id)
        if status is not None:
            # The index holds only the jobs of each status, so every item read is one returned. Index reads are
            # eventually consistent (DynamoDB offers nothing else on a global secondary index).
            prefix = status_key(status, "")
            request.update(IndexName=STATUS_INDEX, ConsistentRead=False)
            request["KeyConditionExpression"] += f" AND begins_with({STATUS_KEY}, :status)"
            request["ExpressionAttributeValues"][":status"] = {"S": prefix}
            if after_job_id is not None:
                request["ExclusiveStartKey"][STATUS_KEY] = {"S": prefix + after_job_id}
        jobs: list[Job] = []
        while True:  # expired items are read and filtered out; read on until the page (and one more) is full
            with aws.transient_errors_as_unavailable("Query"):
                response = self.client.query(**request)
            jobs.extend(item_to_job(item) for item in response.get("Items", []))
            if len(jobs) > limit or "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        if len(jobs) > limit:
            return jobs[:limit], jobs[limit - 1].job_id
        return jobs, None

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "owner_id = :owner AND job_id BETWEEN :low AND :high",
            "FilterExpression": _LIVE,
            "ExpressionAttributeValues": {
                ":owner": {"S": owner_id},
                ":low": {"S": lowest_job_id},
                ":high": {"S": highest_job_id},
                ":now": self._now(),
            },
            "ConsistentRead": True,
        }
        while True:
            with aws.transient_errors_as_unavailable("Query"):
                response = self.client.query(**request)
            for item in response.get("Items", []):
                yield item_to_job(item)
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def summary_pages(
        self,
        owner_id: str,
        lowest_job_id: str,
        highest_job_id: str,
        *,
        after_job_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[SummaryPage]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "owner_id = :owner AND job_id BETWEEN :low AND :high",
            "FilterExpression": _LIVE,
            "ProjectionExpression": ", ".join(SUMMARY_ATTRIBUTES),
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":owner": {"S": owner_id},
                ":low": {"S": lowest_job_id},
                ":high": {"S": highest_job_id},
                ":now": self._now(),
            },
            "ConsistentRead": False,
        }
        if page_size is not None:
            request["Limit"] = page_size
        if after_job_id is not None:
            request["ExclusiveStartKey"] = self._key(owner_id, after_job_id)
        while True:
            with aws.transient_errors_as_unavailable("Query"):
                response = self.client.query(**request)
            jobs = [
                JobSummary.model_validate({name: from_attribute_value(value) for name, value in item.items()})
                for item in response.get("Items", [])
            ]
            last = response.get("LastEvaluatedKey")
            yield SummaryPage(jobs, last["job_id"]["S"] if last else None)
            if last is None:
                return
            request["ExclusiveStartKey"] = last

    def delete(self, owner_id: str, job_id: str) -> bool:
        if not holdable_key(owner_id, job_id):
            return False
        with aws.transient_errors_as_unavailable("DeleteItem"):
            try:
                self.client.delete_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    ConditionExpression=f"attribute_exists(job_id) AND ({_LIVE})",
                    ExpressionAttributeValues={":now": self._now()},
                )
            except ClientError as error:
                if _is_condition_failure(error):
                    return False
                raise
        return True

    def index_queued(self, *, limit: int = 10000) -> int:
        """Put into the ``Queued`` index the QUEUED items written before it existed (they lack
        ``queued_shard``), at most ``limit`` per call; returns how many. A Scan of the whole table: an upgrade
        step, run once (README, "Upgrading"), never on a schedule. Each write is conditional on the item being
        QUEUED still, so a job that started meanwhile stays out of the index."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": f"#status = :queued AND attribute_not_exists({QUEUED_SHARD})",
            "ProjectionExpression": "owner_id, job_id",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":queued": {"S": JobStatus.QUEUED.value}},
        }
        indexed = 0
        while indexed < limit:
            with aws.transient_errors_as_unavailable("Scan"):
                response = self.client.scan(**request)
            for item in response.get("Items", []):
                if indexed >= limit:
                    break
                with aws.transient_errors_as_unavailable("UpdateItem"):
                    try:
                        self.client.update_item(
                            TableName=self._table,
                            Key={"owner_id": item["owner_id"], "job_id": item["job_id"]},
                            UpdateExpression=f"SET {QUEUED_SHARD} = :shard",
                            ConditionExpression="#status = :queued",
                            ExpressionAttributeNames={"#status": "status"},
                            ExpressionAttributeValues={
                                ":queued": {"S": JobStatus.QUEUED.value},
                                ":shard": {"S": queued_shard(item["job_id"]["S"])},
                            },
                        )
                        indexed += 1
                    except ClientError as error:
                        if not _is_condition_failure(error):
                            raise
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return indexed

    def list_queued(self, shard: str, *, updated_before_text: str) -> Iterator[tuple[str, str]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": QUEUED_INDEX,
            "KeyConditionExpression": f"{QUEUED_SHARD} = :shard",
            "FilterExpression": f"updated_at < :before AND (attribute_not_exists({RECONCILED_AT}) OR "
            f"{RECONCILED_AT} < :before)",
            "ExpressionAttributeValues": {":shard": {"S": shard}, ":before": {"S": updated_before_text}},
        }
        while True:
            with aws.transient_errors_as_unavailable("Query"):
                response = self.client.query(**request)
            for item in response.get("Items", []):
                yield item["owner_id"]["S"], item["job_id"]["S"]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def mark_reconciled(self, owner_id: str, job_id: str, *, now_text: str) -> None:
        if not holdable_key(owner_id, job_id):
            return
        with aws.transient_errors_as_unavailable("UpdateItem"):
            try:
                self.client.update_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    UpdateExpression=f"SET {RECONCILED_AT} = :now",
                    ConditionExpression="attribute_exists(job_id) AND #status = :queued",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":now": {"S": now_text}, ":queued": {"S": JobStatus.QUEUED.value}},
                )
            except ClientError as error:
                _raise_if_refused(error, "the reconciled_at write")  # an item at the size limit, say
                if not _is_condition_failure(error):
                    raise

    def record_callback(self, owner_id: str, job_id: str, callback: JobCallback) -> bool:
        if not holdable_key(owner_id, job_id):
            return False
        with aws.transient_errors_as_unavailable("UpdateItem"):
            try:
                self.client.update_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    UpdateExpression="SET #callback = :callback",
                    ConditionExpression=f"attribute_exists(job_id) AND ({_LIVE}) AND "
                    "(attribute_not_exists(#callback.#status) OR #callback.#status <> :delivered)",
                    ExpressionAttributeNames={"#callback": "callback", "#status": "status"},
                    ExpressionAttributeValues={
                        ":callback": to_attribute_value(callback.model_dump(mode="json", exclude_none=True)),
                        ":delivered": {"S": CallbackStatus.DELIVERED.value},
                        ":now": self._now(),
                    },
                )
            except ClientError as error:
                if _is_condition_failure(error):
                    return False
                raise
        return True

    def start(
        self, owner_id: str, job_id: str, *, now_text: str, stale_before_text: str, run_id: str | None = None
    ) -> Job:
        return self._transition(
            owner_id,
            job_id,
            JobStatus.RUNNING,
            condition=_STARTABLE,
            update="SET #status = :running, started_at = :now, leased_at = :now, run_id = :run, updated_at = :now "
            "ADD attempts :one",
            values={
                ":now": {"S": now_text},
                ":one": {"N": "1"},
                ":stale": {"S": stale_before_text},
                ":run": {"S": run_id or now_text},
            },
        )

    def resume(self, owner_id: str, job_id: str, *, now_text: str, run_id: str) -> Job:
        return self._transition(
            owner_id,
            job_id,
            JobStatus.RUNNING,
            condition=_RELEASED,
            update="SET leased_at = :now, run_id = :run, updated_at = :now",
            values={":now": {"S": now_text}, ":run": {"S": run_id}},
            remove=("continued_at",),
        )

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        run_id: str,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        expires_at: int | None = None,
    ) -> Job:
        update = "SET #status = :new, finished_at = :now, updated_at = :now"
        values: dict[str, Any] = {":new": {"S": status}, ":now": {"S": now_text}, ":run": {"S": run_id}}
        if expires_at is not None:
            update += f", {EXPIRES_AT} = :expires"
            values[":expires"] = {"N": str(expires_at)}
        if result is not None:
            update += ", #result = :result"
            values[":result"] = to_attribute_value(result)
        if error is not None:
            update += ", #error = :error"
            values[":error"] = to_attribute_value(error.model_dump())
        return self._transition(
            owner_id, job_id, status, condition=_OWN_RUN, update=update, values=values, remove=_RUN_STATE
        )

    def requeue(self, owner_id: str, job_id: str, *, run_id: str, now_text: str, error: JobError) -> Job:
        return self._transition(
            owner_id,
            job_id,
            JobStatus.QUEUED,
            condition=_OWN_RUN,
            update="SET #status = :queued, updated_at = :now, #error = :error",
            values={
                ":now": {"S": now_text},
                ":run": {"S": run_id},
                ":error": to_attribute_value(error.model_dump()),
            },
        )

    def fail_abandoned(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        stale_before_text: str,
        error: JobError,
        expires_at: int | None = None,
    ) -> Job:
        update = "SET #status = :failed, finished_at = :now, updated_at = :now, #error = :error"
        values = {
            ":now": {"S": now_text},
            ":stale": {"S": stale_before_text},
            ":error": to_attribute_value(error.model_dump()),
        }
        if expires_at is not None:
            update += f", {EXPIRES_AT} = :expires"
            values[":expires"] = {"N": str(expires_at)}
        return self._transition(
            owner_id,
            job_id,
            JobStatus.FAILED,
            condition=_ABANDONED,
            update=update,
            values=values,
            remove=_RUN_STATE,
        )

    def cancel_unheld(self, owner_id: str, job_id: str, *, now_text: str, expires_at: int | None = None) -> Job:
        update = "SET #status = :cancelled, finished_at = :now, updated_at = :now"
        values = {":now": {"S": now_text}}
        if expires_at is not None:
            update += f", {EXPIRES_AT} = :expires"
            values[":expires"] = {"N": str(expires_at)}
        return self._transition(
            owner_id, job_id, JobStatus.CANCELLED, condition=_UNHELD, update=update, values=values, remove=_RUN_STATE
        )

    def request_cancel(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        return self._transition(
            owner_id,
            job_id,
            JobStatus.RUNNING,
            condition=_HELD,
            update="SET cancel_requested_at = if_not_exists(cancel_requested_at, :now), updated_at = :now",
            values={":now": {"S": now_text}},
        )

    def settle_cancelled(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        run_id: str | None,
        stale_before_text: str,
        expires_at: int | None = None,
    ) -> Job:
        update = "SET #status = :cancelled, finished_at = :now, updated_at = :now"
        values = {":now": {"S": now_text}, ":run": {"S": run_id or ""}, ":stale": {"S": stale_before_text}}
        if expires_at is not None:
            update += f", {EXPIRES_AT} = :expires"
            values[":expires"] = {"N": str(expires_at)}
        return self._transition(
            owner_id,
            job_id,
            JobStatus.CANCELLED,
            condition=_CANCEL_SETTLEABLE,
            update=update,
            values=values,
            remove=_RUN_STATE,
        )

    def report_progress(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, percent: float, message: str
    ) -> Job:
        progress = {"percent": percent, "message": message, "updated_at": now_text}
        return self._transition(
            owner_id,
            job_id,
            JobStatus.RUNNING,
            condition=_HOLDS,
            update="SET progress = :progress",
            values={":run": {"S": run_id}, ":progress": to_attribute_value(progress)},
        )

    def save_checkpoint(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, checkpoint: dict[str, Any], release: bool
    ) -> Job:
        update = "SET checkpoint = :checkpoint, updated_at = :now"
        values = {":run": {"S": run_id}, ":now": {"S": now_text}, ":checkpoint": to_attribute_value(checkpoint)}
        if release:
            update += ", continued_at = :now"
        return self._transition(
            owner_id,
            job_id,
            JobStatus.RUNNING,
            condition=_OWN_RUN if release else _HOLDS,
            update=update,
            values=values,
        )

    def _transition(
        self,
        owner_id: str,
        job_id: str,
        new_status: JobStatus,
        *,
        condition: str,
        update: str,
        values: dict[str, Any],
        remove: tuple[str, ...] = (),
    ) -> Job:
        if not holdable_key(owner_id, job_id):
            raise TransitionRejected(None)
        # Every status change moves the job in the ByStatus index too, and into or out of the Queued index.
        update = update.replace("SET ", f"SET {STATUS_KEY} = :status_key, ", 1)
        values = {**values, ":status_key": {"S": status_key(new_status, job_id)}}
        removed = list(remove)
        if new_status == JobStatus.QUEUED:
            update = update.replace("SET ", f"SET {QUEUED_SHARD} = :queued_shard, ", 1)
            values[":queued_shard"] = {"S": queued_shard(job_id)}
        else:
            removed.append(QUEUED_SHARD)
        if removed:
            update += f" REMOVE {', '.join(removed)}"
        text = f"{condition} {update}"
        names = {name: name[1:] for name in ("#status", "#result", "#error") if name in text}
        statuses = {f":{s.lower()}": {"S": s.value} for s in JobStatus if f":{s.lower()}" in text}
        with aws.transient_errors_as_unavailable("UpdateItem"):
            try:
                response = self.client.update_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**statuses, **values},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as failure:
                if _is_condition_failure(failure):
                    old = failure.response.get("Item")
                    raise TransitionRejected(item_to_job(old) if old else None) from failure
                _raise_if_refused(failure, f"the job's {new_status} write")
                raise
        return item_to_job(response["Attributes"])


#: The TTL attribute (epoch seconds): set when a job finishes; an item past it is gone for every read.
EXPIRES_AT = "expires_at"
_NEVER = str(2**62)
#: Not expired (yet): the filter of every read that may meet an expired item DynamoDB has not deleted yet.
_LIVE = f"attribute_not_exists({EXPIRES_AT}) OR {EXPIRES_AT} > :now"
# Conditions on a run's lease. A RUNNING job is held by the run whose token is ``run_id`` from ``leased_at`` until
# the lease ends; ``continued_at`` marks one its run released for continuation; ``cancel_requested_at`` one a cancel
# was asked of. Items a version before run ids wrote have neither ``run_id`` nor ``leased_at``: their lease began at
# ``started_at``. Timestamps are RFC 3339 text of one fixed format, so their string order is their time order.
_STALE = "(leased_at < :stale OR (attribute_not_exists(leased_at) AND started_at < :stale))"
_NO_CANCEL = "attribute_not_exists(cancel_requested_at)"
_RELEASED_MARK = "attribute_exists(continued_at)"
#: Due: no ``not_before``, or one that has come (``:now``).
_DUE = "(attribute_not_exists(not_before) OR not_before <= :now)"
#: QUEUED and due, or RUNNING under a lease that has expired (not released for continuation, no cancel asked).
_STARTABLE = (
    f"attribute_exists(job_id) AND ((#status = :queued AND {_DUE}) OR (#status = :running AND "
    f"attribute_not_exists(continued_at) AND {_NO_CANCEL} AND {_STALE}))"
)
#: RUNNING, released for continuation by its last run, no cancel asked.
_RELEASED = f"attribute_exists(job_id) AND #status = :running AND {_RELEASED_MARK} AND {_NO_CANCEL}"
#: RUNNING under the run whose token is :run.
_HOLDS = "attribute_exists(job_id) AND #status = :running AND run_id = :run"
#: RUNNING under the run whose token is :run, no cancel asked: every way its run leaves RUNNING but cancelled.
_OWN_RUN = f"{_HOLDS} AND {_NO_CANCEL}"
#: QUEUED, or RUNNING that no live run holds, no cancel asked (a dead-lettered job).
_ABANDONED = (
    "attribute_exists(job_id) AND (#status = :queued OR (#status = :running AND "
    f"{_NO_CANCEL} AND ({_RELEASED_MARK} OR {_STALE})))"
)
#: QUEUED, or RUNNING released for continuation: nothing runs it, a cancel ends it at once.
_UNHELD = f"attribute_exists(job_id) AND (#status = :queued OR (#status = :running AND {_RELEASED_MARK}))"
#: RUNNING and held by a run (not released): a cancel is asked of that run.
_HELD = "attribute_exists(job_id) AND #status = :running AND attribute_not_exists(continued_at)"
#: RUNNING with a cancel asked, held by :run or by no live run.
_CANCEL_SETTLEABLE = (
    "attribute_exists(job_id) AND #status = :running AND attribute_exists(cancel_requested_at) AND "
    f"(run_id = :run OR {_RELEASED_MARK} OR {_STALE})"
)
#: What a run leaves behind that a finished job does not need.
_RUN_STATE = ("checkpoint", "continued_at")


def _is_condition_failure(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _raise_if_refused(error: ClientError, what: str) -> None:
    """Raise ``WriteRefused`` for an error that no retry of the same write can cure (``ValidationException``)."""
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ValidationException":
        raise WriteRefused(f"DynamoDB refused {what}", code=code) from error


class InMemoryJobStore:
    """``JobStore`` in a dict, for unit tests. Same semantics as ``DynamoJobStore``, including the
    JSON-number round trip (values are stored as ``model_dump(mode="json")`` copies)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        #: ``expires_at`` of the finished jobs that have one, by key (the TTL attribute of the DynamoDB item).
        self.expires_at: dict[tuple[str, str], int] = {}
        #: ``reconciled_at`` by key (``mark_reconciled``).
        self.reconciled_at: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()
        self._clock = clock

    def _live(self, key: tuple[str, str]) -> bool:
        return key in self.items and self.expires_at.get(key, 2**62) > int(self._clock())

    def _load(self, key: tuple[str, str]) -> Job | None:
        data = self.items.get(key)
        return Job.model_validate(copy.deepcopy(data)) if data is not None else None

    def _save(self, job: Job) -> None:
        self.items[(job.owner_id, job.job_id)] = job_record(job)

    def put_new(self, job: Job) -> None:
        with self._lock:
            if (job.owner_id, job.job_id) in self.items:
                raise ValueError(f"job {job.job_id} exists already")
            self._save(job)
            if (start := reconcile_from(job)) is not None:
                self.reconciled_at[(job.owner_id, job.job_id)] = start

    def get(self, owner_id: str, job_id: str) -> Job | None:
        if not holdable_key(owner_id, job_id):
            return None
        return self._load((owner_id, job_id)) if self._live((owner_id, job_id)) else None

    def list_page(
        self, owner_id: str, *, limit: int, after_job_id: str | None, status: JobStatus | None = None
    ) -> tuple[list[Job], str | None]:
        ids = sorted(
            (
                job_id
                for (owner, job_id), data in self.items.items()
                if owner == owner_id and (status is None or data["status"] == status) and self._live((owner, job_id))
            ),
            reverse=True,
        )
        if after_job_id is not None:
            ids = [job_id for job_id in ids if job_id < after_job_id]
        page = [job for job_id in ids[:limit] if (job := self._load((owner_id, job_id)))]
        return page, (page[-1].job_id if len(ids) > limit else None)

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        ids = sorted(
            job_id
            for owner, job_id in self.items
            if owner == owner_id and lowest_job_id <= job_id <= highest_job_id and self._live((owner, job_id))
        )
        for job_id in ids:
            job = self._load((owner_id, job_id))
            if job is not None:
                yield job

    def summary_pages(
        self,
        owner_id: str,
        lowest_job_id: str,
        highest_job_id: str,
        *,
        after_job_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[SummaryPage]:
        size = page_size or 100
        ids = sorted(
            job_id
            for owner, job_id in list(self.items)
            if owner == owner_id
            and lowest_job_id <= job_id <= highest_job_id
            and (after_job_id is None or job_id > after_job_id)
        )
        for first in range(0, max(len(ids), 1), size):
            chunk = ids[first : first + size]
            jobs = [
                JobSummary.model_validate(job.model_dump())
                for job_id in chunk
                if self._live((owner_id, job_id)) and (job := self._load((owner_id, job_id))) is not None
            ]
            yield SummaryPage(jobs, chunk[-1] if first + size < len(ids) else None)

    def index_queued(self, *, limit: int = 10000) -> int:  # noqa: ARG002 - the protocol's signature
        return 0  # every QUEUED job here is in the index: no item predates it

    def list_queued(self, shard: str, *, updated_before_text: str) -> Iterator[tuple[str, str]]:
        found = sorted(
            (job_id, owner)
            for (owner, job_id), data in list(self.items.items())
            if data["status"] == JobStatus.QUEUED
            and queued_shard(job_id) == shard
            and data["updated_at"] < updated_before_text
            and self.reconciled_at.get((owner, job_id), "") < updated_before_text
        )
        for job_id, owner in found:
            yield owner, job_id

    def mark_reconciled(self, owner_id: str, job_id: str, *, now_text: str) -> None:
        with self._lock:
            data = self.items.get((owner_id, job_id))
            if data is not None and data["status"] == JobStatus.QUEUED:
                self.reconciled_at[(owner_id, job_id)] = now_text

    def record_callback(self, owner_id: str, job_id: str, callback: JobCallback) -> bool:
        with self._lock:
            job = self._load((owner_id, job_id)) if self._live((owner_id, job_id)) else None
            if job is None or (job.callback is not None and job.callback.status == CallbackStatus.DELIVERED):
                return False
            self._save(job.model_copy(update={"callback": callback}))
            return True

    def delete(self, owner_id: str, job_id: str) -> bool:
        if not holdable_key(owner_id, job_id):
            return False
        with self._lock:
            if not self._live((owner_id, job_id)):
                return False
            self.expires_at.pop((owner_id, job_id), None)
            self.reconciled_at.pop((owner_id, job_id), None)
            return self.items.pop((owner_id, job_id), None) is not None

    def start(
        self, owner_id: str, job_id: str, *, now_text: str, stale_before_text: str, run_id: str | None = None
    ) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: (
                (job.status == JobStatus.QUEUED and _due(job, now_text))
                or (
                    job.status == JobStatus.RUNNING
                    and not _released(job)
                    and not _cancel(job)
                    and _stale(job, stale_before_text)
                )
            ),
            lambda job: {
                "status": JobStatus.RUNNING,
                "started_at": now_text,
                "leased_at": now_text,
                "run_id": run_id or now_text,
                "updated_at": now_text,
                "attempts": job.attempts + 1,
            },
        )

    def resume(self, owner_id: str, job_id: str, *, now_text: str, run_id: str) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: job.status == JobStatus.RUNNING and _released(job) and not _cancel(job),
            lambda job: {"leased_at": now_text, "run_id": run_id, "updated_at": now_text, "continued_at": None},
        )

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        run_id: str,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        expires_at: int | None = None,
    ) -> Job:
        changes: dict[str, Any] = {"status": status, "finished_at": now_text, "updated_at": now_text, **_NO_RUN_STATE}
        if result is not None:
            changes["result"] = copy.deepcopy(result)
        if error is not None:
            changes["error"] = error.model_dump()
        return self._transition(
            owner_id, job_id, lambda job: _holds(job, run_id) and not _cancel(job), lambda job: changes, expires_at
        )

    def requeue(self, owner_id: str, job_id: str, *, run_id: str, now_text: str, error: JobError) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: _holds(job, run_id) and not _cancel(job),
            lambda job: {"status": JobStatus.QUEUED, "updated_at": now_text, "error": error.model_dump()},
        )

    def fail_abandoned(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        stale_before_text: str,
        error: JobError,
        expires_at: int | None = None,
    ) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: (
                (job.status == JobStatus.QUEUED and _due(job, now_text))
                or (
                    job.status == JobStatus.RUNNING
                    and not _cancel(job)
                    and (_released(job) or _stale(job, stale_before_text))
                )
            ),
            lambda job: {
                "status": JobStatus.FAILED,
                "finished_at": now_text,
                "updated_at": now_text,
                "error": error.model_dump(),
                **_NO_RUN_STATE,
            },
            expires_at,
        )

    def cancel_unheld(self, owner_id: str, job_id: str, *, now_text: str, expires_at: int | None = None) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: job.status == JobStatus.QUEUED or (job.status == JobStatus.RUNNING and _released(job)),
            lambda job: {
                "status": JobStatus.CANCELLED,
                "finished_at": now_text,
                "updated_at": now_text,
                **_NO_RUN_STATE,
            },
            expires_at,
        )

    def request_cancel(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: job.status == JobStatus.RUNNING and not _released(job),
            lambda job: {
                "cancel_requested_at": job.model_dump(mode="json")["cancel_requested_at"] or now_text,
                "updated_at": now_text,
            },
        )

    def settle_cancelled(
        self,
        owner_id: str,
        job_id: str,
        *,
        now_text: str,
        run_id: str | None,
        stale_before_text: str,
        expires_at: int | None = None,
    ) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: (
                job.status == JobStatus.RUNNING
                and _cancel(job)
                and ((run_id is not None and job.run_id == run_id) or _released(job) or _stale(job, stale_before_text))
            ),
            lambda job: {
                "status": JobStatus.CANCELLED,
                "finished_at": now_text,
                "updated_at": now_text,
                **_NO_RUN_STATE,
            },
            expires_at,
        )

    def report_progress(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, percent: float, message: str
    ) -> Job:
        return self._transition(
            owner_id,
            job_id,
            lambda job: _holds(job, run_id),
            lambda job: {"progress": {"percent": percent, "message": message, "updated_at": now_text}},
        )

    def save_checkpoint(
        self, owner_id: str, job_id: str, *, run_id: str, now_text: str, checkpoint: dict[str, Any], release: bool
    ) -> Job:
        changes: dict[str, Any] = {"checkpoint": copy.deepcopy(checkpoint), "updated_at": now_text}
        if release:
            changes["continued_at"] = now_text
        return self._transition(
            owner_id,
            job_id,
            lambda job: _holds(job, run_id) and not (release and _cancel(job)),
            lambda job: changes,
        )

    def _transition(
        self,
        owner_id: str,
        job_id: str,
        allowed: Callable[[Job], bool],
        changes: Callable[[Job], dict[str, Any]],
        expires_at: int | None = None,
    ) -> Job:
        if not holdable_key(owner_id, job_id):
            raise TransitionRejected(None)
        # Check and write under one lock: a conditional write is atomic in DynamoDB, so it is here too.
        with self._lock:
            job = self._load((owner_id, job_id))
            if job is None or not allowed(job):
                raise TransitionRejected(job)
            data = job_record(job) | changes(job)
            updated = Job.model_validate({name: value for name, value in data.items() if value is not None})
            self._save(updated)
            if expires_at is not None:
                self.expires_at[(owner_id, job_id)] = expires_at
            return updated


#: A finished job keeps no checkpoint and no continuation mark (``_RUN_STATE``).
_NO_RUN_STATE: dict[str, Any] = {"checkpoint": None, "continued_at": None}


def _stale(job: Job, stale_before_text: str) -> bool:
    if job.leased_at is not None:
        return job.leased_at < stale_before_text
    return job.started_at is not None and format_timestamp(job.started_at) < stale_before_text


def _due(job: Job, now_text: str) -> bool:
    return job.not_before is None or format_timestamp(job.not_before) <= now_text


def _released(job: Job) -> bool:
    return job.continued_at is not None


def _cancel(job: Job) -> bool:
    return job.cancel_requested_at is not None


def _holds(job: Job, run_id: str) -> bool:
    return job.status == JobStatus.RUNNING and job.run_id == run_id


__all__ = [
    "DynamoJobStore",
    "InMemoryJobStore",
    "JobStore",
    "JobSummary",
    "SummaryPage",
    "from_attribute_value",
    "holdable_key",
    "item_to_job",
    "job_to_item",
    "queued_shard",
    "to_attribute_value",
]
