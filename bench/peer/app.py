"""The peer: the jobs API's four routes as a FastAPI app behind Mangum, the usual choice for Python on Lambda.

It exists only to be measured against (``bench/``), and is written as a good FastAPI developer would write it:
``Depends(get_current_user)`` verifies the bearer JWT with PyJWT against the HS256 secret read from SSM (cached
five minutes), request bodies and query parameters are validated by FastAPI with the same pydantic models, the
domain errors become the same problem+json responses in exception handlers, and the same ``JobService`` makes
the same DynamoDB and SQS calls through boto3 clients built once per sandbox (``lru_cache``). Logs and metrics
are the same powertools Logger and Metrics as the real function, so both write the same CloudWatch output.

Deployed, it would be a function with ``Handler: app.handler``, the API function's environment, and
fastapi/mangum in its package. JWKS mode is left out: the benchmarks verify HS256 tokens.
"""

from __future__ import annotations

import time
from functools import lru_cache
from http import HTTPStatus
from typing import Annotated, Any

import boto3
import jwt
from aws_lambda_powertools.logging import correlation_paths
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mangum import Mangum
from starlette.exceptions import HTTPException

from jobs.models import (
    InvalidPageToken,
    InvalidPayload,
    Job,
    JobCreate,
    JobNotFound,
    JobPage,
    ServiceUnavailable,
    UnknownJobType,
)
from jobs.observability import MetricUnit, logger, metrics
from jobs.processors import Registry
from jobs.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, JobService
from jobs.settings import AuthSettings, auth_settings, store_settings
from jobs.store import DynamoJobStore

PROBLEM_JSON = "application/problem+json"
SECRET_MAX_AGE_SECONDS = 300

app = FastAPI(title="Chuck Norris Asynchronous Job System (FastAPI peer)")
bearer = HTTPBearer(auto_error=False)


@lru_cache
def get_service() -> JobService:
    """The job service, with its boto3 client built once per sandbox (create is one PutItem, as in ours: the
    table's stream sends the message)."""
    return JobService(DynamoJobStore(store_settings().table_name, client=boto3.client("dynamodb")), registry=Registry())


@lru_cache
def ssm_client() -> Any:
    return boto3.client("ssm")


_secret_cache: dict[str, tuple[float, str]] = {}


def jwt_secret(settings: AuthSettings) -> str:
    """The HS256 secret from SSM Parameter Store, cached for five minutes."""
    name = settings.jwt_secret_parameter
    assert name is not None
    cached = _secret_cache.get(name)
    if cached is not None and time.monotonic() - cached[0] < SECRET_MAX_AGE_SECONDS:
        return cached[1]
    try:
        value = ssm_client().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as error:
        raise HTTPException(HTTPStatus.SERVICE_UNAVAILABLE, "Tokens cannot be verified right now.") from error
    _secret_cache[name] = (time.monotonic(), value)
    return str(value)


def unauthorized(error: str | None) -> HTTPException:
    challenge = 'Bearer realm="jobs"' + (f', error="{error}"' if error else "")
    return HTTPException(HTTPStatus.UNAUTHORIZED, "A valid bearer token is required.", {"WWW-Authenticate": challenge})


def get_current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    settings: Annotated[AuthSettings, Depends(auth_settings)],
) -> str:
    """The verified ``sub`` of the request's bearer token: the owner of every job the request touches."""
    if credentials is None:
        metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=1)
        raise unauthorized(None)
    try:
        claims = jwt.decode(
            credentials.credentials,
            jwt_secret(settings),
            algorithms=list(settings.jwt_algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={
                "require": ["exp", "sub"],
                "verify_aud": settings.jwt_audience is not None,
                "verify_iss": settings.jwt_issuer is not None,
            },
        )
    except jwt.PyJWTError as error:
        metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=1)
        logger.info("Authentication failed", extra={"reason": type(error).__name__})
        raise unauthorized("invalid_token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise unauthorized("invalid_token")
    logger.append_keys(owner_id=sub)
    logger.info("User %s authenticated successfully", sub)
    return sub


Owner = Annotated[str, Depends(get_current_user)]
Service = Annotated[JobService, Depends(get_service)]


@app.post("/api/v1/jobs", status_code=HTTPStatus.CREATED)
def create_job(request: JobCreate, owner_id: Owner, service: Service, response: Response) -> Job:
    job = service.create_job(owner_id, request)
    metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=1)
    response.headers["Location"] = f"/api/v1/jobs/{job.job_id}"
    return job


@app.get("/api/v1/jobs")
def list_jobs(
    owner_id: Owner,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
) -> JobPage:
    return service.list_jobs(owner_id, limit=limit, next_token=next_token)


@app.get("/api/v1/jobs/{job_id}")
def get_job(job_id: str, owner_id: Owner, service: Service) -> Job:
    return service.get_job(owner_id, job_id)


@app.delete("/api/v1/jobs/{job_id}", status_code=HTTPStatus.NO_CONTENT)
def delete_job(job_id: str, owner_id: Owner, service: Service) -> Response:
    service.delete_job(owner_id, job_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)


def problem(status: HTTPStatus, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": status.phrase, "status": status.value, "detail": detail, **extra}
    return JSONResponse(body, status_code=status.value, headers=headers, media_type=PROBLEM_JSON)


def public_errors(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


@app.exception_handler(HTTPException)
def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return problem(HTTPStatus(error.status_code), str(error.detail), dict(error.headers or {}))


@app.exception_handler(RequestValidationError)
def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = public_errors(error.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(HTTPStatus.BAD_REQUEST, "The request body is not valid JSON.", errors=errors)
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The request is not valid.", errors=errors)


@app.exception_handler(JobNotFound)
def job_not_found(request: Request, error: JobNotFound) -> JSONResponse:
    return problem(HTTPStatus.NOT_FOUND, "No such job.")


@app.exception_handler(UnknownJobType)
def unknown_job_type(request: Request, error: UnknownJobType) -> JSONResponse:
    errors = [{"loc": ["body", "type"], "msg": str(error), "type": "unknown_job_type"}]
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The request is not valid.", errors=errors)


@app.exception_handler(InvalidPayload)
def invalid_payload(request: Request, error: InvalidPayload) -> JSONResponse:
    errors = [{**e, "loc": ["body", *e["loc"]]} for e in public_errors(error.errors)]
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "The payload does not fit the job type.", errors=errors)


@app.exception_handler(InvalidPageToken)
def invalid_page_token(request: Request, error: InvalidPageToken) -> JSONResponse:
    return problem(HTTPStatus.BAD_REQUEST, "next_token is not valid.")


@app.exception_handler(ServiceUnavailable)
def service_unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
    logger.warning("Dependency unavailable", extra={"reason": str(error)})
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, "The service is busy; retry later.", {"Retry-After": "1"})


asgi_handler = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (HTTP API payload format 2.0)."""
    return dict(asgi_handler(event, context))
