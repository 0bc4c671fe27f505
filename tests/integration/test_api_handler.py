"""The API function's handler, called with the events in events/api, against moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_event, load_function, sign

SEED = load_event("seed-payload.json")


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api.lambda_handler(event, FakeLambdaContext())
    body = response.get("body")
    return response["statusCode"], response.get("headers", {}), json.loads(body) if body else None


def create(api: ModuleType, sub: str = "alice", body: Any = SEED) -> dict[str, Any]:
    status, _, job = call(api, api_event("create_job", token=sign(sub), body=body))
    assert status == 201
    return job  # type: ignore[no-any-return]


def test_the_sample_create_event_creates_one_queued_job_with_one_write(api: ModuleType, aws: Aws) -> None:
    event = api_event("create_job", token=sign("alice"))  # the file's own body

    status, headers, job = call(api, event)

    assert status == 201
    assert headers["Location"] == f"/api/v1/jobs/{job['job_id']}"
    assert headers["Content-Type"] == "application/json"
    assert job["status"] == "QUEUED"
    assert job["payload"] == SEED["payload"]
    assert job["payload"]["complexity_level"] == 9000
    assert aws.item_count() == 1
    assert aws.messages() == []  # the table's stream (the outbox) sends the message, not the API


def test_a_created_job_is_visible_at_once_to_get_and_list(api: ModuleType) -> None:
    job = create(api)

    got = call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))
    listed = call(api, api_event("list_jobs", token=sign("alice")))

    assert got[0] == 200
    assert got[2] == job
    assert listed[0] == 200
    assert listed[2] == {"items": [job], "next_token": None}


def test_payload_numbers_come_back_as_sent(api: ModuleType) -> None:
    raw = '{"title": "numbers", "type": "noop", "payload": {"int": 9000, "float": 0.1, "neg": -2.5e-3}}'
    status, _, job = call(api, api_event("create_job", token=sign("alice"), raw_body=raw))

    _, _, got = call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))

    assert status == 201
    assert json.dumps(got["payload"]) == '{"int": 9000, "float": 0.1, "neg": -0.0025}'


def test_the_list_holds_only_the_callers_jobs_newest_first(api: ModuleType) -> None:
    first = create(api, "alice")
    create(api, "bob")
    second = create(api, "alice")

    _, _, page = call(api, api_event("list_jobs", token=sign("alice")))

    assert [job["job_id"] for job in page["items"]] == [second["job_id"], first["job_id"]]


def test_the_list_pages_with_limit_and_next_token(api: ModuleType) -> None:
    ids = [create(api)["job_id"] for _ in range(3)]

    _, _, first = call(api, api_event("list_jobs", token=sign("alice"), query={"limit": "2"}))
    _, _, second = call(
        api, api_event("list_jobs", token=sign("alice"), query={"limit": "2", "next_token": first["next_token"]})
    )

    assert [j["job_id"] for j in first["items"] + second["items"]] == ids[::-1]
    assert second["next_token"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [({"limit": "0"}, 422), ({"limit": "101"}, 422), ({"limit": "ten"}, 422), ({"next_token": "garbage"}, 400)],
)
def test_bad_list_parameters_are_client_errors(api: ModuleType, query: dict[str, str], status: int) -> None:
    code, headers, body = call(api, api_event("list_jobs", token=sign("alice"), query=query))

    assert code == status
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == status


def test_another_users_job_is_indistinguishable_from_a_missing_one(api: ModuleType, aws: Aws) -> None:
    job = create(api, "alice")

    foreign = call(api, api_event("get_job", token=sign("bob"), job_id=job["job_id"]))
    missing = call(api, api_event("get_job", token=sign("bob"), job_id="01a226ee-fede-7c74-8f78-000000000000"))
    delete = call(api, api_event("delete_job", token=sign("bob"), job_id=job["job_id"]))

    assert foreign[0] == missing[0] == delete[0] == 404
    assert foreign[2] == missing[2] == delete[2]
    assert foreign[1]["Content-Type"] == "application/problem+json"
    assert call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))[2] == job


def test_delete_removes_the_job_and_logs_it(api: ModuleType, aws: Aws, caplog: pytest.LogCaptureFixture) -> None:
    job = create(api)

    status, _, body = call(api, api_event("delete_job", token=sign("alice"), job_id=job["job_id"]))

    assert (status, body) == (204, None)
    assert call(api, api_event("get_job", token=sign("alice"), job_id=job["job_id"]))[0] == 404
    assert call(api, api_event("delete_job", token=sign("alice"), job_id=job["job_id"]))[0] == 404
    assert aws.item_count() == 0
    assert (
        f"\N{WHITE MEDIUM STAR} Chuck Norris Success: Job {job['job_id']} was successfully hit and removed"
        in caplog.text
    )


def test_the_list_is_logged_with_its_count(api: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    create(api)
    create(api)

    call(api, api_event("list_jobs", token=sign("alice")))

    assert "\N{WHITE MEDIUM STAR} Chuck Norris List Job: Retrieved 2 job(s) for user alice" in caplog.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (None, 422),
        ("", 422),
        ("null", 422),
        ("[]", 422),
        ('["title"]', 422),
        ("{bad json", 400),
        ('{"title": 5}', 422),
        ('{"title": "x", "payload": []}', 422),
        ('{"title": "x", "surprise": true}', 422),
        ('{"title": "x", "type": "roundhouse"}', 422),
        ('{"title": "x", "payload": {"report_type": "annual"}}', 422),
        ('{"title": "x", "payload": {"n": NaN}}', 422),
        ('{"title": "x", "payload": {"n": Infinity}}', 422),
        ('"just a string"', 422),
    ],
)
def test_malformed_bodies_are_4xx_problems_and_write_nothing(
    api: ModuleType, aws: Aws, raw: str | None, status: int
) -> None:
    event = api_event("create_job", token=sign("alice"))
    event["body"] = raw

    code, headers, body = call(api, event)

    assert code == status
    assert headers["Content-Type"] == "application/problem+json"
    assert set(body) >= {"type", "title", "status", "detail"}
    assert "Traceback" not in json.dumps(body)
    assert aws.item_count() == 0
    assert aws.messages() == []


def test_validation_errors_name_the_offending_fields(api: ModuleType) -> None:
    _, _, body = call(api, api_event("create_job", token=sign("alice"), body={"title": 5, "surprise": 1}))

    assert {tuple(error["loc"]) for error in body["errors"]} == {("body", "title"), ("body", "surprise")}


def test_a_non_json_content_type_is_unsupported(api: ModuleType, aws: Aws) -> None:
    event = api_event("create_job", token=sign("alice"), raw_body="title=x")
    event["headers"]["content-type"] = "application/x-www-form-urlencoded"

    status, _, _ = call(api, event)

    assert status == 415
    assert aws.item_count() == 0


@pytest.mark.parametrize("route", ["create_job", "list_jobs", "get_job", "delete_job"])
@pytest.mark.parametrize(
    ("token", "challenge"),
    [
        (None, 'Bearer realm="jobs"'),
        ("not-a-jwt", 'Bearer realm="jobs", error="invalid_token"'),
        (
            sign("alice", secret="someone-elses-secret-that-is-also-long-enough-0123"),
            'Bearer realm="jobs", error="invalid_token"',
        ),
    ],
)
def test_every_route_refuses_missing_or_bad_tokens(
    api: ModuleType, aws: Aws, route: str, token: str | None, challenge: str
) -> None:
    event = api_event(route, token=token, raw_body="{bad json" if route == "create_job" else None)

    status, headers, body = call(api, event)

    assert status == 401
    assert headers["WWW-Authenticate"] == challenge
    assert body == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "A valid bearer token is required.",
    }
    assert aws.item_count() == 0


def test_no_token_or_secret_reaches_the_logs(api: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    token = sign("alice")
    bad = sign("mallory", secret="forged-secret-forged-secret-forged-secret-0123456")

    call(api, api_event("create_job", token=token, body=SEED))
    call(api, api_event("list_jobs", token=bad))

    assert token not in caplog.text
    assert bad not in caplog.text
    assert "test-secret" not in caplog.text
    assert "User alice authenticated successfully" in caplog.text


def test_a_throttled_table_is_a_503_with_retry_after(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from jobs import bootstrap

    def throttled(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "GetItem"
        )

    monkeypatch.setattr(bootstrap.api_service().store.client, "get_item", throttled)  # type: ignore[attr-defined]

    status, headers, body = call(api, api_event("get_job", token=sign("alice")))

    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "slow down" not in json.dumps(body)


def test_an_unreadable_secret_is_a_503_not_access(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/no-such-parameter")

    status, headers, _ = call(api, api_event("list_jobs", token=sign("alice")))

    assert status == 503
    assert "Retry-After" in headers
