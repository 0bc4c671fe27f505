"""The identity rule through the API function's handler, against moto: a token whose ``sub`` is not 1 to 255
printable ASCII characters without space is a 401 whose challenge names the claim, and nothing is written;
a ``sub`` at the edges of the rule is an owner like any other."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import BAD_SUBS, GOOD_SUBS, FakeLambdaContext, api_event, load_function, sign_sub

CHALLENGE = (
    'Bearer realm="jobs", error="invalid_token", '
    'error_description="the sub claim is not 1 to 255 printable ASCII characters"'
)


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def call(api: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    return api.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def idempotency_records(aws: Aws) -> int:
    return int(aws.dynamodb.scan(TableName=aws.idempotency_table_name, Select="COUNT")["Count"])


@pytest.mark.parametrize(("case", "sub"), BAD_SUBS, ids=[case for case, _ in BAD_SUBS])
def test_a_create_with_a_sub_that_breaks_the_identity_rule_is_a_401_that_writes_nothing(
    api: ModuleType, aws: Aws, case: str, sub: object, caplog: pytest.LogCaptureFixture
) -> None:
    event = api_event("create_job", token=sign_sub(sub))
    event["headers"]["idempotency-key"] = "identity-rule"

    response = call(api, event)

    assert response["statusCode"] == 401, response
    challenge = response["headers"]["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="jobs", error="invalid_token", error_description="the ')
    assert "sub claim" in challenge
    assert json.loads(response["body"])["detail"] == "A valid bearer token is required."
    assert aws.item_count() == 0
    assert idempotency_records(aws) == 0
    assert aws.messages() == []
    if isinstance(sub, str) and len(sub) > 1:
        assert sub not in caplog.text


@pytest.mark.parametrize("sub", ["al\ud800ice", "alice\uffff", "al ice", "a" * 256, "a" * 2049])
def test_the_challenge_names_the_sub_rule_and_nothing_of_the_value(api: ModuleType, sub: str) -> None:
    response = call(api, api_event("list_jobs", token=sign_sub(sub)))

    assert response["statusCode"] == 401
    assert response["headers"]["WWW-Authenticate"] == CHALLENGE


def test_a_token_without_a_sub_says_so(api: ModuleType) -> None:
    response = call(api, api_event("list_jobs", token=sign_sub(None)))

    assert response["headers"]["WWW-Authenticate"].endswith('error_description="the token has no sub claim"')


def test_other_refusals_carry_no_description(api: ModuleType) -> None:
    response = call(api, api_event("list_jobs", token=sign_sub("alice", secret="another-secret-" * 4)))
    missing = call(api, api_event("list_jobs", token=None))

    assert response["headers"]["WWW-Authenticate"] == 'Bearer realm="jobs", error="invalid_token"'
    assert missing["headers"]["WWW-Authenticate"] == 'Bearer realm="jobs"'


@pytest.mark.parametrize(("case", "sub"), GOOD_SUBS, ids=[case for case, _ in GOOD_SUBS])
def test_a_sub_at_the_edges_of_the_rule_owns_its_jobs_exactly(api: ModuleType, aws: Aws, case: str, sub: str) -> None:
    created = call(api, api_event("create_job", token=sign_sub(sub)))
    own = call(api, api_event("list_jobs", token=sign_sub(sub)))
    other = call(api, api_event("list_jobs", token=sign_sub(sub.swapcase())))  # compared exactly: no case folding

    assert created["statusCode"] == 201, created
    assert [job["job_id"] for job in json.loads(own["body"])["items"]] == [json.loads(created["body"])["job_id"]]
    assert other["statusCode"] == 200
    assert json.loads(other["body"])["items"] == []
    assert aws.item_count() == 1
