"""Job callbacks through the running local stack (issue 17): a job's final Job State Change goes through the
template's ``JobCallbacksRule`` to ``JobCallbacksQueue``, and the callback sender POSTs the job, signed, to its
``callback_url``. Receivers are HTTPS servers on loopback with a ``trustme`` certificate authority.

This module starts its own stack, as a user would for such receivers: ``JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK=1`` (the
documented flag), the test CA (``JOBS_LOCAL_CALLBACK_CA_BUNDLE``) and a retry schedule of seconds
(``JOBS_LOCAL_CALLBACK_RETRY_DELAYS=1,1,1``: four attempts), with a 20-second callback timeout. The session's stack
(tests/e2e/conftest.py), started without the flag, shows a loopback receiver refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from jobs_client import WebhookVerificationError, verify_webhook
from tests.e2e.support import SECRET, RunningStack, running_stack, token
from tests.helpers import ROOT
from tests.webhook_receiver import Receiver, ca_bundle, receiving

pytestmark = pytest.mark.e2e

#: The stack's retry schedule, seconds (the default is 5 s to 10 h, eight attempts over 27.6 hours).
RETRY_DELAYS = (1, 1, 1)
#: The stack's callback timeout, seconds: a slow receiver's attempt hangs this long.
CALLBACK_TIMEOUT = 20
#: A query value that must never reach a log line (callback URLs may carry a client's token in their query).
QUERY_SECRET = "query-secret-5f0c7e1d"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def loopback_callbacks_stack(
    directory: Path,
    ca: trustme.CA,
    *,
    template: Path | None = None,
    sender_environment: Mapping[str, str] | None = None,
    switches: Mapping[str, str] | None = None,
) -> Iterator[RunningStack]:
    """A stack started with the documented loopback flag and the test CA, whose API and sender re-read the keys
    every second (not 5 minutes); ``sender_environment`` adds to the sender's variables, ``switches`` to the
    stack's ``JOBS_LOCAL_*``."""
    with running_stack(
        directory,
        secret=SECRET,
        template=template,
        function_environment={
            "DeliverCallbacksFunction": {"JOBS_CALLBACK_KEYS_MAX_AGE_SECONDS": "1", **(sender_environment or {})},
            "ApiFunction": {"JOBS_CALLBACK_KEYS_MAX_AGE_SECONDS": "1"},
        },
        environment={
            "JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK": "1",
            "JOBS_LOCAL_CALLBACK_CA_BUNDLE": str(ca_bundle(ca, directory)),
            **(switches or {}),
        },
    ) as process:
        assert "loopback receivers ALLOWED" in process.banner
        assert f"public keys {process.base_url}/api/v1/webhooks/public-key" in process.banner
        yield RunningStack(process.base_url, process.log, process.dynamodb_endpoint, process.physical, process)


@pytest.fixture(scope="module")
def hooks_stack(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[RunningStack]:
    """A stack whose callbacks may reach loopback receivers trusted through the test CA."""
    with loopback_callbacks_stack(
        tmp_path_factory.mktemp("callbacks-stack"),
        ca,
        sender_environment={"JOBS_CALLBACK_TIMEOUT_SECONDS": str(CALLBACK_TIMEOUT)},
        switches={"JOBS_LOCAL_CALLBACK_RETRY_DELAYS": ",".join(map(str, RETRY_DELAYS))},
    ) as stack:
        yield stack


def submit(stack: RunningStack, owner: str, callback_url: str) -> str:
    """Submit a ``noop`` job with ``callback_url`` as ``owner``; its id."""
    reply = stack.request(
        "POST", "/api/v1/jobs", token=token(owner), body={"title": "t", "type": "noop", "callback_url": callback_url}
    )
    assert reply.status == 201, reply.body
    return str(reply.body["job_id"])


def job_when(stack: RunningStack, owner: str, job_id: str, callback_status: str, timeout: float = 90) -> dict[str, Any]:
    """The job as GET returns it, once its callback's status is ``callback_status``."""
    deadline = time.monotonic() + timeout
    while True:
        job = stack.request("GET", f"/api/v1/jobs/{job_id}", token=token(owner)).body
        if (job.get("callback") or {}).get("status") == callback_status or time.monotonic() > deadline:
            assert (job.get("callback") or {}).get("status") == callback_status, job
            return dict(job)
        time.sleep(0.3)


def public_keys(stack: RunningStack) -> dict[str, Any]:
    """GET /api/v1/webhooks/public-key, without a token."""
    reply = stack.request("GET", "/api/v1/webhooks/public-key")
    assert reply.status == 200, reply.body
    assert reply.headers["cache-control"] == "public, max-age=300"
    return dict(reply.body)


def quiet(receiver: Receiver, count: int, seconds: float = 3.0) -> list[Any]:
    """The receiver's requests, once ``count`` have come and no other came for ``seconds``."""
    receiver.wait_for(count, timeout=60)
    time.sleep(seconds)
    return list(receiver.requests)


def test_a_finished_job_is_called_back_once_signed_and_shown_delivered(
    hooks_stack: RunningStack, ca: trustme.CA
) -> None:
    with receiving(ca) as receiver:
        job_id = submit(hooks_stack, "hook-alice", receiver.url(query=f"token={QUERY_SECRET}"))

        job = job_when(hooks_stack, "hook-alice", job_id, "DELIVERED")
        [request] = quiet(receiver, 1)

    delivered = verify_webhook(request.headers, request.body, public_keys(hooks_stack))
    assert request.path == f"/hooks/jobs?token={QUERY_SECRET}"
    assert request.headers["webhook-id"].startswith(f"msg_{job_id}_")
    assert (delivered["job_id"], delivered["status"]) == (job_id, "SUCCEEDED")
    assert delivered["callback"]["status"] == "PENDING"  # the job as it was when sent
    assert job["status"] == "SUCCEEDED"
    assert (job["callback"]["attempts"], job["callback"]["last_status_code"]) == (1, 204)
    assert job["callback"]["delivered_at"] >= job["finished_at"]


def test_a_receiver_answering_500_is_retried_then_given_up(hooks_stack: RunningStack, ca: trustme.CA) -> None:
    with receiving(ca, status=500) as receiver:
        job_id = submit(hooks_stack, "hook-bob", receiver.url(query=f"token={QUERY_SECRET}"))

        job = job_when(hooks_stack, "hook-bob", job_id, "FAILED")
        requests = quiet(receiver, len(RETRY_DELAYS) + 1)

    assert job["callback"]["attempts"] == len(RETRY_DELAYS) + 1
    assert (job["callback"]["last_status_code"], job["callback"]["next_attempt_at"]) == (500, None)
    assert len(requests) == len(RETRY_DELAYS) + 1
    assert len({r.headers["webhook-id"] for r in requests}) == 1  # one message, retried
    lines = [json.loads(line) for line in hooks_stack.logs().splitlines() if job_id in line]
    attempts = [line for line in lines if line.get("message") == "Callback attempt"]
    assert [line["outcome"] for line in attempts] == ["retry"] * len(RETRY_DELAYS) + ["gave_up"]
    assert any('"CallbacksGaveUp"' in line for line in hooks_stack.logs().splitlines())


def test_a_slow_receiver_delays_neither_its_job_nor_another_owners_callback(
    hooks_stack: RunningStack, ca: trustme.CA
) -> None:
    with receiving(ca, delay=120) as slow, receiving(ca) as fast:
        slow_job = submit(hooks_stack, "hook-slow", slow.url())
        [hanging] = slow.wait_for(1, timeout=60)  # its first attempt is in flight, for CALLBACK_TIMEOUT seconds
        before = hooks_stack.request("GET", f"/api/v1/jobs/{slow_job}", token=token("hook-slow")).body

        fast_job = submit(hooks_stack, "hook-fast", fast.url())
        delivered = job_when(hooks_stack, "hook-fast", fast_job, "DELIVERED")
        meanwhile = hooks_stack.request("GET", f"/api/v1/jobs/{slow_job}", token=token("hook-slow")).body

    # The slow owner's job had finished before its callback was even sent, and nothing waits on the callback.
    assert before["status"] == "SUCCEEDED"
    assert datetime.fromisoformat(before["finished_at"]).timestamp() <= hanging.wall
    # The other owner's callback was delivered while the slow one's first attempt still hung.
    assert delivered["callback"]["attempts"] == 1
    assert meanwhile["callback"]["status"] == "PENDING", meanwhile["callback"]
    assert len(slow.requests) == 1


def test_one_owners_many_hanging_callbacks_hold_one_sender_worker_not_all(
    hooks_stack: RunningStack, ca: trustme.CA
) -> None:
    """Owner A's callbacks, more than a batch, all to a receiver that hangs past the timeout; the stack has two
    sender workers. Without a slot per owner both workers would hang on A's batches and owner B's callback would
    wait for the timeout (20 s); with it, one worker hangs and B's callback comes at once."""
    with receiving(ca, delay=120) as slow, receiving(ca) as fast:
        for _ in range(12):
            submit(hooks_stack, "hook-many", slow.url())
        slow.wait_for(1, timeout=60)
        time.sleep(2)  # A's other records have reached the queue and the workers
        fast_job = submit(hooks_stack, "hook-other", fast.url())
        delivered = job_when(hooks_stack, "hook-other", fast_job, "DELIVERED", timeout=60)
        hanging_meanwhile = len(slow.requests)

    [request] = fast.requests
    waited = request.wall - datetime.fromisoformat(delivered["finished_at"]).timestamp()
    assert waited < CALLBACK_TIMEOUT / 2, waited
    assert hanging_meanwhile <= 2  # one worker's two attempts per receiver (jobs.callbacks.HostCircuits)


def test_query_strings_never_reach_the_logs(hooks_stack: RunningStack, ca: trustme.CA) -> None:
    with receiving(ca) as receiver:
        job_id = submit(hooks_stack, "hook-carol", receiver.url(query=f"token={QUERY_SECRET}"))
        job_when(hooks_stack, "hook-carol", job_id, "DELIVERED")

    logs = hooks_stack.logs()
    assert re.search(rf'"job_id":\s*"{job_id}"', logs)
    assert QUERY_SECRET not in logs


def test_a_name_resolving_to_loopback_fails_at_once_without_the_flag(stack: RunningStack, ca: trustme.CA) -> None:
    """The session's stack runs without the flag; this machine's own name passes the submit check (no lookup) and
    resolves to loopback at delivery."""
    assert stack.process is not None
    assert "loopback receivers refused" in stack.process.banner
    name = socket.gethostname()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or not all(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"this machine's name {name!r} does not resolve to loopback only ({addresses})")
    with receiving(ca) as receiver:
        job_id = submit(stack, "hook-dave", receiver.url(host=name))

        job = job_when(stack, "hook-dave", job_id, "FAILED")
        time.sleep(2)

    assert job["callback"]["attempts"] == 1
    assert "loopback" in job["callback"]["last_error"]
    assert receiver.requests == []


def key_tool(stack: RunningStack, action: str) -> None:
    """``python -m local.webhook_keys <action>`` (what ``make webhook-keys ACTION=<action>`` runs) against the
    stack's SSM, with the environment the banner's ``AWS CLI`` line gives."""
    assert stack.process is not None
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AWS_ENDPOINT_URL_SSM": stack.process.aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "local.webhook_keys", action],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "whsk_" not in done.stdout + done.stderr  # the tool never prints a private key


def delivered_to(stack: RunningStack, ca: trustme.CA, owner: str) -> Any:
    """One job's delivery, as its receiver got it."""
    with receiving(ca) as receiver:
        job_id = submit(stack, owner, receiver.url())
        job_when(stack, owner, job_id, "DELIVERED")
        [request] = quiet(receiver, 1, seconds=0.5)
    return request


def keys_when(stack: RunningStack, count: int) -> dict[str, Any]:
    """The public keys, once the API serves ``count`` of them (it re-reads them each second here)."""
    deadline = time.monotonic() + 20
    while len((keys := public_keys(stack))["keys"]) != count and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(keys["keys"]) == count, keys
    return keys


def test_a_key_rotation_with_the_deployers_tool_never_breaks_a_receiver(
    hooks_stack: RunningStack, ca: trustme.CA
) -> None:
    """The README's rotation, rehearsed on the running stack: rotate (two keys sign, both published), then retire
    (the new key alone). A receiver holding the old keys verifies every delivery until it re-reads them."""
    old_keys = keys_when(hooks_stack, 1)

    key_tool(hooks_stack, "rotate")
    both = keys_when(hooks_stack, 2)
    time.sleep(1.5)  # the sender's copy of the signing keys is a second old at most
    during = delivered_to(hooks_stack, ca, "hook-rotate")

    key_tool(hooks_stack, "retire")
    new_keys = keys_when(hooks_stack, 1)
    time.sleep(1.5)
    after = delivered_to(hooks_stack, ca, "hook-rotate")

    assert both["keys"][0] == old_keys["keys"][0]  # the current key stays first; the new one follows
    assert new_keys["keys"] == both["keys"][1:]
    assert len(during.headers["webhook-signature"].split()) == 2  # signed by both keys
    verify_webhook(during.headers, during.body, old_keys)  # a receiver still holding the old key
    verify_webhook(during.headers, during.body, new_keys)
    assert len(after.headers["webhook-signature"].split()) == 1
    verify_webhook(after.headers, after.body, new_keys)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(after.headers, after.body, old_keys)  # the retired key signs nothing any more


def readme_receiver() -> str:
    """The README's receiver, word for word."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Job callbacks (webhooks)") :]
    return section[
        section.index("```python\n") + len("```python\n") : section.index("\n```", section.index("```python"))
    ]


def test_the_readmes_receiver_takes_a_real_delivery_and_refuses_a_tampered_one(
    hooks_stack: RunningStack, ca: trustme.CA, tmp_path: Path
) -> None:
    request = delivered_to(hooks_stack, ca, "hook-readme")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = readme_receiver()
    assert 'urlopen("http://127.0.0.1:3000/api/v1/webhooks/public-key")' in code
    assert 'HTTPServer(("127.0.0.1", 8080), Receiver)' in code
    script = tmp_path / "receiver.py"
    script.write_text(code.replace("http://127.0.0.1:3000", hooks_stack.base).replace("8080", str(port)))
    receiver = subprocess.Popen(
        [sys.executable, "-u", str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        answers = []
        for body in (request.body, request.body.replace(b"SUCCEEDED", b"FAILED")):
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    headers = {name: value for name, value in request.headers.items() if name.startswith("webhook-")}
                    connection.request("POST", "/hooks", body=body, headers=headers)
                    answers.append(connection.getresponse().status)
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, "the README's receiver did not start"
                    time.sleep(0.2)
    finally:
        receiver.terminate()
        printed, _ = receiver.communicate(timeout=10)

    assert answers == [204, 400]
    job = json.loads(request.body)
    assert printed.split() == [request.headers["webhook-id"], job["job_id"], "SUCCEEDED"]
