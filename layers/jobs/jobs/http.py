"""The API's powertools resolver: request validation, authentication, and the one error-mapping table.

Every error the function produces is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
``status`` and ``detail``; validation errors add ``errors`` (each with ``loc``, ``msg``, ``type``). No stack
trace or AWS error text reaches a client. Authentication runs before body validation, so a request without a
valid token learns nothing about the body rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    BaseError as IdempotencyError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from jobs import bootstrap
from jobs.auth import Principal, header_value
from jobs.models import (
    AuthUnavailable,
    InvalidPageToken,
    InvalidPayload,
    JobNotFound,
    ServiceUnavailable,
    Unauthenticated,
    UnknownJobType,
)
from jobs.observability import MetricUnit, logger, metrics

__all__ = ["IDEMPOTENCY_KEY_PATTERN", "build_resolver", "header_value", "owner_id", "principal", "problem"]

PROBLEM_JSON = "application/problem+json"
#: An ``Idempotency-Key``: 1 to 255 visible ASCII characters, with optional whitespace around (trimmed).
IDEMPOTENCY_KEY_PATTERN = r"^[ \t]*[!-~]{1,255}[ \t]*$"
#: The realm named in every ``WWW-Authenticate`` challenge (RFC 6750 section 3).
REALM = "jobs"


def problem(
    status: HTTPStatus,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
) -> Response[str]:
    """An RFC 9457 problem response: ``type`` is ``about:blank`` and ``title`` the status phrase."""
    body: dict[str, Any] = {"type": "about:blank", "title": status.phrase, "status": status.value, "detail": detail}
    if errors is not None:
        body["errors"] = list(errors)
    return Response(status_code=status.value, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def _public_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without their ``input`` (which may echo a secret or a large body)."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


def principal(app: APIGatewayHttpResolver) -> Principal:
    """The authenticated caller of the current request, verified once and kept in the resolver's context.

    Raises:
        Unauthenticated: no usable bearer token.
        AuthUnavailable: the verification keys could not be fetched.
    """
    known = app.context.get("principal")
    if isinstance(known, Principal):
        return known
    try:
        found = bootstrap.authenticator().authenticate(app.current_event.headers.get("authorization"))
    except Unauthenticated:
        metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=1)
        raise
    app.append_context(principal=found)
    logger.append_keys(owner_id=found.sub)
    return found


def owner_id(app: APIGatewayHttpResolver) -> str:
    """The ``owner_id`` of every read and write in this request: the verified ``sub``, never request data."""
    return principal(app).sub


def _authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    principal(app)
    return next_middleware(app)


def _unauthenticated(error: Unauthenticated) -> Response[str]:
    # RFC 6750 section 3.1: no error code when the request carried no credentials at all.
    challenge = f'Bearer realm="{REALM}"' if error.missing else f'Bearer realm="{REALM}", error="invalid_token"'
    logger.info("Authentication failed", extra={"reason": str(error)})
    return problem(
        HTTPStatus.UNAUTHORIZED, "A valid bearer token is required.", headers={"WWW-Authenticate": challenge}
    )


def _auth_unavailable(error: AuthUnavailable) -> Response[str]:
    logger.warning("Token verification unavailable", extra={"reason": str(error)})
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "Tokens cannot be verified right now; retry later.",
        headers={"Retry-After": "5"},
    )


def _invalid_request(app: APIGatewayHttpResolver, error: RequestValidationError) -> Response[str]:
    # The validation middleware runs before route middlewares: authenticate first, so that a caller without a
    # valid token gets 401 whatever its body, and learns nothing about the body rules.
    try:
        principal(app)
    except Unauthenticated as failure:
        return _unauthenticated(failure)
    except AuthUnavailable as failure:
        return _auth_unavailable(failure)
    errors = _public_errors(error.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(HTTPStatus.BAD_REQUEST, "The request body is not valid JSON.", errors=errors)
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The request is not valid.", errors=errors)


def _unsupported_media_type(error: RequestUnsupportedContentType) -> Response[str]:
    return problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")


def _job_not_found(error: JobNotFound) -> Response[str]:
    return problem(HTTPStatus.NOT_FOUND, "No such job.")


def _unknown_job_type(error: UnknownJobType) -> Response[str]:
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "The request is not valid.",
        errors=[{"loc": ["body", "type"], "msg": str(error), "type": "unknown_job_type"}],
    )


def _invalid_payload(error: InvalidPayload) -> Response[str]:
    errors = [{**e, "loc": ["body", *e["loc"]]} for e in _public_errors(error.errors)]
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The payload does not fit the job type.", errors=errors)


def _invalid_page_token(error: InvalidPageToken) -> Response[str]:
    return problem(HTTPStatus.BAD_REQUEST, "next_token is not valid.")


def _service_unavailable(error: ServiceUnavailable) -> Response[str]:
    logger.warning("Dependency unavailable", extra={"reason": str(error)})
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The service is busy; retry later.",
        headers={"Retry-After": str(error.retry_after)},
    )


def _idempotency_key_reused(error: IdempotencyValidationError) -> Response[str]:
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "This Idempotency-Key was used with a different request body.",
        errors=[{"loc": ["header", "idempotency-key"], "msg": "reused with another body", "type": "idempotency_key"}],
    )


def _idempotency_in_progress(error: IdempotencyAlreadyInProgressError) -> Response[str]:
    return problem(
        HTTPStatus.CONFLICT,
        "A request with this Idempotency-Key is still in progress; retry later.",
        headers={"Retry-After": "1"},
    )


def _idempotency_unavailable(error: IdempotencyError) -> Response[str]:
    logger.warning("Idempotency store unavailable", extra={"reason": type(error).__name__})
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, "The service is busy; retry later.", headers={"Retry-After": "1"})


def _unexpected(error: Exception) -> Response[str]:
    logger.exception("Unhandled error")
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "An unexpected error occurred.")


#: The one table from error to response. Lookup follows the exception's MRO, so specific entries win over
#: ``Exception``.
ERROR_RESPONSES: dict[type[Exception], Callable[[Any], Response[str]]] = {
    Unauthenticated: _unauthenticated,
    AuthUnavailable: _auth_unavailable,
    RequestUnsupportedContentType: _unsupported_media_type,
    JobNotFound: _job_not_found,
    UnknownJobType: _unknown_job_type,
    InvalidPayload: _invalid_payload,
    InvalidPageToken: _invalid_page_token,
    ServiceUnavailable: _service_unavailable,
    IdempotencyValidationError: _idempotency_key_reused,
    IdempotencyAlreadyInProgressError: _idempotency_in_progress,
    IdempotencyError: _idempotency_unavailable,
    Exception: _unexpected,
}


def build_resolver() -> APIGatewayHttpResolver:
    """A resolver with validation on, authentication on every route, and the error table registered."""
    # A response that breaks its own model is our bug: a 500, never a 422 blamed on the client.
    app = APIGatewayHttpResolver(
        enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR
    )
    app.use(middlewares=[_authenticate])
    for error_type, respond in ERROR_RESPONSES.items():
        app.exception_handler(error_type)(respond)
    app.exception_handler(RequestValidationError)(partial(_invalid_request, app))
    app.not_found(lambda error: problem(HTTPStatus.NOT_FOUND, "No such resource."))
    return app
