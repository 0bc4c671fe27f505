"""GET /api/v1/jobs through the API handler under moto: paging, page tokens and the status filter."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api.lambda_handler(event, FakeLambdaContext())
    body = response.get("body")
    return response["statusCode"], response.get("headers", {}), json.loads(body) if body else None


def create(api: ModuleType, sub: str, title: str = "job") -> str:
    status, _, job = call(api, api_event("create_job", token=sign(sub), body={"title": title, "type": "noop"}))
    assert status == 201
    return str(job["job_id"])


def listing(api: ModuleType, sub: str, **query: str) -> tuple[int, Any]:
    status, _, body = call(api, api_event("list_jobs", token=sign(sub), query=query))
    return status, body


def walk(api: ModuleType, sub: str, **query: str) -> list[list[str]]:
    """Every page of a listing, following next_token until it is null."""
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        status, body = listing(api, sub, **query, **({"next_token": token} if token else {}))
        assert status == 200, body
        pages.append([job["job_id"] for job in body["items"]])
        token = body["next_token"]
        if token is None:
            return pages
        assert len(pages) < 50, "the walk does not stop"


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8, 100])
def test_walking_every_page_returns_each_job_once_newest_first_and_stops(api: ModuleType, limit: int) -> None:
    alice = [create(api, "alice", f"a{n}") for n in range(7)]
    create(api, "bob", "b")

    pages = walk(api, "alice", limit=str(limit))

    assert [job for page in pages for job in page] == alice[::-1]
    assert all(pages), "no page is empty"
    assert all(len(page) == limit for page in pages[:-1])


def test_the_default_page_holds_twenty_jobs(api: ModuleType) -> None:
    for n in range(21):
        create(api, "alice", f"a{n}")

    status, body = listing(api, "alice")

    assert status == 200
    assert len(body["items"]) == 20
    assert body["next_token"] is not None


def test_another_owners_page_token_is_a_400_not_their_jobs(api: ModuleType) -> None:
    for n in range(3):
        create(api, "alice", f"a{n}")
    create(api, "bob", "b")
    _, first = listing(api, "alice", limit="1")

    status, body = listing(api, "bob", limit="1", next_token=first["next_token"])

    assert status == 400
    assert body["detail"] == "next_token is not valid."


@pytest.mark.parametrize("token", ["garbage", "", "e30", "x" * 2000, "%00", "eyJ2IjoxfQ"])
def test_a_garbage_page_token_is_a_400_problem(api: ModuleType, token: str) -> None:
    status, headers, body = call(api, api_event("list_jobs", token=sign("alice"), query={"next_token": token}))

    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == 400


def test_a_tampered_page_token_is_a_400(api: ModuleType) -> None:
    for n in range(3):
        create(api, "alice", f"a{n}")
    _, first = listing(api, "alice", limit="1")
    token = first["next_token"]
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]

    assert listing(api, "alice", limit="1", next_token=flipped)[0] == 400
    assert listing(api, "alice", limit="1", next_token=token)[0] == 200


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
def test_a_limit_outside_1_to_100_is_a_422(api: ModuleType, limit: str) -> None:
    assert listing(api, "alice", limit=limit)[0] == 422


def _start(job_id: str, owner: str = "alice") -> None:
    from jobs import bootstrap

    bootstrap.api_service().store.start(owner, job_id, now_text="2026-11-29T10:00:00.000Z", stale_before_text="")


def test_the_status_filter_lists_only_that_status_across_pages(api: ModuleType) -> None:
    ids = [create(api, "alice", f"a{n}") for n in range(6)]
    for job_id in ids[1::2]:
        _start(job_id)
    create(api, "bob", "b")

    queued = walk(api, "alice", status="QUEUED", limit="2")
    running = walk(api, "alice", status="RUNNING", limit="2")

    assert queued == [[ids[4], ids[2]], [ids[0]]]
    assert running == [[ids[5], ids[3]], [ids[1]]]
    assert walk(api, "alice", status="SUCCEEDED") == [[]]
    assert walk(api, "bob", status="RUNNING") == [[]]


def test_every_listed_job_has_the_status_asked_for(api: ModuleType) -> None:
    for n in range(3):
        _start(create(api, "alice", f"a{n}"))
    create(api, "alice", "queued")

    status, body = listing(api, "alice", status="RUNNING")

    assert status == 200
    assert {job["status"] for job in body["items"]} == {"RUNNING"}
    assert len(body["items"]) == 3


@pytest.mark.parametrize("value", ["queued", "DONE", "", "QUEUED,RUNNING"])
def test_an_unknown_status_is_a_422(api: ModuleType, value: str) -> None:
    assert listing(api, "alice", status=value)[0] == 422


def test_a_page_token_only_continues_the_query_that_issued_it(api: ModuleType) -> None:
    for n in range(3):
        create(api, "alice", f"a{n}")
    _, filtered = listing(api, "alice", status="QUEUED", limit="1")
    _, unfiltered = listing(api, "alice", limit="1")

    assert listing(api, "alice", limit="1", next_token=filtered["next_token"])[0] == 400
    assert listing(api, "alice", status="FAILED", limit="1", next_token=filtered["next_token"])[0] == 400
    assert listing(api, "alice", status="QUEUED", limit="1", next_token=unfiltered["next_token"])[0] == 400
    assert listing(api, "alice", status="QUEUED", limit="1", next_token=filtered["next_token"])[0] == 200


def test_an_expired_job_never_appears_in_a_response(api: ModuleType, aws: Aws) -> None:
    kept, expired = create(api, "alice", "kept"), create(api, "alice", "expired")
    aws.dynamodb.update_item(
        TableName=aws.table_name,
        Key={"owner_id": {"S": "alice"}, "job_id": {"S": expired}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1000000000"}},
    )

    got = call(api, api_event("get_job", token=sign("alice"), job_id=expired))
    deleted = call(api, api_event("delete_job", token=sign("alice"), job_id=expired))

    assert walk(api, "alice") == [[kept]]
    assert walk(api, "alice", status="QUEUED") == [[kept]]
    assert (got[0], deleted[0]) == (404, 404)
    assert got[2] == call(api, api_event("get_job", token=sign("alice"), job_id=kept[:-4] + "0000"))[2]


#: Payload characters whose escapes cost the most in the serialised response (see tests/unit/test_response_sizes.py).
_COSTLY = ['"', "\\", "\t", "é", "中", "😀", "a"]


def test_a_hundred_jobs_of_64_kib_walk_in_pages_that_each_fit_lambdas_response_limit(api: ModuleType) -> None:
    from jobs.models import MAX_PAYLOAD_BYTES, json_bytes
    from jobs.service import LAMBDA_RESPONSE_LIMIT_BYTES

    created = []
    for n in range(100):
        character = _COSTLY[n % len(_COSTLY)]
        payload = {"x": character * ((MAX_PAYLOAD_BYTES - 8) // (json_bytes(character) - 2))}
        event = api_event(
            "create_job", token=sign("alice"), body={"title": f"j{n}", "type": "noop", "payload": payload}
        )
        status, _, job = call(api, event)
        assert status == 201, job
        created.append(job["job_id"])

    sizes: list[int] = []
    listed: list[str] = []
    token: str | None = None
    while True:
        query = {"limit": "100", **({"next_token": token} if token else {})}
        response = api.lambda_handler(api_event("list_jobs", token=sign("alice"), query=query), FakeLambdaContext())
        sizes.append(len(json.dumps(response).encode()))  # as the runtime serialises it, non-ASCII escaped
        body = json.loads(response["body"])
        listed.extend(job["job_id"] for job in body["items"])
        token = body["next_token"]
        if token is None:
            break

    assert listed == created[::-1]
    assert len(sizes) > 1
    assert max(sizes) <= LAMBDA_RESPONSE_LIMIT_BYTES, sizes
    print(f"pages: {len(sizes)}, bytes: {sizes}")
