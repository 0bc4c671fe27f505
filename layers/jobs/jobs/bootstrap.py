"""The one place where real dependencies are wired: settings → store, queue, service, authenticator.

Everything is built on first use and cached for the life of the Lambda sandbox, never at import time (moto
must be active first in tests, and a request that needs no SQS client never creates one).
``reset()`` drops the cache; tests call it between cases.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from jobs import aws, settings, webhooks
from jobs.auth import Authenticator
from jobs.models import ServiceUnavailable, WebhookPublicKeys
from jobs.observability import logger
from jobs.processors import BUILT_IN_TYPES, FAULT_TYPES, Registry
from jobs.queue import SourceQueues, SqsDiscardedBatchQueue, SqsJobQueue
from jobs.service import JobService
from jobs.store import DynamoJobStore

if TYPE_CHECKING:
    from jobs.callbacks import CallbackSender
    from jobs.idempotency import JobCreator
    from jobs.slots import DynamoOwnerSlots


@cache
def registry() -> Registry:
    """The job types this process serves: ``BUILT_IN_TYPES``, plus ``FAULT_TYPES`` when ``JOBS_FAULT_INJECTION``
    is on (never in a deployed stack)."""
    types = [*BUILT_IN_TYPES.values()]
    if settings.job_type_settings().fault_injection:
        types.extend(FAULT_TYPES.values())
    return Registry(types)


@cache
def api_service() -> JobService:
    """The API function's service: the DynamoDB store only (the table's stream enqueues new jobs)."""
    return JobService(DynamoJobStore(settings.store_settings().table_name), registry=registry())


@cache
def ssm_parameter(name: str, *, decrypt: bool) -> aws.SsmParameter:
    """The process's reader of one SSM parameter, its value cached ``CallbackSettings.keys_max_age_seconds`` (5
    minutes by default: a key rotation shows within that)."""
    return aws.SsmParameter(name, settings.callback_settings().keys_max_age_seconds, decrypt=decrypt)


def _key_parameter(name: str, *, decrypt: bool, what: str) -> str:
    """The value of the callback key parameter ``name`` (``what`` names it in errors and the log line).

    Raises:
        ServiceUnavailable: the name is unset, or the parameter cannot be read.
    """
    if not name:
        raise ServiceUnavailable(f"the {what} are not configured")
    try:
        return ssm_parameter(name, decrypt=decrypt)()
    except aws.ParameterUnavailable as error:
        logger.error(f"The {what} could not be read", extra={"reason": str(error)})
        raise ServiceUnavailable(f"the {what} could not be read") from error


def webhook_public_keys() -> WebhookPublicKeys:
    """The public keys of callback signatures, from the SSM parameter ``CallbackSettings.public_key_parameter``
    names (``whpk_`` keys, cached ``keys_max_age_seconds`` per process, so a rotation shows within that).

    Raises:
        ServiceUnavailable: the parameter is unset, unreadable or malformed.
    """
    what = "callback public keys"
    text = _key_parameter(settings.callback_settings().public_key_parameter, decrypt=False, what=what)
    try:
        return WebhookPublicKeys.model_validate(webhooks.jwks(webhooks.public_keys_of(text)))
    except ValueError as error:
        logger.error(f"The {what} are malformed", extra={"reason": str(error)})
        raise ServiceUnavailable(f"the {what} could not be read") from error


def callback_signing_keys() -> list[webhooks.SigningKey]:
    """The keys that sign callbacks, from the SSM SecureString ``CallbackSettings.signing_key_parameter`` names
    (``whsk_`` keys, the first the current one; cached ``keys_max_age_seconds`` per process).

    Raises:
        ServiceUnavailable: the parameter is unset, unreadable or malformed.
    """
    what = "callback signing keys"
    text = _key_parameter(settings.callback_settings().signing_key_parameter, decrypt=True, what=what)
    try:
        return webhooks.signing_keys(text)
    except ValueError as error:  # the message never holds the key (jobs.webhooks.signing_keys)
        logger.error(f"The {what} are malformed", extra={"reason": str(error)})
        raise ServiceUnavailable(f"the {what} could not be read") from error


@cache
def callback_sender() -> CallbackSender:
    """The callback sender function's ``CallbackSender``: the DynamoDB store, the signing keys
    (``callback_signing_keys``, read at each delivery), ``CallbackSettings`` and the system's resolver."""
    from jobs.callbacks import CallbackSender  # imported on first use: only the sender delivers

    return CallbackSender(
        DynamoJobStore(settings.store_settings().table_name), callback_signing_keys, settings.callback_settings()
    )


@cache
def owner_slots() -> DynamoOwnerSlots | None:
    """The callback sender's owner slots (``jobs.slots``), or None when ``JOBS_CALLBACK_SLOTS_TABLE`` is unset."""
    from jobs.slots import DynamoOwnerSlots  # imported on first use: only the sender delivers

    config = settings.callback_settings()
    return DynamoOwnerSlots(config.slots_table, config.slots_per_owner) if config.slots_table else None


@cache
def outbox_service() -> JobService:
    """The outbox relay's (and the reconciler's) service: the store and the SQS jobs queue named by its
    settings."""
    return JobService(DynamoJobStore(settings.store_settings().table_name), job_queue(), registry())


@cache
def job_queue() -> SqsJobQueue:
    """The jobs queues, one per priority, named by ``QueueSettings``."""
    return SqsJobQueue(settings.queue_settings().queue_urls)


@cache
def discarded_batches() -> SqsDiscardedBatchQueue:
    """The relay's on-failure destination, which the reconciler drains."""
    return SqsDiscardedBatchQueue(settings.reconciler_settings().discarded_batches_queue_url)


@cache
def job_creator() -> JobCreator:
    """The API function's job creation, once per ``Idempotency-Key`` (records in the idempotency table)."""
    from jobs.idempotency import JobCreator  # imported on first use: the consumers never load the utility

    config = settings.idempotency_settings()
    return JobCreator(
        api_service(),
        config.idempotency_table_name,
        expires_after_seconds=config.idempotency_expiry_seconds,
        client=aws.client("dynamodb"),
    )


@cache
def consumer_service() -> JobService:
    """The jobs consumer's service: the DynamoDB store, and the jobs queues, to which a continuation, a message
    handed back unstarted or a scheduled job's fresh message goes as a new message."""
    return _consumer_service(job_queue())


@cache
def dead_letter_service() -> JobService:
    """The dead-letter handler's service: the DynamoDB store only (it sends nothing)."""
    return _consumer_service(None)


def _consumer_service(queue: SqsJobQueue | None) -> JobService:
    config = settings.consumer_settings()
    return JobService(
        DynamoJobStore(settings.store_settings().table_name),
        queue,
        registry=registry(),
        lease_seconds=config.lease_seconds,
        retry_base_seconds=config.retry_base_seconds,
        retention_days=config.retention_days,
        min_start_seconds=config.min_start_seconds,
    )


@cache
def source_queues() -> SourceQueues:
    """The queues a consumer reads, for delaying a message's next delivery."""
    return SourceQueues(settings.consumer_settings().sources)


@cache
def authenticator() -> Authenticator:
    """The API function's token verifier, configured by ``AuthSettings``."""
    return Authenticator(settings.auth_settings())


def reset() -> None:
    """Forget every cached setting, client and service (for tests)."""
    for cached in (
        api_service,
        callback_sender,
        owner_slots,
        outbox_service,
        discarded_batches,
        job_creator,
        consumer_service,
        dead_letter_service,
        job_queue,
        source_queues,
        authenticator,
        registry,
        ssm_parameter,
        aws.client,
        settings.aws_settings,
        settings.store_settings,
        settings.queue_settings,
        settings.reconciler_settings,
        settings.idempotency_settings,
        settings.consumer_settings,
        settings.auth_settings,
        settings.event_settings,
        settings.job_type_settings,
        settings.callback_settings,
    ):
        cached.cache_clear()
