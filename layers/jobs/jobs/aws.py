"""AWS clients, created on first use and cached per process, and the mapping of transient AWS errors.

Only ``store``, ``queue``, ``streams`` and ``events`` (and ``auth`` for the secret, through powertools) use this
module. Clients follow the standard AWS SDK configuration, including ``AWS_ENDPOINT_URL``, which is how the local
stack points the same code at moto's server.

Cold start matters here (``bench/``, benchmark 1): every client comes from one botocore session per process, so
botocore reads its endpoint data, partitions and defaults once, not once per client; a request creates only the
clients its verb needs (the API's GET never builds the SQS client); botocore's JSON models (2.5 MB for the
endpoints and our three services) are parsed into plain dicts, about four times faster than into the
``OrderedDict``s botocore asks for, which it does not need since dicts keep their order; and the loader checks
that a service exists by looking for that service alone, not by listing the hundreds it knows.

Time budget: an endpoint that accepts a connection and never answers must not run a function into its
``Timeout`` (a Lambda timeout is a 500 from API Gateway and a lost batch for a queue). Two rules, both here:

1. One attempt of a call ends within the attempt time, connect plus read timeout (1 + 3 s), and a call makes
   at most 3 attempts (botocore's standard retry mode, with its jittered backoff between them).
2. Within an invocation (``time_budget``), an attempt starts only when the attempt time plus the response
   margin (1 s) are left before the function's timeout; otherwise the call raises ``DeadlineExceeded``, which
   callers see as ``ServiceUnavailable`` (the API's 503 with ``Retry-After``, a record reported in
   ``batchItemFailures``).

The figures are ``jobs.settings.AwsSettings``'s defaults. A function with ``Timeout`` T answers at least the
margin before T whatever AWS does, as long as T exceeds the attempt time plus the margin
(tests/integration/test_template.py checks every function's ``Timeout``). The price: work that finishes with
less than that left cannot write its result (the consumer's lease then hands the job to another delivery).
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache, wraps
from typing import Any, Protocol

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, DataNotFoundError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.loaders import JSONFileLoader, Loader

from jobs.models import ServiceUnavailable
from jobs.settings import AwsSettings, aws_settings

#: AWS SDK retry mode: standard, whose jittered backoff and retried errors are documented in "Retry behavior"
#: of the AWS SDKs and Tools reference guide (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
RETRY_MODE = "standard"


def client_config(budget: AwsSettings) -> Config:
    """The botocore ``Config`` of every client: ``budget``'s connect and read timeouts and attempts."""
    return Config(
        connect_timeout=budget.connect_timeout_seconds,
        read_timeout=budget.read_timeout_seconds,
        retries={"mode": RETRY_MODE, "total_max_attempts": budget.max_attempts},
    )


#: Error codes that mean "try again later" rather than "this request is wrong" (DynamoDB and SQS API
#: references, "Common errors").
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestThrottled",
        "KMSThrottlingException",
    }
)


#: The environment a session resolves credentials, region and endpoint from: a change makes a new session.
_SESSION_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_EVENTBRIDGE",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SSM",
)
#: botocore sessions are not thread-safe; clients are.
_lock = threading.Lock()

#: The ``time.monotonic()`` by which the current invocation must have answered (``time_budget``); None outside one.
_deadline: ContextVar[float | None] = ContextVar("jobs_aws_deadline", default=None)


class DeadlineExceeded(BotoCoreError):  # type: ignore[misc]  # botocore has no type hints
    """An AWS call's next attempt could outlast the invocation's time budget, so it was not sent.

    A ``BotoCoreError`` that botocore's retry modes do not retry, so the call fails at once.
    """

    fmt = "{operation}: {remaining:.1f} s left in the invocation, less than one attempt ({needed:.1f} s) needs"


class _HasRemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def time_budget[Handler: Callable[..., Any]](handler: Handler) -> Handler:
    """Decorate a Lambda handler ``(event, context)`` so that its AWS calls keep within the invocation's time:
    the deadline is read from ``context.get_remaining_time_in_millis()`` (Lambda's context object,
    https://docs.aws.amazon.com/lambda/latest/dg/python-context.html) minus the response margin."""

    @wraps(handler)
    def within_budget(event: Any, context: _HasRemainingTime, *args: Any, **kwargs: Any) -> Any:
        remaining = context.get_remaining_time_in_millis() / 1000
        token = _deadline.set(time.monotonic() + remaining - aws_settings().response_margin_seconds)
        try:
            return handler(event, context, *args, **kwargs)
        finally:
            _deadline.reset(token)

    return within_budget  # type: ignore[return-value]


@contextmanager
def reserving(seconds: float) -> Iterator[None]:
    """Within the block, AWS calls keep ``seconds`` of the invocation's time for what must follow the block: its
    deadline is that much earlier. A write whose outcome must then be recorded (a create in doubt, kept for its
    ``Idempotency-Key``) reserves one attempt for that record. Outside ``time_budget`` it changes nothing."""
    deadline = _deadline.get()
    if deadline is None:
        yield
        return
    token = _deadline.set(deadline - seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The current invocation's deadline (a ``time.monotonic()`` value, different for each invocation), or None
    outside ``time_budget``: what tells two invocations of one process apart."""
    return _deadline.get()


def seconds_left() -> float | None:
    """Seconds before the current invocation must have answered, or None outside ``time_budget``."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def _check_deadline(event_name: str, **_: Any) -> None:
    """botocore's ``before-send`` hook, run before every attempt of every call: refuse an attempt that could
    outlast the deadline.

    Raises:
        DeadlineExceeded: less than one attempt's time is left before the deadline.
    """
    left = seconds_left()
    needed = aws_settings().attempt_seconds
    if left is not None and left < needed:
        raise DeadlineExceeded(operation=event_name.rsplit(".", 1)[-1], remaining=max(left, 0.0), needed=needed)


@cache
def client(service_name: str) -> Any:
    """The process's cached client for ``service_name`` (``"dynamodb"``, ``"sqs"``, ``"ssm"``): a botocore
    client, which is what a boto3 client is."""
    with _lock:
        return session(tuple(os.environ.get(name) for name in _SESSION_ENVIRONMENT)).create_client(
            service_name, config=client_config(aws_settings())
        )


@cache
def session(environment: tuple[str | None, ...]) -> botocore.session.Session:
    """The botocore session every client of the process comes from (one per ``environment``, which only tests
    change)."""
    created = botocore.session.Session()
    # As botocore's own create_loader does, with AWS_DATA_PATH's extra model folders.
    data_path = created.get_config_variable("data_path")
    extra = [os.path.expanduser(os.path.expandvars(path)) for path in (data_path or "").split(os.pathsep) if path]
    created.register_component("data_loader", _Loader(extra_search_paths=extra, file_loader=_FileLoader()))
    created.register("before-send", _check_deadline)
    return created


class _FileLoader(JSONFileLoader):  # type: ignore[misc]  # botocore has no type hints
    """botocore's JSON file loader, with plain dicts for objects (botocore's model classes copy what they need
    into ordered maps of their own)."""

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in ((".json", open), (".json.gz", gzip.open)):
            path = file_path + suffix
            if os.path.isfile(path):
                with opener(path, "rb") as file:
                    return json.loads(file.read().decode("utf-8"))
        return None


class _Loader(Loader):  # type: ignore[misc]
    """botocore's data loader, checking that a service exists by looking for that service alone."""

    def list_available_services(self, type_name: str) -> Any:
        return _ServiceNames(self, type_name)


class _ServiceNames:
    """The services a loader knows, answering ``in`` from the service's own directory; iterating lists them
    all (botocore does only to name the known services in an error)."""

    def __init__(self, loader: Loader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, service_name: object) -> bool:
        try:
            return bool(self._loader.list_api_versions(str(service_name), self._type_name))
        except DataNotFoundError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(Loader.list_available_services(self._loader, self._type_name))


@contextmanager
def transient_errors_as_unavailable(operation: str) -> Iterator[None]:
    """Turn throttling, AWS-side failures and network errors into ``ServiceUnavailable``.

    Other ``ClientError`` codes propagate unchanged: they are bugs or conditions the caller handles.

    Raises:
        ServiceUnavailable: the operation failed for a reason a retry may cure, or ran out of the invocation's
            time (``DeadlineExceeded``).
    """
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in TRANSIENT_ERROR_CODES:
            raise ServiceUnavailable(f"{operation} was throttled or failed on the AWS side") from error
        raise
    except (BotocoreConnectionError, ReadTimeoutError) as error:  # EndpointConnectionError, ConnectTimeoutError, ...
        raise ServiceUnavailable(f"{operation} could not reach AWS") from error
    except DeadlineExceeded as error:
        raise ServiceUnavailable(f"{operation} did not finish within the invocation's time") from error


class ParameterUnavailable(Exception):
    """An SSM parameter could not be read (absent, denied, SSM failing), or is empty."""


class SsmParameter:
    """One SSM Parameter Store parameter: one ``GetParameter`` (with ``WithDecryption`` for a SecureString; SSM API
    reference, "GetParameter": https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html)
    on the process's SSM client, whose value is reused for ``max_age`` seconds, as powertools' parameters utility
    would cache it; that utility imports boto3 (tens of milliseconds of cold start) for a client it never needs
    here. A failed fetch is not cached: the next call tries again.

    Args:
        name: the parameter's name (``/jobs/jwt-secret``).
        max_age: seconds a fetched value is reused before the next fetch.
        decrypt: True for a SecureString.
        clock: ``time.monotonic`` (tests pass another).
    """

    def __init__(self, name: str, max_age: int, *, decrypt: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.max_age = max_age
        self.decrypt = decrypt
        self._clock = clock
        self._cached: tuple[float, str] | None = None

    def __call__(self) -> str:
        """The parameter's value.

        Raises:
            ParameterUnavailable: SSM could not give it (any AWS SDK error: throttled, denied, missing, unreachable,
                out of the invocation's time; the SDK error is the ``__cause__``), or it is empty (no cause).
        """
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self.max_age:
            return self._cached[1]
        try:
            found = client("ssm").get_parameter(Name=self.name, WithDecryption=self.decrypt)
        except (BotoCoreError, ClientError) as error:
            raise ParameterUnavailable(f"the parameter {self.name} could not be read") from error
        value = found.get("Parameter", {}).get("Value")
        if not value:
            raise ParameterUnavailable(f"the parameter {self.name} is empty")
        self._cached = (now, str(value))
        return str(value)
