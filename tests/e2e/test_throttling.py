"""Route throttling on the local stack, from the template's DefaultRouteSettings (parameters ThrottleRateLimit
and ThrottleBurstLimit): beyond the burst, API Gateway's own 429 without reaching the function."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.support import running_stack
from tests.helpers import sign

pytestmark = pytest.mark.e2e

SECRET = "throttle-secret-that-is-long-enough-for-hs256-0123"


def get(base: str, path: str) -> tuple[int, bytes, str]:
    headers = {"Authorization": f"Bearer {sign('alice', secret=SECRET)}"}
    request = urllib.request.Request(base + path, headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - loopback only
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_requests_beyond_the_burst_get_api_gateways_429_and_the_rate_refills(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    overrides = "ThrottleRateLimit=1 ThrottleBurstLimit=3"
    # On moto's DynamoDB, the stack a machine without java gets; the session's stack covers DynamoDB Local.
    with running_stack(
        tmp_path_factory.mktemp("throttle"), secret=SECRET, parameter_overrides=overrides, dynamodb="moto"
    ) as stack:
        statuses = []
        throttled = None
        for _ in range(6):
            status, body, content_type = get(stack.base_url, "/api/v1/jobs")
            statuses.append(status)
            if status == 429:
                throttled = (body, content_type)
        other_route = get(stack.base_url, "/api/v1/jobs/01a226ee-fede-7c74-8f78-000000000000")[0]
        time.sleep(1.2)
        refilled = get(stack.base_url, "/api/v1/jobs")[0]
        invocations = stack.log.read_text().count("Chuck Norris List Job: Retrieved")

    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    assert throttled is not None
    assert json.loads(throttled[0]) == {"message": "Too Many Requests"}
    assert throttled[1] == "application/json"
    assert other_route == 404, "each route has its own bucket"
    assert refilled == 200
    assert invocations == statuses.count(200) + 1, "a throttled request never reaches the function"
