"""The README's curl scenario over HTTP against the local stack (moto server, gateway, worker processes, poller)."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from tests.e2e.support import SECRET, RunningStack, token
from tests.helpers import load_event, sign

pytestmark = pytest.mark.e2e

SEED = load_event("seed-payload.json")


def test_the_seed_job_runs_to_succeeded_within_five_seconds(stack: RunningStack) -> None:
    created = stack.request("POST", "/api/v1/jobs", token=token("alice"), body=SEED)

    assert created.status == 201
    job = created.body
    assert created.headers["location"] == f"/api/v1/jobs/{job['job_id']}"
    assert job["status"] == "QUEUED"
    assert job["payload"] == SEED["payload"]

    deadline = time.monotonic() + 5
    while True:
        current = stack.request("GET", f"/api/v1/jobs/{job['job_id']}", token=token("alice")).body
        if current["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert current["status"] == "SUCCEEDED"
    assert current["result"]["report_type"] == "quarterly_audit"
    assert current["result"]["requested"] == {
        "target_user_ids": SEED["payload"]["target_user_ids"],
        "complexity_level": 9000,
        "priority": "HIGH",
    }
    assert current["attempts"] == 1


def test_owners_see_only_their_own_jobs(stack: RunningStack) -> None:
    first = stack.request("POST", "/api/v1/jobs", token=token("carol"), body={"title": "one", "type": "noop"}).body
    stack.request("POST", "/api/v1/jobs", token=token("dave"), body={"title": "dave's", "type": "noop"})
    second = stack.request("POST", "/api/v1/jobs", token=token("carol"), body={"title": "two", "type": "noop"}).body

    listed = stack.request("GET", "/api/v1/jobs", token=token("carol"))

    assert listed.status == 200
    assert [job["job_id"] for job in listed.body["items"]] == [second["job_id"], first["job_id"]]


def test_another_user_cannot_read_or_delete_a_job(stack: RunningStack) -> None:
    job = stack.request("POST", "/api/v1/jobs", token=token("alice"), body=SEED).body
    path = f"/api/v1/jobs/{job['job_id']}"

    foreign = stack.request("GET", path, token=token("bob"))
    never = stack.request("GET", "/api/v1/jobs/01a226ee-fede-7c74-8f78-000000000000", token=token("bob"))
    foreign_delete = stack.request("DELETE", path, token=token("bob"))

    assert foreign.status == never.status == foreign_delete.status == 404
    assert foreign.body == never.body == foreign_delete.body
    assert foreign.headers["content-type"] == "application/problem+json"
    assert stack.request("GET", path, token=token("alice")).status == 200


def test_the_owner_deletes_a_job(stack: RunningStack) -> None:
    job = stack.request("POST", "/api/v1/jobs", token=token("alice"), body={"title": "bye", "type": "noop"}).body
    path = f"/api/v1/jobs/{job['job_id']}"

    deleted = stack.request("DELETE", path, token=token("alice"))

    assert (deleted.status, deleted.body) == (204, None)
    assert stack.request("GET", path, token=token("alice")).status == 404
    assert f"Chuck Norris Success: Job {job['job_id']} was successfully hit and removed" in stack.logs()


@pytest.mark.parametrize("bad", [None, "garbage", sign("alice", secret="wrong-secret-wrong-secret-wrong-secret-01")])
def test_requests_without_a_valid_token_are_401(stack: RunningStack, bad: str | None) -> None:
    reply = stack.request("GET", "/api/v1/jobs", token=bad)

    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_a_malformed_body_is_a_client_error(stack: RunningStack) -> None:
    reply = stack.request("POST", "/api/v1/jobs", token=token("erin"), body=["not", "an", "object"])

    assert reply.status == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert stack.request("GET", "/api/v1/jobs", token=token("erin")).body["items"] == []


def test_an_unknown_route_is_api_gateways_404(stack: RunningStack) -> None:
    reply = stack.request("GET", "/api/v2/nothing", token=token("alice"))

    assert (reply.status, reply.body) == (404, {"message": "Not Found"})


def test_function_logs_are_json_with_the_expected_lines_and_no_token(stack: RunningStack) -> None:
    secret_token = token("frank")
    stack.request("GET", "/api/v1/jobs", token=secret_token)

    logs = stack.logs()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]

    assert any(r.get("message") == "User frank authenticated successfully" for r in records)
    assert any(
        r.get("message") == "\N{WHITE MEDIUM STAR} Chuck Norris List Job: Retrieved 0 job(s) for user frank"
        for r in records
    )
    assert {r.get("function_name") for r in records if "function_name" in r} >= {"ApiFunction", "ProcessJobsFunction"}
    assert secret_token not in logs
    assert SECRET not in logs


def raw(stack: RunningStack, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A request with exactly ``headers`` (urllib adds none of its own that matter here)."""
    host, port = stack.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_preflight_needs_no_token_and_says_what_is_allowed(stack: RunningStack) -> None:
    status, headers, body = raw(
        stack,
        "OPTIONS",
        "/api/v1/jobs",
        {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )

    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"].split(",")
    assert set(headers["access-control-allow-headers"].split(",")) >= {"authorization", "idempotency-key"}


def test_error_responses_carry_the_cors_headers(stack: RunningStack) -> None:
    status, headers, _ = raw(stack, "GET", "/api/v1/jobs", {"Origin": "https://app.example.com"})

    assert status == 401
    assert headers["access-control-allow-origin"] == "*"
    assert "www-authenticate" in headers["access-control-expose-headers"].split(",")


def test_the_api_description_is_public(stack: RunningStack) -> None:
    spec_status, _, spec = raw(stack, "GET", "/api/v1/openapi.json", {})
    docs_status, docs_headers, docs = raw(stack, "GET", "/api/v1/docs", {})

    assert (spec_status, docs_status) == (200, 200)
    assert json.loads(spec)["openapi"] == "3.1.0"
    assert docs_headers["content-type"] == "text/html"
    assert b"SwaggerUIBundle" in docs


def test_two_authorization_headers_or_a_token_in_the_query_are_401(stack: RunningStack) -> None:
    host, port = stack.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    connection.putrequest("GET", "/api/v1/jobs")
    connection.putheader("Authorization", f"Bearer {token('alice')}")
    connection.putheader("Authorization", f"Bearer {token('bob')}")
    connection.endheaders()
    doubled = connection.getresponse().status
    connection.close()
    in_query = raw(stack, "GET", f"/api/v1/jobs?access_token={token('alice')}", {})[0]

    assert (doubled, in_query) == (401, 401)


@pytest.mark.parametrize(
    "spelling",
    [
        "{id}/",
        "{id}//",
        "{ID}",
        "%7B{id}%7D",
        "urn:uuid:{id}",
        "{hex}",
        "{id_encoded}",
        "{id}%2F",
        "{id}%2Fx",
        "%2E%2E%2F{id}",
        "{id}%00",
    ],
)
def test_non_canonical_job_paths_are_one_404_for_get_and_delete(stack: RunningStack, spelling: str) -> None:
    owner = {"Authorization": f"Bearer {token('paths')}"}
    job = stack.request("POST", "/api/v1/jobs", token=token("paths"), body={"title": "p", "type": "noop"}).body
    job_id = job["job_id"]
    path = "/api/v1/jobs/" + spelling.format(
        id=job_id, ID=job_id.upper(), hex=job_id.replace("-", ""), id_encoded=job_id.replace("-", "%2D")
    )

    got = raw(stack, "GET", path, owner)
    deleted = raw(stack, "DELETE", path, owner)

    assert got[0] == deleted[0] == 404
    assert got[2] == deleted[2]
    assert stack.request("GET", f"/api/v1/jobs/{job_id}", token=token("paths")).status == 200


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "PUT"])
def test_an_undeclared_method_is_api_gateways_404(stack: RunningStack, method: str) -> None:
    status, _, body = raw(stack, method, "/api/v1/jobs", {"Authorization": f"Bearer {token('alice')}"})

    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
