"""The docs page through the local stack's gateway, as a browser gets it: its spec link opens the JSON document,
it is gzipped on the wire and revalidated with its ETag, and a client that hangs up early leaves one JSON line
in the stack's output, no traceback."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import socket
import struct
import time

import pytest

from local.openapi import COMMITTED
from tests.e2e.support import RunningStack

pytestmark = pytest.mark.e2e


def get(stack: RunningStack, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = stack.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_the_docs_pages_spec_link_opens_the_json_document(stack: RunningStack) -> None:
    status, headers, page = get(stack, "/api/v1/docs")
    link = re.search(rb'updateUrl\(currentUrl\.pathname \+ "([^"]+)"\)', page)
    assert (status, headers["content-type"]) == (200, "text/html")
    assert link is not None

    status, headers, body = get(stack, "/api/v1/docs" + link.group(1).decode())

    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_the_docs_page_is_gzipped_on_the_wire_and_revalidated(stack: RunningStack) -> None:
    _, plain_headers, plain = get(stack, "/api/v1/docs")
    status, headers, compressed = get(stack, "/api/v1/docs", {"Accept-Encoding": "gzip, deflate, br"})
    again, again_headers, empty = get(stack, "/api/v1/docs", {"If-None-Match": headers["etag"]})

    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert int(headers["content-length"]) == len(compressed) < len(plain) // 3
    assert gzip.decompress(compressed) == plain
    assert (again, empty, again_headers["etag"]) == (304, b"", plain_headers["etag"])
    print(f"\ndocs page on the wire: {len(plain)} bytes plain, {len(compressed)} bytes gzip")


def test_a_client_that_hangs_up_leaves_json_lines_only(stack: RunningStack) -> None:
    host, port = stack.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:  # curl -s .../docs | head -c 15
        connection.sendall(b"GET /api/v1/docs HTTP/1.1\r\nHost: localhost\r\n\r\n")
        connection.recv(15)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 10
    while '"client disconnected"' not in stack.logs() and time.monotonic() < deadline:
        time.sleep(0.1)

    # The stack's own JSON line (socketserver's traceback, on stderr, is the gateway unit test's: capsys).
    lines = [line for line in stack.logs().splitlines() if "client disconnected" in line]
    assert lines
    assert {json.loads(line)["error"] for line in lines} <= {"BrokenPipeError", "ConnectionResetError"}
