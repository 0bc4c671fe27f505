"""The time budget through the local stack: the API function's DynamoDB endpoint accepts connections and never
answers; the client gets 503 with ``Retry-After`` before the function's ``Timeout`` (10 s), never the gateway's
500 for a timed-out function, and the stack stays up for the next request."""

from __future__ import annotations

import time
from pathlib import Path

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
