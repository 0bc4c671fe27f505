"""Typed configuration read from the function's environment, validated once and cached.

Each function reads only the settings it needs: the API function ``StoreSettings``, ``IdempotencySettings``
and ``AuthSettings``; the outbox relay ``StoreSettings`` and ``QueueSettings``; the consumers ``StoreSettings``
and ``ConsumerSettings``; every one ``JobTypeSettings``. A missing or contradictory variable raises
``pydantic.ValidationError`` naming it, on the first invocation (the cold start).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobs.models import JobPriority

#: Algorithms a deployment may pin. ``none`` is never accepted (RFC 8725 section 3.1).
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})


class AwsSettings(BaseSettings):
    """How long one AWS call may take (``jobs.aws``'s time budget), in seconds:
    ``JOBS_AWS_CONNECT_TIMEOUT_SECONDS`` (1) to open a connection, ``JOBS_AWS_READ_TIMEOUT_SECONDS`` (3) to wait
    for an answer, ``JOBS_AWS_MAX_ATTEMPTS`` (3) attempts per call, and ``JOBS_AWS_RESPONSE_MARGIN_SECONDS`` (1)
    kept before the function's ``Timeout`` to answer. Only tests with very short ``Timeout``s change them."""

    model_config = SettingsConfigDict(env_prefix="JOBS_AWS_", frozen=True, extra="ignore")

    connect_timeout_seconds: float = Field(default=1, gt=0, le=60)
    read_timeout_seconds: float = Field(default=3, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=10)
    response_margin_seconds: float = Field(default=1, ge=0, le=60)

    @property
    def attempt_seconds(self) -> float:
        """The longest one attempt can take: connect plus read timeout."""
        return self.connect_timeout_seconds + self.read_timeout_seconds


class StoreSettings(BaseSettings):
    """Where jobs live: ``JOBS_TABLE_NAME`` (the ``Jobs`` table's physical name)."""

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    table_name: str = Field(min_length=3, max_length=255)


class QueueSettings(BaseSettings):
    """Where work goes, a queue per priority (URLs, as ``!Ref`` of an SQS queue gives them): ``JOBS_QUEUE_URL``
    (NORMAL's), ``JOBS_HIGH_PRIORITY_QUEUE_URL`` and ``JOBS_LOW_PRIORITY_QUEUE_URL``; a level without a URL (a
    configuration from before priorities) uses NORMAL's."""

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    queue_url: str = Field(min_length=1)
    high_priority_queue_url: str | None = None
    low_priority_queue_url: str | None = None

    @property
    def queue_urls(self) -> dict[JobPriority, str]:
        """Each configured priority's queue URL."""
        urls = {
            JobPriority.HIGH: self.high_priority_queue_url,
            JobPriority.NORMAL: self.queue_url,
            JobPriority.LOW: self.low_priority_queue_url,
        }
        return {priority: url for priority, url in urls.items() if url}


class ReconcilerSettings(BaseSettings):
    """What the reconciler needs beyond ``QueueSettings``: ``JOBS_DISCARDED_BATCHES_QUEUE_URL`` (the relay's
    on-failure destination, whose stream batches it replays) and ``JOBS_RECONCILE_AFTER_SECONDS`` (a QUEUED job
    not updated for this long gets its message again; an hour by default: longer than a queue backlog should
    last, shorter than the stream's 24 hours)."""

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    discarded_batches_queue_url: str = Field(min_length=1)
    reconcile_after_seconds: int = Field(default=3600, ge=1, le=14 * 86400)


class IdempotencySettings(BaseSettings):
    """Where ``Idempotency-Key`` records live: ``JOBS_IDEMPOTENCY_TABLE_NAME``, and how long a key is remembered,
    ``JOBS_IDEMPOTENCY_EXPIRY_SECONDS`` (a day by default)."""

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    idempotency_table_name: str = Field(min_length=3, max_length=255)
    idempotency_expiry_seconds: int = Field(default=86400, ge=60, le=7 * 86400)


class ConsumerSettings(BaseSettings):
    """What a queue consumer (the jobs consumer, the dead-letter handler) needs to know, from ``JOBS_*``.

    ``source_queue_urls`` are the queues the function reads, comma-separated (to delay a retry with
    ChangeMessageVisibility on the queue a record came from; ``JOBS_SOURCE_QUEUE_URL``, one URL, is read too);
    ``max_receive_count`` the jobs queue's redrive ``maxReceiveCount`` (a record whose
    ``ApproximateReceiveCount`` has reached it is on its last delivery); ``max_attempts`` the runs a job gets
    before a retryable failure fails it (fewer than the receives: see ``jobs.service.Delivery``);
    ``lease_seconds`` how long a RUNNING
    job belongs to the run that started it (at least the consumer's Timeout: Lambda ends a run by then), after
    which another delivery may take it over; ``retry_base_seconds`` the first retry's delay, doubled per attempt;
    ``retention_days`` how long a finished job stays readable before it expires (the TTL attribute);
    ``dead_letter_max_receives`` the receives after which the dead-letter handler gives up on a record it cannot
    settle (its queue has no dead-letter queue of its own, so nothing else bounds it); ``min_start_seconds`` the
    least time left in an invocation to start a job (a batch of ten shares one invocation: a job met later is
    sent again as a new message, spending no delivery); ``queue_retention_seconds`` the jobs queues'
    ``MessageRetentionPeriod`` (a scheduled job's message is replaced before it would outlive it).
    """

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    source_queue_urls: Annotated[tuple[str, ...], NoDecode] = ()
    source_queue_url: str | None = None
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    lease_seconds: int = Field(default=35, ge=1, le=900)
    retry_base_seconds: int = Field(default=5, ge=0, le=900)
    retention_days: int = Field(default=30, ge=1, le=3650)
    dead_letter_max_receives: int = Field(default=20, ge=1, le=1000)
    min_start_seconds: float = Field(default=12, ge=0, le=900)
    queue_retention_seconds: int = Field(default=345600, ge=60, le=1209600)

    @field_validator("source_queue_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return tuple(url.strip() for url in value.split(",") if url.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_source(self) -> Self:
        if not self.source_queue_urls and not self.source_queue_url:
            raise ValueError("JOBS_SOURCE_QUEUE_URLS (or JOBS_SOURCE_QUEUE_URL) names no queue")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        """Every queue URL the function reads."""
        extra = (self.source_queue_url,) if self.source_queue_url else ()
        return tuple(dict.fromkeys((*self.source_queue_urls, *extra)))


class EventSettings(BaseSettings):
    """Where Job State Change events go: ``JOBS_EVENT_BUS_NAME``, the EventBridge bus's name or ARN (the stack's
    own bus, or the one the template parameter ``EventBusName`` names)."""

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    event_bus_name: str = Field(min_length=1, max_length=1600)


class CallbackSettings(BaseSettings):
    """How job callbacks (``jobs.webhooks``) are checked, signed and sent (environment variables prefixed
    ``JOBS_CALLBACK_``).

    ``signing_key_parameter``: the SSM SecureString parameter holding the ``whsk_`` signing keys (the sender's
    only; the deployer creates it, since CloudFormation cannot create SecureString parameters).
    ``public_key_parameter``: the SSM String parameter holding the ``whpk_`` public keys (the API serves them).
    ``allow_loopback``: let callbacks reach loopback addresses; only the local stack sets it, when started with
    ``JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK=1`` for tests' receivers; template.yaml never does.
    ``ca_bundle``: a PEM file of extra certificate authorities to trust (the tests' ``trustme`` CA), locally only.
    ``retry_delays_seconds``: the waits after each failed attempt; the delivery gives up after the last. The
    default follows the Standard Webhooks retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight
    attempts over 27.6 hours); tests shorten it.
    ``keys_max_age_seconds``: how long a process reuses the keys it read (5 minutes; the rotation rehearsal
    shortens it).
    ``circuit_cooldown_seconds``, ``per_host_concurrency``: a receiver that gave no answer is not tried again by
    the same process for this long, and at most this many attempts to one receiver run at once
    (``jobs.callbacks.HostCircuits``).
    ``slots_table``, ``slots_per_owner``: the DynamoDB table of owner slots and how many sender invocations may
    deliver one owner's callbacks at once (``jobs.slots``; no table: no limit). Keep ``slots_per_owner`` below the
    mapping's maximum concurrency, or one owner's hanging receiver can hold every invocation.
    """

    model_config = SettingsConfigDict(env_prefix="JOBS_CALLBACK_", frozen=True, extra="ignore")

    signing_key_parameter: str = ""
    public_key_parameter: str = ""
    allow_loopback: bool = False
    ca_bundle: str | None = None
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=10)
    timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    max_response_bytes: int = Field(default=64 * 1024, ge=0, le=1024 * 1024)
    retry_delays_seconds: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    keys_max_age_seconds: int = Field(default=300, ge=1, le=3600)
    circuit_cooldown_seconds: float = Field(default=60.0, ge=0, le=3600)
    per_host_concurrency: int = Field(default=2, ge=1, le=10)
    slots_table: str = ""
    slots_per_owner: int = Field(default=1, ge=1, le=10)


class JobTypeSettings(BaseSettings):
    """Which job types a function serves beyond the built-in ones.

    ``JOBS_FAULT_INJECTION`` (false by default) adds ``jobs.processors.FAULT_TYPES`` (``flaky``, ``fail``,
    ``sleep``, ``crash``) for the fault tests and the soak. template.yaml never sets it; the local stack sets it
    on request.
    """

    model_config = SettingsConfigDict(env_prefix="JOBS_", frozen=True, extra="ignore")

    fault_injection: bool = False


class AuthSettings(BaseSettings):
    """How bearer tokens are verified (environment variables prefixed ``JWT_``/``JWKS_``).

    Two modes: a JWKS URL (``JWKS_URL``; asymmetric algorithms, default ``RS256``) or a shared secret held in
    SSM Parameter Store as a SecureString named by ``JWT_SECRET_PARAMETER`` (symmetric algorithms, default
    ``HS256``). ``JWKS_URL`` wins when both are set, and the template only grants the SSM read when it is empty.
    ``JWT_ALGORITHMS`` is a comma-separated list; algorithms come from here, never from a token's header.
    Empty strings count as unset, because CloudFormation parameters cannot be null.

    ``JOBS_HIGH_PRIORITY_SCOPE`` names the scope a token needs for a HIGH job (``jobs.auth.Principal.scopes``).

    ``JWT_ISSUER`` and ``JWT_AUDIENCE`` (a comma-separated list of audiences, as API Gateway's JWT authorizer
    takes) are required in JWKS mode: an identity provider signs tokens for every application it serves, and
    only ``iss`` and ``aud`` (or ``client_id``) say a token is for this API. In secret mode they are optional
    (the deployer holds the only secret, so no other application can mint a token this API accepts) and
    checked when set.

    Raises:
        pydantic.ValidationError: neither mode configured, algorithms that do not fit the mode, or JWKS mode
            without an issuer or an audience.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    jwks_url: str | None = Field(default=None, validation_alias="JWKS_URL")
    jwt_secret_parameter: str | None = Field(default=None, validation_alias="JWT_SECRET_PARAMETER")
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(default=(), validation_alias="JWT_ALGORITHMS")
    jwt_issuer: str | None = Field(default=None, validation_alias="JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="JWT_AUDIENCE")
    #: Clock skew tolerated on ``exp``/``nbf``/``iat``, seconds.
    jwt_leeway_seconds: float = Field(default=10, ge=0, le=300, validation_alias="JWT_LEEWAY_SECONDS")
    #: Timeout of one JWKS fetch, seconds; well under API Gateway's 30 s integration limit.
    jwks_timeout_seconds: float = Field(default=3, gt=0, le=10, validation_alias="JWKS_TIMEOUT_SECONDS")
    #: How long a fetched JWKS (and the shared secret) stays cached, seconds.
    jwks_cache_seconds: int = Field(default=300, ge=0, validation_alias="JWKS_CACHE_SECONDS")
    #: The least time between two JWKS refreshes caused by unknown ``kid`` values, seconds.
    jwks_refresh_cooldown_seconds: float = Field(
        default=30, ge=0, le=3600, validation_alias="JWKS_REFRESH_COOLDOWN_SECONDS"
    )
    #: The scope a token must carry to submit a HIGH job (``JOBS_HIGH_PRIORITY_SCOPE``); empty: anyone may. One
    #: RFC 6749 section 3.3 scope-token (printable ASCII but space, ``"`` and ``\\``).
    high_priority_scope: str = Field(
        default="", pattern=r"^[!#-\[\]-~]*$", max_length=256, validation_alias="JOBS_HIGH_PRIORITY_SCOPE"
    )

    @field_validator("jwks_url", "jwt_secret_parameter", "jwt_issuer", "jwt_audience", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> Self:
        if self.jwks_url is None and self.jwt_secret_parameter is None:
            raise ValueError("set JWKS_URL (asymmetric tokens) or JWT_SECRET_PARAMETER (HS256 secret in SSM)")
        allowed = ASYMMETRIC_ALGORITHMS if self.jwks_url else SYMMETRIC_ALGORITHMS
        if not self.jwt_algorithms:
            object.__setattr__(self, "jwt_algorithms", ("RS256",) if self.jwks_url else ("HS256",))
        wrong = [alg for alg in self.jwt_algorithms if alg not in allowed]
        if wrong:
            mode = "JWKS_URL" if self.jwks_url else "JWT_SECRET_PARAMETER"
            raise ValueError(f"JWT_ALGORITHMS {wrong} cannot be used with {mode}; allowed: {sorted(allowed)}")
        if self.jwt_audience is not None and not self.audiences:
            raise ValueError(
                "JWT_AUDIENCE (template parameter JwtAudience) names no audience; leave it empty or list some"
            )
        if self.jwks_url is not None:
            for variable, parameter, value in (
                ("JWT_ISSUER", "JwtIssuer", self.jwt_issuer),
                ("JWT_AUDIENCE", "JwtAudience", self.audiences or None),
            ):
                if value is None:
                    raise ValueError(
                        f"{variable} (template parameter {parameter}) is required with JWKS_URL: an identity "
                        "provider signs tokens for other applications too, and only iss and aud tell them apart"
                    )
        return self

    @property
    def audiences(self) -> tuple[str, ...]:
        """The accepted audiences: ``JWT_AUDIENCE`` split on commas, blanks dropped; empty when unset."""
        if self.jwt_audience is None:
            return ()
        return tuple(part.strip() for part in self.jwt_audience.split(",") if part.strip())


@cache
def aws_settings() -> AwsSettings:
    """The process's ``AwsSettings``."""
    return AwsSettings()


@cache
def store_settings() -> StoreSettings:
    """The cached ``StoreSettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return StoreSettings()


@cache
def queue_settings() -> QueueSettings:
    """The cached ``QueueSettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return QueueSettings()


@cache
def reconciler_settings() -> ReconcilerSettings:
    """The cached ``ReconcilerSettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return ReconcilerSettings()


@cache
def idempotency_settings() -> IdempotencySettings:
    """The cached ``IdempotencySettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return IdempotencySettings()


@cache
def consumer_settings() -> ConsumerSettings:
    """The cached ``ConsumerSettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return ConsumerSettings()


@cache
def event_settings() -> EventSettings:
    """The cached ``EventSettings`` of this process. Raises ``pydantic.ValidationError`` when unset."""
    return EventSettings()


@cache
def callback_settings() -> CallbackSettings:
    """The cached ``CallbackSettings`` of this process."""
    return CallbackSettings()


@cache
def job_type_settings() -> JobTypeSettings:
    """The cached ``JobTypeSettings`` of this process."""
    return JobTypeSettings()


@cache
def auth_settings() -> AuthSettings:
    """The cached ``AuthSettings`` of this process. Raises ``pydantic.ValidationError`` when misconfigured."""
    return AuthSettings()
