"""Callback deliveries to receivers on loopback (HTTPS with a ``trustme`` certificate authority), through
``CallbackSender`` on the DynamoDB store (moto): made, signed and verified by ``jobs_client.verify_webhook``,
recorded on the job, retried, given up, and never sent where the rules forbid (a proxy, a redirect, a certificate
for another name, loopback without the flag, a name that rebinds, a deleted job).

Every receiver answers on 127.0.0.1 under the name ``receiver.test``, which a fake resolver gives; the settings
allow loopback (the local stack's flag) unless a test says otherwise.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme

from jobs import aws, bootstrap, webhooks
from jobs.callbacks import CallbackOutcome, CallbackSender, webhook_id
from jobs.models import CallbackStatus, Job, JobCallback, JobStatus, ServiceUnavailable
from jobs.observability import metrics
from jobs.settings import CallbackSettings
from jobs.store import DynamoJobStore
from jobs.webhooks import SigningKey
from jobs_client import verify_webhook
from tests.conftest import Aws
from tests.helpers import Clock, FakeLambdaContext, silent_http_endpoint

NAME = "receiver.test"
VERSION = "2026-11-29T10:00:05.000Z"
KEY = SigningKey.generate()
PUBLIC_KEYS = webhooks.jwks([KEY.public_key])

Respond = Callable[["Handler"], None]


class Handler(http.server.BaseHTTPRequestHandler):
    """Records each request, then answers as its receiver's ``respond`` says."""

    server: Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.receiver.requests.append(Request(self.path, dict(self.headers.items()), body))
        self.server.receiver.respond(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


@dataclass
class Request:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTPS receiver on loopback: ``url``, the requests it got, the TCP connections it accepted, and what its
    answers came to (``sent`` bytes of a long answer, ``cut`` when the client closed the connection under it)."""

    url: str
    port: int
    respond: Respond
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    sent: int = 0
    cut: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)


class Server(http.server.ThreadingHTTPServer):
    """TLS per connection, in the connection's thread (a failed handshake troubles no other connection)."""

    daemon_threads = True
    receiver: Receiver

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.context = context

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.receiver.connections += 1
        return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            Handler(tls, client_address, self)
        except OSError:
            self.receiver.cut.set()


def no_content(handler: Handler) -> None:
    handler.send_response(204)
    handler.send_header("content-length", "0")
    handler.end_headers()
    handler.server.receiver.answered.set()


def status(code: int, **headers: str) -> Respond:
    def respond(handler: Handler) -> None:
        handler.send_response(code)
        for name, value in {"content-length": "0", **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.server.receiver.answered.set()

    return respond


def sleeping(seconds: float) -> Respond:
    def respond(handler: Handler) -> None:
        time.sleep(seconds)
        no_content(handler)

    return respond


def trickling(handler: Handler) -> None:
    """Answer one byte of a header every 0.1 s, for a minute: a per-read timeout alone never ends it."""
    receiver = handler.server.receiver
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(600):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            time.sleep(0.1)
        receiver.answered.set()
    except OSError:
        receiver.cut.set()


def endless(handler: Handler) -> None:
    """Answer 200 with a 1 GiB body, written until the client stops reading."""
    receiver = handler.server.receiver
    handler.send_response(200)
    handler.send_header("content-length", str(1 << 30))
    handler.end_headers()
    chunk = b"x" * 65536
    try:
        while receiver.sent < 1 << 30:
            handler.wfile.write(chunk)
            receiver.sent += len(chunk)
        receiver.answered.set()
    except OSError:
        receiver.cut.set()


def raw(answer: bytes) -> Respond:
    """Answer with these bytes as they are (a malformed answer), then close."""

    def respond(handler: Handler) -> None:
        handler.wfile.write(answer)
        handler.wfile.flush()
        handler.close_connection = True
        handler.server.receiver.answered.set()

    return respond


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def serve(ca: trustme.CA) -> Iterator[Callable[..., Receiver]]:
    """Start receivers: ``serve(respond, name=NAME, path="/hook?token=t0ken")``; all stop when the test ends."""
    servers: list[Server] = []

    def start(respond: Respond = no_content, *, name: str = NAME, path: str = "/hook?token=t0ken") -> Receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(context)
        server = Server(context)
        port = server.server_address[1]
        server.receiver = Receiver(f"https://{NAME}:{port}{path}", port, respond)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server.receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(aws: Aws) -> DynamoJobStore:
    return DynamoJobStore(aws.table_name)


def settings(ca_bundle: str | None, **changes: Any) -> CallbackSettings:
    values: dict[str, Any] = {
        "allow_loopback": True,
        "ca_bundle": ca_bundle,
        "connect_timeout_seconds": 0.5,
        "timeout_seconds": 2.0,
        "max_response_bytes": 4096,
        "retry_delays_seconds": (5, 300, 1800),
        **changes,
    }
    return CallbackSettings.model_validate(values)


class Resolver:
    """A fake resolver: the n-th lookup gets the n-th answer (the last one after that)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers) or [["127.0.0.1"]]
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


def sender(store: DynamoJobStore, config: CallbackSettings, resolver: Resolver | None = None) -> CallbackSender:
    return CallbackSender(store, lambda: [KEY], config, resolver=resolver or Resolver(), clock=Clock())


def finished_job(store: DynamoJobStore, url: str, n: int = 1) -> Job:
    now = Clock()()
    job = Job(
        owner_id="alice",
        job_id=f"01a226ee-0000-7000-8000-{n:012d}",
        title="Audit",
        type="noop",
        status=JobStatus.SUCCEEDED,
        payload={"n": n},
        created_at=now,
        updated_at=now,
        finished_at=now,
        result={"ok": True},
        callback_url=url,
        callback=JobCallback(status=CallbackStatus.PENDING),
    )
    store.put_new(job)
    return job


def callback_of(store: DynamoJobStore, job: Job) -> JobCallback | None:
    found = store.get(job.owner_id, job.job_id)
    assert found is not None
    return found.callback


def test_a_delivery_is_made_signed_verified_and_recorded_delivered(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve()
    job = finished_job(store, receiver.url)
    expected = json.loads(store.get("alice", job.job_id).model_dump_json())  # type: ignore[union-attr]

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    [request] = receiver.requests
    now = int(Clock()().timestamp())
    assert verify_webhook(request.headers, request.body, PUBLIC_KEYS, now=now) == expected
    assert request.path == "/hook?token=t0ken"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == webhook_id(job.job_id, VERSION) == f"msg_{job.job_id}_{VERSION}"
    assert request.headers["webhook-timestamp"] == str(now)
    assert request.headers["Host"] == f"{NAME}:{receiver.port}"
    assert outcome.action == "delivered"
    assert outcome.retry_after_seconds is None
    recorded = callback_of(store, job)
    assert recorded == outcome.callback
    assert recorded is not None
    assert (recorded.status, recorded.attempts, recorded.last_status_code) == (CallbackStatus.DELIVERED, 1, 204)
    assert recorded.delivered_at is not None
    assert recorded.last_error is None
    after = store.get("alice", job.job_id)
    assert after is not None
    assert (after.status, after.updated_at) == (job.status, job.updated_at)


def test_a_500_is_retried_after_the_first_delay_with_the_attempt_and_error_recorded(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(status(500))
    job = finished_job(store, receiver.url)
    callbacks = sender(store, settings(ca_bundle))

    first = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)
    receiver.respond = no_content
    second = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=2)

    assert first.action == "retry"
    assert first.retry_after_seconds == 5
    assert first.callback is not None
    assert first.callback.status == CallbackStatus.RETRYING
    assert (first.callback.attempts, first.callback.last_status_code) == (1, 500)
    assert first.callback.last_error == "HTTP 500"
    assert first.callback.last_attempt_at is not None
    assert first.callback.next_attempt_at == first.callback.last_attempt_at + timedelta(seconds=5)
    assert second.action == "delivered"
    recorded = callback_of(store, job)
    assert recorded is not None
    assert (recorded.status, recorded.attempts) == (CallbackStatus.DELIVERED, 2)
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert ids == {webhook_id(job.job_id, VERSION)}  # the same id on every attempt: receivers drop duplicates


@pytest.mark.parametrize(("attempt", "wait"), [(2, 300), (3, 1800)])
def test_each_attempt_waits_its_delay_of_the_schedule(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, attempt: int, wait: int
) -> None:
    job = finished_job(store, serve(status(503)).url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=attempt)

    assert (outcome.action, outcome.retry_after_seconds) == ("retry", wait)


def test_the_last_attempt_failing_gives_up(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(status(502))
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=4)

    assert (outcome.action, outcome.retry_after_seconds) == ("gave_up", None)
    recorded = callback_of(store, job)
    assert recorded is not None
    assert (recorded.status, recorded.last_status_code, recorded.last_error) == (CallbackStatus.FAILED, 502, "HTTP 502")
    assert len(receiver.requests) == 1


def test_the_default_schedule_gives_up_after_eight_attempts_over_a_day(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    job = finished_job(store, serve(status(500)).url)
    config = settings(ca_bundle, retry_delays_seconds=CallbackSettings().retry_delays_seconds)
    callbacks = sender(store, config)

    outcomes = [callbacks.deliver("alice", job.job_id, version=VERSION, attempt=n) for n in range(1, 9)]

    assert [outcome.action for outcome in outcomes] == ["retry"] * 7 + ["gave_up"]
    assert sum(outcome.retry_after_seconds or 0 for outcome in outcomes) > 24 * 3600
    assert callback_of(store, job) == JobCallback.model_validate(
        {**outcomes[-1].callback.model_dump(), "attempts": 8}  # type: ignore[union-attr]
    )


def test_410_gone_gives_up_at_once(store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str) -> None:
    job = finished_job(store, serve(status(410)).url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert outcome.action == "gave_up"
    recorded = callback_of(store, job)
    assert recorded is not None
    assert (recorded.status, recorded.attempts, recorded.last_status_code) == (CallbackStatus.FAILED, 1, 410)


def test_a_redirect_to_another_receiver_is_not_followed(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    elsewhere = serve()
    receiver = serve(status(302, location=elsewhere.url))
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert len(receiver.requests) == 1
    assert elsewhere.connections == 0
    assert outcome.action == "retry"
    assert outcome.callback is not None
    assert outcome.callback.last_error == "redirect refused (HTTP 302)"


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-%d: y\r\n" % n for n in range(101)) + b"\r\n",
        b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["bad status line", "unknown protocol", "over 100 headers", "header line over 64 KiB"],
)
def test_a_malformed_answer_is_a_failed_attempt_retried_not_an_error(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, answer: bytes
) -> None:
    """http.client's parse errors (``HTTPException``: neither ``OSError`` nor urllib3's ``HTTPError``) are the
    receiver's failure like any other: recorded on the job and retried on the schedule, not raised (which would
    leave the job's callback unrecorded and bring the message back at the queue's visibility timeout)."""
    receiver = serve(raw(answer))
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert len(receiver.requests) == 1
    assert (outcome.action, outcome.retry_after_seconds) == ("retry", 5)
    recorded = callback_of(store, job)
    assert recorded is not None
    assert (recorded.status, recorded.attempts, recorded.last_status_code) == (CallbackStatus.RETRYING, 1, None)
    assert recorded.last_error is not None
    assert recorded.last_error.startswith("no answer: ")


def test_a_receiver_slower_than_the_timeout_is_cut_at_the_deadline(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(sleeping(30))
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle, timeout_seconds=1)).deliver(
        "alice", job.job_id, version=VERSION, attempt=1
    )

    assert len(receiver.requests) == 1
    assert not receiver.answered.is_set()  # the sender returned while the receiver still slept
    assert outcome.action == "retry"
    assert outcome.callback is not None
    assert outcome.callback.last_error == "timed out after 1 s"
    assert outcome.callback.last_status_code is None


def test_a_receiver_trickling_its_answer_is_cut_at_the_deadline_too(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(trickling)
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle, timeout_seconds=1)).deliver(
        "alice", job.job_id, version=VERSION, attempt=1
    )

    assert outcome.action == "retry"
    assert outcome.callback is not None
    assert outcome.callback.last_error == "timed out after 1 s"
    assert receiver.cut.wait(10)  # the connection was closed under the receiver, long before its minute ended
    assert not receiver.answered.is_set()


def test_a_receiver_that_never_completes_the_tls_handshake_is_cut_at_the_deadline(
    store: DynamoJobStore, ca_bundle: str
) -> None:
    with silent_http_endpoint() as silent:  # accepts the connection, never says a word
        port = int(silent.url.rsplit(":", 1)[1])
        job = finished_job(store, f"https://{NAME}:{port}/hook")
        config = settings(ca_bundle, connect_timeout_seconds=5, timeout_seconds=1)

        outcome = sender(store, config).deliver("alice", job.job_id, version=VERSION, attempt=1)

        assert len(silent.accepted) == 1
    assert outcome.action == "retry"
    assert outcome.callback is not None
    assert outcome.callback.last_error == "timed out after 1 s"  # not the connect timeout's 5 s


def test_a_huge_answer_is_read_only_up_to_max_response_bytes(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(endless)
    config = settings(ca_bundle, timeout_seconds=20)
    [address] = webhooks.public_addresses(NAME, receiver.port, resolver=Resolver(), allow_loopback=True)

    result = webhooks.deliver_once(receiver.url, b"{}", {}, addresses=[address], settings=config)

    assert (result.status_code, result.error, result.response_bytes) == (200, None, config.max_response_bytes)
    assert receiver.cut.wait(10)
    assert receiver.sent < 1 << 30  # at most what the sockets' buffers took before the close
    job = finished_job(store, receiver.url)
    assert sender(store, config).deliver("alice", job.job_id, version=VERSION, attempt=1).action == "delivered"


def test_proxy_variables_of_the_environment_get_no_connection(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = serve()
    job = finished_job(store, receiver.url)
    with silent_http_endpoint() as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

        assert proxy.accepted == []
    assert outcome.action == "delivered"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("trusted", [True, False], ids=["certificate for another name", "untrusted authority"])
def test_a_certificate_the_name_cannot_be_verified_by_fails(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, trusted: bool
) -> None:
    receiver = serve(name="other.test") if trusted else serve()
    job = finished_job(store, receiver.url)
    config = settings(ca_bundle if trusted else None)

    outcome = sender(store, config).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert receiver.connections == 1
    assert receiver.requests == []
    assert outcome.action == "retry"
    assert outcome.callback is not None
    assert outcome.callback.last_error is not None
    assert outcome.callback.last_error.startswith("TLS failed")
    assert "certificate" in outcome.callback.last_error.lower()


def test_without_the_loopback_flag_a_loopback_receiver_gets_nothing(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve()
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle, allow_loopback=False)).deliver(
        "alice", job.job_id, version=VERSION, attempt=1
    )

    assert receiver.connections == 0
    assert outcome.action == "gave_up"
    recorded = callback_of(store, job)
    assert recorded is not None
    assert recorded.status == CallbackStatus.FAILED
    assert recorded.last_error is not None
    assert "loopback" in recorded.last_error


def test_a_stalled_lookup_is_cut_at_the_connect_timeout_and_retried(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    """getaddrinfo takes no timeout; a lookup that stalls (a slow authoritative server) must not hold the delivery,
    and the batch with it, until it ends."""
    receiver = serve()
    job = finished_job(store, receiver.url)
    release, answered = threading.Event(), threading.Event()

    def stalled(host: str, port: int) -> list[str]:
        release.wait(60)
        answered.set()
        return ["127.0.0.1"]

    callbacks = CallbackSender(
        store, lambda: [KEY], settings(ca_bundle, connect_timeout_seconds=0.5), resolver=stalled, clock=Clock()
    )
    try:
        outcome = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)
        still_looking_up = not answered.is_set()
    finally:
        release.set()

    assert still_looking_up  # the delivery came back while the lookup still stalled
    assert (outcome.action, outcome.retry_after_seconds) == ("retry", 5)
    assert outcome.callback is not None
    assert outcome.callback.last_error is not None
    assert "took more than 0.5 s" in outcome.callback.last_error
    assert receiver.requests == []


def test_a_name_that_does_not_resolve_now_is_retried_not_given_up(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    """A lookup that fails (the resolver's "Temporary failure in name resolution", a zone being moved) is no
    refused address: another attempt can succeed, so it waits its turn in the schedule like a timeout."""
    receiver = serve()
    job = finished_job(store, receiver.url)
    lookups: list[str] = []

    def flaky(host: str, port: int) -> list[str]:
        lookups.append(host)
        if len(lookups) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return ["127.0.0.1"]

    callbacks = CallbackSender(store, lambda: [KEY], settings(ca_bundle), resolver=flaky, clock=Clock())
    first = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)
    second = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=2)

    assert (first.action, first.retry_after_seconds) == ("retry", 5)
    assert first.callback is not None
    assert first.callback.last_error is not None
    assert "does not resolve" in first.callback.last_error
    assert second.action == "delivered"
    assert len(receiver.requests) == 1
    unresolved = finished_job(store, receiver.url, 2)
    nowhere = sender(store, settings(ca_bundle), Resolver([]))
    assert nowhere.deliver("alice", unresolved.job_id, version=VERSION, attempt=4).action == "gave_up"  # schedule's end


def test_a_name_that_rebinds_to_loopback_after_the_check_gets_no_delivery(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    """The first answer (a public address) is checked and connected to; the second (loopback, where the receiver
    listens, and allowed here) is never asked for within the attempt: one lookup per attempt."""
    receiver = serve()
    job = finished_job(store, receiver.url)
    resolver = Resolver(["93.184.216.34"], ["127.0.0.1"])

    outcome = sender(store, settings(ca_bundle, connect_timeout_seconds=0.3), resolver).deliver(
        "alice", job.job_id, version=VERSION, attempt=1
    )

    assert resolver.lookups == [(NAME, receiver.port)]
    assert receiver.connections == 0
    assert receiver.requests == []
    assert outcome.action == "retry"


def test_a_deleted_job_gets_no_delivery_and_is_not_resurrected(
    aws: Aws, store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve()
    job = finished_job(store, receiver.url)
    assert store.delete("alice", job.job_id)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert (outcome.action, outcome.callback) == ("skipped", None)
    assert receiver.connections == 0
    assert store.record_callback("alice", job.job_id, JobCallback(status=CallbackStatus.FAILED)) is False
    assert aws.item_count() == 0


def test_a_job_deleted_while_its_callback_is_sent_stays_deleted(
    aws: Aws, store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    def delete_then_answer(handler: Handler) -> None:
        store.delete("alice", job.job_id)
        no_content(handler)

    receiver = serve(delete_then_answer)
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert len(receiver.requests) == 1
    assert (outcome.action, outcome.callback) == ("skipped", None)
    assert aws.item_count() == 0


def test_an_already_delivered_callback_is_skipped(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve()
    job = finished_job(store, receiver.url)
    callbacks = sender(store, settings(ca_bundle))
    delivered = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)

    duplicate = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert delivered.action == "delivered"
    assert (duplicate.action, duplicate.callback) == ("skipped", None)
    assert len(receiver.requests) == 1
    assert callback_of(store, job) == delivered.callback


def test_a_given_up_callback_is_not_started_again_by_an_event_published_again(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(status(410))  # gone: gives up at once
    job = finished_job(store, receiver.url)
    callbacks = sender(store, settings(ca_bundle))
    gave_up = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)

    again = callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert gave_up.action == "gave_up"
    assert (again.action, again.callback) == ("skipped", None)
    assert len(receiver.requests) == 1
    assert callback_of(store, job) == gave_up.callback


@pytest.mark.parametrize("unfinished", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_not_finished_gets_no_delivery_whatever_event_named_it(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, unfinished: JobStatus
) -> None:
    """The job is read afresh, and its own status decides: an event naming a job that is not finished (one put on
    the bus by anyone else who may PutEvents there, with the source and detail-type the rule matches) must not
    spend its callback: a delivery now would be recorded DELIVERED, and the real final event skipped."""
    receiver = serve()
    job = finished_job(store, receiver.url)
    store.delete("alice", job.job_id)
    store.put_new(job.model_copy(update={"status": unfinished, "finished_at": None, "result": None}))

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert (outcome.action, outcome.callback) == ("skipped", None)
    assert receiver.connections == 0
    assert callback_of(store, job) == JobCallback(status=CallbackStatus.PENDING)


def test_a_job_without_a_callback_url_is_skipped(store: DynamoJobStore, ca_bundle: str) -> None:
    now = Clock()()
    job = Job(
        owner_id="alice",
        job_id="01a226ee-0000-7000-8000-000000000009",
        title="t",
        type="noop",
        status=JobStatus.SUCCEEDED,
        payload={},
        created_at=now,
        updated_at=now,
        finished_at=now,
    )
    store.put_new(job)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert outcome.action == "skipped"
    assert callback_of(store, job) is None


def test_the_logs_never_show_the_query_string_or_the_body(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = serve(status(500))
    job = finished_job(store, receiver.url)

    sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    [attempt] = [record.__dict__ for record in caplog.records if record.getMessage() == "Callback attempt"]
    assert attempt["url"] == f"https://{NAME}:{receiver.port}/hook?…"
    assert (attempt["job_id"], attempt["owner_id"], attempt["host"]) == (job.job_id, "alice", NAME)
    assert (attempt["attempt"], attempt["outcome"], attempt["status_code"]) == (1, "retry", 500)
    assert isinstance(attempt["elapsed_ms"], int)
    logged = json.dumps([record.__dict__ for record in caplog.records], default=str)
    assert "t0ken" not in logged
    assert "Audit" not in logged


def test_a_malformed_header_in_the_answer_logs_no_query_string(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib3 warns "Failed to parse headers (url=...)" with the request's URL when an answer's head has a defect
    (a line without a colon, a first line that is a continuation): the receiver chooses to send one, and the URL's
    query (a client's token) must not reach the logs through it."""
    receiver = serve(raw(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nno colon here\r\n\r\n"))
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert outcome.action == "retry"
    assert [record for record in caplog.records if record.name.startswith("urllib3")]  # the warning was given
    logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    logged.append(json.dumps([record.__dict__ for record in caplog.records], default=str))
    assert not [text for text in logged if "t0ken" in text]


def test_addresses_are_tried_in_order_until_one_accepts(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve()  # on 127.0.0.1 only: nothing listens on 127.0.0.2
    job = finished_job(store, receiver.url)

    outcome = sender(store, settings(ca_bundle), Resolver(["127.0.0.2", "127.0.0.1"])).deliver(
        "alice", job.job_id, version=VERSION, attempt=1
    )

    assert outcome.action == "delivered"
    assert len(receiver.requests) == 1


def test_the_functions_sender_signs_with_every_key_of_the_secure_parameter(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, next_key = SigningKey.generate(), SigningKey.generate()
    boto3.client("ssm").put_parameter(
        Name="/jobs/callback-signing-keys", Value=f"{current.text()}\n{next_key.text()}", Type="SecureString"
    )
    monkeypatch.setenv("JOBS_CALLBACK_SIGNING_KEY_PARAMETER", "/jobs/callback-signing-keys")

    callbacks = bootstrap.callback_sender()

    assert bootstrap.callback_sender() is callbacks
    assert isinstance(callbacks.store, DynamoJobStore)
    keys = callbacks.keys  # read at each delivery
    assert [key.kid for key in keys()] == [current.kid, next_key.kid]


@pytest.mark.parametrize("value", [None, "not-a-key", "whsk_AAAA"])
def test_unset_or_malformed_signing_keys_are_a_service_failure(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        boto3.client("ssm").put_parameter(Name="/jobs/callback-signing-keys", Value=value, Type="SecureString")
        monkeypatch.setenv("JOBS_CALLBACK_SIGNING_KEY_PARAMETER", "/jobs/callback-signing-keys")

    with pytest.raises(ServiceUnavailable):
        bootstrap.callback_signing_keys()


@pytest.mark.parametrize(
    ("respond", "attempt", "counted"),
    [
        (no_content, 1, {"CallbacksDelivered": [1.0]}),
        (status(500), 1, {"CallbacksFailedAttempts": [1.0]}),
        (status(500), 4, {"CallbacksFailedAttempts": [1.0], "CallbacksGaveUp": [1.0]}),
        (status(410), 1, {"CallbacksFailedAttempts": [1.0], "CallbacksGaveUp": [1.0]}),
    ],
)
def test_each_attempt_is_counted_without_an_owner_dimension(
    store: DynamoJobStore,
    serve: Callable[..., Receiver],
    ca_bundle: str,
    respond: Respond,
    attempt: int,
    counted: dict[str, list[float]],
) -> None:
    job = finished_job(store, serve(respond).url)
    metrics.clear_metrics()

    sender(store, settings(ca_bundle)).deliver("alice", job.job_id, version=VERSION, attempt=attempt)

    assert {name: metric["Value"] for name, metric in metrics.metric_set.items()} == counted
    assert "alice" not in json.dumps(metrics.dimension_set)
    metrics.clear_metrics()


def test_a_receiver_that_gave_no_answer_is_not_tried_again_within_the_cool_down(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(sleeping(30))
    first, second = finished_job(store, receiver.url, 1), finished_job(store, receiver.url, 2)
    callbacks = sender(store, settings(ca_bundle, timeout_seconds=1))

    hung = callbacks.deliver("alice", first.job_id, version=VERSION, attempt=1)
    fast = callbacks.deliver("alice", second.job_id, version=VERSION, attempt=1)

    assert len(receiver.requests) == 1  # the second was not sent: no connection, no hang
    assert hung.action == fast.action == "retry"
    assert fast.callback is not None
    assert fast.callback.last_error is not None
    assert fast.callback.last_error.startswith("not attempted:")
    assert fast.retry_after_seconds == 5  # the schedule's wait, as for any failed attempt


def test_an_answer_closes_the_circuit_and_a_cool_down_of_0_keeps_it_closed(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(sleeping(30))
    jobs = [finished_job(store, receiver.url, n) for n in (1, 2)]
    callbacks = sender(store, settings(ca_bundle, timeout_seconds=1, circuit_cooldown_seconds=0))

    for job in jobs:
        callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1)

    assert len(receiver.requests) == 2  # no cool-down: each attempt connects


def test_one_hanging_receiver_holds_at_most_per_host_concurrency_threads(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    receiver = serve(sleeping(30))
    jobs = [finished_job(store, receiver.url, n) for n in range(1, 7)]
    callbacks = sender(store, settings(ca_bundle, timeout_seconds=1, per_host_concurrency=2))

    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(lambda job: callbacks.deliver("alice", job.job_id, version=VERSION, attempt=1), jobs))

    assert len(receiver.requests) == 2  # two attempts hung; the four others waited for them, then failed at once
    assert [outcome.action for outcome in outcomes] == ["retry"] * 6


def test_no_attempt_starts_that_could_outlive_the_invocation(
    store: DynamoJobStore, serve: Callable[..., Receiver], ca_bundle: str
) -> None:
    """A receiver's turn (``HostCircuits``' slots) can come late in the invocation; an attempt started then could
    run past the function's Timeout, and a timed-out invocation fails its whole batch."""
    receiver = serve()
    job = finished_job(store, receiver.url)
    config = settings(ca_bundle, timeout_seconds=10)

    @aws.time_budget
    def invocation(event: Any, context: Any) -> CallbackOutcome:
        return sender(store, config).deliver("alice", job.job_id, version=VERSION)

    with pytest.raises(ServiceUnavailable, match="no time left"):
        invocation({}, FakeLambdaContext(remaining_millis=11_000))
    assert receiver.requests == []
    assert callback_of(store, job) == job.callback  # no attempt recorded

    assert invocation({}, FakeLambdaContext(remaining_millis=14_000)).action == "delivered"
