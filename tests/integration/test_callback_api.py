"""Job callbacks through the API function's handler, on moto: ``callback_url`` is checked at submit (every refused
kind is a 422 at ``body.callback_url`` that writes nothing), a taken one is stored with its callback PENDING and
shown by GET, and the callback keys are served without a token from the public key parameter."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import boto3
import pytest

from jobs import bootstrap
from jobs.webhooks import SigningKey, public_key_text
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

PUBLIC_KEY_PARAMETER = "/test/webhooks/public-key"


@pytest.fixture
def api(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("JOBS_CALLBACK_PUBLIC_KEY_PARAMETER", PUBLIC_KEY_PARAMETER)
    bootstrap.reset()
    return load_function("api")


def call(api: ModuleType, name: str, token: str | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(api_event(name, token=token or sign("alice"), **kwargs), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"] or "null")


def get_keys(api: ModuleType) -> dict[str, Any]:
    event = api_event("list_jobs", token=None)
    path = "/api/v1/webhooks/public-key"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    event.pop("queryStringParameters", None)
    event["rawQueryString"] = ""
    return api.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:secret@example.com/hook",
        "https://example.com/hook#part",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[64:ff9b::7f00:1]/hook",
        "https://[2002:a9fe:a9fe::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://2130706433/hook",
        "https://0x7f.0.0.1/hook",
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https://exa mple.com/hook",
        "https://example.com:0/hook",
        "https://[127.0.0.1]/hook",
        "https://[::1/hook",
        "https://" + "a" * 2050 + ".com/",
    ],
)
def test_a_refused_callback_url_is_a_422_at_body_callback_url_and_writes_nothing(
    api: ModuleType, aws: Aws, url: str
) -> None:
    status, problem = call(api, "create_job", body={"title": "hooked", "callback_url": url})

    assert status == 422, problem
    assert [error["loc"] for error in problem["errors"]] == [["body", "callback_url"]]
    assert aws.item_count() == 0


def test_a_taken_callback_url_is_stored_with_its_callback_pending_and_shown(api: ModuleType, aws: Aws) -> None:
    url = "https://hooks.example.com/jobs?token=s3cret"
    status, job = call(api, "create_job", body={"title": "hooked", "type": "noop", "callback_url": url})

    assert status == 201
    assert job["callback_url"] == url
    assert job["callback"] == {
        "status": "PENDING",
        "attempts": 0,
        "last_attempt_at": None,
        "next_attempt_at": None,
        "delivered_at": None,
        "last_status_code": None,
        "last_error": None,
    }
    status, shown = call(api, "get_job", job_id=job["job_id"])
    assert (status, shown["callback_url"], shown["callback"]["status"]) == (200, url, "PENDING")


def test_a_job_without_a_callback_has_none(api: ModuleType) -> None:
    status, job = call(api, "create_job", body={"title": "plain", "type": "noop"})

    assert status == 201
    assert (job["callback_url"], job["callback"]) == (None, None)


def test_the_callback_keys_are_served_without_a_token_as_a_jwks(api: ModuleType) -> None:
    current, following = SigningKey.generate(), SigningKey.generate()
    value = f"{public_key_text(current.public_key)}\n{public_key_text(following.public_key)}"
    boto3.client("ssm").put_parameter(Name=PUBLIC_KEY_PARAMETER, Value=value, Type="String")

    response = get_keys(api)

    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "public, max-age=300"
    keys = json.loads(response["body"])["keys"]
    assert [key["kid"] for key in keys] == [current.kid, following.kid]
    assert [key["whpk"] for key in keys] == [public_key_text(current.public_key), public_key_text(following.public_key)]
    assert {(key["kty"], key["crv"], key["alg"]) for key in keys} == {("OKP", "Ed25519", "EdDSA")}


@pytest.mark.parametrize("value", [None, "not-a-key", "whpk_AAAA"])
def test_missing_or_malformed_callback_keys_are_a_503_problem(api: ModuleType, value: str | None) -> None:
    if value is not None:
        boto3.client("ssm").put_parameter(Name=PUBLIC_KEY_PARAMETER, Value=value, Type="String")

    response = get_keys(api)

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["status"] == 503
