"""The local gateway and runtime hold AWS's size limits: Lambda's synchronous response (6,291,556 bytes of the
serialised invocation response) and request, API Gateway's request line plus header values (10,240 bytes) and
body (10 MB). A function of the local runtime behind a gateway on a free port, over real HTTP."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from local.gateway import MAX_BODY_BYTES, MAX_REQUEST_HEAD_BYTES, Gateway, Route
from local.resources import FunctionSpec
from local.runtime import MAX_PAYLOAD_BYTES, FunctionPool

#: Answers with a body of ``n`` times ``char`` (query parameters), or echoes the size of the body it got.
HANDLER = """
import os
import time


def lambda_handler(event, context):
    query = event.get("queryStringParameters") or {}
    if "crash" in query:
        os._exit(1)
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    if "malformed" in query:
        return {"statusCode": query["malformed"], "body": "x"}
    if "n" in query:
        return {"statusCode": 200, "body": query.get("char", "a") * int(query["n"])}
    return {"statusCode": 200, "body": str(len(event.get("body", "")))}
"""
#: The serialised response around the body: ``{"statusCode": 200, "body": ""}``.
ENVELOPE = len(json.dumps({"statusCode": 200, "body": ""}))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("limits")
    (folder / "app.py").write_text(HANDLER)
    spec = FunctionSpec(
        logical_id="Probe",
        code_dir=folder,
        handler="app.lambda_handler",
        runtime="python3.13",
        timeout_seconds=30,
        memory_mb=128,
        environment={},
        layer_dirs=(),
    )
    pool = FunctionPool(spec, 1, {"PATH": "/usr/bin:/bin"}, Path(folder))
    pool.start()
    server = Gateway([Route("ANY", "/probe", pool)], "127.0.0.1", 0, lambda line: None, integration_timeout=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.port
    server.shutdown()
    pool.close()


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except (ConnectionResetError, BrokenPipeError):  # refused before the body was read: the answer may be lost
        return None, b""
    finally:
        connection.close()


@pytest.mark.parametrize(("char", "cost"), [("a", 1), ('"', 2), ("é", 6), ("😀", 12)])
def test_a_response_up_to_lambdas_limit_passes_and_one_byte_more_is_api_gateways_500(
    gateway: int, char: str, cost: int
) -> None:
    fits = (MAX_PAYLOAD_BYTES - ENVELOPE) // cost

    status, body = request(gateway, "GET", f"/probe?n={fits}&char={quote(char)}")
    over_status, over_body = request(gateway, "GET", f"/probe?n={fits + 1}&char={quote(char)}")

    assert status == 200
    assert len(body.decode()) == fits
    assert (over_status, json.loads(over_body)) == (500, {"message": "Internal Server Error"})


def test_a_request_line_and_header_values_over_10240_bytes_never_reach_the_function(gateway: int) -> None:
    line = len("GET /probe HTTP/1.1")
    fixed = len("127.0.0.1:") + len(str(gateway)) + len("identity")  # Host and Accept-Encoding from http.client
    room = MAX_REQUEST_HEAD_BYTES - line - fixed

    assert request(gateway, "GET", "/probe", headers={"x-big": "a" * room})[0] == 200
    assert request(gateway, "GET", "/probe", headers={"x-big": "a" * (room + 1)}) == (
        431,
        b'{"message": "Request Header Fields Too Large"}',
    )
    split = {"x-one": "a" * (room // 2), "x-two": "b" * (room - room // 2 + 1)}  # values add up
    assert request(gateway, "GET", "/probe", headers=split)[0] == 431


def test_a_body_over_10_mb_is_a_413_without_invoking(gateway: int) -> None:
    status, body = request(gateway, "POST", "/probe", b"a" * (MAX_BODY_BYTES + 1))
    assert status in (413, None)  # the gateway answers before reading the body; the client may see a reset
    if status is not None:
        assert json.loads(body) == {"message": "Request Entity Too Large"}


@pytest.mark.parametrize("size", [MAX_PAYLOAD_BYTES, MAX_BODY_BYTES])
def test_a_body_whose_event_passes_lambdas_request_limit_is_a_413(gateway: int, size: int) -> None:
    status, body = request(gateway, "POST", "/probe", b"a" * size, {"Content-Type": "text/plain"})

    assert (status, json.loads(body)) == (413, {"message": "Request Entity Too Large"})


def test_a_body_whose_event_fits_reaches_the_function(gateway: int) -> None:
    size = MAX_PAYLOAD_BYTES - 3_000  # the rest of the event (headers, request context) takes under 3 KB

    status, body = request(gateway, "POST", "/probe", b"a" * size, {"Content-Type": "text/plain"})

    assert (status, body) == (200, str(size).encode())


@pytest.mark.parametrize("query", ["malformed=abc", "malformed=700", "malformed=", "crash=1"])
def test_a_malformed_response_or_a_crash_is_api_gateways_500(gateway: int, query: str) -> None:
    status, body = request(gateway, "GET", f"/probe?{query}")

    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    assert request(gateway, "GET", "/probe")[0] == 200  # a fresh worker took the crashed one's place


def test_an_integration_past_its_timeout_is_api_gateways_503(gateway: int) -> None:
    status, body = request(gateway, "GET", "/probe?sleep=1.5")  # this gateway's integration timeout: 1 s

    assert (status, json.loads(body)) == (503, {"message": "Service Unavailable"})
