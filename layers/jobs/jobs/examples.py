"""The OpenAPI document's examples: the seed's job at each step of the walkthrough, and the real body of each
error status (tests/integration/test_openapi.py produces every one of them through the handler or the error
table and compares). Swagger UI's "Try it out" starts from ``SEED_REQUEST``; generated clients get them as
documentation.
"""

from __future__ import annotations

from typing import Any

#: The seed's job (events/seed-payload.json): the body "Try it out" offers.
SEED_REQUEST: dict[str, Any] = {
    "title": "Chuck Norris Job: Triple Roundhouse Compliance Report",
    "payload": {
        "report_type": "quarterly_audit",
        "target_user_ids": ["9a326614-478f-4332-b65d-8824709cfa1e", "b3f0c2e1-a7d9-4b8c-8c1d-6b0d9e5f4a7b"],
        "complexity_level": 9000,
        "priority": "HIGH",
    },
}
#: A UUIDv7 whose time is ``CREATED_AT``.
SEED_JOB_ID = "01a226ee-fede-7c74-8f78-130f6101394b"
CREATED_AT = "2026-11-29T10:52:06.750Z"

#: The 201 of the seed's POST: the job, QUEUED.
QUEUED_JOB: dict[str, Any] = {
    "job_id": SEED_JOB_ID,
    "title": SEED_REQUEST["title"],
    "type": "report",
    "status": "QUEUED",
    "payload": SEED_REQUEST["payload"],
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
    "started_at": None,
    "finished_at": None,
    "attempts": 0,
    "priority": "HIGH",  # the seed's payload.priority (``JobCreate.effective_priority``)
    "not_before": None,
    "result": None,
    "error": None,
    "cancel_requested_at": None,
    "progress": None,
    "callback_url": None,
    "callback": None,
}

#: The seed's job a moment later: SUCCEEDED with its quarterly audit (of the owner's one job in the quarter,
#: as ``jobs.processors.quarterly_audit`` computes it; a test recomputes it).
SUCCEEDED_JOB: dict[str, Any] = {
    **QUEUED_JOB,
    "status": "SUCCEEDED",
    "updated_at": "2026-11-29T10:52:07.115Z",
    "started_at": "2026-11-29T10:52:06.912Z",
    "finished_at": "2026-11-29T10:52:07.115Z",
    "attempts": 1,
    "result": {
        "report_type": "quarterly_audit",
        "quarter": "2026-Q4",
        "period": {"start": "2026-10-01T00:00:00.000Z", "end": "2027-01-01T00:00:00.000Z"},
        "total_jobs": 1,
        "by_status": {"QUEUED": 0, "RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 0},
        "by_type": {"report": 1},
        "success_rate": None,
        "processing_seconds": {"count": 0, "p50": None, "p95": None, "exact": True},
        "queue_wait_seconds": {"count": 1, "p50": 0.162, "p95": 0.162, "exact": True},
        "requested": {
            "target_user_ids": SEED_REQUEST["payload"]["target_user_ids"],
            "complexity_level": 9000,
            "priority": "HIGH",
        },
    },
}

#: The 200 of ``POST /api/v1/jobs/{job_id}/cancel`` for the seed's job while it was QUEUED: CANCELLED at once.
CANCELLED_JOB: dict[str, Any] = {
    **QUEUED_JOB,
    "status": "CANCELLED",
    "updated_at": "2026-11-29T10:52:06.801Z",
    "finished_at": "2026-11-29T10:52:06.801Z",
}

#: ``GET /api/v1/jobs`` after the seed's job: one page, no next page.
JOB_PAGE: dict[str, Any] = {"items": [SUCCEEDED_JOB], "next_token": None}  # nosec B105 - a page token, not a password


def _problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


#: The body of each error status the function sends, by status and name (an OpenAPI Example Object's key).
PROBLEMS: dict[int, dict[str, dict[str, Any]]] = {
    400: {
        "notJson": _problem(
            400,
            "Bad Request",
            "The request body is not valid JSON.",
            [{"loc": ["body", 1], "msg": "JSON decode error", "type": "json_invalid"}],
        ),
        "foreignNextToken": _problem(400, "Bad Request", "next_token is not valid."),
    },
    401: {"noToken": _problem(401, "Unauthorized", "A valid bearer token is required.")},
    403: {"highPriority": _problem(403, "Forbidden", "A HIGH job needs the scope jobs/priority.high in the token.")},
    404: {"noSuchJob": _problem(404, "Not Found", "No such job.")},
    409: {
        "inProgress": _problem(
            409, "Conflict", "A request with this Idempotency-Key is still in progress; retry later."
        ),
        "jobFinished": _problem(
            409, "Conflict", "The job is SUCCEEDED: only a QUEUED or RUNNING job can be cancelled."
        ),
    },
    413: {
        "tooLarge": _problem(413, "Content Too Large", "The request body is larger than 262144 bytes."),
    },
    415: {"notJson": _problem(415, "Unsupported Media Type", "Send the body as application/json.")},
    422: {
        "emptyTitle": _problem(
            422,
            "Unprocessable Content",
            "The request is not valid.",
            [{"loc": ["body", "title"], "msg": "String should have at least 1 character", "type": "string_too_short"}],
        ),
        "unknownType": _problem(
            422,
            "Unprocessable Content",
            "The request is not valid.",
            [
                {
                    "loc": ["body", "type"],
                    "msg": "unknown job type 'roundhouse'; known: noop, report",
                    "type": "unknown_job_type",
                }
            ],
        ),
    },
    500: {"unexpected": _problem(500, "Internal Server Error", "An unexpected error occurred.")},
    503: {"busy": _problem(503, "Service Unavailable", "The service is busy; retry later.")},
}

#: The body of each error API Gateway itself sends, by status (``{"message": ...}``, application/json).
GATEWAY_ERRORS: dict[int, dict[str, Any]] = {
    404: {"message": "Not Found"},
    429: {"message": "Too Many Requests"},
    500: {"message": "Internal Server Error"},
    503: {"message": "Service Unavailable"},
}


#: GET /api/v1/webhooks/public-key: one key (the public half of the Ed25519 key whose private bytes are 0, 1, ..., 31;
#: an example only, never a deployed key).
WEBHOOK_PUBLIC_KEYS: dict[str, Any] = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg",
            "kid": "1IG2tMH7J2wbJZnOf8LJzQitKf7LMvoAElsuDMVM54Y",
            "use": "sig",
            "alg": "EdDSA",
            "whpk": "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
        }
    ]
}
