"""The Python client against a scripted API (httpx.MockTransport): requests, models, errors, retries, waiting."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from jobs.http import IDEMPOTENCY_KEY_PATTERN
from jobs.models import Job, JobPriority, JobStatus
from jobs_client import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    JobsApiError,
    JobsClient,
    NotFound,
    ReceivedJob,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimedOut,
)
from jobs_client.client import check_idempotency_key, normalise_base_url, parse_retry_after
from tests.client_fakes import JOB_ID, RememberingApi, fake_client, job_body, ok, problem, scripted_client
from tests.helpers import sign

# --- the four routes ---------------------------------------------------------------------------------------------


def test_submit_posts_the_request_and_returns_the_apis_job_model() -> None:
    client, api, _ = scripted_client(ok(job_body(), status=201, headers={"location": f"/api/v1/jobs/{JOB_ID}"}))

    job = client.submit("  Audit ", {"report_type": "quarterly_audit", "complexity_level": 9000}, job_type="report")

    (request,) = api.requests
    assert (request.method, request.url.path) == ("POST", "/api/v1/jobs")
    assert request.headers["authorization"].startswith("Bearer ")
    assert request.headers["content-type"] == "application/json"
    assert api.bodies() == [
        {"title": "Audit", "type": "report", "payload": {"report_type": "quarterly_audit", "complexity_level": 9000}}
    ]
    assert isinstance(job, Job)
    assert (job.job_id, job.status, job.owner_id) == (JOB_ID, JobStatus.QUEUED, "alice")


def test_submit_leaves_the_type_and_payload_to_the_apis_defaults_when_not_given() -> None:
    client, api, _ = scripted_client(ok(job_body(), status=201))

    client.submit("Audit")

    assert api.bodies() == [{"title": "Audit"}]


def test_a_request_that_breaks_the_apis_model_is_refused_before_sending() -> None:
    client, api, _ = scripted_client()

    with pytest.raises(ValidationFailed) as raised:
        client.submit("   ", {"x": float("inf")})

    assert api.requests == []
    assert raised.value.status == 422
    assert {tuple(e["loc"]) for e in raised.value.errors} == {("body", "title"), ("body", "payload")}


def test_get_returns_the_job_with_its_owner_taken_from_the_token() -> None:
    client, api, _ = scripted_client(ok(job_body("SUCCEEDED")), token=sign("bob"))

    job = client.get(JOB_ID)

    assert (api.requests[0].method, api.requests[0].url.path) == ("GET", f"/api/v1/jobs/{JOB_ID}")
    assert job.owner_id == "bob"
    assert job.result == {"report_type": "quarterly_audit", "total_jobs": 1}


def test_a_job_id_is_one_path_segment_whatever_it_holds() -> None:
    client, api, _ = scripted_client(problem(404, "No such job."))

    with pytest.raises(NotFound):
        client.get("../../admin?x=1")

    assert api.requests[0].url.raw_path == b"/api/v1/jobs/..%2F..%2Fadmin%3Fx%3D1"


def test_delete_sends_delete_and_returns_nothing() -> None:
    client, api, _ = scripted_client(httpx.Response(204))

    assert client.delete(JOB_ID) is None  # type: ignore[func-returns-value]
    assert (api.requests[0].method, api.requests[0].url.path) == ("DELETE", f"/api/v1/jobs/{JOB_ID}")


def test_list_follows_next_token_through_every_page() -> None:
    ids = [f"01a226ee-fede-7c74-8f78-00000000000{n}" for n in range(5)]
    client, api, _ = scripted_client(
        ok({"items": [job_body(job_id=i) for i in ids[:2]], "next_token": "t1"}),
        ok({"items": [job_body(job_id=i) for i in ids[2:4]], "next_token": "t2"}),
        ok({"items": [job_body(job_id=ids[4])], "next_token": None}),
    )

    jobs = list(client.list(page_size=2))

    assert [job.job_id for job in jobs] == ids
    assert [dict(r.url.params) for r in api.requests] == [
        {"limit": "2"},
        {"limit": "2", "next_token": "t1"},
        {"limit": "2", "next_token": "t2"},
    ]


def test_list_fetches_a_page_only_when_the_caller_gets_there() -> None:
    client, api, _ = scripted_client(ok({"items": [job_body()], "next_token": "t1"}))

    first = next(client.list())

    assert first.job_id == JOB_ID
    assert len(api.requests) == 1


def test_the_status_filter_is_sent_and_also_applied_to_the_items() -> None:
    # Given an API that ignores ?status= (it does until the API issue adds the filter)
    client, api, _ = scripted_client(
        ok({"items": [job_body("SUCCEEDED", job_id="a"), job_body("FAILED", job_id="b")], "next_token": "t1"}),
        ok({"items": [job_body("FAILED", job_id="c")], "next_token": None}),
    )

    # When the caller lists FAILED jobs
    jobs = list(client.list(status=JobStatus.FAILED))

    # Then the API was asked for FAILED jobs, and only FAILED jobs come back
    assert [job.job_id for job in jobs] == ["b", "c"]
    assert all(r.url.params["status"] == "FAILED" for r in api.requests)


def test_a_next_token_that_repeats_is_refused_instead_of_looping() -> None:
    client, _, _ = scripted_client(
        ok({"items": [], "next_token": "same"}),
        ok({"items": [], "next_token": "same"}),
    )

    with pytest.raises(UnexpectedResponse):
        list(client.list())


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (404, NotFound),
        (415, JobsApiError),
        (422, ValidationFailed),
        (500, ServerError),
    ],
)
def test_problem_json_answers_become_typed_exceptions(status: int, kind: type[JobsApiError]) -> None:
    errors = [{"loc": ["body", "type"], "msg": "unknown job type 'x'", "type": "unknown_job_type"}]
    client, _, _ = scripted_client(problem(status, "Explained.", errors=errors))

    with pytest.raises(JobsApiError) as raised:
        client.get(JOB_ID)

    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.title, raised.value.detail) == (status, "Title", "Explained.")
    assert raised.value.errors == errors


def test_api_gateways_own_error_shape_is_read_too() -> None:
    client, _, _ = scripted_client(ok({"message": "Not Found"}, status=404))

    with pytest.raises(NotFound) as raised:
        client.get(JOB_ID)

    assert (raised.value.title, raised.value.detail) == ("Not Found", "Not Found")


def test_a_success_whose_body_is_not_a_job_is_an_unexpected_response() -> None:
    client, _, _ = scripted_client(ok({"job_id": JOB_ID}), httpx.Response(200, text="<html>"))

    with pytest.raises(UnexpectedResponse):
        client.get(JOB_ID)
    with pytest.raises(UnexpectedResponse):
        client.get(JOB_ID)


# --- retries -----------------------------------------------------------------------------------------------------


def test_a_503_is_retried_no_sooner_than_its_retry_after() -> None:
    client, api, clock = scripted_client(
        problem(503, "Busy.", retry_after="3"),
        problem(503, "Busy."),
        ok(job_body()),
    )

    job = client.get(JOB_ID)

    assert job.job_id == JOB_ID
    assert len(api.requests) == 3
    assert clock.sleeps == [3.0, 1.0]  # Retry-After beats the 0.5 s backoff; then the backoff doubles


def test_a_throttled_request_is_retried() -> None:
    client, api, _ = scripted_client(ok({"message": "Too Many Requests"}, status=429), ok(job_body()))

    client.get(JOB_ID)

    assert len(api.requests) == 2


def test_503s_past_the_last_attempt_raise_service_unavailable() -> None:
    client, api, clock = scripted_client(*[problem(503, "Busy.", retry_after="5")] * 3, retry=RetryPolicy(attempts=3))

    with pytest.raises(ServiceUnavailable) as raised:
        client.submit("Audit")

    assert len(api.requests) == 3
    assert clock.sleeps == [5.0, 5.0]
    assert raised.value.retry_after == 5.0


def test_throttling_past_the_last_attempt_raises_too_many_requests() -> None:
    client, _, _ = scripted_client(*[ok({"message": "Too Many Requests"}, status=429)] * 2, retry=RetryPolicy(2))

    with pytest.raises(TooManyRequests):
        client.get(JOB_ID)


def test_the_backoff_doubles_up_to_its_cap_and_a_huge_retry_after_is_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2, max_delay=4, max_retry_after=30)

    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(0, retry_after=3600) == 30


@pytest.mark.parametrize("method", ["submit", "delete"])
def test_a_refused_connection_is_retried_whatever_the_method(method: str) -> None:
    answer = ok(job_body(), status=201) if method == "submit" else httpx.Response(204)
    client, api, clock = scripted_client(httpx.ConnectError("refused"), answer)

    client.submit("Audit") if method == "submit" else client.delete(JOB_ID)

    assert len(api.requests) == 2
    assert clock.sleeps == [0.5]


def test_a_lost_answer_to_a_delete_is_not_retried() -> None:
    # Given a DELETE that may have removed the job before the answer was lost
    client, api, _ = scripted_client(httpx.ReadTimeout("slow"), httpx.Response(204))

    # Then it is not sent again: the repeat would answer 404 for a delete that worked
    with pytest.raises(ConnectionFailed):
        client.delete(JOB_ID)
    assert len(api.requests) == 1


def test_a_lost_answer_to_a_get_is_retried() -> None:
    client, api, _ = scripted_client(httpx.ReadTimeout("slow"), ok(job_body()))

    assert client.get(JOB_ID).job_id == JOB_ID
    assert len(api.requests) == 2


def test_an_api_that_stays_unreachable_is_a_connection_failure() -> None:
    client, api, _ = scripted_client(*[httpx.ConnectError("refused")] * 5)

    with pytest.raises(ConnectionFailed):
        client.get(JOB_ID)
    assert len(api.requests) == 5


# --- submitting once: the Idempotency-Key ----------------------------------------------------------------------


def test_a_submit_answered_503_after_its_write_gets_the_first_job_on_retry() -> None:
    # Given an API that writes the job, then answers 503 (a timeout after the write landed)
    api = RememberingApi(faults=[503])
    client, clock = fake_client(api)

    # When the client submits
    job = client.submit("Audit", {"report_type": "quarterly_audit"})

    # Then its retry carried the same key and got the first job: one job exists
    assert len(api.jobs) == 1
    assert job.job_id == api.jobs[0]["job_id"]
    assert len(api.keys) == 2
    assert api.keys[0] is not None
    assert api.keys[1] == api.keys[0]
    assert clock.sleeps == [1.0]


def test_a_submit_whose_answer_was_lost_is_retried_with_the_same_key() -> None:
    # Given an API that writes the job, then the answer never arrives
    api = RememberingApi(faults=[httpx.ReadTimeout("slow")])
    client, _ = fake_client(api)

    # When the client submits
    job = client.submit("Audit")

    # Then it asked again with the same key and got the job the first try wrote
    assert len(api.jobs) == 1
    assert job.job_id == api.jobs[0]["job_id"]
    assert len(api.keys) == 2
    assert api.keys[0] is not None
    assert api.keys[1] == api.keys[0]


@pytest.mark.parametrize("lost", [httpx.ReadError("reset"), httpx.RemoteProtocolError("closed without an answer")])
def test_a_connection_dropped_after_sending_a_submit_is_retried(lost: Exception) -> None:
    api = RememberingApi(faults=[lost])
    client, _ = fake_client(api)

    client.submit("Audit")

    assert len(api.jobs) == 1
    assert len(set(api.keys)) == 1
    assert len(api.keys) == 2


def test_two_submits_send_two_different_generated_keys() -> None:
    api = RememberingApi()
    client, _ = fake_client(api)

    first = client.submit("Audit")
    second = client.submit("Audit")

    assert first.job_id != second.job_id
    assert len(api.jobs) == 2
    for key in api.keys:
        assert key is not None
        assert str(uuid.UUID(key)) == key  # a UUID in its canonical text
        assert uuid.UUID(key).version == 4
    assert api.keys[0] != api.keys[1]


def test_a_key_given_by_the_caller_is_sent_as_given() -> None:
    client, api, _ = scripted_client(ok(job_body(), status=201))

    client.submit("Audit", idempotency_key="order-42:2026-11-29")

    assert api.requests[0].headers["idempotency-key"] == "order-42:2026-11-29"


def test_a_callers_key_makes_its_own_repeat_return_the_first_job() -> None:
    api = RememberingApi()
    client, _ = fake_client(api)

    first = client.submit("Audit", idempotency_key="order-42")
    again = client.submit("Audit", idempotency_key="order-42")

    assert again.job_id == first.job_id
    assert len(api.jobs) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "two words", " padded", "tab\t", "new\nline", "caf\u00e9"])
def test_a_key_that_breaks_the_apis_rule_is_refused_before_sending(key: str) -> None:
    client, api, _ = scripted_client()

    with pytest.raises(ValidationFailed) as raised:
        client.submit("Audit", idempotency_key=key)

    assert api.requests == []
    assert [e["loc"] for e in raised.value.errors] == [["header", "idempotency-key"]]


@pytest.mark.parametrize("key", ["a", "x" * 255, "~!{}", "x" * 256, "", "a b", "\u00e9", "\x7f"])
def test_the_clients_key_rule_is_the_apis(key: str) -> None:
    api_accepts = re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is not None

    try:
        check_idempotency_key(key)
    except ValidationFailed:
        client_accepts = False
    else:
        client_accepts = True

    assert client_accepts == api_accepts


def test_a_submit_whose_key_is_in_progress_is_retried_after_retry_after() -> None:
    # Given an API still working on the first request with this key
    client, api, clock = scripted_client(problem(409, "In progress.", retry_after="2"), ok(job_body(), status=201))

    # When the client submits
    job = client.submit("Audit")

    # Then it waited the Retry-After and asked again with the same key
    assert job.job_id == JOB_ID
    assert clock.sleeps == [2.0]
    assert len(api.requests) == 2
    assert api.requests[0].headers["idempotency-key"] == api.requests[1].headers["idempotency-key"]


def test_a_key_still_in_progress_after_the_last_attempt_raises_conflict() -> None:
    client, api, _ = scripted_client(*[problem(409, "In progress.", retry_after="1")] * 2, retry=RetryPolicy(2))

    with pytest.raises(Conflict) as raised:
        client.submit("Audit")

    assert raised.value.retry_after == 1.0
    assert len(api.requests) == 2


def test_a_409_to_a_request_without_a_key_is_not_retried() -> None:
    client, api, _ = scripted_client(problem(409, "Conflict."), httpx.Response(204))

    with pytest.raises(Conflict):
        client.delete(JOB_ID)
    assert len(api.requests) == 1


def test_the_same_key_with_another_body_is_refused_and_not_retried() -> None:
    api = RememberingApi()
    client, _ = fake_client(api)
    client.submit("Audit", idempotency_key="order-42")

    with pytest.raises(ValidationFailed):
        client.submit("Another audit", idempotency_key="order-42")

    assert len(api.keys) == 2
    assert len(api.jobs) == 1


# --- waiting -----------------------------------------------------------------------------------------------------


def test_wait_polls_with_backoff_until_the_job_finishes() -> None:
    client, api, clock = scripted_client(
        ok(job_body("QUEUED")), ok(job_body("RUNNING")), ok(job_body("RUNNING")), ok(job_body("SUCCEEDED"))
    )
    seen: list[JobStatus] = []

    job = client.wait(JOB_ID, timeout=30, on_poll=lambda current: seen.append(current.status))

    assert job.status == JobStatus.SUCCEEDED
    assert seen == ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45])
    assert len(api.requests) == 4


def test_wait_honours_a_retry_after_on_the_jobs_answer() -> None:
    client, _, clock = scripted_client(ok(job_body("RUNNING"), headers={"Retry-After": "2"}), ok(job_body("FAILED")))

    client.wait(JOB_ID, timeout=30)

    assert clock.sleeps == [2.0]


def test_wait_returns_a_failed_job_with_its_error() -> None:
    client, _, _ = scripted_client(ok(job_body("FAILED")))

    job = client.wait(JOB_ID)

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error.message == "it broke"


def test_wait_gives_up_at_the_deadline_after_a_last_look() -> None:
    client, api, clock = scripted_client(*[ok(job_body("RUNNING"))] * 10)

    with pytest.raises(WaitTimedOut) as raised:
        client.wait(JOB_ID, timeout=1)

    assert raised.value.job.status == JobStatus.RUNNING
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45, 0.05])  # the last cut to the deadline, then one more poll
    assert len(api.requests) == len(clock.sleeps) + 1


def test_waiting_for_a_job_that_is_gone_is_not_found() -> None:
    client, _, _ = scripted_client(ok(job_body("RUNNING")), problem(404, "No such job."))

    with pytest.raises(NotFound):
        client.wait(JOB_ID)


# --- configuration -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3000", "http://127.0.0.1:3000/", "http://127.0.0.1:3000/api/v1/jobs/"]
)
def test_the_api_url_may_be_the_base_or_the_jobs_collection(url: str) -> None:
    assert normalise_base_url(url) == "http://127.0.0.1:3000"


def test_an_api_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        JobsClient("127.0.0.1:3000")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        ("Sun, 29 Nov 2026 10:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 09:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=datetime(2026, 11, 29, 10, 0, tzinfo=UTC)) == seconds


def test_a_token_that_is_not_a_jwt_leaves_the_owner_empty_and_is_still_sent() -> None:
    client, api, _ = scripted_client(ok(job_body()), token="opaque")

    assert client.get(JOB_ID).owner_id == ""
    assert api.requests[0].headers["authorization"] == "Bearer opaque"


def test_wait_reads_a_status_it_does_not_know_and_stops_once_that_job_has_finished_at() -> None:
    finished = ok(job_body("ARCHIVED", finished_at="2026-11-29T10:52:08.000Z"))
    client, api, _ = scripted_client(ok(job_body("PAUSED")), ok(job_body("PAUSED")), finished)
    seen: list[str] = []

    job = client.wait(JOB_ID, timeout=30, on_poll=lambda current: seen.append(current.status.value))

    assert seen == ["PAUSED", "PAUSED", "ARCHIVED"]
    assert job.status == "ARCHIVED"
    assert job.is_finished
    assert len(api.requests) == 3


def test_a_listed_job_in_a_status_the_client_does_not_know_is_read() -> None:
    client, _, _ = scripted_client(ok({"items": [job_body("PAUSED"), job_body("QUEUED")], "next_token": None}))

    assert [job.status.value for job in client.list()] == ["PAUSED", "QUEUED"]


def test_cancel_posts_to_the_jobs_cancel_route_and_returns_the_job() -> None:
    client, api, _ = scripted_client(ok(job_body("CANCELLED", finished_at="2026-11-29T10:52:07.000Z")))

    job = client.cancel(JOB_ID)

    (request,) = api.requests
    assert (request.method, request.url.path) == ("POST", f"/api/v1/jobs/{JOB_ID}/cancel")
    assert job.status == JobStatus.CANCELLED
    assert job.is_finished


def test_cancelling_a_finished_job_is_a_conflict() -> None:
    client, _, _ = scripted_client(problem(409, "The job is SUCCEEDED: only a QUEUED or RUNNING job can be cancelled."))

    with pytest.raises(Conflict) as raised:
        client.cancel(JOB_ID)

    assert "SUCCEEDED" in raised.value.detail


# --- priority and not_before (issue 15) ------------------------------------------------------------------------


def test_submit_sends_the_priority_and_not_before_in_utc_with_milliseconds() -> None:
    scheduled = job_body(priority="HIGH", not_before="2026-12-01T09:00:00.000Z")
    client, api, _ = scripted_client(ok(scheduled, status=201))
    in_paris = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))

    job = client.submit("Audit", priority=JobPriority.HIGH, not_before=in_paris)

    assert api.bodies() == [{"title": "Audit", "priority": "HIGH", "not_before": "2026-12-01T09:00:00.123Z"}]
    assert (job.priority, job.not_before) == (JobPriority.HIGH, datetime(2026, 12, 1, 9, tzinfo=UTC))


def test_submit_takes_the_priority_by_name_and_not_before_as_rfc_3339_text() -> None:
    client, api, _ = scripted_client(ok(job_body(priority="LOW"), status=201))

    client.submit("Audit", priority="LOW", not_before="2026-12-01T10:00:00+01:00")

    assert api.bodies() == [{"title": "Audit", "priority": "LOW", "not_before": "2026-12-01T09:00:00.000Z"}]


def test_a_naive_not_before_is_refused_before_sending() -> None:
    client, api, _ = scripted_client()

    with pytest.raises(ValidationFailed) as raised:
        client.submit("Audit", not_before=datetime(2026, 12, 1, 9))

    assert api.requests == []
    (error,) = raised.value.errors
    assert error["loc"] == ["body", "not_before"]
    assert "naive datetime" in error["msg"]
    assert "timezone" in error["msg"]


def test_a_not_before_outside_years_1_to_9999_in_utc_is_refused_before_sending() -> None:
    client, api, _ = scripted_client()

    with pytest.raises(ValidationFailed) as raised:
        client.submit("Audit", not_before=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))

    assert api.requests == []
    assert [error["loc"] for error in raised.value.errors] == [["body", "not_before"]]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"priority": "URGENT"}, "priority"),  # a level this client does not know is never sent
        ({"priority": "high"}, "priority"),
        ({"not_before": "2026-12-01T09:00:00"}, "not_before"),  # no offset
        ({"not_before": "2026-12-01"}, "not_before"),
        ({"not_before": "in ten minutes"}, "not_before"),
    ],
)
def test_a_priority_or_not_before_the_api_would_refuse_is_refused_before_sending(
    fields: dict[str, str], where: str
) -> None:
    client, api, _ = scripted_client()

    with pytest.raises(ValidationFailed) as raised:
        client.submit("Audit", **fields)  # type: ignore[arg-type]

    assert api.requests == []
    assert [e["loc"][:2] for e in raised.value.errors] == [["body", where]]


def test_a_newer_apis_job_is_read_with_its_unknown_priority_and_fields_kept_as_sent() -> None:
    newer = job_body(priority="URGENT", not_before=None, region="eu-west-1", status="PAUSED")
    client, _, _ = scripted_client(ok(newer))

    job = client.get(JOB_ID)

    assert isinstance(job, ReceivedJob)
    assert (job.priority.value, job.priority.is_known, job.status.value) == ("URGENT", False, "PAUSED")
    assert job.sent == newer  # the field this version does not know included


def test_an_older_apis_job_reads_as_normal_and_unscheduled() -> None:
    client, _, _ = scripted_client(ok(job_body()))  # job_body has neither priority nor not_before

    job = client.get(JOB_ID)

    assert (job.priority, job.not_before) == (JobPriority.NORMAL, None)
    assert job.sent == job_body()


def test_list_keeps_each_jobs_body_as_sent() -> None:
    items = [job_body(job_id="a", priority="HIGH"), job_body(job_id="b", extra={"x": 1})]
    client, _, _ = scripted_client(ok({"items": items, "next_token": None}))

    jobs = list(client.list())

    assert [job.sent for job in jobs if isinstance(job, ReceivedJob)] == items


def test_a_high_job_without_the_scope_is_forbidden() -> None:
    client, _, _ = scripted_client(problem(403, "A HIGH job needs the scope jobs/priority.high in the token."))

    with pytest.raises(Forbidden) as raised:
        client.submit("Audit", priority="HIGH")

    assert raised.value.status == 403
    assert "jobs/priority.high" in raised.value.detail


def test_submit_sends_the_callback_url_and_reads_the_callback_state() -> None:
    url = "https://hooks.example.com/jobs?token=abc"
    sent = job_body(callback_url=url, callback={"status": "PENDING", "attempts": 0})
    client, api, _ = scripted_client(ok(sent, status=201))

    job = client.submit("Audit", callback_url=url)

    assert api.bodies() == [{"title": "Audit", "callback_url": url}]
    assert job.callback_url == url
    assert job.callback is not None
    assert (job.callback.status, job.callback.attempts) == ("PENDING", 0)


def test_a_callback_status_added_later_is_read_not_refused() -> None:
    client, _, _ = scripted_client(
        ok(job_body(callback_url="https://h.example/", callback={"status": "PAUSED", "attempts": 2}), status=201)
    )

    job = client.submit("Audit", callback_url="https://h.example/")

    assert job.callback is not None
    assert (job.callback.status.value, job.callback.status.is_known) == ("PAUSED", False)
