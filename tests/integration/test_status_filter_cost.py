"""What a status-filtered page costs to read, measured on DynamoDB Local (which reports ConsumedCapacity as
DynamoDB does): the ByStatus index against the alternative, a FilterExpression on the owner's partition.

A FilterExpression is applied after ``Limit`` and after the read is paid for, so a page of the few FAILED jobs
among many others pays for every job it skips, and with ``Limit`` it returns short or empty pages with a cursor.
The index reads only the jobs it returns. docs/decisions.md ("Status filter") records the figures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.models import Job, JobError, JobStatus
from jobs.store import DynamoJobStore, item_to_job, job_to_item
from tests.conftest import dynamodb_local_client

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
#: About the size of a real job: the seed payload and a report result are around 1.5 KB together.
PAYLOAD = {"report_type": "quarterly_audit", "notes": "x" * 1500}


class Meter:
    """Adds ReturnConsumedCapacity to every Query of a client and sums what DynamoDB reports."""

    def __init__(self, client: Any) -> None:
        self.units = 0.0
        self.queries = 0
        client.meta.events.register("provide-client-params.dynamodb.Query", self._ask)
        client.meta.events.register("after-call.dynamodb.Query", self._count)

    def _ask(self, params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def _count(self, parsed: dict[str, Any], **_: Any) -> None:
        self.queries += 1
        self.units += float(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0))

    def reset(self) -> None:
        self.units, self.queries = 0.0, 0


def filtered_page(client: Any, table: str, owner: str, status: JobStatus, limit: int) -> list[Job]:
    """The alternative: Query the partition with a FilterExpression, following LastEvaluatedKey until the page
    is full (what a correct implementation without an index must do to avoid empty pages)."""
    found: list[Job] = []
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "owner_id = :owner",
        "FilterExpression": "#status = :status",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":owner": {"S": owner}, ":status": {"S": status.value}},
        "ScanIndexForward": False,
        "ConsistentRead": True,
        "Limit": limit + 1,
    }
    while len(found) <= limit:
        response = client.query(**request)
        found.extend(item_to_job(item) for item in response["Items"])
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return found[:limit]


@pytest.fixture
def seeded(dynamodb_local_endpoint: str, dynamodb_local_table: str) -> tuple[DynamoJobStore, Any, Meter]:
    """300 jobs of alice's, every 30th FAILED (10 in all), the rest SUCCEEDED."""
    client = dynamodb_local_client(dynamodb_local_endpoint)
    store = DynamoJobStore(dynamodb_local_table, client)
    jobs = [
        Job(
            owner_id="alice",
            job_id=f"01a226ee-0000-7000-8000-{n:012d}",
            title=f"job {n}",
            type="report",
            status=JobStatus.FAILED if n % 30 == 0 else JobStatus.SUCCEEDED,
            payload=PAYLOAD,
            created_at=NOW,
            updated_at=NOW,
            started_at=NOW,
            finished_at=NOW,
            attempts=1,
            error=JobError(type="E", message="boom") if n % 30 == 0 else None,
        )
        for n in range(300)
    ]
    for start in range(0, len(jobs), 25):
        batch = [{"PutRequest": {"Item": job_to_item(job)}} for job in jobs[start : start + 25]]
        client.batch_write_item(RequestItems={dynamodb_local_table: batch})
    return store, client, Meter(client)


def test_a_page_through_the_index_costs_what_it_returns_not_what_it_skips(
    seeded: tuple[DynamoJobStore, Any, Meter], capsys: pytest.CaptureFixture[str]
) -> None:
    store, client, meter = seeded

    meter.reset()
    jobs, cursor = store.list_page("alice", limit=10, after_job_id=None, status=JobStatus.FAILED)
    index_units, index_queries = meter.units, meter.queries
    meter.reset()
    filtered = filtered_page(client, store._table, "alice", JobStatus.FAILED, 10)
    filter_units, filter_queries = meter.units, meter.queries

    with capsys.disabled():
        print(
            f"\nstatus filter, 10 FAILED among 300 jobs (~1.7 KB each): ByStatus index {index_units} RCU in "
            f"{index_queries} query ({index_units / 10:.2f} per job); FilterExpression {filter_units} RCU in "
            f"{filter_queries} queries ({filter_units / 10:.2f} per job)"
        )
    assert [job.job_id for job in jobs] == [job.job_id for job in filtered]
    assert {job.status for job in jobs} == {JobStatus.FAILED}
    assert cursor is None
    assert index_queries == 1
    # Eventually consistent index reads: 0.5 RCU per 4 KB of the items returned (and the one read ahead).
    assert index_units <= 11 * 0.5
    assert filter_units >= 10 * index_units
