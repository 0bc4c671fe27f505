"""Responses that fit: a list page stops before Lambda's response limit, a result has a size limit as a payload
has, and an error's text is cut; measured on the serialised invocation response, escapes included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.models import (
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_RESULT_BYTES,
    Job,
    JobCreate,
    JobError,
    JobMessage,
    JobPage,
    JobStatus,
    json_bytes,
)
from jobs.processors import JobType, Registry
from jobs.queue import InMemoryJobQueue
from jobs.service import LAMBDA_RESPONSE_LIMIT_BYTES, LIST_PAGE_BUDGET_BYTES, JobService, job_response_bytes
from jobs.store import InMemoryJobStore, JobStore

#: Characters whose escapes cost the most in a response: a quote and a backslash (escaped twice), a tab, a
#: two-byte and a three-byte character (six bytes escaped), one outside the BMP (twelve).
COSTLY = ['"', "\\", "\t", "é", "中", "😀"]


def filled(character: str, limit: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """A JSON object of about ``limit`` bytes (compact UTF-8 JSON, as payloads are measured) of ``character``."""
    cost = json_bytes(character) - 2
    value = {"x": character * ((limit - 8) // cost)}
    assert json_bytes(value) <= limit
    return value


def returning(result: dict[str, Any]) -> Registry:
    return Registry([JobType("give", lambda job, store: result)])


def test_a_jobs_response_bytes_are_its_json_escaped_into_the_response_body() -> None:
    service = JobService(InMemoryJobStore())
    for character in COSTLY:
        job = service.create_job("alice", JobCreate(title="t", type="noop", payload=filled(character)))
        body = JobPage(items=[job]).model_dump_json()  # as the API's list route writes it
        serialised = len(json.dumps({"statusCode": 200, "body": body}).encode())  # as the runtime sends it
        assert serialised - 100 <= job_response_bytes(job) < serialised  # the envelope is the rest
        assert job_response_bytes(job) <= 3 * MAX_PAYLOAD_BYTES + 2_000


@pytest.mark.parametrize("budget", [1, 50_000, 300_000, 1_000_000])
@pytest.mark.parametrize("limit", [1, 3, 20, 100])
def test_every_page_stays_within_the_budget_and_the_walk_returns_each_job_once(budget: int, limit: int) -> None:
    service = JobService(InMemoryJobStore(), page_budget_bytes=budget)
    created = []
    for n in range(30):
        payload = filled(COSTLY[n % len(COSTLY)], limit=(n * 7919) % MAX_PAYLOAD_BYTES + 10)
        created.append(service.create_job("alice", JobCreate(title=f"j{n}", type="noop", payload=payload)).job_id)

    pages: list[list[Job]] = []
    token: str | None = None
    while True:
        listed = service.list_jobs("alice", limit=limit, next_token=token)
        pages.append(listed.items)
        token = listed.next_token
        if token is None:
            break

    assert [job.job_id for page in pages for job in page] == created[::-1]
    for page in pages:
        assert page, "no page is empty"
        assert len(page) <= limit
        assert len(page) == 1 or sum(job_response_bytes(job) for job in page) <= budget


def test_the_default_budget_keeps_a_wide_margin_under_lambdas_limit() -> None:
    assert LIST_PAGE_BUDGET_BYTES <= LAMBDA_RESPONSE_LIMIT_BYTES * 2 // 3


@pytest.mark.parametrize("character", COSTLY)
def test_a_result_at_its_limit_is_stored(character: str) -> None:
    result = filled(character, MAX_RESULT_BYTES)
    service = JobService(InMemoryJobStore(), registry=returning(result))
    job = service.create_job("alice", JobCreate(title="t", type="give"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, result)


@pytest.mark.parametrize(
    "result", [{"x": "a" * MAX_RESULT_BYTES}, {"x": ["é"] * MAX_RESULT_BYTES}, {"x": [1] * 70_000}]
)
def test_a_result_over_its_limit_fails_the_job_and_is_not_stored(result: dict[str, Any]) -> None:
    store: JobStore = InMemoryJobStore()
    service = JobService(store, InMemoryJobQueue(), returning(result))
    job = service.create_job("alice", JobCreate(title="t", type="give"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert done.status == JobStatus.FAILED
    assert done.result is None
    assert done.error is not None
    assert done.error.type == "ResultTooLarge"
    assert str(MAX_RESULT_BYTES) in done.error.message


@pytest.mark.parametrize("length", [MAX_ERROR_MESSAGE_LENGTH + 1, 10 * MAX_ERROR_MESSAGE_LENGTH, 1_000_000])
def test_an_error_message_of_any_length_is_cut_to_its_limit(length: int) -> None:
    def explode(job: Any, context: Any) -> dict[str, Any]:
        raise RuntimeError("😀" * length)

    service = JobService(InMemoryJobStore(), registry=Registry([JobType("explode", explode)]))
    job = service.create_job("alice", JobCreate(title="t", type="explode"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert done.error is not None
    assert len(done.error.message) == MAX_ERROR_MESSAGE_LENGTH
    assert done.error.message.endswith("…")


def test_an_error_within_its_limit_is_kept_exactly() -> None:
    text = "x" * MAX_ERROR_MESSAGE_LENGTH
    assert JobError(type="E", message=text).message == text
