"""The API's powertools resolver: request validation, authentication, and the one error-mapping table.

Every error the function produces is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
``status`` and ``detail``; validation errors add ``errors`` (each with ``loc``, ``msg``, ``type``). No stack
trace or AWS error text reaches a client. Authentication runs before body validation, so a request without a
valid token learns nothing about the body rules.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from http import HTTPStatus
from typing import Any, Required, TypedDict, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
    OpenAPIResponseHeader,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config

from jobs import bootstrap, examples, settings
from jobs.auth import Principal, header_value
from jobs.models import (
    MAX_REQUEST_BYTES,
    AuthUnavailable,
    DuplicateMemberName,
    ErrorBody,
    Forbidden,
    GatewayError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyUnavailable,
    InvalidPageToken,
    InvalidPayload,
    InvalidRequest,
    JobFinished,
    JobNotFound,
    JobPriority,
    Problem,
    ServiceUnavailable,
    Unauthenticated,
    UnknownJobType,
    read_json,
)
from jobs.observability import MetricUnit, logger, metrics

__all__ = ["IDEMPOTENCY_KEY_PATTERN", "build_resolver", "header_value", "owner_id", "principal", "problem"]

PROBLEM_JSON = "application/problem+json"
OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
#: The public keys of callback signatures (a JWKS), public like any JWKS: a receiver fetches it without a token.
WEBHOOK_KEYS_PATH = "/api/v1/webhooks/public-key"
#: Routes anyone may call without a token: the API's own description and the callback keys.
PUBLIC_PATHS = frozenset({OPENAPI_PATH, DOCS_PATH, WEBHOOK_KEYS_PATH})
API_TITLE = "Chuck Norris Asynchronous Job System"
API_VERSION = "1.0.0"
BEARER_SCHEME = "bearerAuth"
#: The tag of every jobs operation (Swagger UI groups operations by tag).
JOBS_TAG = "jobs"
#: The tag of the callback keys' operation.
WEBHOOKS_TAG = "webhooks"
#: An ``Idempotency-Key``: 1 to 255 visible ASCII characters but the comma, with optional whitespace around
#: (trimmed). API Gateway joins the values of a repeated header with commas, so a key holding one could not be
#: told from a key sent twice (``K,K`` is not ``K``): a single-valued header never holds a comma.
IDEMPOTENCY_KEY_PATTERN = r"^[ \t]*[!-+\--~]{1,255}[ \t]*$"
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


def require_priority(app: APIGatewayHttpResolver, priority: JobPriority) -> None:
    """Refuse a job of ``priority`` the caller may not ask for: a HIGH job needs the scope
    ``JOBS_HIGH_PRIORITY_SCOPE`` names in the token (``Principal.scopes``), when it names one.

    Raises:
        Forbidden: a HIGH job without that scope (403).
    """
    needed = settings.auth_settings().high_priority_scope
    if priority == JobPriority.HIGH and needed and needed not in principal(app).scopes:
        raise Forbidden(f"A HIGH job needs the scope {needed} in the token.")


def _authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    route = app.context.get("_route")
    if getattr(route, "path", None) not in PUBLIC_PATHS:
        principal(app)
    job_id = (app.current_event.path_parameters or {}).get("job_id")
    if job_id:
        logger.append_keys(job_id=job_id[:64])  # every log line of a request about one job names it
    return next_middleware(app)


def _unauthenticated(error: Unauthenticated) -> Response[str]:
    # RFC 6750 section 3.1: no error code when the request carried no credentials at all. A description only
    # where the authenticator judged the reason safe to tell (Unauthenticated checks its characters).
    challenge = f'Bearer realm="{REALM}"' if error.missing else f'Bearer realm="{REALM}", error="invalid_token"'
    if error.description is not None and not error.missing:
        challenge += f', error_description="{error.description}"'
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
    if any(e["type"] == DUPLICATE_MEMBER for e in errors):
        return problem(HTTPStatus.BAD_REQUEST, "The request body names a member twice in one object.", errors=errors)
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The request is not valid.", errors=errors)


def _unsupported_media_type(error: RequestUnsupportedContentType) -> Response[str]:
    return problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")


def _job_not_found(error: JobNotFound) -> Response[str]:
    return problem(HTTPStatus.NOT_FOUND, "No such job.")


def _forbidden(error: Forbidden) -> Response[str]:
    return problem(HTTPStatus.FORBIDDEN, error.reason)


def _refused_request(error: InvalidRequest) -> Response[str]:
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The request is not valid.", errors=error.errors)


def _job_finished(error: JobFinished) -> Response[str]:
    return problem(HTTPStatus.CONFLICT, f"The job is {error.status}: only a QUEUED or RUNNING job can be cancelled.")


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


def _idempotency_key_reused(error: IdempotencyKeyReused) -> Response[str]:
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "This Idempotency-Key was used with a different request body.",
        errors=[{"loc": ["header", "idempotency-key"], "msg": "reused with another body", "type": "idempotency_key"}],
    )


def _idempotency_in_progress(error: IdempotencyInProgress) -> Response[str]:
    return problem(
        HTTPStatus.CONFLICT,
        "A request with this Idempotency-Key is still in progress; retry later.",
        headers={"Retry-After": "1"},
    )


def _idempotency_unavailable(error: IdempotencyUnavailable) -> Response[str]:
    logger.warning("Idempotency store unavailable", extra={"reason": str(error)})
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
    JobFinished: _job_finished,
    Forbidden: _forbidden,
    InvalidRequest: _refused_request,
    UnknownJobType: _unknown_job_type,
    InvalidPayload: _invalid_payload,
    InvalidPageToken: _invalid_page_token,
    ServiceUnavailable: _service_unavailable,
    IdempotencyKeyReused: _idempotency_key_reused,
    IdempotencyInProgress: _idempotency_in_progress,
    IdempotencyUnavailable: _idempotency_unavailable,
    Exception: _unexpected,
}


_Content = dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel]
_RETRY_AFTER: dict[str, OpenAPIResponseHeader] = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}
_CHALLENGE: dict[str, OpenAPIResponseHeader] = {
    "WWW-Authenticate": {"description": "The Bearer challenge (RFC 6750).", "schema": {"type": "string"}}
}


def _content(status: int) -> _Content:
    """How an error status's body is documented, from who sends it: the function (``examples.PROBLEMS``, a
    ``Problem`` as problem+json), API Gateway (``examples.GATEWAY_ERRORS``, a ``GatewayError`` as JSON), or both.

    Where both may answer a status, each media type carries the same schema, either body: a client generated
    from the document reads the status's body with one parser whichever media type it picks (generators take
    one per status), so API Gateway's ``{"message": "Not Found"}`` parses as well as the function's problem.
    """
    problems = examples.PROBLEMS.get(status)
    gateway = examples.GATEWAY_ERRORS.get(status)
    model: Any = ErrorBody if problems and gateway else Problem if problems else GatewayError
    content: _Content = {}
    if problems:
        content[PROBLEM_JSON] = {
            "model": model,
            "examples": {name: {"value": body} for name, body in problems.items()},
        }
    if gateway:
        content["application/json"] = {"model": model, "examples": {"apiGateway": {"value": gateway}}}
    return content


#: Every error status a route may answer, how it is documented (the bodies this module and API Gateway send).
_ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    400: {
        "description": "The body is not JSON or names a member twice, Content-Type is repeated, or next_token "
        "was not issued to this caller for this query.",
        "content": _content(400),
    },
    401: {
        "description": "No bearer token, or one that fails any check.",
        "headers": _CHALLENGE,
        "content": _content(401),
    },
    403: {
        "description": "The token lacks a scope the request needs (a HIGH job, when the deployment names a scope "
        "for it).",
        "content": _content(403),
    },
    404: {
        "description": "No such job for this caller; or no such route (API Gateway's own body).",
        "content": _content(404),
    },
    409: {
        "description": "A request with this Idempotency-Key is still in progress (submit; Retry-After says when to "
        "retry), or the job already SUCCEEDED or FAILED (cancel).",
        "headers": _RETRY_AFTER,
        "content": _content(409),
    },
    413: {
        "description": f"The request body is larger than {MAX_REQUEST_BYTES} bytes.",
        "content": _content(413),
    },
    415: {"description": "The body is not application/json.", "content": _content(415)},
    422: {"description": "The request breaks the model; errors lists where and why.", "content": _content(422)},
    429: {"description": "Throttled by API Gateway (the stage's rate and burst).", "content": _content(429)},
    500: {
        "description": "An unexpected error in the function; or the function crashed (API Gateway's own body).",
        "content": _content(500),
    },
    503: {
        "description": "A dependency is throttled or unreachable, or tokens cannot be verified now; or the "
        "function outlived API Gateway's 30 s (API Gateway's own body).",
        "headers": _RETRY_AFTER,
        "content": _content(503),
    },
}
_ALWAYS = (401, 422, 429, 500, 503)


def responses(success: dict[int, OpenAPIResponse], *errors: int, public: bool = False) -> dict[int, OpenAPIResponse]:
    """The OpenAPI responses of a route: its ``success`` responses, the errors every route may answer (401,
    422, 429, 500, 503; a ``public`` route without input: 429, 500, 503) and ``errors``."""
    always = {429, 500, 503} if public else _ALWAYS
    return {**success, **{code: _ERROR_RESPONSES[code] for code in sorted({*always, *errors})}}


#: The validation error type of a body that names one member twice in one object (a 400).
DUPLICATE_MEMBER = "json_duplicate_member"
#: The validation error type of a body that is JSON but not one object (an array, a string, a number, null: 422).
NOT_AN_OBJECT = "body_not_object"


def parse_json_body(text: str) -> dict[str, Any]:
    """A request body as JSON, by ``jobs.models.read_json``'s rule: unique member names at every depth, integers
    exact, other numbers doubles that hold them as written. The body of every route that reads one is one JSON
    object.

    Raises:
        json.JSONDecodeError: not JSON, or nesting too deep for Python's stack (a 400), never a 500.
        RequestValidationError: a member name repeated in one object (``DUPLICATE_MEMBER``, a 400); JSON that
            is not an object (``NOT_AN_OBJECT``, a 422, whatever powertools would do with it: it validates the
            first element of an array against the model and drops the rest).
    """
    try:
        value = read_json(text)
    except json.JSONDecodeError:
        raise
    except DuplicateMemberName as error:
        raise RequestValidationError([{"loc": ("body",), "msg": str(error), "type": DUPLICATE_MEMBER}]) from None
    except (ValueError, RecursionError) as error:
        raise json.JSONDecodeError(f"unreadable JSON ({type(error).__name__})", "", 0) from None
    if not isinstance(value, dict):
        kind = "null" if value is None else "an array" if isinstance(value, list) else "a " + _json_kind(value)
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"the body must be one JSON object, not {kind}", "type": NOT_AN_OBJECT}]
        )
    return value


def _json_kind(value: Any) -> str:
    return "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


def request_bytes(event: Mapping[str, Any]) -> int:
    """The size of a payload format 2.0 event's body as the client sent it, bytes."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8", "surrogatepass"))


def _utf8_body(event: Mapping[str, Any]) -> bool:
    """False for a base64 body (API Gateway's form for bytes that are not text) that is not UTF-8."""
    if not (event.get("isBase64Encoded") and event.get("body")):
        return True
    try:
        base64.b64decode(event["body"], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return True


def list_members(value: str) -> list[str]:
    """The members of a header value by the list rule of RFC 9110 section 5.6.1: split at each comma outside a
    quoted string (section 5.6.4), each member trimmed of optional whitespace, empty members kept (a
    single-valued header is checked with this: ``len(list_members(v)) == 1``)."""
    members: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            members.append("".join(current).strip(" \t"))
            current = []
            continue
        current.append(char)
    members.append("".join(current).strip(" \t"))
    return members


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` value, lowercased, without parameters (``application/json``)."""
    return (content_type or "").split(";", 1)[0].strip(" \t").lower()


def _canonical_content_type(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with a JSON ``Content-Type`` spelled ``application/json``: media types are case-insensitive
    (RFC 9110 section 8.3.1), and powertools compares them case-sensitively."""
    headers = event.get("headers") or {}
    found = [name for name in headers if name.lower() == "content-type"]
    if not found or media_type(headers[found[0]]) != "application/json" or headers[found[0]] == "application/json":
        return event
    kept = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    return {**event, "headers": {**kept, "content-type": "application/json"}}


def foreign_event(event: object) -> str | None:
    """Why ``event`` is not an API Gateway HTTP API event of payload format 2.0 (``version`` "2.0", ``rawPath``,
    ``requestContext.http.method``: "Working with AWS Lambda proxy integrations for HTTP APIs"), or None when it
    is one. A REST API's event (payload format 1.0: ``httpMethod``, ``requestContext`` without ``http``), an HTTP
    API integration set to payload format 1.0, or any other service's event means the function is wired wrong; so
    does a 2.0 event whose members that are read (``_EventV2``) are missing or of another JSON type."""
    if not isinstance(event, Mapping):
        return f"the event is a JSON {type(event).__name__}, not an object"
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    if "httpMethod" in event or event.get("version") == "1.0":
        return "payload format 1.0 (a REST API, or an HTTP API integration with PayloadFormatVersion 1.0)"
    if not isinstance(http, Mapping) or not isinstance(http.get("method"), str):
        return "no requestContext.http.method (not an API Gateway HTTP API event)"
    if event.get("version") != "2.0" or not isinstance(event.get("rawPath"), str):
        return "not payload format 2.0 (version or rawPath missing)"
    try:
        _EVENT_V2.validate_python(event)
    except ValidationError as error:
        where = ".".join(str(part) for part in error.errors()[0]["loc"])
        return f"payload format 2.0 with {where} missing or not of the type API Gateway sends"
    return None


class _HttpV2(TypedDict):
    method: str


class _RequestContextV2(TypedDict):
    stage: str
    http: _HttpV2


@with_config(ConfigDict(strict=True))
class _EventV2(TypedDict, total=False):
    """The members of a payload format 2.0 event that powertools' resolver and this API read, with the JSON types
    API Gateway gives them ("Working with AWS Lambda proxy integrations for HTTP APIs", payload format 2.0);
    strict, so that a number is never taken for a string. Other members are not looked at."""

    requestContext: Required[_RequestContextV2]
    headers: dict[str, str]
    queryStringParameters: dict[str, str] | None
    pathParameters: dict[str, str] | None
    cookies: list[str] | None
    body: str | None
    isBase64Encoded: bool


_EVENT_V2: TypeAdapter[_EventV2] = TypeAdapter(_EventV2)


def misconfigured(reason: str) -> dict[str, Any]:
    """The answer to an event this function is not configured for: one error log line naming the
    misconfiguration, and a well-formed 500 problem (a Lambda proxy response that both payload formats read),
    never an unhandled exception. The event itself is not logged: it may carry a token."""
    logger.error(
        "ApiFunction serves API Gateway HTTP API events of payload format 2.0 only; this one is %s: check the "
        "integration (HttpApi event, PayloadFormatVersion 2.0) that invokes it",
        reason,
        extra={"misconfiguration": reason},
    )
    body = {
        "type": "about:blank",
        "title": HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
        "status": HTTPStatus.INTERNAL_SERVER_ERROR.value,
        "detail": "The API is not configured for this kind of request.",
    }
    return {
        "statusCode": HTTPStatus.INTERNAL_SERVER_ERROR.value,
        "headers": {"Content-Type": PROBLEM_JSON},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


class JobsResolver(APIGatewayHttpResolver):
    """The API's resolver. Before powertools parses a POST's body, a body larger than ``MAX_REQUEST_BYTES`` is a
    413, one that is not ``application/json`` a 415 (powertools would parse form and multipart bodies, and fail
    with a 500 on a multipart type without a boundary) and one of bytes that are not UTF-8 a 400 (a 500 in
    powertools' decoding), and a ``Content-Type`` that holds several values (a repeated header, joined) a 400.
    All come after authentication, so that a caller without a valid token still learns nothing but 401. Other
    methods read no body. An event that is not an HTTP API payload format 2.0 event gets ``misconfigured``."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        misfit = foreign_event(event)
        if misfit is not None:
            return misconfigured(misfit)
        if event["requestContext"]["http"]["method"] != "POST":  # only POST reads a body (checked: foreign_event)
            return super().resolve(event, context)
        proxy_event = APIGatewayProxyEventV2(dict(event))
        content_type = proxy_event.headers.get("content-type")
        if request_bytes(event) > MAX_REQUEST_BYTES:
            refusal = problem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The request body is larger than {MAX_REQUEST_BYTES} bytes."
            )
        elif content_type is not None and len(list_members(content_type)) > 1:
            refusal = problem(
                HTTPStatus.BAD_REQUEST,
                "Content-Type holds one media type; this request's holds several (a header sent twice arrives "
                "joined by commas).",
                errors=[{"loc": ["header", "content-type"], "msg": "one value expected", "type": "header_repeated"}],
            )
        elif event.get("body") and media_type(content_type) not in ("", "application/json"):
            refusal = problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")
        elif not _utf8_body(event):
            refusal = problem(HTTPStatus.BAD_REQUEST, "The request body is not valid JSON (JSON is UTF-8).")
        else:
            return super().resolve(_canonical_content_type(event), context)
        try:
            bootstrap.authenticator().authenticate(proxy_event.headers.get("authorization"))
        except Unauthenticated as failure:
            refusal = _unauthenticated(failure)
        except AuthUnavailable as failure:
            refusal = _auth_unavailable(failure)
        return ResponseBuilder[APIGatewayProxyEventV2](refusal).build(proxy_event)


def build_resolver() -> APIGatewayHttpResolver:
    """A resolver with validation on, authentication on every route, and the error table registered."""
    # A response that breaks its own model is our bug: a 500, never a 422 blamed on the client.
    app = JobsResolver(
        enable_validation=True,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        json_body_deserializer=parse_json_body,
    )
    app.use(middlewares=[_authenticate])
    for error_type, respond in ERROR_RESPONSES.items():
        app.exception_handler(error_type)(respond)
    app.exception_handler(RequestValidationError)(partial(_invalid_request, app))
    app.not_found(lambda error: problem(HTTPStatus.NOT_FOUND, "No such resource."))

    @cache
    def description() -> tuple[Representation, Representation]:
        """The document and its Swagger UI page: built once per function instance (~1.7 MB of page, which never
        changes within a deployment), on the first request for either."""
        document = openapi_json(app)
        return Representation.of("application/json", document), Representation.of("text/html", swagger_html(document))

    # No validation: no input, and no model for a body that may be gzip.
    @app.get(OPENAPI_PATH, include_in_schema=False, enable_validation=False)
    def serve_openapi() -> Response[Any]:
        return description()[0].response(app.current_event.headers)

    @app.get(DOCS_PATH, include_in_schema=False, enable_validation=False)
    def serve_docs() -> Response[Any]:
        # The page's spec link (Swagger UI's, as powertools writes it) is this path with ?format=json.
        document, page = description()
        wanted = document if app.current_event.get_query_string_value("format") == "json" else page
        return wanted.response(app.current_event.headers)

    return app


#: The docs' caching: a browser keeps them 5 minutes, then revalidates with the ETag (a 304 without body).
DOCS_CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class Representation:
    """A body that never changes within a deployment (the document, the docs page), ready to send: its text,
    its gzip (base64 encoded, as a Lambda response carries bytes), and a weak ETag (the same for both: they are
    the same content, RFC 9110 section 8.8.1).

    powertools' ``compress=True`` would gzip and encode the page again on every request, and its
    ``cache_control`` writes ``no-cache`` on a 304; this sends what it computed once, and answers
    ``If-None-Match`` (which powertools does not). HTTP APIs do not compress, so the function does: the gzip goes
    with ``isBase64Encoded``, which API Gateway decodes before sending.
    """

    media_type: str
    text: str
    gzipped: str
    etag: str

    @classmethod
    def of(cls, media_type: str, text: str) -> Representation:
        """``text`` as ``media_type``, gzipped at level 9 once."""
        body = text.encode("utf-8")
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
        gzipped = base64.b64encode(gzip.compress(body, compresslevel=9, mtime=0)).decode("ascii")
        return cls(media_type, text, gzipped, etag)

    def response(self, headers: Mapping[str, str]) -> Response[Any]:
        """200 with the text, or its gzip when ``Accept-Encoding`` takes gzip; 304 without body when
        ``If-None-Match`` names the ETag (RFC 9110 section 13.1.2). Headers as API Gateway passes them
        (lowercased names)."""
        common = {"ETag": self.etag, "Cache-Control": DOCS_CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if etag_matches(headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=common)
        if not accepts_gzip(headers.get("accept-encoding")):
            return Response(200, self.media_type, self.text, common)
        response = Response(200, self.media_type, self.gzipped, {**common, "Content-Encoding": "gzip"})
        response.base64_encoded = True  # already encoded: powertools sends a str body as it is
        return response


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when an ``If-None-Match`` value is ``*`` or lists ``etag`` (weak comparison, RFC 9110 section 8.8.3.2)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an ``Accept-Encoding`` value takes gzip: ``gzip``, ``x-gzip`` or ``*`` with a weight above 0
    (RFC 9110 section 12.5.3; an explicit ``gzip;q=0`` refuses it whatever ``*`` says)."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def openapi_document(app: APIGatewayHttpResolver) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes, generated from the same models that validate requests.

    powertools builds it from the routes (operation ids, tags, examples, responses); three rules of this API's
    are applied after, for every operation:

    - a response validation failure is documented by powertools as its own 500 body; this API answers it like
      any other 500 (``_ERROR_RESPONSES[500]``), and a 204 has no content;
    - an optional parameter is absent or a value, never ``null``: its schema is the value's alone (pydantic
      writes ``anyOf [T, null]`` for ``T | None``, which generators and Swagger UI show as two types);
    - a header parameter is named as its alias was spelled (``Idempotency-Key``, kept as the schema's title):
      powertools lowercases header aliases to match them, header names being case-insensitive (RFC 9110
      section 5.1), and API Gateway sends them lowercased;
    - ``JobCreate.type`` lists the deployed job types (``jobs.processors.BUILT_IN_TYPES``); the responses'
      ``type`` has no enum, so that a job type added later never breaks an older client.
    """
    # powertools' OpenAPI models take ~200 ms to import: configured here, on the first request for the document,
    # not at cold start (measured in bench/RESULTS.md).
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Tag

    from jobs.processors import BUILT_IN_TYPES

    app.configure_openapi(
        title=API_TITLE,
        version=API_VERSION,
        description="Submit jobs, follow them, list and delete your own. Every jobs operation needs a Bearer JWT; "
        "errors are application/problem+json (RFC 9457), except those API Gateway itself sends "
        '(`{"message": ...}`).',
        tags=[
            Tag(name=JOBS_TAG, description="Your jobs: submit, follow, list, delete."),
            Tag(name=WEBHOOKS_TAG, description="Callbacks: the keys that verify their signatures."),
        ],
        security_schemes={BEARER_SCHEME: HTTPBearer(bearerFormat="JWT")},
        security=[{BEARER_SCHEME: []}],
    )
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema())
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            answers = operation["responses"]
            if path in PUBLIC_PATHS:  # no token, no input: the route answers neither 401 nor 422
                operation["security"] = []
                answers.pop("422", None)
            answers["500"] = _openapi_response(_ERROR_RESPONSES[500])
            if "204" in answers:
                answers["204"].pop("content", None)
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _absent_not_null(parameter["schema"], required=parameter["required"])
                if parameter["in"] == "header":
                    parameter["name"] = parameter["schema"].get("title", parameter["name"])
    schemas["JobCreate"]["properties"]["type"]["enum"] = sorted(BUILT_IN_TYPES)
    for name in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):  # users before used
        others = {**document, "components": {"schemas": {k: v for k, v in schemas.items() if k != name}}}
        if f'"#/components/schemas/{name}"' not in json.dumps(others):
            schemas.pop(name, None)
    return document


def _absent_not_null(schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """An optional parameter's schema without its ``null`` branch (its other keys kept)."""
    kinds = schema.get("anyOf", [])
    values = [kind for kind in kinds if kind != {"type": "null"}]
    if required or len(values) != 1 or len(kinds) != 2:
        return schema
    return {**values[0], **{k: v for k, v in schema.items() if k != "anyOf"}}


def _openapi_response(response: OpenAPIResponse) -> dict[str, Any]:
    """``response`` as powertools writes a declared response: each ``model`` (a class) becomes a reference to its
    schema in ``#/components/schemas``."""
    content: dict[str, Any] = {}
    for media, entry in response.get("content", {}).items():
        reference = {"$ref": f"#/components/schemas/{cast(Any, entry)['model'].__name__}"}
        content[media] = {"schema": reference, **{k: v for k, v in entry.items() if k != "model"}}
    return {**response, "content": content}


def openapi_json(app: APIGatewayHttpResolver) -> str:
    """``openapi_document`` as JSON text, keys in a stable order (the committed copy is compared as text)."""
    return json.dumps(openapi_document(app), indent=2, ensure_ascii=False) + "\n"


def swagger_html(document: str) -> str:
    """A Swagger UI page for ``document``, with the Swagger UI that powertools bundles (no CDN): titled after the
    API, with an empty inline icon (a browser asks for ``/favicon.ico`` otherwise, which no route serves), and
    without powertools' ``no-store`` meta tag (the page is cached: ``Representation``).

    Raises:
        AssertionError: powertools' page no longer has what this replaces (a test builds the page).
    """
    from html import escape
    from pathlib import Path

    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    page = generate_swagger_html(
        document.replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
    head = page[: page.index("</head>")]
    replaced = re.sub(
        r'<title>Swagger UI</title>\s*<meta\s+http-equiv="Cache-control"\s+content="[^"]*"\s*/>',
        f'<title>{escape(API_TITLE)}: API</title>\n    <link rel="icon" href="data:,">',
        head,
        count=1,
    )
    assert replaced != head, "powertools' Swagger UI page changed: update swagger_html"
    return replaced + page[len(head) :]
