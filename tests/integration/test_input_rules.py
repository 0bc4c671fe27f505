"""One rule per kind of input (README, "Inputs and their rules"), through the API handler under moto: the body is
one JSON object, member names are unique at every depth, payload numbers and member order round-trip, a
single-valued header sent twice (joined by API Gateway) is refused, and an event of another payload format gets a
well-formed answer. Everything refused writes nothing. ``tests/e2e/test_input_rules.py`` runs the same kinds
through the local stack's gateway."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

DATA = Path(__file__).parent / "data"


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def call(api: ModuleType, event: Any) -> tuple[int, dict[str, str], str]:
    response = api.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], response.get("headers", {}), response.get("body") or ""


def post_raw(api: ModuleType, raw: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    event = api_event("create_job", token=sign("alice"), raw_body=raw)
    event["headers"].update(headers or {})
    return call(api, event)


def get_raw(api: ModuleType, job_id: str) -> str:
    status, _, body = call(api, api_event("get_job", token=sign("alice"), job_id=job_id))
    assert status == 200, body
    return body


def exact(text: str) -> Any:
    """JSON text with every number as the exact ``Decimal`` of its literal, objects as lists of pairs (order)."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=list)


# --- 1. Body shape: one JSON object --------------------------------------------------------------------------

NOT_OBJECTS = [
    ('[{"title": "x"}]', "an array"),
    ('[{"title": "x"}, {"title": "y"}]', "an array"),
    ('[[{"title": "x"}]]', "an array"),
    ("[]", "an array"),
    ('"x"', "a string"),
    ("1", "a number"),
    ("1.5", "a number"),
    ("true", "a boolean"),
    ("null", "null"),
]


@pytest.mark.parametrize(("raw", "kind"), NOT_OBJECTS, ids=[raw for raw, _ in NOT_OBJECTS])
def test_a_body_that_is_not_one_object_is_a_422_and_writes_nothing(
    api: ModuleType, aws: Aws, raw: str, kind: str
) -> None:
    status, headers, body = post_raw(api, raw)

    assert status == 422, body
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["errors"] == [
        {"loc": ["body"], "msg": f"the body must be one JSON object, not {kind}", "type": "body_not_object"}
    ]
    assert aws.item_count() == 0


def test_a_body_that_is_not_an_object_still_answers_401_without_a_token(api: ModuleType, aws: Aws) -> None:
    status, _, _ = call(api, api_event("create_job", token=None, raw_body='[{"title": "x"}]'))

    assert status == 401
    assert aws.item_count() == 0


# --- 2. Duplicate member names -------------------------------------------------------------------------------

DUPLICATES = [
    ("title twice", '{"title": "x", "title": "y"}', "title"),
    ("type twice", '{"title": "x", "type": "noop", "type": "report"}', "type"),
    ("payload twice", '{"title": "x", "payload": {}, "payload": {"a": 1}}', "payload"),
    ("inside payload", '{"title": "x", "payload": {"a": 1, "a": 2}}', "a"),
    ("deep inside payload", '{"title": "x", "payload": {"l": [{"m": {"n": [1, {"k": 1, "k": 1}]}}]}}', "k"),
    ("the same value twice", '{"title": "x", "payload": {"a": 1, "a": 1}}', "a"),
    ("spelled with an escape", '{"title": "x", "t\\u0069tle": "y"}', "title"),
    ("an escaped non-ASCII name", '{"title": "x", "payload": {"\\u00e9": 1, "\u00e9": 2}}', "\u00e9"),
    ("empty names", '{"title": "x", "payload": {"": 1, "": 2}}', ""),
]


@pytest.mark.parametrize(("case", "raw", "name"), DUPLICATES, ids=[case for case, _, _ in DUPLICATES])
def test_a_member_name_repeated_at_any_depth_is_a_400_and_writes_nothing(
    api: ModuleType, aws: Aws, case: str, raw: str, name: str
) -> None:
    status, headers, body = post_raw(api, raw)

    assert status == 400, body
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["errors"][0]["type"] == "json_duplicate_member"
    assert repr(name) in problem["errors"][0]["msg"]
    assert aws.item_count() == 0


def test_names_that_differ_in_case_or_normalisation_are_distinct_members(api: ModuleType) -> None:
    raw = '{"title": "x", "payload": {"a": 1, "A": 2, "\u00e9": 3, "e\u0301": 4}}'

    status, _, body = post_raw(api, raw)

    assert status == 201, body
    assert json.loads(get_raw(api, json.loads(body)["job_id"]))["payload"] == {
        "a": 1,
        "A": 2,
        "\u00e9": 3,
        "e\u0301": 4,
    }


# --- 3. Numbers and member order round-trip ------------------------------------------------------------------

#: (literal sent, literal that comes back): integers exactly, other numbers as the shortest text of their double.
ROUND_TRIPS = [
    ("1e100", "1e+100"),
    ("1E100", "1e+100"),
    ("1.0", "1.0"),
    ("-0.0", "-0.0"),
    ("1e2", "100.0"),
    ("1.50", "1.5"),
    ("0.1", "0.1"),
    ("-2.5e-7", "-2.5e-07"),
    ("1e-130", "1e-130"),
    ("9.9e125", "9.9e+125"),
    ("9007199254740993", "9007199254740993"),  # 2^53 + 1: an integer is never a double
    ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
    ("-12345678901234567890123456789012345678", "-12345678901234567890123456789012345678"),
    ("-0", "0"),
    ("0", "0"),
    ("1.2345e125", "1.2345e+125"),
    ("0.30000000000000004", "0.30000000000000004"),  # 17 significant digits: 0.1 + 0.2 as a double
]


@pytest.mark.parametrize(("sent", "back"), ROUND_TRIPS, ids=[sent for sent, _ in ROUND_TRIPS])
def test_a_payload_number_round_trips_post_get_post(api: ModuleType, aws: Aws, sent: str, back: str) -> None:
    status, _, created = post_raw(api, f'{{"title": "n", "type": "noop", "payload": {{"n": {sent}}}}}')
    assert status == 201, created
    first = get_raw(api, json.loads(created)["job_id"])

    returned = dict(exact(first))["payload"][0][1]
    assert returned == Decimal(sent)  # the same number, whatever its spelling
    assert json.dumps(json.loads(first)["payload"]["n"]) == back  # the documented spelling
    again_status, _, again = post_raw(
        api, json.dumps({"title": "n", "type": "noop", "payload": json.loads(first)["payload"]})
    )
    assert again_status == 201, again
    assert dict(exact(get_raw(api, json.loads(again)["job_id"])))["payload"][0][1] == Decimal(sent)
    assert aws.item_count() == 2


UNHELD = [
    ("3.14159265358979323846", "would not come back as sent"),  # more digits than a double holds
    ("0.1000000000000000000001", "would not come back as sent"),
    ("123456789012345678901234567890.5", "would not come back as sent"),
    ("1e400", "would not come back as sent"),  # infinite as a double
    ("-1e400", "would not come back as sent"),
    ("1e-400", "would not come back as sent"),  # zero as a double
    ("1e99999999999999999999999", "would not come back as sent"),
    ("1e200", "out of DynamoDB's range"),
    ("1.5e-131", "out of DynamoDB's range"),
    ("123456789012345678901234567890123456789", "at most 38 digits"),
    ("9" * 150, "at most 38 digits"),
]


@pytest.mark.parametrize(("sent", "why"), UNHELD, ids=[sent[:40] for sent, _ in UNHELD])
def test_a_number_that_could_not_come_back_as_sent_is_a_422(api: ModuleType, aws: Aws, sent: str, why: str) -> None:
    status, _, body = post_raw(api, f'{{"title": "n", "payload": {{"a": [1, {{"n": {sent}}}]}}}}')

    assert status == 422, body
    assert why in json.loads(body)["errors"][0]["msg"]
    assert aws.item_count() == 0


ORDERED = '{"title": "o", "type": "noop", "payload": {"c": 1, "b": {"z": 1, "y": [3, 2, 1], "x": 2}, "a": 3, "1": 4}}'


def test_member_order_round_trips_through_get_and_the_list(api: ModuleType) -> None:
    status, _, created = post_raw(api, ORDERED)
    job_id = json.loads(created)["job_id"]
    listed = call(api, api_event("list_jobs", token=sign("alice")))[2]

    sent = dict(exact(ORDERED))["payload"]
    assert status == 201
    assert dict(exact(created))["payload"] == sent
    assert dict(exact(get_raw(api, job_id)))["payload"] == sent
    assert dict(dict(exact(listed))["items"][0])["payload"] == sent


def test_member_order_round_trips_through_an_idempotent_replay(api: ModuleType, aws: Aws) -> None:
    first = post_raw(api, ORDERED, {"idempotency-key": "ordered"})
    replay = post_raw(api, ORDERED, {"idempotency-key": "ordered"})

    assert (first[0], replay[0]) == (201, 201)
    assert replay[2] == first[2]
    assert dict(exact(replay[2]))["payload"] == dict(exact(ORDERED))["payload"]
    assert aws.item_count() == 1


def test_the_payload_is_stored_as_its_json_text(api: ModuleType, aws: Aws) -> None:
    post_raw(api, ORDERED)

    item = aws.dynamodb.scan(TableName=aws.table_name)["Items"][0]
    assert item["payload"] == {"S": '{"c":1,"b":{"z":1,"y":[3,2,1],"x":2},"a":3,"1":4}'}


# --- 3b. What the previous version wrote stays readable ------------------------------------------------------


@pytest.fixture
def previous() -> dict[str, Any]:
    """A job item and an idempotency record as the previous version (payload as a Map) wrote them for one
    keyed request, captured by running that version's handler under moto."""
    found: dict[str, Any] = json.loads((DATA / "previous_version.json").read_text(encoding="utf-8"))
    return found


def test_a_job_stored_as_a_map_by_the_previous_version_is_read_and_can_be_sent_again(
    api: ModuleType, aws: Aws, previous: dict[str, Any]
) -> None:
    aws.dynamodb.put_item(TableName=aws.table_name, Item=previous["job_item"])
    job_id = previous["response"]["job_id"]

    read = json.loads(get_raw(api, job_id))
    status, _, again = post_raw(api, json.dumps({"title": "again", "type": "noop", "payload": read["payload"]}))

    assert read["payload"]["a"] == [1e100, 1, 0, 12345678901234567890123456789012345678, 0.1]
    assert read["payload"]["nested"] == {"z": True, "y": None, "x": "ünïcödé"}
    assert status == 201, again  # 1E+100 came back as the double 1e100, not a 101-digit integer
    assert json.loads(get_raw(api, json.loads(again)["job_id"]))["payload"] == read["payload"]


def test_a_retry_spanning_the_upgrade_gets_the_job_its_first_attempt_created(
    api: ModuleType, aws: Aws, previous: dict[str, Any]
) -> None:
    record = dict(previous["idempotency_item"])
    record["expiration"] = {"N": str(int(time.time()) + 3600)}
    record["in_progress_expiration"] = {"N": str(int(time.time() * 1000) + 60_000)}
    aws.dynamodb.put_item(TableName=aws.idempotency_table_name, Item=record)
    aws.dynamodb.put_item(TableName=aws.table_name, Item=previous["job_item"])

    status, _, body = post_raw(api, previous["request"], {"idempotency-key": previous["idempotency_key"]})

    assert status == 201, body  # the same validation hash as before: not a 422 "key reused with another body"
    assert json.loads(body)["job_id"] == previous["response"]["job_id"]
    assert json.loads(body)["payload"] == previous["response"]["payload"]
    assert aws.item_count() == 1


# --- 4. Repeated headers -------------------------------------------------------------------------------------

REPEATED = [
    ("Idempotency-Key sent twice", {"idempotency-key": "K,K"}, 422),
    ("Idempotency-Key sent twice with a space", {"idempotency-key": "K, K"}, 422),
    ("two different Idempotency-Keys", {"idempotency-key": "a,b"}, 422),
    ("Idempotency-Key and an empty repeat", {"idempotency-key": "K,"}, 422),
    ("Content-Type sent twice", {"content-type": "application/json,application/json"}, 400),
    (
        "Content-Type with a parameter, twice",
        {"content-type": "application/json; charset=utf-8, application/json"},
        400,
    ),
    ("Content-Type and another type", {"content-type": "application/json, text/plain"}, 400),
    ("Content-Type with an empty repeat", {"content-type": "application/json,"}, 400),
    ("Authorization sent twice", {"authorization": f"Bearer {sign('alice')},Bearer {sign('alice')}"}, 401),
    ("Authorization from two users", {"authorization": f"Bearer {sign('alice')}, Bearer {sign('bob')}"}, 401),
]


@pytest.mark.parametrize(("case", "headers", "status"), REPEATED, ids=[case for case, _, _ in REPEATED])
def test_a_single_valued_header_sent_twice_is_refused_and_writes_nothing(
    api: ModuleType, aws: Aws, case: str, headers: dict[str, str], status: int
) -> None:
    code, _, body = post_raw(api, '{"title": "x", "type": "noop"}', headers)

    assert code == status, body
    assert aws.item_count() == 0


def test_a_comma_inside_a_quoted_content_type_parameter_is_one_value(api: ModuleType, aws: Aws) -> None:
    status, _, body = post_raw(api, '{"title": "x"}', {"content-type": 'application/json; profile="a,b"'})

    assert status == 201, body


def test_a_key_sent_twice_never_makes_a_second_job_for_the_same_key(api: ModuleType, aws: Aws) -> None:
    first = post_raw(api, '{"title": "x"}', {"idempotency-key": "K"})
    twice = post_raw(api, '{"title": "x"}', {"idempotency-key": "K,K"})

    assert (first[0], twice[0]) == (201, 422)
    assert json.loads(twice[2])["errors"][0]["loc"] == ["header", "idempotency-key"]
    assert aws.item_count() == 1


# --- 5. Events the function is not configured for ------------------------------------------------------------

REST_API_EVENT = {
    "resource": "/api/v1/jobs",
    "path": "/api/v1/jobs",
    "httpMethod": "POST",
    "headers": {"Authorization": "Bearer not-logged", "Content-Type": "application/json"},
    "multiValueHeaders": {"Authorization": ["Bearer not-logged"]},
    "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "httpMethod": "POST", "stage": "prod"},
    "body": '{"title": "x"}',
    "isBase64Encoded": False,
}

FOREIGN = [
    ("REST API (payload format 1.0)", REST_API_EVENT),
    ("HTTP API with payload format 1.0", {**REST_API_EVENT, "version": "1.0"}),
    ("SQS", {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}),
    ("EventBridge", {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
    ("empty object", {}),
    ("requestContext without http", {"version": "2.0", "rawPath": "/", "requestContext": {"requestId": "r"}}),
    ("http that is not an object", {"version": "2.0", "rawPath": "/", "requestContext": {"http": "GET"}}),
    ("http without a method", {"version": "2.0", "rawPath": "/", "requestContext": {"http": {}}}),
    ("no rawPath", {"version": "2.0", "requestContext": {"http": {"method": "GET"}}}),
    ("a list", [1, 2]),
    ("a string", "hello"),
    ("null", None),
]


def _v2(change: Any) -> dict[str, Any]:
    """The sample HTTP API (payload format 2.0) create event with a valid token, changed by ``change``."""
    event = api_event("create_job", token=sign("alice"), raw_body='{"title": "x"}')
    change(event)
    return event


#: Payload format 2.0 events with a piece missing or of another JSON type than "Working with AWS Lambda proxy
#: integrations for HTTP APIs" gives it: not what API Gateway sends, so a wiring fault (a hand-made test event, a
#: function URL or another service's event shaped alike), never an unhandled exception.
FOREIGN += [
    ("2.0 without requestContext.stage", _v2(lambda e: e["requestContext"].pop("stage"))),
    ("2.0 with a stage that is not a string", _v2(lambda e: e["requestContext"].update(stage=1))),
    ("2.0 with a header value that is a number", _v2(lambda e: e["headers"].update({"content-type": 5}))),
    ("2.0 with an Authorization that is a number", _v2(lambda e: e["headers"].update(authorization=5))),
    ("2.0 with headers that are a list", _v2(lambda e: e.update(headers=[["content-type", "application/json"]]))),
    ("2.0 with a body that is an object", _v2(lambda e: e.update(body={"title": "x"}))),
    ("2.0 with a body that is a number", _v2(lambda e: e.update(body=5))),
    ("2.0 with isBase64Encoded a string", _v2(lambda e: e.update(isBase64Encoded="true"))),
    ("2.0 with query parameters that are a list", _v2(lambda e: e.update(queryStringParameters=["limit"]))),
    ("2.0 with a path parameter that is a number", _v2(lambda e: e.update(pathParameters={"job_id": 5}))),
    ("2.0 with a method that is not a string", _v2(lambda e: e["requestContext"]["http"].update(method=["POST"]))),
]


@pytest.mark.parametrize(("case", "event"), FOREIGN, ids=[case for case, _ in FOREIGN])
def test_an_event_of_another_kind_gets_a_well_formed_answer_and_one_log_line(
    api: ModuleType, aws: Aws, caplog: pytest.LogCaptureFixture, case: str, event: Any
) -> None:
    status, headers, body = call(api, event)

    assert status == 500
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The API is not configured for this kind of request.",
    }
    lines = [record for record in caplog.records if "PayloadFormatVersion 2.0" in record.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelname == "ERROR"
    assert "not-logged" not in caplog.text
    assert aws.item_count() == 0
