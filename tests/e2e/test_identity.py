"""The identity rule on the local stack: a token whose ``sub`` breaks it (a lone surrogate, U+FFFF, a space, 256
characters) is a 401 on POST, over HTTP through the gateway, and the Jobs table holds nothing of it."""

from __future__ import annotations

import pytest

from tests.e2e.support import SECRET, RunningStack, token
from tests.helpers import load_event, sign_sub

pytestmark = pytest.mark.e2e

SEED = load_event("seed-payload.json")


@pytest.mark.parametrize(
    "sub", ["al\ud800ice", "alice\uffff", "al ice", "a" * 256], ids=["lone surrogate", "U+FFFF", "space", "256"]
)
def test_a_sub_that_breaks_the_identity_rule_is_a_401_and_writes_nothing(stack: RunningStack, sub: str) -> None:
    before = {(item["owner_id"]["S"], item["job_id"]["S"]) for item in stack.items()}

    reply = stack.request("POST", "/api/v1/jobs", token=sign_sub(sub, secret=SECRET), body=SEED)

    assert reply.status == 401, reply
    assert reply.headers["www-authenticate"] == (
        'Bearer realm="jobs", error="invalid_token", '
        'error_description="the sub claim is not 1 to 255 printable ASCII characters"'
    )
    assert reply.body["detail"] == "A valid bearer token is required."
    keys = {(item["owner_id"]["S"], item["job_id"]["S"]) for item in stack.items()}
    # Nothing written. (Other tests put items of invalid owners straight into the table, as a migration could:
    # compare with what was there before rather than check every owner.)
    assert keys == before  # jobs of earlier tests may still change status, but no item is added
    assert sub not in {owner for owner, _ in keys}


def test_a_valid_token_of_another_owner_still_lists_only_its_own_jobs(stack: RunningStack) -> None:
    reply = stack.request("GET", "/api/v1/jobs", token=token("identity-rule-bystander"))

    assert reply.status == 200
    assert reply.body["items"] == []
