"""A callback receiver for tests: HTTPS on loopback with a certificate from a ``trustme`` test authority, recording
each request (path with its query, headers, body, when it came) and answering with a given status after an
optional wait (a slow receiver)."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme


@dataclass(frozen=True)
class Received:
    """One request: its path (query included), headers (names lower-cased), body, ``time.monotonic()`` and
    ``time.time()`` when it came."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    wall: float


@dataclass
class Receiver:
    """A running receiver: its ``port``, what it answers (``status``, after ``delay`` seconds), what it got."""

    port: int
    status: int = 204
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    #: Set when the receiver stops: a waiting answer ends at once.
    closing: threading.Event = field(default_factory=threading.Event)
    #: ``time.monotonic()`` when each answer was finished or cut (the client gave up first).
    finished: list[float] = field(default_factory=list)

    def url(self, host: str = "localhost", path: str = "/hooks/jobs", query: str = "") -> str:
        """The receiver's https URL under ``host`` (a name its certificate holds: localhost, 127.0.0.1 or this
        machine's host name)."""
        return f"https://{host}:{self.port}{path}" + (f"?{query}" if query else "")

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """The requests, once at least ``count`` have come (or ``timeout`` seconds passed)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count and time.monotonic() < deadline:
                self.arrived.wait(max(0.0, deadline - time.monotonic()))
            return list(self.requests)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with receiver.arrived:
            receiver.requests.append(
                Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic(), time.time()
                )
            )
            receiver.arrived.notify_all()
        try:
            if receiver.delay:
                receiver.closing.wait(receiver.delay)
            self.send_response(receiver.status)
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender gave up and closed the connection
        finally:
            receiver.finished.append(time.monotonic())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


def names() -> list[str]:
    """The names a receiver's certificate holds."""
    return ["localhost", "127.0.0.1", socket.gethostname()]


def ca_bundle(ca: trustme.CA, directory: Path) -> Path:
    """The authority's certificate as a PEM file in ``directory`` (what ``JOBS_CALLBACK_CA_BUNDLE`` names)."""
    path = directory / "callbacks-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@contextmanager
def receiving(ca: trustme.CA, *, status: int = 204, delay: float = 0.0) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port) with a certificate of ``ca`` for ``names()``, until the block ends."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names()).configure_cert(context)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(port=server.server_address[1], status=status, delay=delay)
    server.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.closing.set()
        server.shutdown()
        server.server_close()
