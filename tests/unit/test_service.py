"""The use cases on the in-memory store and queue: ownership, paging, the lifecycle, and failures."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import (
    InvalidPageToken,
    InvalidPayload,
    JobCreate,
    JobInProgress,
    JobMessage,
    JobNotFound,
    JobStatus,
    ServiceUnavailable,
    UnknownJobType,
)
from jobs.processors import BUILT_IN_TYPES, JobType, Registry
from jobs.queue import InMemoryJobQueue
from jobs.service import JobService, decode_page_token, encode_page_token
from jobs.store import InMemoryJobStore, JobStore


def explode(job: Any, store: JobStore) -> dict[str, Any]:
    raise RuntimeError("the roundhouse kick missed")


@pytest.fixture
def service() -> JobService:
    registry = Registry([*BUILT_IN_TYPES.values(), JobType("explode", explode)])
    return JobService(InMemoryJobStore(), InMemoryJobQueue(), registry)


def request(title: str = "Audit", **fields: Any) -> JobCreate:
    return JobCreate.model_validate({"title": title, **fields})


def test_a_created_job_is_queued_stored_and_enqueued(service: JobService) -> None:
    job = service.create_job("alice", request(payload={"complexity_level": 9000}))

    assert job.status == JobStatus.QUEUED
    assert service.get_job("alice", job.job_id) == job
    assert service.queue.messages == [JobMessage(owner_id="alice", job_id=job.job_id)]  # type: ignore[union-attr]


def test_job_ids_are_uuid7_in_creation_order(service: JobService) -> None:
    jobs = [service.create_job("alice", request(f"job {n}")) for n in range(50)]

    assert all(job.job_id[14] == "7" for job in jobs)
    assert [job.job_id for job in jobs] == sorted(job.job_id for job in jobs)
    for job in jobs:
        id_ms = int(job.job_id.replace("-", "")[:12], 16)
        assert abs(id_ms - job.created_at.timestamp() * 1000) < 1000


def test_an_unknown_type_is_refused_and_nothing_is_written(service: JobService) -> None:
    with pytest.raises(UnknownJobType):
        service.create_job("alice", request(type="roundhouse"))

    assert service.store.items == {}  # type: ignore[attr-defined]
    assert service.queue.messages == []  # type: ignore[union-attr]


def test_a_report_payload_of_the_wrong_shape_is_refused(service: JobService) -> None:
    with pytest.raises(InvalidPayload) as raised:
        service.create_job("alice", request(payload={"report_type": "annual", "complexity_level": "high"}))

    assert {tuple(e["loc"]) for e in raised.value.errors} == {
        ("payload", "report_type"),
        ("payload", "complexity_level"),
    }


def test_a_failed_send_takes_the_job_back(service: JobService) -> None:
    class BrokenQueue:
        def send(self, message: JobMessage) -> str:
            raise ServiceUnavailable("SQS is down")

    service.queue = BrokenQueue()

    with pytest.raises(ServiceUnavailable):
        service.create_job("alice", request())

    assert service.store.items == {}  # type: ignore[attr-defined]


def test_another_owners_job_is_not_found(service: JobService) -> None:
    job = service.create_job("alice", request())

    with pytest.raises(JobNotFound):
        service.get_job("bob", job.job_id)
    with pytest.raises(JobNotFound):
        service.delete_job("bob", job.job_id)
    assert service.get_job("alice", job.job_id) == job


@pytest.mark.parametrize(
    "job_id", ["nope", "", "01A226EE-FEDE-7C74-8F78-130F6101394B", "{01a226ee-fede-7c74-8f78-130f6101394b}"]
)
def test_ids_that_are_not_canonical_uuids_name_no_job(service: JobService, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        service.get_job("alice", job_id)


def test_the_list_pages_newest_first_through_every_job_exactly_once(service: JobService) -> None:
    created = [service.create_job("alice", request(f"job {n}")).job_id for n in range(7)]
    service.create_job("bob", request("bob's"))

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = service.list_jobs("alice", limit=3, next_token=token)
        seen.extend(job.job_id for job in page.items)
        pages += 1
        token = page.next_token
        if token is None:
            break

    assert seen == list(reversed(created))
    assert pages == 3


def test_an_exact_last_page_has_no_next_token(service: JobService) -> None:
    for n in range(4):
        service.create_job("alice", request(f"job {n}"))

    first = service.list_jobs("alice", limit=2)
    second = service.list_jobs("alice", limit=2, next_token=first.next_token)

    assert len(second.items) == 2
    assert second.next_token is None


@pytest.mark.parametrize("token", ["garbage", "e30", encode_page_token("x")[:-2] + "!!", "eyJhZnRlciI6IDF9"])
def test_a_page_token_we_did_not_issue_is_refused(service: JobService, token: str) -> None:
    with pytest.raises(InvalidPageToken):
        service.list_jobs("alice", next_token=token)


def test_page_tokens_round_trip() -> None:
    job_id = "01a226ee-fede-7c74-8f78-130f6101394b"

    assert decode_page_token(encode_page_token(job_id)) == job_id


def test_a_job_runs_to_succeeded_with_its_result(service: JobService) -> None:
    job = service.create_job("alice", request(type="noop"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert done.status == JobStatus.SUCCEEDED
    assert done.result == {"noop": True}
    assert done.attempts == 1
    assert done.created_at <= done.started_at <= done.finished_at  # type: ignore[operator]


def test_a_processor_error_fails_the_job_with_its_type_and_message(service: JobService) -> None:
    job = service.create_job("alice", request(type="explode"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert done.status == JobStatus.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == ("RuntimeError", "the roundhouse kick missed")


def test_a_second_delivery_of_a_finished_job_changes_nothing(service: JobService) -> None:
    job = service.create_job("alice", request(type="noop"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)
    first = service.run_job(message)

    second = service.run_job(message)

    assert second == first
    assert service.get_job("alice", job.job_id) == first


def test_a_delivery_while_the_job_runs_elsewhere_asks_to_come_back(service: JobService) -> None:
    job = service.create_job("alice", request(type="noop"))
    service.store.start("alice", job.job_id, now_text="2026-11-29T10:00:00.000Z")

    with pytest.raises(JobInProgress):
        service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))


def test_a_message_for_a_deleted_job_is_acknowledged_and_nothing_is_recreated(service: JobService) -> None:
    job = service.create_job("alice", request(type="noop"))
    service.delete_job("alice", job.job_id)

    assert service.run_job(JobMessage(owner_id="alice", job_id=job.job_id)) is None
    assert service.store.items == {}  # type: ignore[attr-defined]


def test_a_job_deleted_while_it_runs_stays_deleted(service: JobService) -> None:
    def delete_midway(job: Any, store: JobStore) -> dict[str, Any]:
        store.delete(job.owner_id, job.job_id)
        return {"late": True}

    service.registry = Registry([JobType("slow", delete_midway)])
    job = service.create_job("alice", request(type="slow"))

    assert service.run_job(JobMessage(owner_id="alice", job_id=job.job_id)) is None
    assert service.store.items == {}  # type: ignore[attr-defined]


def test_the_report_reads_only_its_owners_jobs(service: JobService) -> None:
    for _ in range(3):
        service.create_job("bob", request("bob's", type="noop"))
    job = service.create_job(
        "alice",
        request(payload={"report_type": "quarterly_audit", "target_user_ids": ["bob"], "priority": "HIGH"}),
    )

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert done is not None
    assert done.result is not None
    assert done.result["total_jobs"] == 1
    assert done.result["requested"]["target_user_ids"] == ["bob"]
