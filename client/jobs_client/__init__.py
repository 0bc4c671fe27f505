"""A Python client and the ``jobs`` command line for the jobs API.

``JobsClient`` speaks to the API over HTTP and returns the API's own models (``jobs.models``, shipped with this
distribution), so the client and the API share one definition of a job::

    with JobsClient("http://127.0.0.1:3000", token) as client:
        job = client.submit("Audit", {"report_type": "quarterly_audit"}, priority="HIGH")
        done = client.wait(job.job_id, timeout=60)

``verify_webhook(headers, body, public_key)`` checks a job callback's signature (``jobs_client.webhooks``).
"""

from __future__ import annotations

from jobs.models import Job, JobCreate, JobError, JobPage, JobPriority, JobStatus
from jobs_client._version import __version__
from jobs_client.client import DEFAULT_API_URL, JobsClient, PollPolicy, ReceivedJob, RetryPolicy
from jobs_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    JobsApiError,
    JobsClientError,
    NotFound,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimedOut,
    WebhookVerificationError,
)
from jobs_client.webhooks import verify_webhook

__all__ = [
    "DEFAULT_API_URL",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Job",
    "JobCreate",
    "JobError",
    "JobPage",
    "JobPriority",
    "JobStatus",
    "JobsApiError",
    "JobsClient",
    "JobsClientError",
    "NotFound",
    "PollPolicy",
    "ReceivedJob",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnexpectedResponse",
    "ValidationFailed",
    "WaitTimedOut",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
