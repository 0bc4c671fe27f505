"""The API function: one powertools resolver, one short handler per verb of ``/api/v1/jobs``.

Each handler authenticates (done by the resolver's middleware), gets a validated request, calls one service
function and returns. Errors become problem+json responses in ``jobs.http``.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import aws, bootstrap, examples, sandbox
from jobs.http import (
    IDEMPOTENCY_KEY_PATTERN,
    JOBS_TAG,
    WEBHOOK_KEYS_PATH,
    WEBHOOKS_TAG,
    build_resolver,
    header_value,
    owner_id,
    require_priority,
    responses,
)
from jobs.models import Job, JobCreate, JobPage, KnownStatus, WebhookPublicKeys
from jobs.observability import MetricUnit, logger, metrics
from jobs.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

app = build_resolver()
#: A job's id in a path: a UUID as the API issues them (any other text is a 404, as for someone else's job).
JobId = Annotated[str, Path(description="The job's id.", json_schema_extra={"format": "uuid"})]


@app.post(
    "/api/v1/jobs",
    status_code=201,
    summary="Submit a job",
    operation_id="createJob",
    tags=[JOBS_TAG],
    responses=responses(
        {
            201: {
                "description": "The job, QUEUED (or the first response to this Idempotency-Key).",
                "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
                "content": {"application/json": {"model": Job, "examples": {"seed": {"value": examples.QUEUED_JOB}}}},
            }
        },
        400,
        403,
        409,
        413,
        415,
        422,
    ),
)
def create_job(
    request: Annotated[
        JobCreate,
        Body(openapi_examples={"seed": {"summary": "The seed's quarterly audit", "value": examples.SEED_REQUEST}}),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Makes a retried POST return the first response: 1 to 255 visible ASCII characters but "
            "the comma (a header sent twice arrives joined by one), unique per request of this caller (a UUID). "
            "Remembered for a day.",
        ),
    ] = None,
) -> Response[str]:
    """Submit a job: 201 Created with its ``Location`` and the QUEUED job (once per ``Idempotency-Key``); 403 for a
    HIGH job without the scope the deployment names for it."""
    require_priority(app, request.effective_priority)
    key = header_value(idempotency_key)
    if key is None:  # powertools' idempotency utility (and the boto3 it imports) only for requests with a key
        job = bootstrap.api_service().create_job(owner_id(app), request)
    else:
        job = bootstrap.job_creator().create(owner_id(app), request, key=key, context=app.lambda_context)
    metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=201,
        content_type="application/json",
        body=job.model_dump_json(),
        headers={"Location": f"/api/v1/jobs/{job.job_id}"},
    )


@app.get(
    "/api/v1/jobs",
    summary="List your jobs, newest first",
    operation_id="listJobs",
    tags=[JOBS_TAG],
    responses=responses(
        {
            200: {
                "description": "One page of your jobs.",
                "content": {"application/json": {"model": JobPage, "examples": {"seed": {"value": examples.JOB_PAGE}}}},
            }
        },
        400,
    ),
)
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[str | None, Query(description="The next_token of the previous page; opaque.")] = None,
    status: Annotated[KnownStatus | None, Query(description="Only the jobs in this status.")] = None,
) -> Response[str]:
    """The caller's jobs, newest first, one page at a time (a ``JobPage``, as the responses above document).

    The page goes out as pydantic-core writes it, straight to JSON text, as FastAPI does for its response models:
    built by our own service, it needs no validation on the way out. Its jobs' text is the one the service wrote
    to size the page (``JobPage.json_text``): writing 20 jobs a second time cost more than the rest of the route's
    framework work (bench/RESULTS.md).
    """
    page = bootstrap.api_service().list_jobs(owner_id(app), limit=limit, next_token=next_token, status=status)
    return Response(status_code=200, content_type="application/json", body=page.json_text())


@app.get(
    "/api/v1/jobs/<job_id>",
    summary="Get one of your jobs",
    operation_id="getJob",
    tags=[JOBS_TAG],
    responses=responses(
        {
            200: {
                "description": "The job.",
                "content": {
                    "application/json": {"model": Job, "examples": {"seed": {"value": examples.SUCCEEDED_JOB}}}
                },
            }
        },
        404,
    ),
)
def get_job(job_id: JobId) -> Response[str]:
    """One of the caller's jobs (a ``Job``, as the responses above document, written as ``list_jobs`` writes its
    page); 404 when absent or someone else's."""
    job = bootstrap.api_service().get_job(owner_id(app), job_id)
    return Response(status_code=200, content_type="application/json", body=job.model_dump_json())


@app.delete(
    "/api/v1/jobs/<job_id>",
    status_code=204,
    summary="Delete one of your jobs",
    operation_id="deleteJob",
    tags=[JOBS_TAG],
    responses=responses({204: {"description": "Deleted."}}, 404),
)
def delete_job(job_id: JobId) -> Response[None]:
    """Delete one of the caller's jobs whatever its status: 204, or 404 when absent or someone else's."""
    bootstrap.api_service().delete_job(owner_id(app), job_id)
    return Response(status_code=204)


@app.post(
    "/api/v1/jobs/<job_id>/cancel",
    summary="Cancel one of your jobs",
    operation_id="cancelJob",
    tags=[JOBS_TAG],
    responses=responses(
        {
            200: {
                "description": "The job: CANCELLED when it was QUEUED (or already CANCELLED); RUNNING with "
                "cancel_requested_at when it was running, until its run ends it CANCELLED.",
                "content": {
                    "application/json": {"model": Job, "examples": {"queued": {"value": examples.CANCELLED_JOB}}}
                },
            }
        },
        404,
        409,
    ),
)
def cancel_job(job_id: JobId) -> Job:
    """Cancel one of the caller's jobs and keep its record: 200 with the job; 409 when it already SUCCEEDED or
    FAILED; 404 when absent or someone else's."""
    return bootstrap.api_service().cancel_job(owner_id(app), job_id)


@app.get(
    WEBHOOK_KEYS_PATH,
    summary="The public keys of callback signatures",
    operation_id="getWebhookPublicKeys",
    tags=[WEBHOOKS_TAG],
    responses=responses(
        {
            200: {
                "description": "The keys (a JSON Web Key Set); verify a delivery with jobs_client.verify_webhook.",
                "content": {
                    "application/json": {
                        "model": WebhookPublicKeys,
                        "examples": {"one key": {"value": examples.WEBHOOK_PUBLIC_KEYS}},
                    }
                },
            }
        },
        public=True,
    ),
)
def get_webhook_public_keys() -> Response[str]:
    """The keys that verify callback deliveries; public (no token), cached by clients for 5 minutes."""
    body = bootstrap.webhook_public_keys().model_dump_json()
    return Response(
        status_code=200, content_type="application/json", body=body, headers={"Cache-Control": "public, max-age=300"}
    )


@sandbox.freeze_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point for the ``HttpApi`` routes (payload format 2.0); any other event gets a well-formed
    500 and one log line naming the misconfiguration (``jobs.http.misconfigured``)."""
    return app.resolve(event, context)
