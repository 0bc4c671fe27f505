"""``JobsClient``: the jobs API over HTTP (httpx), returning the API's own pydantic models (each job a
``ReceivedJob``: a ``Job`` that also keeps the JSON object the API sent).

Transient failures are retried: 503 and 429 answers, and connection errors, with capped exponential backoff that
waits at least as long as the answer's ``Retry-After``. A request that may have reached the API is retried only
when repeating it is harmless: a GET, or a submit, which always carries an ``Idempotency-Key`` so that the API
answers a repeat with the job the first try created (and a 409 while that try is still in progress, retried too).
DELETE is retried after a connection error only when nothing was sent. ``sleep`` and ``clock`` are injectable, so
tests never wait.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from pydantic import PrivateAttr, ValidationError

from jobs.models import Job, JobCreate, JobPage, JobPriority, JobStatus
from jobs_client._version import __version__
from jobs_client.errors import (
    ConnectionFailed,
    JobsApiError,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimedOut,
    api_error,
)

#: The local stack's gateway (``make run``); a deployed stack's is its ``ApiUrl`` output.
DEFAULT_API_URL = "http://127.0.0.1:3000"
JOBS_PATH = "/api/v1/jobs"
#: Answers worth another try: API Gateway's throttling (429) and the API's "busy, retry later" (503).
RETRYABLE_STATUSES = frozenset({429, 503})
#: Also worth another try for a request with an ``Idempotency-Key``: the first request with that key is in progress.
KEY_IN_PROGRESS = 409
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: The API's rule for the key (``jobs.http.IDEMPOTENCY_KEY_PATTERN``, which the client distribution does not ship):
#: 1 to 255 visible ASCII characters but the comma (API Gateway joins a repeated header's values with commas). The
#: API also strips blanks around it; the client refuses them instead, so the key it sends is the key the API
#: remembers.
_IDEMPOTENCY_KEY = re.compile(r"[!-+\--~]{1,255}")
#: Errors raised before any byte of the request left: safe to retry for every method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Errors after the request may have arrived: retried only for methods that are safe to repeat.
_MAYBE_SENT = (httpx.ReadError, httpx.ReadTimeout, httpx.WriteError, httpx.WriteTimeout, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: tries in all, the first included (1 disables retries).
        initial_delay: seconds before the first retry; multiplied by ``multiplier`` for each later one.
        max_delay: the backoff's cap, seconds.
        max_retry_after: the longest ``Retry-After`` honoured, seconds (a longer one is cut to this).
    """

    attempts: int = 5
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first): the capped backoff, or the
        server's ``Retry-After`` when that is longer."""
        backoff = min(self.max_delay, self.initial_delay * self.multiplier**retry)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.max_retry_after))


@dataclass(frozen=True)
class PollPolicy:
    """How ``wait`` polls: after ``initial_interval`` seconds, then ``multiplier`` times longer each time, up to
    ``max_interval``; a ``Retry-After`` on the job's answer makes the next wait at least that long."""

    initial_interval: float = 0.2
    multiplier: float = 1.5
    max_interval: float = 2.0


def normalise_base_url(url: str) -> str:
    """The API's base URL without a trailing slash or ``/api/v1/jobs``: both ``http://host:3000`` and
    ``http://host:3000/api/v1/jobs/`` give ``http://host:3000``.

    Raises:
        ValueError: not an http(s) URL.
    """
    base = url.strip().rstrip("/").removesuffix(JOBS_PATH).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the API URL must start with http:// or https://, not {url!r}")
    return base


_DELAY_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header value (RFC 9110 section 10.2.3) in seconds from ``now``.

    Accepts delay-seconds (ASCII digits, ``"5"``) or an HTTP-date; a date in the past is 0. Anything else is
    treated as absent (None), never an error: another number form (``1.5``, ``-1``, ``5e3``, Unicode digits), a
    repeated header joined by a comma (``5, 5``), a date that is not one (``Mon, 99 Jan ...``) or a date without
    a zone.
    """
    if value is None or not value.strip(" \t"):
        return None
    text = value.strip(" \t")
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:
            return None
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key``: a random UUID (version 4) in its canonical text."""
    return str(uuid.uuid4())


def check_idempotency_key(key: str) -> str:
    """``key`` when it is a valid ``Idempotency-Key`` by the API's rule: 1 to 255 visible ASCII characters but the
    comma.

    Raises:
        ValidationFailed: empty, longer than 255, or holding anything else (blanks, control or non-ASCII
            characters); ``errors`` names ``["header", "idempotency-key"]`` as the API's own 422 would.
    """
    if _IDEMPOTENCY_KEY.fullmatch(key):
        return key
    raise ValidationFailed(
        422,
        "Unprocessable Content",
        "The request is not valid (checked before sending).",
        [
            {
                "loc": ["header", "idempotency-key"],
                "msg": "must be 1 to 255 visible ASCII characters but the comma",
                "type": "string_pattern_mismatch",
            }
        ],
    )


def token_subject(token: str | None) -> str:
    """The ``sub`` claim of a JWT, read without verifying it; "" when there is none.

    The API keys every job by the verified ``sub`` of the token that touched it, so this is the ``owner_id`` of
    every job this token sees. The signature is the API's to check, not the client's.
    """
    if not token:
        return ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else ""


class ReceivedJob(Job):
    """A ``Job`` as this client read it from the API, which also keeps the JSON object the API sent (``sent``).

    The model reads what it knows and tolerates the rest, as it does a status added later: a field it does not
    know is ignored, a priority it does not know is a pseudo-member of ``JobPriority`` (``is_known`` False), and a
    field an older API does not send takes its default (``priority`` NORMAL, ``not_before`` None). ``sent`` is
    the answer as it came, so that ``jobsctl --json`` prints what the API said, not this version's reading of it.
    Equal to another ``ReceivedJob`` with the same fields and body; never equal to a plain ``Job``.
    """

    _sent: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def sent(self) -> dict[str, Any]:
        """The job's JSON object as the API sent it (no ``owner_id``: the API never sends one); a copy."""
        return dict(self._sent)

    @classmethod
    def of(cls, body: Any, owner_id: str) -> ReceivedJob:
        """The job in ``body`` (a JSON object of the API), owned by ``owner_id`` (the token's ``sub``).

        Raises:
            UnexpectedResponse: ``body`` is not a JSON object that fits ``Job``.
        """
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"the answer is not a job: {str(body)[:200]}")
        try:
            job = cls.model_validate({**body, "owner_id": owner_id})
        except ValidationError as error:
            raise UnexpectedResponse(f"the answer does not fit Job: {error}") from None
        job._sent = body
        return job


def start_time(value: datetime | str) -> str:
    """A ``not_before`` as the API takes it: an aware ``datetime`` as RFC 3339 text in UTC with milliseconds, or a
    string passed on as given (``JobCreate`` checks it is RFC 3339 with an offset).

    Raises:
        ValidationFailed: a naive ``datetime`` (no ``tzinfo``): which zone it means is unknown, so it is refused
            rather than guessed; ``errors`` names ``["body", "not_before"]``. (An aware one outside years 1 to
            9999 in UTC is refused by ``submit``'s check, as the API refuses it.)
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationFailed(
                422,
                "Unprocessable Content",
                "The request is not valid (checked before sending).",
                [
                    {
                        "loc": ["body", "not_before"],
                        "msg": "not_before is a naive datetime: give it a timezone (datetime.now(UTC) + "
                        "timedelta(...), or .replace(tzinfo=UTC) when it is UTC)",
                        "type": "timezone_aware",
                    }
                ],
            )
        try:
            return value.astimezone(UTC).isoformat()
        except OverflowError:  # its offset moves it out of years 1 to 9999 in UTC: sent as is, JobCreate refuses it
            return value.isoformat()
    return value


class JobsClient:
    """A client of one jobs API for one bearer token. Use it as a context manager, or ``close()`` it.

    Args:
        base_url: the API's base URL (``DEFAULT_API_URL``, a stack's ``ApiUrl``); ``/api/v1/jobs`` may be included.
        token: the bearer token (a JWT whose ``sub`` owns the jobs), or None to send none.
        timeout: seconds for each HTTP request (connect, read, write).
        retry: how 503/429 answers, connection errors and (for a submit) 409 answers are retried.
        poll: how ``wait`` paces its polls.
        sleep: waits the given seconds (``time.sleep``; tests pass a recorder).
        clock: monotonic seconds (``time.monotonic``; tests pass one that ``sleep`` advances).
        transport: an httpx transport (tests pass ``httpx.MockTransport``).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        #: The ``sub`` of the token: the ``owner_id`` of every job returned (the API does not send it).
        self.owner_id = token_subject(token)
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self._sleep = sleep
        self._clock = clock
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": f"jobs-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- the API's four routes ---------------------------------------------------------------------------------

    def submit(
        self,
        title: str,
        payload: Mapping[str, Any] | None = None,
        *,
        job_type: str | None = None,
        idempotency_key: str | None = None,
        priority: JobPriority | str | None = None,
        not_before: datetime | str | None = None,
        callback_url: str | None = None,
    ) -> ReceivedJob:
        """Submit a job (``POST /api/v1/jobs``) and return it as created: QUEUED.

        Every submit sends an ``Idempotency-Key``, the same on each of its retries, so a retry after an answer that
        was lost (read timeout, dropped connection) or that came back 503 although the job was written returns
        the job the first try created, never a second one. It is therefore retried like a GET: on 503, 429 and
        connection errors, and also on 409 (the first try is still in progress), waiting at least ``Retry-After``.

        Args:
            title: 1 to 200 characters (surrounding whitespace is stripped).
            payload: the job's input, a JSON object (default ``{}``).
            job_type: ``report`` (the API's default when None), ``noop``, or another registered type.
            idempotency_key: 1 to 255 visible ASCII characters, unique per job you mean to create; a new UUID when
                None. Pass your own to make your own retries safe too: the API answers the same key and body
                with the first job for a day (the same key with another body is a 422).
            priority: ``HIGH``, ``NORMAL`` or ``LOW`` (a ``JobPriority`` or its name); None sends none, and the API
                takes the payload's ``priority`` when it names a level, else NORMAL. Only the levels this client
                knows are sent.
            not_before: start no earlier than this time: an aware ``datetime`` or an RFC 3339 string with an offset
                (``2026-12-01T09:00:00Z``), at most 7 days ahead (the API's rule: a 422 past that); a past time
                starts at once. Sent in UTC with milliseconds. None sends none.
            callback_url: an https URL the finished job is POSTed to, signed (verify it with
                ``jobs_client.verify_webhook``); the API refuses non-public hosts (a 422). None sends none.

        Neither ``priority``, ``not_before`` nor ``callback_url`` is sent when None, so a submit without them works
        against an API that predates them.

        Raises:
            ValidationFailed: the request breaks ``JobCreate`` (an unknown priority, a ``not_before`` that is not
                RFC 3339 with an offset, a naive ``datetime``) or ``idempotency_key`` breaks the API's rule
                (checked here first and nothing is sent), or the API refuses it (unknown type, payload that does
                not fit the type, a key already used with another body, ``not_before`` more than 7 days ahead, a
                ``callback_url`` that is not https or whose host is not public).
            Forbidden: a HIGH job without the scope the deployment names for it (``HighPriorityScope``).
            JobsApiError: any other error answer (``Unauthorized``, ``ServiceUnavailable`` after retries,
                ``Conflict`` when the first try with this key is still in progress after retries, ...).
            ConnectionFailed: the API could not be reached.
        """
        key = new_idempotency_key() if idempotency_key is None else check_idempotency_key(idempotency_key)
        fields: dict[str, Any] = {"title": title}
        if payload is not None:
            fields["payload"] = dict(payload)
        if job_type is not None:
            fields["type"] = job_type
        if priority is not None:
            fields["priority"] = priority
        if not_before is not None:
            fields["not_before"] = start_time(not_before)
        if callback_url is not None:
            fields["callback_url"] = callback_url
        try:
            request = JobCreate.model_validate(fields)
        except ValidationError as error:
            errors = [
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in error.errors(include_url=False, include_context=False, include_input=False)
            ]
            raise ValidationFailed(
                422, "Unprocessable Content", "The request is not valid (checked before sending).", errors
            ) from None
        response = self._request(
            "POST",
            JOBS_PATH,
            json=request.model_dump(mode="json", exclude_unset=True),
            headers={IDEMPOTENCY_KEY_HEADER: key},
        )
        return self._job(_json(response))

    def get(self, job_id: str) -> ReceivedJob:
        """One of the caller's jobs (``GET /api/v1/jobs/{job_id}``).

        Raises:
            NotFound: no such job for this caller (absent, deleted, someone else's, not a job id).
            JobsApiError, ConnectionFailed: as for ``submit``.
        """
        return self._get(job_id)[0]

    def list_page(
        self, *, limit: int | None = None, next_token: str | None = None, status: JobStatus | None = None
    ) -> JobPage:
        """One page of the caller's jobs, newest first (``GET /api/v1/jobs``).

        Args:
            limit: page size, 1 to 100 (the API's default, 20, when None).
            next_token: the previous page's ``next_token``; None for the first page.
            status: only jobs in this status. Sent as ``?status=`` and also applied here to the page's items, so
                it holds whether or not the API filters; a page may then hold fewer than ``limit`` jobs, even
                none, while ``next_token`` still leads on.

        Raises:
            BadRequest: ``next_token`` was not issued by this API.
            ValidationFailed: ``limit`` out of range.
            JobsApiError, ConnectionFailed: as for ``submit``.
        """
        params: dict[str, str] = {}
        if limit is not None:
            params["limit"] = str(limit)
        if next_token is not None:
            params["next_token"] = next_token
        if status is not None:
            params["status"] = status.value
        body = _json(self._request("GET", JOBS_PATH, params=params))
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise UnexpectedResponse(f"the job list is not a page of jobs: {str(body)[:200]}")
        items = [self._job(item) for item in body["items"]]
        try:
            page = JobPage.model_validate({**body, "items": items})
        except ValidationError as error:
            raise UnexpectedResponse(f"the job list does not fit JobPage: {error}") from None
        if status is not None:
            page = JobPage(items=[job for job in page.items if job.status == status], next_token=page.next_token)
        return page

    def list(self, *, status: JobStatus | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every one of the caller's jobs, newest first, following ``next_token`` page by page as it goes.

        Args:
            status: only jobs in this status (see ``list_page``).
            page_size: jobs per request, 1 to 100 (the API's default when None).

        Raises:
            UnexpectedResponse: the API gave the same ``next_token`` twice (it would loop forever).
            JobsApiError, ConnectionFailed: as for ``list_page``, when the page that fails is fetched.
        """
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self.list_page(limit=page_size, next_token=token, status=status)
            yield from page.items
            if page.next_token is None:
                return
            if page.next_token in seen:
                raise UnexpectedResponse("the API returned the same next_token twice")
            seen.add(page.next_token)
            token = page.next_token

    def delete(self, job_id: str) -> None:
        """Delete one of the caller's jobs whatever its status (``DELETE /api/v1/jobs/{job_id}``).

        Raises:
            NotFound: no such job for this caller.
            JobsApiError, ConnectionFailed: as for ``submit``.
        """
        self._request("DELETE", _job_path(job_id))

    def cancel(self, job_id: str) -> ReceivedJob:
        """Cancel one of the caller's jobs and keep its record (``POST /api/v1/jobs/{job_id}/cancel``): a QUEUED job
        comes back CANCELLED; a RUNNING one with ``cancel_requested_at``, until its run ends it CANCELLED (``wait``
        for that). Cancelling a CANCELLED job is harmless, so a cancel is retried like a GET.

        Raises:
            Conflict: the job already SUCCEEDED or FAILED.
            NotFound: no such job for this caller.
            JobsApiError, ConnectionFailed: as for ``submit``.
        """
        return self._job(_json(self._request("POST", f"{_job_path(job_id)}/cancel", repeatable=True)))

    def wait(self, job_id: str, timeout: float = 60.0, *, on_poll: Callable[[Job], None] | None = None) -> ReceivedJob:
        """Poll a job until it is finished (``Job.is_finished``: SUCCEEDED, FAILED, or a status added after this
        client whose job has ``finished_at``) and return it (a FAILED job is returned, not raised).

        Polls at once, then with ``poll``'s backoff, waiting at least as long as a ``Retry-After`` on the answer,
        and once more at the deadline.

        Args:
            timeout: seconds to wait in all (on ``clock``).
            on_poll: called with the job after every poll (the CLI's live status).

        Raises:
            WaitTimedOut: still QUEUED or RUNNING after ``timeout`` seconds; it carries the last state seen.
            NotFound: the job does not exist, or was deleted while waiting.
            JobsApiError, ConnectionFailed: as for ``get``.
        """
        deadline = self._clock() + timeout
        interval = self.poll.initial_interval
        while True:
            job, retry_after = self._get(job_id)
            if on_poll is not None:
                on_poll(job)
            if job.is_finished:
                return job
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise WaitTimedOut(job, timeout)
            self._sleep(min(max(interval, retry_after or 0.0), remaining))
            interval = min(self.poll.max_interval, interval * self.poll.multiplier)

    # --- plumbing -------------------------------------------------------------------------------------------

    def _get(self, job_id: str) -> tuple[ReceivedJob, float | None]:
        response = self._request("GET", _job_path(job_id))
        return self._job(_json(response)), parse_retry_after(response.headers.get("retry-after"))

    def _job(self, body: Any) -> ReceivedJob:
        # The API never sends owner_id (the model excludes it); it is the token's sub by the API's contract.
        return ReceivedJob.of(body, self.owner_id)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = False,
    ) -> httpx.Response:
        # With an Idempotency-Key the API answers a repeat with the first response, so the request is as safe to
        # repeat as a GET; the same headers, key included, go with every try.
        keyed = headers is not None and IDEMPOTENCY_KEY_HEADER in headers
        repeatable = repeatable or method == "GET" or keyed
        statuses = RETRYABLE_STATUSES | {KEY_IN_PROGRESS} if keyed else RETRYABLE_STATUSES
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                response = self._http.request(method, path, params=params, json=json, headers=headers)
            except httpx.TransportError as error:
                retryable = isinstance(error, _NOT_SENT) or (repeatable and isinstance(error, _MAYBE_SENT))
                if last or not retryable:
                    raise ConnectionFailed(f"cannot reach the jobs API at {self.base_url}: {error!r}") from error
                self._sleep(self.retry.delay(attempt))
                continue
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if response.status_code in statuses and not last:
                self._sleep(self.retry.delay(attempt, retry_after))
                continue
            if response.is_error:
                raise _error(response, retry_after)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _job_path(job_id: str) -> str:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return f"{JOBS_PATH}/{quote(job_id, safe='')}"


def _json(response: httpx.Response) -> Any:
    """The answer's body as JSON, whatever its ``Content-Type`` says (the API's ``application/json`` and
    ``application/problem+json``, or a malformed or missing one). A body that is not JSON (an HTML page from a
    proxy, bytes that are not UTF-8, nesting too deep to read) is an ``UnexpectedResponse``, never another error."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise UnexpectedResponse(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} "
            f"with a body that is not JSON: {response.text[:200]!r}"
        ) from None


def _error(response: httpx.Response, retry_after: float | None) -> JobsApiError:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    return api_error(response.status_code, body, response.text, retry_after=retry_after)
