"""What the client raises. Every error is a ``JobsClientError``; answers of the API are ``JobsApiError``s.

The API's own errors are ``application/problem+json`` (RFC 9457); API Gateway's are ``{"message": ...}``. Both
become a ``JobsApiError`` subclass chosen by the status code, carrying ``status``, ``title``, ``detail`` and the
validation ``errors`` (each ``{"loc": [...], "msg": ..., "type": ...}``), so callers catch ``NotFound``, not 404.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from jobs.models import Job


class JobsClientError(Exception):
    """Base class of everything the client raises on purpose."""


class JobsApiError(JobsClientError):
    """The API answered with an error status.

    Args:
        status: the HTTP status code.
        title: the problem's ``title`` (the status phrase when the body has none).
        detail: the problem's ``detail`` (or API Gateway's ``message``, or the body's text).
        errors: the offending fields of a validation error; empty otherwise.
        retry_after: the ``Retry-After`` header in seconds, when the answer carried one.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.retry_after = retry_after


class BadRequest(JobsApiError):
    """400: the body is not JSON, or a ``next_token`` this API did not issue."""


class Unauthorized(JobsApiError):
    """401: no token, or one the API rejects (expired, wrong secret, no ``sub``)."""


class Forbidden(JobsApiError):
    """403: the token lacks what the request needs: a HIGH job where the deployment names a scope for it
    (``HighPriorityScope``) and the token does not carry that scope."""


class NotFound(JobsApiError):
    """404: no such job for this caller (absent, deleted, someone else's), or no such route."""


class Conflict(JobsApiError):
    """409: a request with the same ``Idempotency-Key`` is still in progress (retried by the client before it is
    raised)."""


class ValidationFailed(JobsApiError):
    """422: the request breaks the model (``errors`` says where), names an unknown job type, or reuses an
    ``Idempotency-Key`` with another body."""


class TooManyRequests(JobsApiError):
    """429: API Gateway throttled the request (retried by the client before it is raised)."""


class ServerError(JobsApiError):
    """5xx other than 503: the API failed; the request is not retried."""


class ServiceUnavailable(ServerError):
    """503: a dependency is throttled or down (retried by the client before it is raised)."""


class ConnectionFailed(JobsClientError):
    """The API could not be reached (refused, reset, timed out), after the client's retries."""


class UnexpectedResponse(JobsClientError):
    """A success status whose body is not what the API promises (not JSON, or not the model)."""


class WaitTimedOut(JobsClientError):
    """``wait`` gave up before the job finished; ``job`` is the last state seen (QUEUED or RUNNING)."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} after {timeout:g} s")
        self.job = job
        self.timeout = timeout


class WebhookVerificationError(JobsClientError):
    """A callback delivery failed ``verify_webhook``: a missing header, a timestamp outside the tolerance (a
    replay), no signature verifying with the trusted keys, or a body that is not a JSON object. Answer it 400 and
    act on nothing in it."""


_BY_STATUS: dict[int, type[JobsApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def api_error(status: int, body: Any, text: str = "", *, retry_after: float | None = None) -> JobsApiError:
    """The ``JobsApiError`` subclass for an error answer.

    Args:
        status: the HTTP status code (400 or more).
        body: the decoded JSON body (a problem, API Gateway's ``{"message"}``), or None when it was not JSON.
        text: the raw body, used as the detail when it is not JSON.
        retry_after: the ``Retry-After`` header in seconds, when present.
    """
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    problem = body if isinstance(body, dict) else {}
    title = str(problem.get("title") or phrase)
    detail = str(problem.get("detail") or problem.get("message") or text.strip()[:500])
    raw_errors = problem.get("errors")
    errors = [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else JobsApiError)
    return cls(status, title, detail, errors, retry_after=retry_after)
