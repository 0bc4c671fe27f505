"""A list page's JSON text: the service writes each job once, to size the page, and the API sends that text; the
page must read exactly as ``model_dump_json`` would write it, for every kind of job and token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.models import CallbackStatus, Job, JobCallback, JobCreate, JobError, JobPage, JobProgress, JobStatus
from jobs.service import JobService, job_response_bytes, text_response_bytes
from jobs.store import InMemoryJobStore, item_to_job, job_to_item

NOW = datetime(2026, 12, 1, 7, 54, 47, 123000, tzinfo=UTC)


def varied_jobs() -> list[Job]:
    """Jobs of every shape a page holds: escapes and non-ASCII text, each optional part, a status this version
    does not know, and times read back from a table item (pydantic's UTC tzinfo, not datetime.UTC)."""
    base: dict[str, Any] = {
        "owner_id": "alice",
        "title": "plain",
        "type": "report",
        "status": JobStatus.QUEUED,
        "payload": {},
        "created_at": NOW,
        "updated_at": NOW,
    }
    jobs = [
        Job(job_id="01a226ee-fede-7c74-8f78-000000000001", **base),
        Job(
            job_id="01a226ee-fede-7c74-8f78-000000000002",
            **{**base, "title": 'quote " backslash \\ tab \t é 中 😀', "payload": {"k\u2028": ["\n", 1.5, None]}},
        ),
        Job(
            job_id="01a226ee-fede-7c74-8f78-000000000003",
            **{
                **base,
                "status": JobStatus.FAILED,
                "started_at": NOW + timedelta(seconds=1),
                "finished_at": NOW + timedelta(seconds=2, microseconds=999),
                "attempts": 3,
                "error": JobError(type="ValueError", message="no </script> here"),
                "callback_url": "https://example.com/hook?token=x",
                "callback": JobCallback(
                    status=CallbackStatus.RETRYING, attempts=2, last_status_code=503, last_error="busy"
                ),
            },
        ),
        Job(
            job_id="01a226ee-fede-7c74-8f78-000000000004",
            **{
                **base,
                "status": JobStatus.RUNNING,
                "not_before": NOW - timedelta(hours=1),
                "cancel_requested_at": NOW,
                "progress": JobProgress(percent=42.5, message="half way, almost", updated_at=NOW),
            },
        ),
        Job(job_id="01a226ee-fede-7c74-8f78-000000000005", **{**base, "status": "PAUSED_BY_A_LATER_VERSION"}),
    ]
    return jobs + [item_to_job(job_to_item(job)) for job in jobs]


@pytest.mark.parametrize("next_token", [None, "eyJ2IjoxfQ", "x" * 300])
def test_a_written_page_reads_exactly_as_model_dump_json_writes_it(next_token: str | None) -> None:
    jobs = varied_jobs()
    page = JobPage.written(jobs, [job.model_dump_json() for job in jobs], next_token)

    assert page.json_text() == page.model_dump_json()
    assert JobPage(items=jobs, next_token=next_token).json_text() == page.model_dump_json()


def test_an_empty_page_reads_as_model_dump_json_writes_it() -> None:
    page = JobPage.written([], [], None)

    assert page.json_text() == page.model_dump_json() == '{"items":[],"next_token":null}'


def test_a_page_whose_items_changed_after_it_was_written_is_written_again() -> None:
    jobs = varied_jobs()
    page = JobPage.written(jobs, ["stale"] * len(jobs), None)  # texts that no longer match what the page holds
    page.items = page.items[1:]
    assert page.json_text() == page.model_dump_json()

    page.items[0] = jobs[3]
    assert page.json_text() == page.model_dump_json()


def test_texts_must_match_the_items_one_for_one() -> None:
    jobs = varied_jobs()
    with pytest.raises(ValueError, match=r"shorter|longer"):
        JobPage.written(jobs, [job.model_dump_json() for job in jobs[1:]], None)


@pytest.mark.parametrize("limit", [1, 4, 10])
def test_the_service_page_holds_its_jobs_text_and_sizes_them_as_before(limit: int) -> None:
    store = InMemoryJobStore()
    service = JobService(store)
    for title in ("a", 'b "quoted"', "c é 中 😀", "d \\ backslash", "e", "f"):
        service.create_job("alice", JobCreate(title=title, type="noop", payload={"note\t": title * 50 + "\n"}))

    page = service.list_jobs("alice", limit=limit)

    assert page.json_text() == page.model_dump_json()
    assert [text for _, text in page._item_texts] == [job.model_dump_json() for job in page.items]
    assert all(text_response_bytes(job.model_dump_json()) == job_response_bytes(job) for job in page.items)


def test_a_page_cut_by_its_budget_keeps_only_the_texts_of_the_jobs_it_holds() -> None:
    store = InMemoryJobStore()
    service = JobService(store, page_budget_bytes=3_000)
    for n in range(6):
        service.create_job("alice", JobCreate(title=f"j{n}", type="noop", payload={"x": "y" * 1_000}))

    page = service.list_jobs("alice", limit=6)

    assert 1 <= len(page.items) < 6
    assert page.next_token is not None
    assert len(page._item_texts) == len(page.items)
    assert page.json_text() == page.model_dump_json()
