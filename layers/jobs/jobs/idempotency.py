"""Idempotent job creation: ``POST /api/v1/jobs`` with an ``Idempotency-Key`` header, through powertools'
idempotency utility (``idempotent_function`` over a DynamoDB persistence layer, its own table).

The key is scoped per owner: the record's key is a hash of the verified owner id and the header's value, so bob
reusing alice's key creates his own job. The request body is the payload validated on a retry: the same key
with a different body is ``IdempotencyValidationError`` (422; the body as ``JobCreate.idempotency_view`` gives it,
which a field added to the model later leaves unchanged for requests that do not use it), a retry while the first
attempt still runs is ``IdempotencyAlreadyInProgressError`` (409). A retry of a completed attempt returns the first
response (the same job) without calling the service again: no second job, no second message.

A write whose outcome is unknown (DynamoDB throttled, failed or did not answer: the item may have landed) must not
free the key, or the client's retry would make a second job: powertools deletes the record of an attempt that
raises. So the attempt returns instead, recording the job it tried to write as ``{"in_doubt": job}``; the
request answers 503, and the retry, finding that record, settles the same job id: the stored job when the write
landed, else the job written now. A record written before this change holds the job itself, and reads as before.
An attempt that fails for any other reason (a validation error) leaves no record, so its retry runs again.

powertools stores a record's response as JSON with its keys sorted, which would reorder a payload's members on
every replay; so a record holds the job with its payload as JSON text (``payload_json``), and a replay returns
the members in the order they were sent. A record written before (the payload an object) reads as before. The
validation hash covers ``request`` (the parsed ``JobCreate``) exactly as before, so a retry that spans an
upgrade matches the record its first attempt wrote.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import BaseError as IdempotencyError
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from jobs import aws
from jobs.models import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyUnavailable,
    Job,
    JobCreate,
    ServiceUnavailable,
    payload_text,
)
from jobs.observability import logger
from jobs.service import JobService
from jobs.settings import aws_settings

#: The member of a record's response that holds a job whose write was in doubt.
IN_DOUBT = "in_doubt"
#: The member of a record's job that holds its payload as JSON text, in the order it was sent.
PAYLOAD_JSON = "payload_json"
#: The prefix of every record's key (``<prefix>#<hash>``), fixed so that renaming code never orphans records.
KEY_PREFIX = "jobs.create_job"


class JobCreator:
    """Creates jobs, once per ``(owner, Idempotency-Key)`` when a key is given.

    Args:
        service: creates the job.
        table_name: the idempotency table (partition key ``id``, TTL attribute ``expiration``).
        expires_after_seconds: how long a key is remembered.
        client: a boto3 DynamoDB client for the persistence layer.
    """

    def __init__(self, service: JobService, table_name: str, *, expires_after_seconds: int, client: Any) -> None:
        self.service = service
        self.config = IdempotencyConfig(
            event_key_jmespath="[owner_id, key]",
            payload_validation_jmespath="request",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
            hash_function="sha256",
        )
        self.persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._create_once = idempotent_function(
            self._create,
            data_keyword_argument="attempt",
            persistence_store=self.persistence,
            config=self.config,
            key_prefix=KEY_PREFIX,
        )

    def create(
        self, owner_id: str, request: JobCreate, *, key: str | None = None, context: LambdaContext | None = None
    ) -> Job:
        """The created job; with ``key``, the job that the first request with this owner and key created.

        ``context`` lets an attempt that dies with its Lambda invocation release the key when the invocation's
        time is up (powertools' in-progress expiry), instead of holding it until the record expires.

        Raises:
            IdempotencyKeyReused: the key was used with another body (powertools' ``IdempotencyValidationError``).
            IdempotencyInProgress: the first request with this key has not finished
                (``IdempotencyAlreadyInProgressError``).
            IdempotencyUnavailable: any other error of powertools' idempotency utility (its records could not be
                read or written).
        """
        if key is None:
            return self.service.create_job(owner_id, request)
        if context is not None:
            self.config.register_lambda_context(context)
        attempt = {"owner_id": owner_id, "key": key, "request": request.idempotency_view()}
        # As jobs' own errors, so that the API's error table (jobs.http) never imports powertools' idempotency
        # package (it loads boto3, tens of milliseconds of every cold start) for requests without a key.
        try:
            created: dict[str, Any] = self._create_once(attempt=attempt)
        except IdempotencyValidationError as error:
            raise IdempotencyKeyReused(str(error)) from error
        except IdempotencyAlreadyInProgressError as error:
            raise IdempotencyInProgress(str(error)) from error
        except IdempotencyError as error:
            raise IdempotencyUnavailable(type(error).__name__) from error
        if IN_DOUBT in created:
            return self._settle(attempt, recalled(created[IN_DOUBT], owner_id))
        return recalled(created, owner_id)

    def _settle(self, attempt: dict[str, Any], job: Job) -> Job:
        """Settle an in-doubt create, then remember the job itself for the key, so that later retries return it
        without writing (a job deleted after it was settled is never written again)."""
        settled = self.service.settle_in_doubt(job)
        try:
            self.persistence.save_success(data=attempt, result=remembered(settled))
        except (ClientError, BotoCoreError, IdempotencyError) as error:
            # The record still says in doubt: the next retry settles again and finds the same job.
            logger.warning("Settled job not remembered for its key: %s", type(error).__name__)
        return settled

    def _create(self, attempt: dict[str, Any]) -> dict[str, Any]:
        job = self.service.new_job(attempt["owner_id"], JobCreate.model_validate(attempt["request"]))
        try:
            # One attempt is kept for recording the outcome: a write that hangs must still leave the key saying
            # which job it tried, or a retry after the record's expiry would write a second one.
            with aws.reserving(aws_settings().attempt_seconds):
                self.service.store_new(job)
        except ServiceUnavailable:
            return {IN_DOUBT: remembered(job)}  # keeps the key: the retry settles this very job
        return remembered(job)


def remembered(job: Job) -> dict[str, Any]:
    """A job as an idempotency record holds it: its JSON, with the payload as JSON text (``PAYLOAD_JSON``)."""
    data = job.model_dump(mode="json", exclude={"payload"})
    data[PAYLOAD_JSON] = payload_text(job.payload)
    return data


def recalled(data: dict[str, Any], owner_id: str) -> Job:
    """The job an idempotency record holds, whether written by ``remembered`` or before it (``payload``, an
    object whose members powertools sorted)."""
    fields = {name: value for name, value in data.items() if name != PAYLOAD_JSON}
    if PAYLOAD_JSON in data:
        fields["payload"] = json.loads(data[PAYLOAD_JSON])
    return Job.model_validate({**fields, "owner_id": owner_id})
