"""Input limits through the API handler under moto: what is refused (413/422/400, never a 500) is refused before
anything is written, and valid Unicode round-trips exactly."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import pytest

from jobs.models import MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, MAX_REQUEST_BYTES, MAX_TITLE_LENGTH
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

UNICODE = "Chuck 🥋 Norris — 空手 ﷽ עברית e\u0301 👩‍👩‍👧 \U0001f600 \u00a0\u200b\u2028 \U0001d518\U0001d52b\U0001d526"


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def post_raw(api: ModuleType, raw: str, *, token: str | None = None) -> tuple[int, Any]:
    event = api_event("create_job", token=token or sign("alice"), raw_body=raw)
    response = api.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    root = node
    for _ in range(levels - 1):
        node["d"] = {}
        node = node["d"]
    return root


REFUSED = [
    ("title one character too long", json.dumps({"title": "x" * (MAX_TITLE_LENGTH + 1)}), 422),
    ("title of astral characters, too long", json.dumps({"title": "🥋" * (MAX_TITLE_LENGTH + 1)}), 422),
    ("payload one byte over", json.dumps({"title": "t", "payload": {"b": "x" * (MAX_PAYLOAD_BYTES - 7)}}), 422),
    (
        "payload over in multibyte characters",
        json.dumps({"title": "t", "payload": {"b": "é" * 40_000}}, ensure_ascii=False),
        422,
    ),
    ("payload one level too deep", json.dumps({"title": "t", "payload": nested(MAX_PAYLOAD_DEPTH + 1)}), 422),
    ("NaN", '{"title": "t", "payload": {"n": NaN}}', 422),
    ("-Infinity", '{"title": "t", "payload": {"n": -Infinity}}', 422),
    ("1e400 (infinite as a float)", '{"title": "t", "payload": {"n": 1e400}}', 422),
    ("1e-400 (below DynamoDB's range, not zero)", '{"title": "t", "payload": {"n": 1.5e-131}}', 422),
    ("39-digit integer", '{"title": "t", "payload": {"n": ' + "9" * 39 + "}}", 422),
    ("5000-digit integer", '{"title": "t", "payload": {"n": ' + "9" * 5000 + "}}", 422),
    ("5000-digit title number", '{"title": ' + "9" * 5000 + "}", 422),
    ("control character in the title", '{"title": "a\\u0000b"}', 422),
    ("escape sequence in the title", '{"title": "\\u001b[31mred"}', 422),
    ("control character in a payload key", '{"title": "t", "payload": {"a\\u0007": 1}}', 422),
    ("lone high surrogate in the title", '{"title": "\\ud800"}', 422),
    ("lone low surrogate in a payload value", '{"title": "t", "payload": {"s": "x\\udc00y"}}', 422),
    ("reversed surrogate pair", '{"title": "t", "payload": {"s": "\\udc00\\ud800"}}', 422),
    ("nesting 100000 deep", '{"title": "t", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}", 400),
    ("body one byte over the limit", json.dumps({"title": "t", "payload": {"p": " " * MAX_REQUEST_BYTES}}), 413),
    ("whitespace-padded body over the limit", '{"title": "t"' + " " * MAX_REQUEST_BYTES + "}", 413),
]


@pytest.mark.parametrize(("case", "raw", "status"), REFUSED, ids=[case for case, _, _ in REFUSED])
def test_a_body_over_a_limit_is_refused_before_anything_is_written(
    api: ModuleType, aws: Aws, case: str, raw: str, status: int
) -> None:
    code, body = post_raw(api, raw)

    assert code == status, body
    assert body["status"] == status
    assert aws.item_count() == 0
    assert aws.messages() == []


def test_the_413_comes_after_authentication(api: ModuleType) -> None:
    event = api_event("create_job", token=None, raw_body="x" * (MAX_REQUEST_BYTES + 1))

    response = api.lambda_handler(event, FakeLambdaContext())

    assert response["statusCode"] == 401


def test_a_base64_body_is_measured_as_sent(api: ModuleType) -> None:
    event = api_event("create_job", token=sign("alice"))
    event["body"] = base64.b64encode(b"{" + b" " * MAX_REQUEST_BYTES + b"}").decode()
    event["isBase64Encoded"] = True

    assert api.lambda_handler(event, FakeLambdaContext())["statusCode"] == 413


def test_limits_are_inclusive(api: ModuleType, aws: Aws) -> None:
    key = "b"
    filler = MAX_PAYLOAD_BYTES - len(json.dumps({key: ""}, separators=(",", ":")))
    raw = json.dumps({"title": "🥋" * MAX_TITLE_LENGTH, "payload": {key: "x" * filler}})
    deep = json.dumps({"title": "t", "payload": nested(MAX_PAYLOAD_DEPTH)})

    assert post_raw(api, raw)[0] == 201
    assert post_raw(api, deep)[0] == 201
    assert aws.item_count() == 2


def test_valid_unicode_round_trips_exactly(api: ModuleType) -> None:
    payload = {"text": UNICODE, UNICODE: "as a key", "lines": "one\r\ntwo\tthree", "list": [UNICODE, 1, 0.5]}
    raw = json.dumps({"title": UNICODE, "type": "noop", "payload": payload}, ensure_ascii=False)

    status, created = post_raw(api, raw)
    got = api.lambda_handler(api_event("get_job", token=sign("alice"), job_id=created["job_id"]), FakeLambdaContext())
    body = json.loads(got["body"])

    assert status == 201
    assert body["title"] == UNICODE
    assert body["payload"] == payload
    assert json.dumps(body["payload"], ensure_ascii=False) == json.dumps(payload, ensure_ascii=False)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/jsonx",
        "application/xml",
    ],
)
def test_a_body_that_is_not_json_is_a_415_before_it_is_parsed(api: ModuleType, aws: Aws, content_type: str) -> None:
    event = api_event("create_job", token=sign("alice"), raw_body='{"title": "t"}')
    event["headers"]["content-type"] = content_type

    response = api.lambda_handler(event, FakeLambdaContext())

    assert response["statusCode"] == 415
    assert aws.item_count() == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_with_or_without_parameters_is_accepted(api: ModuleType, content_type: str) -> None:
    event = api_event("create_job", token=sign("alice"), raw_body='{"title": "t", "type": "noop"}')
    event["headers"]["content-type"] = content_type

    assert api.lambda_handler(event, FakeLambdaContext())["statusCode"] == 201


def test_a_body_of_bytes_that_are_not_utf8_is_a_400_not_a_500(api: ModuleType, aws: Aws) -> None:
    event = api_event("create_job", token=sign("alice"))
    event["body"] = base64.b64encode(b'{"title": "\xff\xfe"}').decode()
    event["isBase64Encoded"] = True

    response = api.lambda_handler(event, FakeLambdaContext())

    assert response["statusCode"] == 400
    assert aws.item_count() == 0
