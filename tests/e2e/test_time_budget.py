"""The time budget through the local stack: the API function's DynamoDB endpoint accepts connections and never
answers; the client gets 503 with ``Retry-After`` before the function's ``Timeout`` (10 s), never the gateway's
500 for a timed-out function, and the stack stays up for the next request. And a keyed create whose write lands
but whose answer is lost makes one job, however its retries are timed."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from jobs.settings import AwsSettings
from tests.e2e.support import SECRET, RunningStack, running_stack, token
from tests.helpers import silent_http_endpoint

#: The API function's Timeout in template.yaml, in seconds.
API_TIMEOUT_SECONDS = 10


def test_a_hanging_dynamodb_gets_a_503_in_time(tmp_path: Path) -> None:
    with (
        silent_http_endpoint() as silent,
        running_stack(
            tmp_path, secret=SECRET, function_environment={"ApiFunction": {"AWS_ENDPOINT_URL_DYNAMODB": silent.url}}
        ) as process,
    ):
        stack = RunningStack(process.base_url, process.log)
        for method, path, body in (
            ("POST", "/api/v1/jobs", {"title": "hangs", "type": "noop"}),
            ("GET", "/api/v1/jobs", None),
        ):
            started = time.monotonic()
            reply = stack.request(method, path, token=token("alice"), body=body)
            elapsed = time.monotonic() - started
            print(f"{method} {path}: {reply.status} in {elapsed:.1f} s")

            assert reply.status == 503, reply
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.body["status"] == 503
            assert elapsed < API_TIMEOUT_SECONDS - AwsSettings().response_margin_seconds + 0.5
        assert silent.accepted, "the function did call the silent endpoint"
        assert "Task timed out" not in stack.logs()


class AnswerLosingProxy:
    """An HTTP proxy to DynamoDB that, while ``losing``, forwards each PutItem to the Jobs table (so the write
    lands) and then never answers it, as a connection that dies after the request was sent."""

    def __init__(self, table_name: str) -> None:
        self.target = ""
        self.table = table_name.encode()
        self.losing = True
        self.lost = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = urllib.request.Request(  # noqa: S310 - loopback only
                    proxy.target + self.path,
                    data=body,
                    method="POST",
                    headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                        status, headers, raw = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as error:
                    status, headers, raw = error.code, error.headers, error.read()
                target = self.headers.get("X-Amz-Target", "")
                if proxy.losing and target.endswith(".PutItem") and proxy.table in body:
                    proxy.lost += 1
                    time.sleep(15)  # longer than the function's Timeout: the answer is lost
                    return
                self.send_response(status)
                for name in ("Content-Type", "x-amzn-RequestId", "x-amz-crc32"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_keyed_create_whose_answer_is_lost_makes_one_job(tmp_path: Path) -> None:
    """The job's write lands and its answer never comes. The write keeps one attempt of the invocation for
    recording the create in doubt under the Idempotency-Key, so a retry, even after the first invocation's time
    is up, gets that very job: one job, never two."""
    proxy = AnswerLosingProxy(table_name="")  # the table is named once the stack has made it
    with running_stack(
        tmp_path, secret=SECRET, function_environment={"ApiFunction": {"AWS_ENDPOINT_URL_DYNAMODB": proxy.url}}
    ) as process:
        proxy.target = process.dynamodb_endpoint
        proxy.table = f'"{process.physical["JobsTable"]}"'.encode()
        stack = RunningStack(process.base_url, process.log, process.dynamodb_endpoint, process.physical, process)
        body = {"title": "answer lost", "type": "noop"}
        headers = {"Idempotency-Key": "lost-once"}

        started = time.monotonic()
        first = stack.request("POST", "/api/v1/jobs", token=token("alice"), body=body, headers=headers)
        proxy.losing = False
        time.sleep(max(0.0, API_TIMEOUT_SECONDS + 1 - (time.monotonic() - started)))  # the first invocation is over
        retry = stack.request("POST", "/api/v1/jobs", token=token("alice"), body=body, headers=headers)

        jobs = [item for item in stack.items() if item["owner_id"]["S"] == "alice"]
        assert proxy.lost >= 1, "the write went through the proxy"
        assert first.status in (201, 503), first
        assert retry.status == 201, retry
        assert [item["job_id"]["S"] for item in jobs] == [retry.body["job_id"]]
