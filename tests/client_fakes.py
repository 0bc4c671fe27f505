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
        "result": None,
        "error": None,
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
    clock = FakeClock()
    client = JobsClient(
        API,
        sign("alice") if token is None else token,
        retry=retry,
        poll=PollPolicy(initial_interval=0.2, multiplier=1.5, max_interval=2.0),
        sleep=clock.sleep,
        clock=clock,
        transport=httpx.MockTransport(api),
    )
    return client, api, clock
