"""One suite, two stores: the in-memory fake and DynamoDB (moto) must behave the same."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from jobs.models import (
    CallbackStatus,
    Job,
    JobCallback,
    JobError,
    JobStatus,
    TransitionRejected,
    format_timestamp,
)
from jobs.store import DynamoJobStore, InMemoryJobStore, JobStore, from_attribute_value, to_attribute_value
from tests.conftest import Aws, dynamodb_local_client

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "moto", "dynamodb-local"])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    """The same cases on the in-memory fake, on moto, and on DynamoDB Local (AWS's own emulator)."""
    if request.param == "memory":
        yield InMemoryJobStore()
    elif request.param == "moto":
        aws: Aws = request.getfixturevalue("aws")
        yield DynamoJobStore(aws.table_name)
    else:
        table = request.getfixturevalue("dynamodb_local_table")
        yield DynamoJobStore(table, dynamodb_local_client(request.getfixturevalue("dynamodb_local_endpoint")))


def make_job(n: int, owner: str = "alice", **payload: object) -> Job:
    return Job(
        owner_id=owner,
        job_id=f"01a226ee-0000-7000-8000-{n:012d}",
        title=f"job {n}",
        type="noop",
        status=JobStatus.QUEUED,
        payload=payload,
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_job_reads_back_as_written(store: JobStore) -> None:
    job = make_job(1, complexity_level=9000, ratio=0.1, nested={"list": [1, 2.5, "x", True, None]})

    store.put_new(job)

    assert store.get("alice", job.job_id) == job


def test_payload_numbers_round_trip_as_the_same_json_numbers(store: JobStore) -> None:
    store.put_new(make_job(1, big=9000, small=0.1, negative=-3, exact=1e-7, huge=12345678901234567890))

    payload = store.get("alice", make_job(1).job_id).payload  # type: ignore[union-attr]

    assert payload == {"big": 9000, "small": 0.1, "negative": -3, "exact": 1e-7, "huge": 12345678901234567890}
    assert isinstance(payload["big"], int)
    assert isinstance(payload["small"], float)


def test_a_key_is_written_once(store: JobStore) -> None:
    store.put_new(make_job(1))

    with pytest.raises(ValueError, match="exists"):
        store.put_new(make_job(1))


def test_owners_never_see_each_others_jobs(store: JobStore) -> None:
    store.put_new(make_job(1, owner="alice"))

    assert store.get("bob", make_job(1).job_id) is None
    assert store.list_page("bob", limit=10, after_job_id=None) == ([], None)
    assert store.delete("bob", make_job(1).job_id) is False
    assert store.get("alice", make_job(1).job_id) is not None


def test_pages_run_newest_first_without_an_empty_last_page(store: JobStore) -> None:
    for n in range(5):
        store.put_new(make_job(n))

    first, cursor = store.list_page("alice", limit=2, after_job_id=None)
    second, cursor2 = store.list_page("alice", limit=2, after_job_id=cursor)
    third, cursor3 = store.list_page("alice", limit=2, after_job_id=cursor2)

    assert [j.job_id[-1] for j in first + second + third] == ["4", "3", "2", "1", "0"]
    assert cursor3 is None


def _walk(store: JobStore, owner: str, limit: int, status: JobStatus | None) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        jobs, cursor = store.list_page(owner, limit=limit, after_job_id=cursor, status=status)
        pages.append([job.job_id[-2:] for job in jobs])
        if cursor is None:
            return pages
        assert len(pages) < 50


def test_a_status_filter_pages_through_that_status_only_newest_first(store: JobStore) -> None:
    for n in range(9):
        store.put_new(make_job(n))
    store.put_new(make_job(20, owner="bob"))
    for n in (1, 4, 5, 8):
        store.start("alice", make_job(n).job_id, now_text=T0, stale_before_text=T0)
    for n in (4, 8):
        store.finish("alice", make_job(n).job_id, run_id=T0, status=JobStatus.FAILED, now_text=T1)
    store.start("bob", make_job(20).job_id, now_text=T0, stale_before_text=T0)

    assert _walk(store, "alice", 2, JobStatus.QUEUED) == [["07", "06"], ["03", "02"], ["00"]]
    assert _walk(store, "alice", 1, JobStatus.RUNNING) == [["05"], ["01"]]
    assert _walk(store, "alice", 2, JobStatus.FAILED) == [["08", "04"]]
    assert _walk(store, "alice", 5, JobStatus.SUCCEEDED) == [[]]
    assert _walk(store, "bob", 5, JobStatus.QUEUED) == [[]]
    assert [job_id for page in _walk(store, "alice", 4, None) for job_id in page] == [
        f"{n:02d}" for n in range(8, -1, -1)
    ]


def test_a_requeued_or_abandoned_job_moves_to_its_new_status(store: JobStore) -> None:
    store.put_new(make_job(1))
    store.put_new(make_job(2))
    job_id = make_job(1).job_id
    store.start("alice", job_id, now_text=T0, stale_before_text=T0)
    store.requeue("alice", job_id, run_id=T0, now_text=T1, error=JobError(type="R", message="again"))
    store.fail_abandoned(
        "alice", make_job(2).job_id, now_text=T2, stale_before_text=T0, error=JobError(type="D", message="dlq")
    )

    assert _walk(store, "alice", 5, JobStatus.QUEUED) == [["01"]]
    assert _walk(store, "alice", 5, JobStatus.RUNNING) == [[]]
    assert _walk(store, "alice", 5, JobStatus.FAILED) == [["02"]]


def test_a_deleted_job_leaves_the_status_filter(store: JobStore) -> None:
    store.put_new(make_job(1))
    store.delete("alice", make_job(1).job_id)

    assert store.list_page("alice", limit=5, after_job_id=None, status=JobStatus.QUEUED) == ([], None)


def test_a_range_lists_the_owners_jobs_oldest_first(store: JobStore) -> None:
    for n in range(5):
        store.put_new(make_job(n))
    store.put_new(make_job(2, owner="bob"))

    found = list(store.list_range("alice", make_job(1).job_id, make_job(3).job_id))

    assert [j.job_id[-1] for j in found] == ["1", "2", "3"]


T0 = "2026-11-29T10:00:00.000Z"
T1 = "2026-11-29T10:00:05.000Z"
T2 = "2026-11-29T10:01:00.000Z"


def test_the_lifecycle_moves_forward_only(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id

    running = store.start("alice", job_id, now_text=T0, stale_before_text=T0)
    with pytest.raises(TransitionRejected) as again:
        store.start("alice", job_id, now_text=T1, stale_before_text=T0)
    done = store.finish("alice", job_id, run_id=T0, status=JobStatus.SUCCEEDED, now_text=T1, result={"n": 1, "r": 0.5})
    with pytest.raises(TransitionRejected) as twice:
        store.finish(
            "alice",
            job_id,
            run_id=T0,
            status=JobStatus.FAILED,
            now_text=T1,
            error=JobError(type="X", message="m"),
        )
    with pytest.raises(TransitionRejected):
        store.start("alice", job_id, now_text=T2, stale_before_text=T2)

    assert (running.status, running.attempts, running.started_at) == (JobStatus.RUNNING, 1, datetime.fromisoformat(T0))
    assert again.value.current is not None
    assert again.value.current.status == JobStatus.RUNNING
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, {"n": 1, "r": 0.5})
    assert twice.value.current == done
    assert store.get("alice", job_id) == done


def test_a_failure_records_its_error(store: JobStore) -> None:
    store.put_new(make_job(1))
    store.start("alice", make_job(1).job_id, now_text=T0, stale_before_text=T0)

    failed = store.finish(
        "alice",
        make_job(1).job_id,
        run_id=T0,
        status=JobStatus.FAILED,
        now_text=T1,
        error=JobError(type="E", message="boom"),
    )

    assert failed.error == JobError(type="E", message="boom")
    assert failed.result is None


def test_a_stale_run_is_taken_over_and_can_no_longer_write(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id
    store.start("alice", job_id, now_text=T0, stale_before_text=T0)

    taken = store.start("alice", job_id, now_text=T2, stale_before_text=T1)  # T0 < T1: the lease has expired
    with pytest.raises(TransitionRejected):
        store.finish("alice", job_id, run_id=T0, status=JobStatus.SUCCEEDED, now_text=T2, result={})
    done = store.finish("alice", job_id, run_id=T2, status=JobStatus.SUCCEEDED, now_text=T2, result={})

    assert (taken.attempts, taken.started_at) == (2, datetime.fromisoformat(T2))
    assert done.status == JobStatus.SUCCEEDED


def test_a_requeued_job_is_queued_with_its_error_and_can_start_again(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id
    store.start("alice", job_id, now_text=T0, stale_before_text=T0)

    queued = store.requeue("alice", job_id, run_id=T0, now_text=T1, error=JobError(type="R", message="blip"))
    again = store.start("alice", job_id, now_text=T2, stale_before_text=T0)

    assert (queued.status, queued.attempts, queued.error) == (JobStatus.QUEUED, 1, JobError(type="R", message="blip"))
    assert (again.status, again.attempts) == (JobStatus.RUNNING, 2)


def test_only_queued_or_stale_jobs_can_be_failed_as_abandoned(store: JobStore) -> None:
    error = JobError(type="DeadLettered", message="gone to the DLQ")
    for n in range(3):
        store.put_new(make_job(n))
    store.start("alice", make_job(1).job_id, now_text=T1, stale_before_text=T0)
    store.start("alice", make_job(2).job_id, now_text=T0, stale_before_text=T0)

    queued = store.fail_abandoned("alice", make_job(0).job_id, now_text=T2, stale_before_text=T0, error=error)
    with pytest.raises(TransitionRejected) as live:
        store.fail_abandoned("alice", make_job(1).job_id, now_text=T2, stale_before_text=T0, error=error)
    stale = store.fail_abandoned("alice", make_job(2).job_id, now_text=T2, stale_before_text=T1, error=error)
    with pytest.raises(TransitionRejected) as finished:
        store.fail_abandoned("alice", make_job(2).job_id, now_text=T2, stale_before_text=T2, error=error)

    assert queued.status == stale.status == JobStatus.FAILED
    assert queued.error == error
    assert live.value.current is not None
    assert live.value.current.status == JobStatus.RUNNING
    assert finished.value.current == stale


def test_transitions_never_recreate_a_deleted_job(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id
    store.start("alice", job_id, now_text=T0, stale_before_text=T0)
    assert store.delete("alice", job_id) is True
    error = JobError(type="E", message="m")

    with pytest.raises(TransitionRejected) as late:
        store.finish("alice", job_id, run_id=T0, status=JobStatus.SUCCEEDED, now_text=T1, result={})
    with pytest.raises(TransitionRejected):
        store.requeue("alice", job_id, run_id=T0, now_text=T1, error=error)
    with pytest.raises(TransitionRejected):
        store.start("alice", job_id, now_text=T2, stale_before_text=T2)
    with pytest.raises(TransitionRejected):
        store.fail_abandoned("alice", job_id, now_text=T2, stale_before_text=T2, error=error)

    assert late.value.current is None
    assert store.get("alice", job_id) is None


def test_attribute_values_keep_decimal_text_exact() -> None:
    assert to_attribute_value(0.1) == {"N": "0.1"}
    assert from_attribute_value({"N": "9000"}) == 9000
    assert from_attribute_value({"N": "0.1"}) == 0.1


def _finish(store: JobStore, n: int, expires_at: int, owner: str = "alice") -> None:
    job_id = make_job(n).job_id
    store.start(owner, job_id, now_text=T0, stale_before_text=T0)
    store.finish(owner, job_id, run_id=T0, status=JobStatus.SUCCEEDED, now_text=T1, result={}, expires_at=expires_at)


def test_an_expired_job_that_is_not_deleted_yet_is_gone_for_every_read(store: JobStore) -> None:
    past, future = int(time.time()) - 5, int(time.time()) + 3600
    for n in range(7):
        store.put_new(make_job(n))
    for n in (0, 2, 3, 5):
        _finish(store, n, past)
    _finish(store, 6, future)

    pages = _walk(store, "alice", 1, None)

    assert store.get("alice", make_job(2).job_id) is None
    assert store.get("alice", make_job(6).job_id) is not None
    assert pages == [["06"], ["04"], ["01"]]
    assert _walk(store, "alice", 2, JobStatus.SUCCEEDED) == [["06"]]
    assert [j.job_id[-2:] for j in store.list_range("alice", make_job(0).job_id, make_job(9).job_id)] == [
        "01",
        "04",
        "06",
    ]
    assert store.delete("alice", make_job(3).job_id) is False
    assert store.delete("alice", make_job(6).job_id) is True


def test_summary_pages_read_the_range_in_order_without_expired_jobs_and_resume_after_a_page(store: JobStore) -> None:
    past, future = int(time.time()) - 5, int(time.time()) + 3600
    for n in range(9):
        store.put_new(make_job(n, big="x" * 1000))
    store.put_new(make_job(3, owner="bob"))
    for n in (2, 3):
        _finish(store, n, past)
    _finish(store, 4, future)
    low, high = make_job(1).job_id, make_job(7).job_id

    pages = list(store.summary_pages("alice", low, high, page_size=3))

    # Limit counts the items read, expired ones too (DynamoDB filters after it), so a page may hold fewer.
    assert [([j.job_id[-2:] for j in page.jobs], page.next_after) for page in pages] == [
        (["01"], make_job(3).job_id),
        (["04", "05", "06"], make_job(6).job_id),
        (["07"], None),
    ]
    finished = pages[1].jobs[0]
    assert (finished.status, finished.type, finished.created_at) == (JobStatus.SUCCEEDED, "noop", NOW)
    assert finished.started_at == datetime.fromisoformat(T0)
    assert finished.finished_at == datetime.fromisoformat(T1)
    resumed = list(store.summary_pages("alice", low, high, after_job_id=pages[0].next_after, page_size=3))
    assert [[j.job_id[-2:] for j in page.jobs] for page in resumed] == [["04", "05", "06"], ["07"]]
    assert [j.job_id[-2:] for page in store.summary_pages("alice", low, high) for j in page.jobs] == [
        "01",
        "04",
        "05",
        "06",
        "07",
    ]


def test_a_page_after_many_expired_jobs_is_still_full_and_the_last_page_has_no_cursor(store: JobStore) -> None:
    past = int(time.time()) - 5
    for n in range(12):
        store.put_new(make_job(n))
    for n in range(2, 10):
        _finish(store, n, past)

    first, cursor = store.list_page("alice", limit=3, after_job_id=None)
    second, last = store.list_page("alice", limit=3, after_job_id=cursor)

    assert [j.job_id[-2:] for j in first] == ["11", "10", "01"]
    assert [j.job_id[-2:] for j in second] == ["00"]
    assert last is None


def test_the_expiry_is_written_as_the_tables_ttl_number_attribute(aws: Aws) -> None:
    store = DynamoJobStore(aws.table_name)
    store.put_new(make_job(1))
    _finish(store, 1, 1_900_000_000)

    item = aws.dynamodb.get_item(
        TableName=aws.table_name, Key={"owner_id": {"S": "alice"}, "job_id": {"S": make_job(1).job_id}}
    )
    ttl = aws.dynamodb.describe_time_to_live(TableName=aws.table_name)["TimeToLiveDescription"]

    assert item["Item"]["expires_at"] == {"N": "1900000000"}
    assert ttl["AttributeName"] == "expires_at"


def test_valid_unicode_reads_back_exactly(store: JobStore) -> None:
    text = "Chuck 🥋 — 空手 ﷽ עברית e\u0301 👩\u200d👩\u200d👧 \U0001f600 \u00a0\u2028 tab\tcr\r\nend"
    job = make_job(1, text=text, nested={text: [text]})

    store.put_new(job)

    assert store.get("alice", job.job_id) == job


LATER = "2026-11-29T11:00:00.000Z"


def test_the_queued_index_holds_queued_jobs_of_every_owner_and_no_other(store: JobStore) -> None:
    # Job ids end in 1 and 11 (shard "1") and 2 (shard "2").
    store.put_new(make_job(1, owner="alice"))
    store.put_new(make_job(11, owner="bob"))
    store.put_new(make_job(2, owner="carol"))

    assert list(store.list_queued("1", updated_before_text=LATER)) == [
        ("alice", make_job(1).job_id),
        ("bob", make_job(11).job_id),
    ]
    assert list(store.list_queued("2", updated_before_text=LATER)) == [("carol", make_job(2).job_id)]
    assert list(store.list_queued("1", updated_before_text="2026-11-29T09:59:59.999Z")) == []  # updated since


def test_a_job_leaves_the_queued_index_when_it_starts_and_returns_when_requeued(store: JobStore) -> None:
    job = make_job(1)
    store.put_new(job)

    store.start("alice", job.job_id, now_text="2026-11-29T10:00:01.000Z", stale_before_text="2026-11-29T09:00:00Z")
    assert list(store.list_queued("1", updated_before_text=LATER)) == []
    store.requeue(
        "alice",
        job.job_id,
        run_id="2026-11-29T10:00:01.000Z",
        now_text="2026-11-29T10:00:02.000Z",
        error=JobError(type="T", message="retry"),
    )
    assert list(store.list_queued("1", updated_before_text=LATER)) == [("alice", job.job_id)]
    store.fail_abandoned(
        "alice",
        job.job_id,
        now_text="2026-11-29T10:00:03.000Z",
        stale_before_text="2026-11-29T09:00:00Z",
        error=JobError(type="T", message="dead"),
    )
    assert list(store.list_queued("1", updated_before_text=LATER)) == []


@pytest.mark.parametrize(
    ("owner_id", "job_id"),
    [
        ("x" * 2049, "01a226ee-0000-7000-8000-000000000001"),  # past DynamoDB's partition key limit
        ("é" * 1025, "01a226ee-0000-7000-8000-000000000001"),  # 2,050 bytes of UTF-8
        ("alice", "j" * 1025),  # past the sort key limit
        ("\ud800", "01a226ee-0000-7000-8000-000000000001"),  # not UTF-8 at all
        ("", "01a226ee-0000-7000-8000-000000000001"),
    ],
)
def test_a_key_dynamodb_cannot_hold_names_no_job(store: JobStore, owner_id: str, job_id: str) -> None:
    assert store.get(owner_id, job_id) is None
    assert store.delete(owner_id, job_id) is False
    with pytest.raises(TransitionRejected) as rejected:
        store.start(owner_id, job_id, now_text=LATER, stale_before_text=LATER)
    assert rejected.value.current is None


def _ones(limit: int) -> dict[str, object]:
    """The costliest JSON object of ``limit`` bytes in DynamoDB's terms: a list of one-digit numbers (two bytes of
    JSON each, three in DynamoDB: the number and the element's byte)."""
    return {"x": [1] * ((limit - 8) // 2)}


# moto is left out: it measures a list's elements without their byte each (moto.dynamodb's DynamoType.size), so
# it cannot tell a fitting item from one past 400 KB in this shape; DynamoDB Local measures as DynamoDB does.
@pytest.mark.parametrize("store", ["memory", "dynamodb-local"], indirect=True)
def test_an_item_holding_every_field_at_its_maximum_stays_under_400_kb(store: JobStore) -> None:
    from jobs.models import (
        MAX_ERROR_MESSAGE_LENGTH,
        MAX_PAYLOAD_BYTES,
        MAX_RESULT_BYTES,
        MAX_TITLE_LENGTH,
        WriteRefused,
        json_bytes,
    )

    owner = "~" * 255  # the longest owner id (a token's sub)
    job = make_job(1, owner=owner).model_copy(
        update={"title": "😀" * MAX_TITLE_LENGTH, "type": "😀" * 64, "payload": _ones(MAX_PAYLOAD_BYTES)}
    )
    assert MAX_PAYLOAD_BYTES - 2 <= json_bytes(job.payload) <= MAX_PAYLOAD_BYTES
    error = JobError(type="E" * 1000, message="😀" * 10 * MAX_ERROR_MESSAGE_LENGTH)  # cut to their limits
    result = _ones(MAX_RESULT_BYTES)
    store.put_new(job)
    first = store.start(owner, job.job_id, now_text=LATER, stale_before_text=LATER)
    assert first.run_id is not None
    store.requeue(owner, job.job_id, run_id=first.run_id, now_text=LATER, error=error)
    started = store.start(owner, job.job_id, now_text=LATER, stale_before_text=LATER)
    assert started.run_id is not None

    done = store.finish(
        owner, job.job_id, run_id=started.run_id, status=JobStatus.SUCCEEDED, now_text=LATER, result=result
    )

    assert (done.payload, done.result, done.error) == (job.payload, result, error)
    assert started.attempts == 2
    if isinstance(store, InMemoryJobStore):
        return
    # The engines do measure: the same item with twice the result is past 400 KB, and refused.
    twice = make_job(2, owner=owner).model_copy(update={"title": job.title, "type": job.type, "payload": job.payload})
    store.put_new(twice)
    twice_run = store.start(owner, twice.job_id, now_text=LATER, stale_before_text=LATER).run_id
    assert twice_run is not None
    with pytest.raises(WriteRefused):
        store.finish(
            owner,
            twice.job_id,
            run_id=twice_run,
            status=JobStatus.SUCCEEDED,
            now_text=LATER,
            result=_ones(2 * MAX_RESULT_BYTES),
        )


# --- job control (issue 14): cancel, progress, checkpoints and continuation ----------------------------------

T3 = "2026-11-29T10:02:00.000Z"
RUN = "run-a"
OTHER_RUN = "run-b"


def _running(store: JobStore, n: int, *, run_id: str = RUN, now_text: str = T0) -> str:
    store.put_new(make_job(n))
    job_id = make_job(n).job_id
    store.start("alice", job_id, now_text=now_text, stale_before_text=now_text, run_id=run_id)
    return job_id


def _rejected(action: Callable[[], object]) -> Job | None:
    with pytest.raises(TransitionRejected) as rejected:
        action()
    return rejected.value.current


def test_a_cancel_ends_a_queued_job_at_once_and_no_run_can_start_it(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id

    cancelled = store.cancel_unheld("alice", job_id, now_text=T1, expires_at=int(time.time()) + 3600)

    assert (cancelled.status, cancelled.finished_at, cancelled.attempts) == (
        JobStatus.CANCELLED,
        datetime.fromisoformat(T1),
        0,
    )
    assert store.get("alice", job_id) == cancelled
    assert _walk(store, "alice", 5, JobStatus.CANCELLED) == [["01"]]
    assert _walk(store, "alice", 5, JobStatus.QUEUED) == [[]]
    assert list(store.list_queued("1", updated_before_text=LATER)) == []
    assert _rejected(lambda: store.start("alice", job_id, now_text=T2, stale_before_text=T2)) == cancelled
    error = JobError(type="DeadLettered", message="m")
    assert _rejected(lambda: store.fail_abandoned("alice", job_id, now_text=T2, stale_before_text=T2, error=error))
    # Cancelled is final: neither way of cancelling moves it again.
    assert _rejected(lambda: store.cancel_unheld("alice", job_id, now_text=T2)) == cancelled
    assert _rejected(lambda: store.request_cancel("alice", job_id, now_text=T2)) == cancelled


def test_a_cancelled_job_expires_like_the_other_final_statuses(store: JobStore) -> None:
    store.put_new(make_job(1))
    store.cancel_unheld("alice", make_job(1).job_id, now_text=T1, expires_at=int(time.time()) - 5)

    assert store.get("alice", make_job(1).job_id) is None
    assert _walk(store, "alice", 5, JobStatus.CANCELLED) == [[]]


def test_a_held_job_is_not_cancelled_at_once_but_asked_to_stop_and_the_first_ask_stays(store: JobStore) -> None:
    job_id = _running(store, 1)

    held = _rejected(lambda: store.cancel_unheld("alice", job_id, now_text=T1))
    asked = store.request_cancel("alice", job_id, now_text=T1)
    again = store.request_cancel("alice", job_id, now_text=T2)

    assert held is not None
    assert held.status == JobStatus.RUNNING
    assert (asked.status, asked.cancel_requested_at, asked.run_id) == (
        JobStatus.RUNNING,
        datetime.fromisoformat(T1),
        RUN,
    )
    assert again.cancel_requested_at == datetime.fromisoformat(T1)


@pytest.mark.parametrize("final", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_finished_or_missing_job_is_neither_cancelled_nor_asked_to_stop(store: JobStore, final: JobStatus) -> None:
    job_id = _running(store, 1)
    error = JobError(type="E", message="m") if final == JobStatus.FAILED else None
    done = store.finish(
        "alice", job_id, run_id=RUN, status=final, now_text=T1, result={} if error is None else None, error=error
    )
    store.put_new(make_job(2))
    store.put_new(make_job(3))
    missing = make_job(4).job_id

    assert _rejected(lambda: store.cancel_unheld("alice", job_id, now_text=T2)) == done
    assert _rejected(lambda: store.request_cancel("alice", job_id, now_text=T2)) == done
    assert _rejected(lambda: store.request_cancel("alice", make_job(2).job_id, now_text=T2)) == make_job(2)
    assert _rejected(lambda: store.cancel_unheld("bob", make_job(3).job_id, now_text=T2)) is None
    assert _rejected(lambda: store.cancel_unheld("alice", missing, now_text=T2)) is None
    assert _rejected(lambda: store.request_cancel("alice", missing, now_text=T2)) is None
    assert store.get("alice", make_job(3).job_id) == make_job(3)


def test_once_a_cancel_is_asked_every_way_out_of_running_but_cancelled_is_refused(store: JobStore) -> None:
    job_id = _running(store, 1)
    store.request_cancel("alice", job_id, now_text=T1)
    error = JobError(type="E", message="m")

    refused = [
        lambda: store.finish("alice", job_id, run_id=RUN, status=JobStatus.SUCCEEDED, now_text=T2, result={"r": 1}),
        lambda: store.finish("alice", job_id, run_id=RUN, status=JobStatus.FAILED, now_text=T2, error=error),
        lambda: store.requeue("alice", job_id, run_id=RUN, now_text=T2, error=error),
        lambda: store.save_checkpoint("alice", job_id, run_id=RUN, now_text=T2, checkpoint={"done": 1}, release=True),
        lambda: store.start("alice", job_id, now_text=T3, stale_before_text=T3, run_id=OTHER_RUN),  # lease expired
        lambda: store.fail_abandoned("alice", job_id, now_text=T3, stale_before_text=T3, error=error),
        # Another run may settle it only once no live run holds it.
        lambda: store.settle_cancelled("alice", job_id, now_text=T2, run_id=OTHER_RUN, stale_before_text=T0),
    ]
    for action in refused:
        current = _rejected(action)
        assert current is not None
        assert (current.status, current.run_id) == (JobStatus.RUNNING, RUN)
    kept = store.save_checkpoint("alice", job_id, run_id=RUN, now_text=T2, checkpoint={"done": 1}, release=False)
    cancelled = store.settle_cancelled("alice", job_id, now_text=T2, run_id=RUN, stale_before_text=T0)

    assert kept.checkpoint == {"done": 1}
    assert (cancelled.status, cancelled.result, cancelled.error, cancelled.checkpoint) == (
        JobStatus.CANCELLED,
        None,
        None,
        None,
    )
    assert cancelled.finished_at == datetime.fromisoformat(T2)
    assert _rejected(lambda: store.settle_cancelled("alice", job_id, now_text=T3, run_id=RUN, stale_before_text=T3))


def test_a_cancel_asked_of_a_run_that_died_is_settled_by_anyone_once_its_lease_ends(store: JobStore) -> None:
    job_id = _running(store, 1)
    store.request_cancel("alice", job_id, now_text=T1)

    live = _rejected(lambda: store.settle_cancelled("alice", job_id, now_text=T1, run_id=None, stale_before_text=T0))
    cancelled = store.settle_cancelled("alice", job_id, now_text=T2, run_id=None, stale_before_text=T1)
    never_asked = _running(store, 2)

    assert live is not None
    assert live.status == JobStatus.RUNNING
    assert cancelled.status == JobStatus.CANCELLED
    assert _rejected(
        lambda: store.settle_cancelled("alice", never_asked, now_text=T3, run_id=RUN, stale_before_text=T3)
    )


def test_progress_is_written_only_by_the_run_that_holds_the_job(store: JobStore) -> None:
    job_id = _running(store, 1)
    store.put_new(make_job(2))

    first = store.report_progress("alice", job_id, run_id=RUN, now_text=T1, percent=12.5, message="a")
    latest = store.report_progress("alice", job_id, run_id=RUN, now_text=T2, percent=40.0, message="b")
    stranger = _rejected(
        lambda: store.report_progress("alice", job_id, run_id=OTHER_RUN, now_text=T2, percent=90.0, message="x")
    )
    queued = _rejected(
        lambda: store.report_progress("alice", make_job(2).job_id, run_id=RUN, now_text=T2, percent=1.0, message="")
    )
    taken = store.start("alice", job_id, now_text=T3, stale_before_text=T3, run_id=OTHER_RUN)  # the lease expired
    late = _rejected(
        lambda: store.report_progress("alice", job_id, run_id=RUN, now_text=T3, percent=99.0, message="late")
    )

    assert first.progress is not None
    assert (first.progress.percent, first.progress.message) == (12.5, "a")
    assert latest.progress is not None
    assert (latest.progress.percent, latest.progress.message, latest.progress.updated_at) == (
        40.0,
        "b",
        datetime.fromisoformat(T2),
    )
    assert latest.updated_at == first.updated_at == datetime.fromisoformat(T0)  # progress is not a status change
    assert stranger == latest
    assert queued == make_job(2)
    assert late == taken
    assert late is not None
    assert late.progress == latest.progress
    assert store.get("alice", job_id) == taken


def test_a_progress_write_tells_the_run_that_a_cancel_was_asked(store: JobStore) -> None:
    job_id = _running(store, 1)
    store.request_cancel("alice", job_id, now_text=T1)

    written = store.report_progress("alice", job_id, run_id=RUN, now_text=T2, percent=50.0, message="half")

    assert written.cancel_requested_at == datetime.fromisoformat(T1)
    assert written.progress is not None


def test_a_checkpoint_is_saved_by_its_run_only_and_kept_by_a_takeover(store: JobStore) -> None:
    job_id = _running(store, 1)

    saved = store.save_checkpoint(
        "alice", job_id, run_id=RUN, now_text=T1, checkpoint={"done": 3, "r": 0.5}, release=False
    )
    other = _rejected(
        lambda: store.save_checkpoint("alice", job_id, run_id=OTHER_RUN, now_text=T1, checkpoint={}, release=False)
    )
    taken = store.start("alice", job_id, now_text=T3, stale_before_text=T2, run_id=OTHER_RUN)  # the run died
    late = _rejected(
        lambda: store.save_checkpoint("alice", job_id, run_id=RUN, now_text=T3, checkpoint={"done": 9}, release=True)
    )

    assert (saved.checkpoint, saved.continued_at, saved.updated_at) == (
        {"done": 3, "r": 0.5},
        None,
        datetime.fromisoformat(T1),
    )
    assert other == saved
    assert (taken.checkpoint, taken.attempts, taken.run_id) == (
        {"done": 3, "r": 0.5},
        2,
        OTHER_RUN,
    )  # resumes after a crash
    assert late == taken
    assert "checkpoint" not in taken.model_dump()  # never in a response
    listed, _ = store.list_page("alice", limit=5, after_job_id=None)
    assert listed[0].checkpoint == {"done": 3, "r": 0.5}


def test_a_continued_run_is_resumed_with_a_new_lease_and_no_attempt_spent(store: JobStore) -> None:
    job_id = _running(store, 1)

    released = store.save_checkpoint("alice", job_id, run_id=RUN, now_text=T1, checkpoint={"done": 2}, release=True)
    not_started = _rejected(lambda: store.start("alice", job_id, now_text=T3, stale_before_text=T3, run_id="x"))
    not_finished = _rejected(
        lambda: store.finish("alice", job_id, run_id="x", status=JobStatus.SUCCEEDED, now_text=T2, result={})
    )
    resumed = store.resume("alice", job_id, now_text=T2, run_id=OTHER_RUN)
    twice = _rejected(lambda: store.resume("alice", job_id, now_text=T2, run_id="y"))
    old_run = _rejected(
        lambda: store.finish("alice", job_id, run_id=RUN, status=JobStatus.SUCCEEDED, now_text=T2, result={})
    )
    done = store.finish("alice", job_id, run_id=OTHER_RUN, status=JobStatus.SUCCEEDED, now_text=T3, result={"n": 1})

    assert (released.status, released.continued_at, released.checkpoint) == (JobStatus.RUNNING, T1, {"done": 2})
    assert not_started == released
    assert not_finished == released
    assert (resumed.status, resumed.run_id, resumed.leased_at, resumed.continued_at) == (
        JobStatus.RUNNING,
        OTHER_RUN,
        T2,
        None,
    )
    assert (resumed.attempts, resumed.started_at, resumed.checkpoint) == (1, datetime.fromisoformat(T0), {"done": 2})
    assert twice == resumed
    assert old_run == resumed
    assert (done.status, done.attempts, done.started_at, done.checkpoint, done.continued_at) == (
        JobStatus.SUCCEEDED,
        1,
        datetime.fromisoformat(T0),
        None,
        None,
    )


def test_a_job_released_for_continuation_is_cancelled_at_once_or_failed_when_dead_lettered(store: JobStore) -> None:
    released = [_running(store, n) for n in (1, 2)]
    for job_id in released:
        store.save_checkpoint("alice", job_id, run_id=RUN, now_text=T1, checkpoint={"done": 1}, release=True)
    error = JobError(type="DeadLettered", message="m")

    not_asked = _rejected(lambda: store.request_cancel("alice", released[0], now_text=T2))
    cancelled = store.cancel_unheld("alice", released[0], now_text=T2)
    # Released: no run holds it, even though its lease (leased_at T0) would still be live at T1.
    failed = store.fail_abandoned("alice", released[1], now_text=T2, stale_before_text=T0, error=error)
    not_resumed = _rejected(lambda: store.resume("alice", released[0], now_text=T3, run_id="z"))

    assert not_asked is not None
    assert not_asked.continued_at == T1
    assert (cancelled.status, cancelled.checkpoint, cancelled.continued_at) == (JobStatus.CANCELLED, None, None)
    assert (failed.status, failed.error, failed.checkpoint) == (JobStatus.FAILED, error, None)
    assert not_resumed == cancelled


def test_a_held_job_is_never_resumed(store: JobStore) -> None:
    job_id = _running(store, 1)
    store.put_new(make_job(2))

    held = _rejected(lambda: store.resume("alice", job_id, now_text=T1, run_id=OTHER_RUN))
    queued = _rejected(lambda: store.resume("alice", make_job(2).job_id, now_text=T1, run_id=OTHER_RUN))

    assert held is not None
    assert held.run_id == RUN
    assert queued == make_job(2)


@pytest.mark.parametrize("store", ["memory", "dynamodb-local"], indirect=True)
def test_a_running_item_with_every_field_and_the_largest_checkpoint_stays_under_400_kb(store: JobStore) -> None:
    from jobs.context import MAX_CHECKPOINT_BYTES, checked_checkpoint
    from jobs.models import MAX_ERROR_MESSAGE_LENGTH, MAX_PAYLOAD_BYTES, MAX_PROGRESS_MESSAGE_LENGTH, MAX_TITLE_LENGTH

    owner = "~" * 255
    job = make_job(1, owner=owner).model_copy(
        update={"title": "😀" * MAX_TITLE_LENGTH, "type": "😀" * 64, "payload": _ones(MAX_PAYLOAD_BYTES)}
    )
    checkpoint = checked_checkpoint(_ones(MAX_CHECKPOINT_BYTES))  # at the limit the context accepts
    store.put_new(job)
    store.start(owner, job.job_id, now_text=T0, stale_before_text=T0, run_id=RUN)
    store.requeue(owner, job.job_id, run_id=RUN, now_text=T0, error=JobError(type="E" * 1000, message="😀" * 9999))
    store.start(owner, job.job_id, now_text=T1, stale_before_text=T1, run_id=OTHER_RUN)
    store.report_progress(
        owner, job.job_id, run_id=OTHER_RUN, now_text=T1, percent=50.0, message="😀" * MAX_PROGRESS_MESSAGE_LENGTH
    )
    store.request_cancel(owner, job.job_id, now_text=T1)

    saved = store.save_checkpoint(
        owner, job.job_id, run_id=OTHER_RUN, now_text=T2, checkpoint=checkpoint, release=False
    )

    assert saved.checkpoint == checkpoint
    assert saved.error is not None
    assert len(saved.error.message) == MAX_ERROR_MESSAGE_LENGTH
    with pytest.raises(ValueError, match="limit"):
        checked_checkpoint(_ones(MAX_CHECKPOINT_BYTES + 4))


def _as_written_before_run_leases(store: JobStore, owner: str, job_id: str) -> None:
    """Make a RUNNING item look as the version before run leases wrote it: no ``run_id``, no ``leased_at``."""
    if isinstance(store, InMemoryJobStore):
        for name in ("run_id", "leased_at"):
            store.items[(owner, job_id)].pop(name, None)
        return
    assert isinstance(store, DynamoJobStore)
    store.client.update_item(
        TableName=store._table,
        Key={"owner_id": {"S": owner}, "job_id": {"S": job_id}},
        UpdateExpression="REMOVE run_id, leased_at",
    )


def test_a_run_started_by_the_version_before_run_leases_keeps_its_lease_from_started_at(store: JobStore) -> None:
    """Upgrade (issue 14): a job RUNNING when the new code is deployed has no run_id or leased_at. Its lease is
    read from started_at: a delivery within it stands aside, one after it takes the job over once."""
    job = make_job(1)
    store.put_new(job)
    started = format_timestamp(NOW)
    store.start("alice", job.job_id, now_text=started, stale_before_text=started)
    _as_written_before_run_leases(store, "alice", job.job_id)
    old = store.get("alice", job.job_id)
    assert old is not None
    assert (old.status, old.run_id, old.leased_at) == (JobStatus.RUNNING, None, None)

    within_lease = format_timestamp(NOW - timedelta(seconds=1))  # the lease began after this: still live
    with pytest.raises(TransitionRejected):
        store.start("alice", job.job_id, now_text=format_timestamp(NOW), stale_before_text=within_lease)
    after_lease = format_timestamp(NOW + timedelta(seconds=1))
    later = format_timestamp(NOW + timedelta(seconds=40))
    taken = store.start("alice", job.job_id, now_text=later, stale_before_text=after_lease, run_id="new-run")

    assert (taken.status, taken.run_id, taken.attempts) == (JobStatus.RUNNING, "new-run", 2)
    done = store.finish("alice", job.job_id, run_id="new-run", status=JobStatus.SUCCEEDED, now_text=later, result={})
    assert done.status == JobStatus.SUCCEEDED


# --- Callback state (record_callback) --------------------------------------------------------------------------


def _callback(status: CallbackStatus, attempts: int, **fields: object) -> JobCallback:
    return JobCallback.model_validate({"status": status, "attempts": attempts, **fields})


def test_a_callback_state_is_recorded_without_touching_the_jobs_status_or_updated_at(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id
    _finish(store, 1, int(time.time()) + 3600)
    before = store.get("alice", job_id)
    retrying = _callback(
        CallbackStatus.RETRYING,
        1,
        last_attempt_at=NOW,
        next_attempt_at=NOW + timedelta(seconds=5),
        last_status_code=500,
        last_error="HTTP 500",
    )
    delivered = _callback(CallbackStatus.DELIVERED, 2, last_attempt_at=NOW, delivered_at=NOW, last_status_code=204)

    assert store.record_callback("alice", job_id, retrying) is True
    after_retry = store.get("alice", job_id)
    assert store.record_callback("alice", job_id, delivered) is True
    after = store.get("alice", job_id)

    assert before is not None
    assert after_retry is not None
    assert after is not None
    assert after_retry.callback == retrying
    assert after.callback == delivered
    assert after.model_copy(update={"callback": None}) == before.model_copy(update={"callback": None})
    assert (after.status, after.updated_at) == (JobStatus.SUCCEEDED, before.updated_at)


def test_a_delivered_callback_is_never_overwritten(store: JobStore) -> None:
    store.put_new(make_job(1))
    job_id = make_job(1).job_id
    delivered = _callback(CallbackStatus.DELIVERED, 1, delivered_at=NOW, last_status_code=200)
    assert store.record_callback("alice", job_id, delivered) is True

    for late in (
        _callback(CallbackStatus.RETRYING, 2, last_error="HTTP 500"),
        _callback(CallbackStatus.FAILED, 8, last_error="HTTP 500"),
        _callback(CallbackStatus.DELIVERED, 3, delivered_at=NOW + timedelta(seconds=9)),
    ):
        assert store.record_callback("alice", job_id, late) is False

    assert store.get("alice", job_id).callback == delivered  # type: ignore[union-attr]


def test_a_callback_never_brings_back_a_missing_deleted_or_expired_job(store: JobStore) -> None:
    for n in (1, 2):
        store.put_new(make_job(n))
    _finish(store, 2, int(time.time()) - 5)  # expired, not deleted yet
    assert store.delete("alice", make_job(1).job_id) is True
    failed = _callback(CallbackStatus.FAILED, 1, last_error="HTTP 410", last_status_code=410)

    assert store.record_callback("alice", make_job(1).job_id, failed) is False
    assert store.record_callback("alice", make_job(2).job_id, failed) is False
    assert store.record_callback("alice", make_job(3).job_id, failed) is False
    assert store.record_callback("bob", make_job(2).job_id, failed) is False

    assert store.get("alice", make_job(1).job_id) is None
    assert store.get("alice", make_job(3).job_id) is None
    assert store.get("bob", make_job(2).job_id) is None
    assert [job.job_id for job in store.list_range("alice", make_job(0).job_id, make_job(9).job_id)] == []


def test_a_callback_write_leaves_no_item_in_dynamodb_for_a_deleted_job(aws: Aws) -> None:
    store = DynamoJobStore(aws.table_name)
    store.put_new(make_job(1))
    store.delete("alice", make_job(1).job_id)

    assert store.record_callback("alice", make_job(1).job_id, _callback(CallbackStatus.FAILED, 1)) is False
    assert aws.item_count() == 0
