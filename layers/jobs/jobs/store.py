"""The job store: the only module that speaks DynamoDB.

Table ``Jobs``: partition key ``owner_id`` (the caller's JWT ``sub``), sort key ``job_id`` (a UUIDv7, so the
sort key follows creation time). Every operation names the owner, so one owner can never read or write
another's partition. Reads are strongly consistent. Status changes are conditional writes on the expected
current status and on the item existing: a status only moves forward, and a deleted job is never recreated.

``DynamoJobStore`` is the real store; ``InMemoryJobStore`` is a domain fake with the same semantics for unit
tests. ``tests/integration/test_store_contract.py`` runs one suite against both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from jobs import aws
from jobs.models import Job, JobError, JobStatus, TransitionRejected

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_value(value: Any) -> Any:
    """A JSON-like Python value as a DynamoDB ``AttributeValue``; floats become exact ``Decimal`` text.

    ``repr`` of a float is the shortest text that reads back as the same float, so ``0.1`` is stored as
    ``0.1``, not as the binary expansion.
    """
    return _serializer.serialize(_decimals_in(value))


def from_attribute_value(value: Mapping[str, Any]) -> Any:
    """A DynamoDB ``AttributeValue`` as a JSON-like Python value: integral numbers as ``int``, others as
    ``float``, so a payload's ``9000`` comes back as the JSON number 9000 and ``0.1`` as 0.1."""
    return _numbers_in(_deserializer.deserialize(value))


def _decimals_in(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _decimals_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals_in(item) for item in value]
    return value


def _numbers_in(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _numbers_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_in(item) for item in value]
    return value


def job_to_item(job: Job) -> dict[str, Any]:
    """The DynamoDB item (``AttributeValue`` map) of a job; attributes that are None are left out."""
    data = job.model_dump(mode="json", exclude_none=True)
    data["owner_id"] = job.owner_id
    return {name: to_attribute_value(value) for name, value in data.items()}


def item_to_job(item: Mapping[str, Any]) -> Job:
    """The ``Job`` of a DynamoDB item (``AttributeValue`` map)."""
    return Job.model_validate({name: from_attribute_value(value) for name, value in item.items()})


class JobStore(Protocol):
    """What the service needs from a job store. Implementations must keep the semantics in the docstrings."""

    def put_new(self, job: Job) -> None:
        """Write a new job. Raises ``ValueError`` if the key exists (it never does for a fresh UUIDv7)."""

    def get(self, owner_id: str, job_id: str) -> Job | None:
        """The owner's job, read strongly consistently, or None."""

    def list_page(self, owner_id: str, *, limit: int, after_job_id: str | None) -> tuple[list[Job], str | None]:
        """Up to ``limit`` of the owner's jobs, newest first, older than ``after_job_id`` when given.

        Returns the jobs and the ``job_id`` to pass as ``after_job_id`` for the next page, or None when there
        is no further job (never a cursor that leads to an empty page).
        """
        ...

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        """The owner's jobs whose ids lie in ``[lowest_job_id, highest_job_id]``, oldest first."""
        ...

    def delete(self, owner_id: str, job_id: str) -> bool:
        """Delete the owner's job whatever its status; False when there was none."""
        ...

    def start(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        """QUEUED → RUNNING, counting one more attempt; returns the job as written.

        Raises:
            TransitionRejected: the job is gone or not QUEUED (``current`` says which).
        """
        ...

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> Job:
        """RUNNING → ``status`` (SUCCEEDED with ``result`` or FAILED with ``error``); returns the job as written.

        Raises:
            TransitionRejected: the job is gone or not RUNNING.
        """
        ...


class DynamoJobStore:
    """``JobStore`` on a DynamoDB table through a boto3 DynamoDB client.

    Args:
        table_name: the physical name of the ``Jobs`` table.
        client: a boto3 DynamoDB client; the process's cached one when omitted.

    Throttling, AWS-side failures and network errors raise ``jobs.models.ServiceUnavailable``.
    """

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self._table = table_name
        self._client = client

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
        with aws.transient_errors_as_unavailable("GetItem"):
            response = self.client.get_item(TableName=self._table, Key=self._key(owner_id, job_id), ConsistentRead=True)
        item = response.get("Item")
        return item_to_job(item) if item else None

    def list_page(self, owner_id: str, *, limit: int, after_job_id: str | None) -> tuple[list[Job], str | None]:
        # One item more than asked tells whether another page exists, so a cursor never leads to an empty page.
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "owner_id = :owner",
            "ExpressionAttributeValues": {":owner": {"S": owner_id}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": limit + 1,
        }
        if after_job_id is not None:
            request["ExclusiveStartKey"] = self._key(owner_id, after_job_id)
        with aws.transient_errors_as_unavailable("Query"):
            response = self.client.query(**request)
        jobs = [item_to_job(item) for item in response.get("Items", [])]
        if len(jobs) > limit:
            return jobs[:limit], jobs[limit - 1].job_id
        return jobs, None

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "owner_id = :owner AND job_id BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":owner": {"S": owner_id},
                ":low": {"S": lowest_job_id},
                ":high": {"S": highest_job_id},
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

    def delete(self, owner_id: str, job_id: str) -> bool:
        with aws.transient_errors_as_unavailable("DeleteItem"):
            try:
                self.client.delete_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    ConditionExpression="attribute_exists(job_id)",
                )
            except ClientError as error:
                if _is_condition_failure(error):
                    return False
                raise
        return True

    def start(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        return self._transition(
            owner_id,
            job_id,
            expected=JobStatus.QUEUED,
            update="SET #status = :new, started_at = :now, updated_at = :now ADD attempts :one",
            values={":new": {"S": JobStatus.RUNNING}, ":now": {"S": now_text}, ":one": {"N": "1"}},
        )

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> Job:
        update = "SET #status = :new, finished_at = :now, updated_at = :now"
        values: dict[str, Any] = {":new": {"S": status}, ":now": {"S": now_text}}
        if result is not None:
            update += ", #result = :result"
            values[":result"] = to_attribute_value(result)
        if error is not None:
            update += ", #error = :error"
            values[":error"] = to_attribute_value(error.model_dump())
        return self._transition(owner_id, job_id, expected=JobStatus.RUNNING, update=update, values=values)

    def _transition(
        self, owner_id: str, job_id: str, *, expected: JobStatus, update: str, values: dict[str, Any]
    ) -> Job:
        names = {"#status": "status"}
        if "#result" in update:
            names["#result"] = "result"
        if "#error" in update:
            names["#error"] = "error"
        with aws.transient_errors_as_unavailable("UpdateItem"):
            try:
                response = self.client.update_item(
                    TableName=self._table,
                    Key=self._key(owner_id, job_id),
                    UpdateExpression=update,
                    ConditionExpression="attribute_exists(job_id) AND #status = :expected",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":expected": {"S": expected}},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as failure:
                if _is_condition_failure(failure):
                    old = failure.response.get("Item")
                    raise TransitionRejected(item_to_job(old) if old else None) from failure
                raise
        return item_to_job(response["Attributes"])


def _is_condition_failure(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


class InMemoryJobStore:
    """``JobStore`` in a dict, for unit tests. Same semantics as ``DynamoJobStore``, including the
    JSON-number round trip (values are stored as ``model_dump(mode="json")`` copies)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def _load(self, key: tuple[str, str]) -> Job | None:
        data = self.items.get(key)
        return Job.model_validate(copy.deepcopy(data)) if data is not None else None

    def _save(self, job: Job) -> None:
        data = job.model_dump(mode="json", exclude_none=True)
        data["owner_id"] = job.owner_id
        self.items[(job.owner_id, job.job_id)] = data

    def put_new(self, job: Job) -> None:
        if (job.owner_id, job.job_id) in self.items:
            raise ValueError(f"job {job.job_id} exists already")
        self._save(job)

    def get(self, owner_id: str, job_id: str) -> Job | None:
        return self._load((owner_id, job_id))

    def list_page(self, owner_id: str, *, limit: int, after_job_id: str | None) -> tuple[list[Job], str | None]:
        ids = sorted((job_id for owner, job_id in self.items if owner == owner_id), reverse=True)
        if after_job_id is not None:
            ids = [job_id for job_id in ids if job_id < after_job_id]
        page = [job for job_id in ids[:limit] if (job := self._load((owner_id, job_id)))]
        return page, (page[-1].job_id if len(ids) > limit else None)

    def list_range(self, owner_id: str, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        ids = sorted(
            job_id for owner, job_id in self.items if owner == owner_id and lowest_job_id <= job_id <= highest_job_id
        )
        for job_id in ids:
            job = self._load((owner_id, job_id))
            if job is not None:
                yield job

    def delete(self, owner_id: str, job_id: str) -> bool:
        return self.items.pop((owner_id, job_id), None) is not None

    def start(self, owner_id: str, job_id: str, *, now_text: str) -> Job:
        job = self._expect(owner_id, job_id, JobStatus.QUEUED)
        data = job.model_dump(mode="json") | {
            "owner_id": owner_id,
            "status": JobStatus.RUNNING,
            "started_at": now_text,
            "updated_at": now_text,
            "attempts": job.attempts + 1,
        }
        return self._store_and_return(data)

    def finish(
        self,
        owner_id: str,
        job_id: str,
        *,
        status: JobStatus,
        now_text: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> Job:
        job = self._expect(owner_id, job_id, JobStatus.RUNNING)
        data = job.model_dump(mode="json") | {
            "owner_id": owner_id,
            "status": status,
            "finished_at": now_text,
            "updated_at": now_text,
        }
        if result is not None:
            data["result"] = copy.deepcopy(result)
        if error is not None:
            data["error"] = error.model_dump()
        return self._store_and_return(data)

    def _expect(self, owner_id: str, job_id: str, status: JobStatus) -> Job:
        job = self._load((owner_id, job_id))
        if job is None or job.status != status:
            raise TransitionRejected(job)
        return job

    def _store_and_return(self, data: dict[str, Any]) -> Job:
        job = Job.model_validate(data)
        self._save(job)
        return job


__all__ = [
    "DynamoJobStore",
    "InMemoryJobStore",
    "JobStore",
    "from_attribute_value",
    "item_to_job",
    "job_to_item",
    "to_attribute_value",
]
