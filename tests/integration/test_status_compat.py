"""Items in a status this version does not know (written by a newer version, met after a rollback) through the
API and consumer handlers under moto: read and listed, never a 500; their messages acknowledged; the list's
filter still names known statuses only. And an Idempotency-Key record written by the first request model still
matches a retry after fields were added to the model (a retry that spans a deploy)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from jobs import bootstrap
from jobs.models import IdempotencyKeyReused, JobCreate, JobMessage
from jobs.queue import Dispatch
from jobs.store import DynamoJobStore
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

JOB_ID = "019aced2-2b5b-7cc3-a1b1-4f1f1f1f1f1f"


def put_item(aws: Aws, status: str, **attributes: dict[str, Any]) -> None:
    item = {
        "owner_id": {"S": "alice"},
        "job_id": {"S": JOB_ID},
        "title": {"S": "from a newer version"},
        "type": {"S": "noop"},
        "status": {"S": status},
        "status_job_id": {"S": f"{status}#{JOB_ID}"},
        "payload": {"M": {}},
        "created_at": {"S": "2026-11-29T10:00:00.000Z"},
        "updated_at": {"S": "2026-11-29T10:00:01.000Z"},
        "attempts": {"N": "0"},
        **attributes,
    }
    aws.dynamodb.put_item(TableName=aws.table_name, Item=item)


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
    response = api.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


@pytest.mark.parametrize("status", ["PAUSED", "CANCELLING", "ARCHIVED"])
def test_get_and_list_answer_a_job_in_a_status_this_version_does_not_know(aws: Aws, status: str) -> None:
    api = load_function("api")
    put_item(aws, status)

    got = call(api, api_event("get_job", token=sign("alice"), job_id=JOB_ID))
    listed = call(api, api_event("list_jobs", token=sign("alice")))

    assert got[0] == 200
    assert got[1]["status"] == status
    assert listed[0] == 200
    assert [item["status"] for item in listed[1]["items"]] == [status]


@pytest.mark.parametrize("status", ["PAUSED", "cancelled", "NOPE"])
def test_the_list_filter_names_known_statuses_only(aws: Aws, status: str) -> None:
    api = load_function("api")
    event = api_event("list_jobs", token=sign("alice"))
    event["queryStringParameters"] = {"status": status}
    event["rawQueryString"] = f"status={status}"

    code, body = call(api, event)

    assert code == 422
    assert body["errors"][0]["loc"] == ["query", "status"]


@pytest.mark.parametrize("status", ["PAUSED", "ARCHIVED"])
def test_the_consumer_acknowledges_the_message_of_a_job_in_a_status_it_does_not_know(aws: Aws, status: str) -> None:
    put_item(aws, status)
    bootstrap.job_queue().send_batch([Dispatch(JobMessage(owner_id="alice", job_id=JOB_ID))])
    consumer = load_function("process_jobs")
    from tests.integration.test_consumer_handler import receive

    response = consumer.lambda_handler(receive(aws), FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    stored = DynamoJobStore(aws.table_name).get("alice", JOB_ID)
    assert stored is not None
    assert stored.status == status  # untouched


class LaterJobCreate(JobCreate):
    """The request model as a later version grows it: a field with a default."""

    channel: str = "default"  # not priority, which JobCreate has now (JobPriority or None)


def test_a_key_recorded_by_the_first_request_model_matches_its_retry_after_a_field_was_added(aws: Aws) -> None:
    creator = bootstrap.job_creator()
    # The record exactly as the first model wrote it: its dump had these three fields and no other.
    payload: dict[str, Any] = {"n": 9000, "ratio": 0.1}
    first_dump = {"title": "Audit", "type": "noop", "payload": payload}
    recorded = creator._create_once(attempt={"owner_id": "alice", "key": "k-1", "request": first_dump})

    retried = creator.create("alice", LaterJobCreate(title="Audit", type="noop", payload=payload), key="k-1")

    assert retried.job_id == recorded["job_id"]
    assert aws.item_count() == 1
    with pytest.raises(IdempotencyKeyReused):
        creator.create(
            "alice",
            LaterJobCreate(title="Audit", type="noop", payload=payload, channel="email"),
            key="k-1",
        )
