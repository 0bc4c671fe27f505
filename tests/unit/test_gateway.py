"""The local gateway's HTTP API payload format 2.0 events and response mapping, against AWS's documented
format and the sample events in events/api."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from typing import Any, cast

import pytest

from local.gateway import (
    CorsPolicy,
    Gateway,
    HttpResponse,
    Route,
    ThrottlePolicy,
    TokenBucket,
    build_event,
    find_route,
    to_http_response,
)
from local.runtime import FunctionPool, Invocation
from tests.helpers import load_event

# The keys of a payload format 2.0 event ("Working with AWS Lambda proxy integrations for HTTP APIs").
# Optional ones (cookies, queryStringParameters, pathParameters, body, stageVariables, authorizer) are left
# out when the request has none.
DOCUMENTED_TOP = {
    "version",
    "routeKey",
    "rawPath",
    "rawQueryString",
    "cookies",
    "headers",
    "queryStringParameters",
    "requestContext",
    "body",
    "pathParameters",
    "isBase64Encoded",
    "stageVariables",
}
DOCUMENTED_CONTEXT = {
    "accountId",
    "apiId",
    "authentication",
    "authorizer",
    "domainName",
    "domainPrefix",
    "http",
    "requestId",
    "routeKey",
    "stage",
    "time",
    "timeEpoch",
}
REQUIRED_TOP = {"version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext", "isBase64Encoded"}


def shape(value: Any) -> Any:
    """The nested key structure of an event, without values that vary (ids, times, tokens)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if key not in ("headers",)}
    return type(value).__name__


def event_for(sample: dict[str, Any]) -> dict[str, Any]:
    """What the gateway builds for the request a sample event describes."""
    http = sample["requestContext"]["http"]
    body = sample.get("body")
    return build_event(
        method=http["method"],
        raw_path=sample["rawPath"],
        raw_query=sample["rawQueryString"],
        headers=[(name.title(), value) for name, value in sample["headers"].items()],
        body=body.encode() if body else b"",
        route_key=sample["routeKey"],
        path_parameters=sample.get("pathParameters", {}),
    )


@pytest.mark.parametrize("name", ["create_job", "list_jobs", "get_job", "delete_job"])
def test_gateway_events_have_the_shape_of_the_sample_events(name: str) -> None:
    sample = load_event(f"api/{name}.json")

    built = event_for(sample)

    assert shape(built) == shape(sample)
    assert set(built) <= DOCUMENTED_TOP
    assert set(built) >= REQUIRED_TOP
    assert set(built["requestContext"]) <= DOCUMENTED_CONTEXT
    assert built["headers"] == sample["headers"]
    for key in ("routeKey", "rawPath", "rawQueryString", "body", "pathParameters", "isBase64Encoded"):
        assert built.get(key) == sample.get(key)


def test_headers_are_lowercased_and_repeats_joined_with_commas() -> None:
    event = build_event(
        method="GET",
        raw_path="/x",
        raw_query="a=1&a=2&b=",
        headers=[("X-Thing", "one"), ("x-thing", "two"), ("Cookie", "a=1; b=2")],
        body=b"",
        route_key="GET /x",
        path_parameters={},
    )

    assert event["headers"] == {"x-thing": "one,two"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert "body" not in event
    assert "pathParameters" not in event


def test_binary_bodies_are_base64_encoded() -> None:
    event = build_event(
        method="POST",
        raw_path="/x",
        raw_query="",
        headers=[("Content-Type", "application/octet-stream")],
        body=b"\x00\xff",
        route_key="POST /x",
        path_parameters={},
    )

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xff"


def test_routes_match_templates_and_prefer_exact_paths() -> None:
    routes = [Route("GET", "/api/v1/jobs/{job_id}", None), Route("GET", "/api/v1/jobs", None)]  # type: ignore[arg-type]

    found = find_route(routes, "GET", "/api/v1/jobs/abc")
    exact = find_route(routes, "GET", "/api/v1/jobs")

    assert found is not None
    assert found[1] == {"job_id": "abc"}
    assert exact is not None
    assert exact[0].path == "/api/v1/jobs"
    assert find_route(routes, "DELETE", "/api/v1/jobs/abc") is None
    assert find_route(routes, "GET", "/api/v1/jobs/a/b") is None


def test_function_responses_become_http_responses() -> None:
    response = to_http_response(
        Invocation(payload={"statusCode": 201, "headers": {"Location": "/x"}, "body": "{}", "cookies": ["c=1"]})
    )
    inferred = to_http_response(Invocation(payload={"hello": "world"}))
    binary = to_http_response(Invocation(payload={"statusCode": 200, "body": "AP8=", "isBase64Encoded": True}))

    assert (response.status, response.body) == (201, b"{}")
    assert ("Location", "/x") in response.headers
    assert ("Set-Cookie", "c=1") in response.headers
    assert (inferred.status, json.loads(inferred.body)) == (200, {"hello": "world"})
    assert binary.body == b"\x00\xff"


def test_a_function_error_is_api_gateways_own_500() -> None:
    response = to_http_response(Invocation(error={"errorType": "KeyError", "errorMessage": "boom"}))

    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}


CORS = CorsPolicy.from_configuration(
    {
        "AllowOrigins": ["https://app.example.com", "http://*"],
        "AllowMethods": ["GET", "POST", "DELETE", "OPTIONS"],
        "AllowHeaders": ["Authorization", "content-type", "idempotency-key"],
        "ExposeHeaders": ["location", "retry-after", "www-authenticate"],
        "MaxAge": 600,
        "AllowCredentials": False,
    }
)


def test_a_preflight_from_an_allowed_origin_gets_the_configured_headers() -> None:
    response = CORS.preflight("https://app.example.com", "POST")

    assert response.status == 204
    assert dict(response.headers) == {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-methods": "GET,POST,DELETE,OPTIONS",
        "access-control-allow-headers": "authorization,content-type,idempotency-key",
        "access-control-max-age": "600",
    }


@pytest.mark.parametrize(("origin", "method"), [("https://evil.example", "GET"), ("https://app.example.com", "PUT")])
def test_a_preflight_that_is_not_allowed_gets_no_cors_headers(origin: str, method: str) -> None:
    response = CORS.preflight(origin, method)

    assert response.status == 204
    assert not any(name.startswith("access-control-") for name, _ in response.headers)


def test_origins_match_exactly_by_scheme_wildcard_or_star() -> None:
    star = CorsPolicy.from_configuration({"AllowOrigins": ["*"]})

    assert CORS.allowed_origin("http://localhost:5173") == "http://localhost:5173"
    assert CORS.allowed_origin("https://app.example.com.evil.example") is None
    assert CORS.allowed_origin("https://other.example") is None
    assert star.allowed_origin("https://anything.example") == "*"


def test_responses_get_the_configured_headers_and_lose_the_integrations_own() -> None:
    error = HttpResponse(401, [("WWW-Authenticate", "Bearer"), ("Access-Control-Allow-Origin", "*")], b"{}")

    decorated = CORS.decorate(error, "https://app.example.com")
    no_origin = CORS.decorate(error, None)

    assert dict(decorated.headers) == {
        "WWW-Authenticate": "Bearer",
        "access-control-allow-origin": "https://app.example.com",
        "access-control-expose-headers": "location,retry-after,www-authenticate",
    }
    assert dict(no_origin.headers) == {"WWW-Authenticate": "Bearer"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)

    burst = [bucket.take() for _ in range(4)]
    clock.now += 0.5  # one token at 2 per second
    after_half_a_second = [bucket.take(), bucket.take()]
    clock.now += 60  # refills to the burst, never beyond
    after_a_minute = [bucket.take() for _ in range(4)]

    assert burst == [True, True, True, False]
    assert after_half_a_second == [True, False]
    assert after_a_minute == [True, True, True, False]


def test_throttling_comes_from_the_route_settings_one_bucket_per_route() -> None:
    policy = ThrottlePolicy.from_route_settings({"ThrottlingRateLimit": "1", "ThrottlingBurstLimit": "1"})
    routes = [Route("GET", "/api/v1/jobs", None), Route("POST", "/api/v1/jobs", None)]  # type: ignore[arg-type]

    assert policy == ThrottlePolicy(rate=1.0, burst=1)
    assert ThrottlePolicy.from_route_settings({}) is None
    buckets = policy.buckets(routes, FakeClock())
    assert [buckets["GET /api/v1/jobs"].take(), buckets["GET /api/v1/jobs"].take()] == [True, False]
    assert buckets["POST /api/v1/jobs"].take() is True


class LargePage:
    """A pool whose function answers every request with a body of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def invoke(self, event: dict[str, Any]) -> Invocation:
        return Invocation(
            payload={"statusCode": 200, "headers": {"Content-Type": "text/html"}, "body": "x" * self.size}
        )


def hang_up_early(port: int, path: str, received: int) -> None:
    """Send a GET, read ``received`` bytes, and close with a reset (SO_LINGER 0), as ``curl | head -c 15`` does."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        connection.recv(received)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("received", [0, 15, 4096])
def test_a_client_that_hangs_up_early_is_one_json_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str], received: int
) -> None:
    lines: list[str] = []
    route = Route("GET", "/api/v1/docs", cast(FunctionPool, LargePage(8 * 1024 * 1024)))
    gateway = Gateway([route], "127.0.0.1", 0, lines.append)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        hang_up_early(gateway.port, "/api/v1/docs", received)
        deadline = time.monotonic() + 5
        while not any('"client disconnected"' in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gateway.shutdown()
        thread.join(timeout=5)

    records = [json.loads(line) for line in lines]  # every line the gateway wrote is JSON
    assert [r for r in records if "gateway" in r and r["gateway"] != "access"] == [
        {"gateway": "client disconnected", "client": "127.0.0.1", "error": records[-1].get("error")}
    ]
    assert records[-1]["error"] in {"BrokenPipeError", "ConnectionResetError", "ConnectionAbortedError"}
    assert capsys.readouterr().err == ""  # socketserver prints its traceback on stderr
