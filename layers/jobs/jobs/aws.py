"""AWS clients, created on first use and cached per process, and the mapping of transient AWS errors.

Only ``store`` and ``queue`` (and ``auth`` for the secret, through powertools) use this module. Clients follow
the standard AWS SDK configuration, including ``AWS_ENDPOINT_URL``, which is how the local stack points the same
code at moto's server.

Cold start matters here (``bench/``, benchmark 1): every client comes from one botocore session per process, so
botocore reads its endpoint data, partitions and defaults once, not once per client; a request creates only the
clients its verb needs (the API's GET never builds the SQS client); botocore's JSON models (2.5 MB for the
endpoints and our three services) are parsed into plain dicts, about four times faster than into the
``OrderedDict``s botocore asks for, which it does not need since dicts keep their order; and the loader checks
that a service exists by looking for that service alone, not by listing the hundreds it knows.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, DataNotFoundError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.loaders import JSONFileLoader, Loader

from jobs.models import ServiceUnavailable

#: Timeouts in seconds: a client gives up well within API Gateway's 30 s integration timeout.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})

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
)
#: botocore sessions are not thread-safe; clients are.
_lock = threading.Lock()


@cache
def client(service_name: str) -> Any:
    """The process's cached client for ``service_name`` (``"dynamodb"``, ``"sqs"``, ``"ssm"``): a botocore
    client, which is what a boto3 client is."""
    with _lock:
        return session(tuple(os.environ.get(name) for name in _SESSION_ENVIRONMENT)).create_client(
            service_name, config=CLIENT_CONFIG
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
        ServiceUnavailable: the operation failed for a reason a retry may cure.
    """
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in TRANSIENT_ERROR_CODES:
            raise ServiceUnavailable(f"{operation} was throttled or failed on the AWS side") from error
        raise
    except (BotocoreConnectionError, ReadTimeoutError) as error:  # EndpointConnectionError, ConnectTimeoutError, ...
        raise ServiceUnavailable(f"{operation} could not reach AWS") from error
