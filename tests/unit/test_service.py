"""The use cases on the in-memory store and queue: ownership, paging, the lifecycle, and failures."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from jobs.context import JobContext
from jobs.models import (
    InvalidPageToken,
    InvalidPayload,
    Job,
    JobCreate,
    JobInProgress,
    JobMessage,
    JobNotFound,
    JobStatus,
    RetryableProcessorError,
    RetryLater,
    ServiceUnavailable,
    UnknownJobType,
    format_timestamp,
)
from jobs.processors import BUILT_IN_TYPES, JobType, Registry
from jobs.queue import InMemoryJobQueue
from jobs.service import Delivery, JobService, decode_page_token, encode_page_token
from jobs.store import InMemoryJobStore
from tests.helpers import Clock


def explode(job: Any, context: JobContext) -> dict[str, Any]:
    raise RuntimeError("the roundhouse kick missed")


def flaky(job: Any, context: JobContext) -> dict[str, Any]:
    raise RetryableProcessorError("try again")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> JobService:
    registry = Registry([*BUILT_IN_TYPES.values(), JobType("explode", explode), JobType("flaky", flaky)])
    return JobService(InMemoryJobStore(), InMemoryJobQueue(), registry, clock=clock)


def request(title: str = "Audit", **fields: Any) -> JobCreate:
    return JobCreate.model_validate({"title": title, **fields})


def test_a_created_job_is_queued_and_stored_and_only_the_outbox_sends_its_message(service: JobService) -> None:
    job = service.create_job("alice", request(payload={"complexity_level": 9000}))
    stored = service.get_job("alice", job.job_id)
    sent_before = list(service.queue.messages)  # type: ignore[union-attr]

    service.dispatch_all([JobMessage(owner_id="alice", job_id=job.job_id)])  # what the table's stream triggers

    assert job.status == JobStatus.QUEUED
    assert stored == job
    assert sent_before == []
    assert service.queue.messages == [JobMessage(owner_id="alice", job_id=job.job_id)]  # type: ignore[union-attr]


def test_job_ids_are_uuid7_in_creation_order() -> None:
    service = JobService(InMemoryJobStore(), InMemoryJobQueue())  # the real clock
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


def test_a_failed_write_stores_nothing_and_sends_nothing(service: JobService) -> None:
    class BrokenStore(InMemoryJobStore):
        def put_new(self, job: Job) -> None:
            raise ServiceUnavailable("DynamoDB is throttling")

    service.store = BrokenStore()

    with pytest.raises(ServiceUnavailable):
        service.create_job("alice", request())

    assert service.store.items == {}
    assert service.queue.messages == []  # type: ignore[union-attr]


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


ALICE_TOKEN = encode_page_token("alice", "01a226ee-fede-7c74-8f78-130f6101394b")


def _reencoded(token: str, **changes: object) -> str:
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw = json.dumps({**body, **changes}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("e30", id="empty-object"),
        pytest.param("eyJhZnRlciI6IDF9", id="wrong-types"),
        pytest.param(ALICE_TOKEN[:-2] + "!!", id="not-base64url"),
        pytest.param(ALICE_TOKEN[:-4], id="truncated"),
        pytest.param(ALICE_TOKEN + "A" * 600, id="too-long"),
        pytest.param(encode_page_token("bob", "01a226ee-fede-7c74-8f78-130f6101394b"), id="foreign"),
        pytest.param(_reencoded(ALICE_TOKEN, after="01a226ee-fede-7c74-8f78-130f61013900"), id="tampered-cursor"),
        pytest.param(_reencoded(ALICE_TOKEN, status="FAILED"), id="tampered-filter"),
        pytest.param(_reencoded(ALICE_TOKEN, v=2), id="tampered-version"),
        pytest.param(_reencoded(ALICE_TOKEN, extra=1), id="extra-field"),
        pytest.param(base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("="), id="deep-json"),
    ],
)
def test_a_page_token_we_did_not_issue_to_this_caller_is_refused(service: JobService, token: str) -> None:
    with pytest.raises(InvalidPageToken):
        service.list_jobs("alice", next_token=token)


def test_page_tokens_round_trip_for_their_owner_and_filter_only() -> None:
    job_id = "01a226ee-fede-7c74-8f78-130f6101394b"

    assert decode_page_token(encode_page_token("alice", job_id), "alice") == job_id
    assert decode_page_token(encode_page_token("alice", job_id, "QUEUED"), "alice", "QUEUED") == job_id
    with pytest.raises(InvalidPageToken):
        decode_page_token(encode_page_token("alice", job_id, "QUEUED"), "alice")
    with pytest.raises(InvalidPageToken):
        decode_page_token(encode_page_token("alice", job_id), "alice", "QUEUED")


def test_a_page_token_does_not_reveal_the_owner() -> None:
    raw = base64.urlsafe_b64decode(ALICE_TOKEN + "=" * (-len(ALICE_TOKEN) % 4))

    assert b"alice" not in raw


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


def test_a_delivery_while_the_job_runs_elsewhere_comes_back_when_the_lease_ends(
    service: JobService, clock: Clock
) -> None:
    job = service.create_job("alice", request(type="noop"))
    service.store.start("alice", job.job_id, now_text=format_timestamp(clock()), stale_before_text="")
    clock.advance(10)

    with pytest.raises(JobInProgress) as raised:
        service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    assert raised.value.delay_seconds == 35 - 10 + 1
    assert service.get_job("alice", job.job_id).status == JobStatus.RUNNING


def test_a_job_fails_when_its_attempts_are_spent_with_receives_to_spare(service: JobService, clock: Clock) -> None:
    job = service.create_job("alice", request(type="flaky"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)
    # Receives 1 and 2 were spent by batches that crashed before this job ran: no attempt spent.
    for receive_count in (3, 4):
        with pytest.raises(RetryLater):
            service.run_job(message, Delivery(receive_count=receive_count, max_receive_count=10, max_attempts=3))
        clock.advance(60)
    last = service.run_job(message, Delivery(receive_count=5, max_receive_count=10, max_attempts=3))

    assert last is not None
    assert (last.status, last.attempts) == (JobStatus.FAILED, 3)


def test_whole_batch_failures_do_not_spend_a_job_s_attempts(service: JobService, clock: Clock) -> None:
    job = service.create_job("alice", request(type="flaky"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)
    # The defaults: 5 receives, 3 attempts. Two receives went to crashed batches; the job's first run is the
    # third receive, and it still gets its three attempts.
    for receive_count in (3, 4):
        with pytest.raises(RetryLater):
            service.run_job(message, Delivery(receive_count=receive_count))
        clock.advance(60)
    last = service.run_job(message, Delivery(receive_count=5))

    assert last is not None
    assert (last.status, last.attempts) == (JobStatus.FAILED, 3)
    assert Delivery().is_last_try(3)
    assert not Delivery(receive_count=4).is_last_try(2)
    assert Delivery(receive_count=5).is_last_try(1)


def test_a_job_whose_run_died_is_taken_over_after_its_lease(service: JobService, clock: Clock) -> None:
    job = service.create_job("alice", request(type="noop"))
    dead_run = service.store.start("alice", job.job_id, now_text=format_timestamp(clock()), stale_before_text="")
    clock.advance(36)

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id), Delivery(receive_count=2))

    assert done is not None
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 2)
    assert done.started_at is not None
    assert dead_run.started_at is not None
    assert done.started_at > dead_run.started_at


def test_a_run_that_lost_its_lease_writes_nothing(service: JobService, clock: Clock) -> None:
    def slow(job: Any, context: JobContext) -> dict[str, Any]:
        clock.advance(40)  # this run stalls past its lease; another delivery takes over and finishes
        service.registry = Registry(BUILT_IN_TYPES.values())
        service.run_job(JobMessage(owner_id=job.owner_id, job_id=job.job_id), Delivery(receive_count=2))
        return {"late": True}

    service.registry = Registry([JobType("noop", slow)])
    job = service.create_job("alice", request(type="noop"))

    outcome = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    final = service.get_job("alice", job.job_id)
    assert outcome == final
    assert (final.status, final.result, final.attempts) == (JobStatus.SUCCEEDED, {"noop": True}, 2)


def test_a_retryable_failure_requeues_the_job_with_its_error_until_the_last_delivery(
    service: JobService, clock: Clock
) -> None:
    job = service.create_job("alice", request(type="flaky"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)

    with pytest.raises(RetryLater) as first:
        service.run_job(message, Delivery(receive_count=1, max_receive_count=3))
    waiting = service.get_job("alice", job.job_id)
    with pytest.raises(RetryLater) as second:
        service.run_job(message, Delivery(receive_count=2, max_receive_count=3))
    last = service.run_job(message, Delivery(receive_count=3, max_receive_count=3))

    assert (first.value.delay_seconds, second.value.delay_seconds) == (5, 10)
    assert waiting.status == JobStatus.QUEUED
    assert waiting.attempts == 1
    assert waiting.error is not None
    assert waiting.error.type == "RetryableProcessorError"
    assert last is not None
    assert (last.status, last.attempts) == (JobStatus.FAILED, 3)
    assert last.error is not None
    assert last.error.message == "try again"


def test_a_retryable_failure_that_recovers_succeeds(service: JobService) -> None:
    runs = {"n": 0}

    def once_flaky(job: Any, context: JobContext) -> dict[str, Any]:
        runs["n"] += 1
        if runs["n"] == 1:
            raise RetryableProcessorError("blip")
        return {"ok": True}

    service.registry = Registry([JobType("noop", once_flaky)])
    job = service.create_job("alice", request(type="noop"))
    message = JobMessage(owner_id="alice", job_id=job.job_id)

    with pytest.raises(RetryLater):
        service.run_job(message, Delivery(receive_count=1))
    done = service.run_job(message, Delivery(receive_count=2))

    assert done is not None
    assert (done.status, done.attempts, done.result) == (JobStatus.SUCCEEDED, 2, {"ok": True})


def test_a_non_retryable_failure_fails_at_once(service: JobService) -> None:
    job = service.create_job("alice", request(type="explode"))

    done = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id), Delivery(receive_count=1))

    assert done is not None
    assert done.status == JobStatus.FAILED


def test_a_message_for_a_job_that_does_not_exist_is_acknowledged(service: JobService) -> None:
    message = JobMessage(owner_id="alice", job_id="01a226ee-fede-7c74-8f78-130f6101394b")

    assert service.run_job(message) is None
    assert service.store.items == {}  # type: ignore[attr-defined]


def test_a_dead_lettered_queued_job_fails(service: JobService) -> None:
    job = service.create_job("alice", request(type="noop"))

    failed = service.fail_dead_lettered(JobMessage(owner_id="alice", job_id=job.job_id))

    assert failed is not None
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "DeadLettered"


def test_a_dead_lettered_job_whose_run_may_live_waits_for_its_lease(service: JobService, clock: Clock) -> None:
    job = service.create_job("alice", request(type="noop"))
    service.store.start("alice", job.job_id, now_text=format_timestamp(clock()), stale_before_text="")
    message = JobMessage(owner_id="alice", job_id=job.job_id)

    with pytest.raises(RetryLater):
        service.fail_dead_lettered(message)
    clock.advance(36)
    failed = service.fail_dead_lettered(message)

    assert failed is not None
    assert failed.status == JobStatus.FAILED


def test_a_dead_lettered_finished_or_deleted_job_is_left_alone(service: JobService, clock: Clock) -> None:
    done = service.create_job("alice", request(type="noop"))
    service.run_job(JobMessage(owner_id="alice", job_id=done.job_id))
    gone = service.create_job("alice", request(type="noop"))
    service.delete_job("alice", gone.job_id)
    clock.advance(120)

    kept = service.fail_dead_lettered(JobMessage(owner_id="alice", job_id=done.job_id))
    nothing = service.fail_dead_lettered(JobMessage(owner_id="alice", job_id=gone.job_id))

    assert kept is not None
    assert kept.status == JobStatus.SUCCEEDED
    assert nothing is None
    assert service.store.get("alice", gone.job_id) is None


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


@pytest.mark.parametrize("retention_days", [1, 30])
def test_a_finished_job_expires_after_the_retention_period(clock: Clock, retention_days: int) -> None:
    store = InMemoryJobStore()
    service = JobService(
        store,
        InMemoryJobQueue(),
        Registry([*BUILT_IN_TYPES.values(), JobType("explode", explode)]),
        clock=clock,
        retention_days=retention_days,
    )
    done = service.create_job("alice", request(type="noop"))
    failed = service.create_job("alice", request(type="explode"))
    dead = service.create_job("alice", request(type="noop"))
    queued = service.create_job("alice", request(type="noop"))

    service.run_job(JobMessage(owner_id="alice", job_id=done.job_id))
    service.run_job(JobMessage(owner_id="alice", job_id=failed.job_id))
    service.fail_dead_lettered(JobMessage(owner_id="alice", job_id=dead.job_id))

    expected = int((clock.now + timedelta(days=retention_days)).timestamp())
    assert {job_id[-4:]: at for (_, job_id), at in store.expires_at.items()} == {
        done.job_id[-4:]: expected,
        failed.job_id[-4:]: expected,
        dead.job_id[-4:]: expected,
    }
    assert ("alice", queued.job_id) not in store.expires_at


def test_an_expired_job_is_not_found_listed_or_deleted(clock: Clock) -> None:
    now = [clock.now.timestamp()]
    store = InMemoryJobStore(clock=lambda: now[0])
    service = JobService(store, InMemoryJobQueue(), clock=clock, retention_days=1)
    job = service.create_job("alice", request(type="noop"))
    service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    now[0] += 86400 + 1

    with pytest.raises(JobNotFound):
        service.get_job("alice", job.job_id)
    assert service.list_jobs("alice").items == []
    with pytest.raises(JobNotFound):
        service.delete_job("alice", job.job_id)
