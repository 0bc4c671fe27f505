"""Fakes for the client's tests: a scripted API behind ``httpx.MockTransport`` and a clock that sleeps instantly."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from jobs_client import JobsClient, PollPolicy, RetryPolicy
from tests.helpers import sign

API = "http://api.test"
JOB_ID = "01a226ee-fede-7c74-8f78-130f6101394b"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def job_body(status: str = "QUEUED", job_id: str = JOB_ID, **fields: Any) -> dict[str, Any]:
    """A job as the API returns it (no ``owner_id``)."""
    body: dict[str, Any] = {
        "job_id": job_id,
        "title": "Audit",
        "type": "report",
        "status": status,
        "payload": {"report_type": "quarterly_audit"},
        "created_at": "2026-11-29T10:52:06.750Z",
        "updated_at": "2026-11-29T10:52:06.750Z",
        "started_at": None,
        "finished_at": None,
        "attempts": 0,
        "priority": "NORMAL",
        "not_before": None,
        "result": None,
        "error": None,
        "cancel_requested_at": None,
        "progress": None,
    }
    if status in ("RUNNING", "SUCCEEDED", "FAILED"):
        body.update(started_at="2026-11-29T10:52:06.900Z", attempts=1)
    if status == "SUCCEEDED":
        body.update(finished_at="2026-11-29T10:52:07.000Z", result={"report_type": "quarterly_audit", "total_jobs": 1})
    if status == "FAILED":
        body.update(finished_at="2026-11-29T10:52:07.000Z", error={"type": "ProcessorError", "message": "it broke"})
    body.update(fields)
    return body


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON answer."""
    return httpx.Response(status, json=body, headers=headers)


def problem(
    status: int, detail: str = "Something.", *, errors: list[dict[str, Any]] | None = None, **headers: str
) -> httpx.Response:
    """An ``application/problem+json`` answer, as ``jobs.http.problem`` makes them."""
    body: dict[str, Any] = {"type": "about:blank", "title": "Title", "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/problem+json", **{k.replace("_", "-"): v for k, v in headers.items()}},
    )


@dataclass
class ScriptedApi:
    """Answers requests in order from ``answers`` and records them; an exception is raised as the transport's."""

    answers: list[Answer]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests (None for none)."""
        return [json.loads(r.content) if r.content else None for r in self.requests]


@dataclass
class RememberingApi:
    """``POST /api/v1/jobs`` as the API answers it with an ``Idempotency-Key``: the first request with a key writes
    a job; a repeat with the same key and body gets that job again (201), with another body a 422. A request
    without a key writes a job every time.

    ``faults`` spoil the answers in order, one per request, after the request was handled (the job written, as when
    a timeout strikes after the write landed): a status code is answered instead (``Retry-After: 1``), an
    exception is raised as the transport's (the answer was lost), None lets the true answer through.
    """

    faults: list[int | Exception | None] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    #: The ``Idempotency-Key`` of each request, None when it had none.
    keys: list[str | None] = field(default_factory=list)
    first: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("idempotency-key")
        self.keys.append(key)
        remembered = self.first.get(key) if key is not None else None
        if remembered is None:
            job = job_body(job_id=f"01a226ee-fede-7c74-8f78-{len(self.jobs):012d}", **json.loads(request.content))
            self.jobs.append(job)
            if key is not None:
                self.first[key] = (request.content, job)
            answer = ok(job, status=201)
        elif remembered[0] != request.content:
            answer = problem(422, "This Idempotency-Key was used with another request body.")
        else:
            answer = ok(remembered[1], status=201)
        fault = self.faults.pop(0) if self.faults else None
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, int):
            return problem(fault, "Busy.", retry_after="1")
        return answer


@dataclass
class FakeClock:
    """Monotonic seconds that only ``sleep`` moves; every sleep is recorded."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted_client(
    *answers: Answer, token: str | None = None, retry: RetryPolicy | None = None
) -> tuple[JobsClient, ScriptedApi, FakeClock]:
    """A client for user ``alice`` whose transport answers from ``answers``, and whose sleeps take no time."""
    api = ScriptedApi(list(answers))
    client, clock = fake_client(api, token=token, retry=retry)
    return client, api, clock


def fake_client(
    handler: Callable[[httpx.Request], httpx.Response], *, token: str | None = None, retry: RetryPolicy | None = None
) -> tuple[JobsClient, FakeClock]:
    """A client for user ``alice`` whose transport is ``handler``, and whose sleeps take no time."""
    clock = FakeClock()
    client = JobsClient(
        API,
        sign("alice") if token is None else token,
        retry=retry,
        poll=PollPolicy(initial_interval=0.2, multiplier=1.5, max_interval=2.0),
        sleep=clock.sleep,
        clock=clock,
        transport=httpx.MockTransport(handler),
    )
    return client, clock
