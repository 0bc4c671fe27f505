"""POST /api/v1/jobs with an Idempotency-Key, through the API handler under moto: a retry returns the first
response, keys are scoped per owner, and a key reused with another body is refused."""

from __future__ import annotations

import json
import threading
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

BODY = {"title": "Quarterly audit", "type": "noop", "payload": {"n": 9000, "ratio": 0.1, "text": "ünïcödé"}}


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def post(api: ModuleType, sub: str, key: str | None, body: Any = BODY) -> tuple[int, dict[str, str], Any]:
    event = api_event("create_job", token=sign(sub), body=body)
    if key is not None:
        event["headers"]["idempotency-key"] = key
    response = api.lambda_handler(event, FakeLambdaContext())
    raw = response.get("body")
    return response["statusCode"], response.get("headers", {}), json.loads(raw) if raw else None


def test_a_retried_post_returns_the_first_response_and_creates_nothing_more(api: ModuleType, aws: Aws) -> None:
    first = post(api, "alice", "order-42")
    retries = [post(api, "alice", "order-42") for _ in range(3)]

    assert first[0] == 201
    for status, headers, body in retries:
        assert status == 201
        assert body == first[2]
        assert headers["Location"] == first[1]["Location"]
    assert aws.item_count() == 1
    assert aws.item_count() == 1  # one INSERT each on the stream: the outbox sends one message each


def test_bob_reusing_alices_key_gets_his_own_job(api: ModuleType, aws: Aws) -> None:
    alice = post(api, "alice", "shared-key")
    bob = post(api, "bob", "shared-key", {**BODY, "title": "bob's own"})

    assert (alice[0], bob[0]) == (201, 201)
    assert bob[2]["job_id"] != alice[2]["job_id"]
    assert bob[2]["title"] == "bob's own"
    assert aws.item_count() == 2
    assert aws.item_count() == 2  # one INSERT each on the stream: the outbox sends one message each


def test_the_same_key_with_another_body_is_a_422_and_creates_nothing(api: ModuleType, aws: Aws) -> None:
    post(api, "alice", "k1")

    status, headers, body = post(api, "alice", "k1", {**BODY, "title": "something else"})

    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert body["errors"][0]["loc"] == ["header", "idempotency-key"]
    assert aws.item_count() == 1
    assert aws.item_count() == 1  # one INSERT each on the stream: the outbox sends one message each


def test_different_keys_or_no_key_create_separate_jobs(api: ModuleType, aws: Aws) -> None:
    ids = {post(api, "alice", key)[2]["job_id"] for key in ("a", "b", None, None)}

    assert len(ids) == 4
    assert aws.item_count() == 4


def test_surrounding_whitespace_is_not_part_of_the_key(api: ModuleType, aws: Aws) -> None:
    first = post(api, "alice", "key-1")
    again = post(api, "alice", " \tkey-1 ")

    assert again[2]["job_id"] == first[2]["job_id"]
    assert aws.item_count() == 1


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "ключ", "a\x00b", "a\nb"])
def test_a_malformed_key_is_a_422_and_creates_nothing(api: ModuleType, aws: Aws, key: str) -> None:
    status, _, body = post(api, "alice", key)

    assert status == 422, body
    assert aws.item_count() == 0


def test_a_failed_attempt_leaves_the_key_free_for_its_retry(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import bootstrap
    from jobs.models import ServiceUnavailable

    store = bootstrap.api_service().store

    def throttled(job: Any) -> None:
        raise ServiceUnavailable("PutItem was throttled")

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_new", throttled)
        failed = post(api, "alice", "retry-me")
    retried = post(api, "alice", "retry-me")

    assert failed[0] == 503
    assert retried[0] == 201
    assert aws.item_count() == 1


def test_a_retry_while_the_first_attempt_runs_is_a_409(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import bootstrap

    service = bootstrap.api_service()
    entered, release = threading.Event(), threading.Event()
    real_store = service.store_new

    def slow_store(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return real_store(*args, **kwargs)

    monkeypatch.setattr(service, "store_new", slow_store)
    results: list[tuple[int, dict[str, str], Any]] = []
    first = threading.Thread(target=lambda: results.append(post(api, "alice", "slow")))
    first.start()
    assert entered.wait(10)

    status, headers, _ = post(api, "alice", "slow")
    release.set()
    first.join(10)

    assert status == 409
    assert headers["Retry-After"] == "1"
    assert results[0][0] == 201
    assert aws.item_count() == 1


def test_the_record_expires_and_releases_a_dead_attempt_with_the_invocation(api: ModuleType, aws: Aws) -> None:
    post(api, "alice", "ttl")

    [record] = boto3.client("dynamodb").scan(TableName=aws.idempotency_table_name)["Items"]

    assert record["status"]["S"] == "COMPLETED"
    assert record["id"]["S"].startswith("jobs.create_job#")
    assert "alice" not in json.dumps(record["id"])
    assert int(record["expiration"]["N"]) > 0
    assert "in_progress_expiration" in record


class FlakyTable:
    """The Jobs table's PutItem and GetItem through moto, failing as a scripted DynamoDB would: ``put`` is what
    each PutItem does (``"land-then-timeout"``, ``"throttle"`` without writing, ``"ok"``), ``get`` each GetItem."""

    def __init__(self, aws: Aws, monkeypatch: pytest.MonkeyPatch, put: list[str], get: list[str]) -> None:
        from jobs import bootstrap

        self.table = aws.table_name
        self.put, self.get = put, get
        client = bootstrap.api_service().store.client  # type: ignore[attr-defined]
        self._put_item, self._get_item = client.put_item, client.get_item
        monkeypatch.setattr(client, "put_item", self.put_item)
        monkeypatch.setattr(client, "get_item", self.get_item)

    def put_item(self, **request: Any) -> Any:
        from botocore.exceptions import ClientError, ReadTimeoutError

        behaviour = self.put.pop(0) if request["TableName"] == self.table and self.put else "ok"
        if behaviour == "throttle":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem")
        response = self._put_item(**request)
        if behaviour == "land-then-timeout":
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return response

    def get_item(self, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        behaviour = self.get.pop(0) if request["TableName"] == self.table and self.get else "ok"
        if behaviour == "throttle":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetItem")
        return self._get_item(**request)


def test_a_write_that_landed_but_whose_answer_was_lost_is_found_and_answered_once(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyTable(aws, monkeypatch, put=["land-then-timeout"], get=[])

    first = post(api, "alice", "lost-answer")
    retry = post(api, "alice", "lost-answer")

    assert (first[0], retry[0]) == (201, 201)
    assert retry[2]["job_id"] == first[2]["job_id"]
    assert aws.item_count() == 1


def test_a_create_in_doubt_answers_503_and_its_retry_gets_the_job_the_first_write_stored(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyTable(aws, monkeypatch, put=["land-then-timeout"], get=["throttle"])

    first = post(api, "alice", "in-doubt")
    retries = [post(api, "alice", "in-doubt") for _ in range(2)]

    assert first[0] == 503  # DynamoDB could not say whether the job was written
    assert [status for status, _, _ in retries] == [201, 201]
    [stored] = aws.dynamodb.scan(TableName=aws.table_name)["Items"]
    assert {body["job_id"] for _, _, body in retries} == {stored["job_id"]["S"]}


def test_a_create_in_doubt_whose_write_never_landed_is_written_once_by_its_retry(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyTable(aws, monkeypatch, put=["throttle"], get=["throttle"])

    first = post(api, "alice", "never-landed")
    retries = [post(api, "alice", "never-landed") for _ in range(3)]

    assert first[0] == 503
    assert [status for status, _, _ in retries] == [201, 201, 201]
    assert len({body["job_id"] for _, _, body in retries}) == 1
    assert aws.item_count() == 1


def test_a_settled_job_deleted_by_its_owner_is_not_written_again_by_a_later_retry(
    api: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyTable(aws, monkeypatch, put=["throttle"], get=["throttle"])
    post(api, "alice", "then-deleted")
    settled = post(api, "alice", "then-deleted")
    aws.dynamodb.delete_item(
        TableName=aws.table_name, Key={"owner_id": {"S": "alice"}, "job_id": {"S": settled[2]["job_id"]}}
    )

    again = post(api, "alice", "then-deleted")

    assert again[2]["job_id"] == settled[2]["job_id"]  # the first response, as for any completed key
    assert aws.item_count() == 0  # never resurrected
