"""boto3 clients, created on first use and cached per process, and the mapping of transient AWS errors.

Only ``store`` and ``queue`` (and ``auth`` for the secret, through powertools) use this module. Clients follow
the standard boto3 configuration, including ``AWS_ENDPOINT_URL``, which is how the local stack points the same
code at moto's server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

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


@cache
def client(service_name: str) -> Any:
    """The process's cached boto3 client for ``service_name`` (``"dynamodb"``, ``"sqs"``)."""
    return boto3.session.Session().client(service_name, config=CLIENT_CONFIG)


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
