"""The local Lambda API's event source mappings, through boto3's Lambda client: listed, filtered, paged, read,
disabled and enabled (the event its poller waits on), and refused as the API refuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.lambda_api import EventSourceMapping, LambdaApi
from tests.helpers import local_lambda

QUEUE = "arn:aws:sqs:us-east-1:123456789012:dead-letters"
STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/Jobs/stream/2026-11-29T00:00:00.000"


def _event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@pytest.fixture
def mappings() -> list[EventSourceMapping]:
    return [
        EventSourceMapping("DeadLettersFunction", QUEUE, {"BatchSize": 10, "Queue": QUEUE}, _event()),
        EventSourceMapping("EnqueueJobsFunction", STREAM, {"BatchSize": 100, "MaximumRetryAttempts": 10}, _event()),
    ]


@pytest.fixture
def client(mappings: list[EventSourceMapping]) -> Iterator[Any]:
    api = LambdaApi({}, "127.0.0.1", 0, mappings)
    api.start()
    yield local_lambda(api.port)
    api.shutdown()


def test_mappings_are_listed_filtered_and_paged(client: Any, mappings: list[EventSourceMapping]) -> None:
    every = client.list_event_source_mappings()["EventSourceMappings"]
    by_source = client.list_event_source_mappings(EventSourceArn=QUEUE)["EventSourceMappings"]
    by_function = client.list_event_source_mappings(FunctionName="EnqueueJobsFunction")["EventSourceMappings"]
    first = client.list_event_source_mappings(MaxItems=1)
    second = client.list_event_source_mappings(MaxItems=1, Marker=first["NextMarker"])

    assert [m["UUID"] for m in every] == [m.uuid for m in mappings]
    assert [m["UUID"] for m in by_source] == [mappings[0].uuid]
    assert [m["UUID"] for m in by_function] == [mappings[1].uuid]
    assert by_function[0]["MaximumRetryAttempts"] == 10
    assert "Queue" not in by_source[0]
    assert [m["UUID"] for m in first["EventSourceMappings"] + second["EventSourceMappings"]] == [
        m.uuid for m in mappings
    ]
    assert "NextMarker" not in second


def test_disabling_and_enabling_a_mapping_clears_and_sets_its_pollers_event(
    client: Any, mappings: list[EventSourceMapping]
) -> None:
    uuid = mappings[0].uuid

    disabling = client.update_event_source_mapping(UUID=uuid, Enabled=False)
    disabled = client.get_event_source_mapping(UUID=uuid)
    held = mappings[0].enabled.is_set()
    enabling = client.update_event_source_mapping(UUID=uuid, Enabled=True)

    assert (disabling["State"], disabled["State"], held) == ("Disabling", "Disabled", False)
    assert (enabling["State"], client.get_event_source_mapping(UUID=uuid)["State"]) == ("Enabling", "Enabled")
    assert mappings[0].enabled.is_set()


def test_a_busy_poller_keeps_a_disabled_mapping_disabling(client: Any, mappings: list[EventSourceMapping]) -> None:
    mappings[0].busy = lambda: True
    client.update_event_source_mapping(UUID=mappings[0].uuid, Enabled=False)

    assert client.get_event_source_mapping(UUID=mappings[0].uuid)["State"] == "Disabling"


def test_an_unknown_mapping_is_not_found_and_other_updates_are_refused(
    client: Any, mappings: list[EventSourceMapping]
) -> None:
    with pytest.raises(ClientError) as missing:
        client.update_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000", Enabled=False)
    with pytest.raises(ClientError) as other:
        client.update_event_source_mapping(UUID=mappings[0].uuid, BatchSize=5)

    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert other.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert mappings[0].enabled.is_set()


class Control:
    """The stack's side of Create and Delete, recorded: a created mapping is ``Creating`` until ``started``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped: list[str] = []

    def create(self, function_name: str, settings: Any) -> EventSourceMapping:
        plain = {key: value for key, value in settings.items() if key != "Enabled"}
        mapping = EventSourceMapping(function_name, settings["EventSourceArn"], plain, _event())
        mapping.ready = self.started.is_set
        return mapping

    def delete(self, mapping: EventSourceMapping, done: Any) -> None:
        self.stopped.append(mapping.uuid)
        done()


NEW_STREAM = STREAM.replace("2026-11-29", "2026-11-30")


@pytest.fixture
def controlled(mappings: list[EventSourceMapping]) -> Iterator[tuple[Any, Control]]:
    control = Control()
    pools: Any = {"EnqueueJobsFunction": None}
    api = LambdaApi(pools, "127.0.0.1", 0, mappings, control=control)
    api.start()
    client = local_lambda(api.port, config=Config(parameter_validation=False))  # the server\'s checks, not botocore\'s
    yield client, control
    api.shutdown()


def test_a_stream_mapping_is_created_with_lambdas_defaults_then_deleted(controlled: tuple[Any, Control]) -> None:
    client, control = controlled
    filters = {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]}

    created = client.create_event_source_mapping(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:EnqueueJobsFunction",
        EventSourceArn=NEW_STREAM,
        StartingPosition="TRIM_HORIZON",
        FilterCriteria=filters,
        DestinationConfig={"OnFailure": {"Destination": QUEUE}},
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    creating = client.get_event_source_mapping(UUID=created["UUID"])["State"]
    control.started.set()
    enabled = client.get_event_source_mapping(UUID=created["UUID"])
    deleted = client.delete_event_source_mapping(UUID=created["UUID"])

    assert (created["State"], creating, enabled["State"], deleted["State"]) == (
        "Creating",
        "Creating",
        "Enabled",
        "Deleting",
    )
    assert enabled["BatchSize"] == 100
    assert enabled["MaximumRetryAttempts"] == -1
    assert enabled["MaximumRecordAgeInSeconds"] == -1
    assert enabled["BisectBatchOnFunctionError"] is False
    assert enabled["FilterCriteria"] == filters
    assert enabled["DestinationConfig"] == {"OnFailure": {"Destination": QUEUE}}
    assert enabled["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert control.stopped == [created["UUID"]]
    with pytest.raises(ClientError) as gone:
        client.get_event_source_mapping(UUID=created["UUID"])
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"FunctionName": "NoSuchFunction"}, "ResourceNotFoundException"),
        ({"EventSourceArn": STREAM}, "ResourceConflictException"),  # the template's mapping has it
        ({"StartingPosition": "AT_TIMESTAMP"}, "InvalidParameterValueException"),
        ({"BatchSize": 10_001}, "InvalidParameterValueException"),
        ({"MaximumRetryAttempts": -2}, "InvalidParameterValueException"),
        ({"MaximumRecordAgeInSeconds": 604_801}, "InvalidParameterValueException"),
        ({"FunctionResponseTypes": ["Other"]}, "InvalidParameterValueException"),
        ({"FilterCriteria": {"Filters": [{"Pattern": "not json"}]}}, "InvalidParameterValueException"),
        ({"DestinationConfig": {"OnSuccess": {"Destination": QUEUE}}}, "InvalidParameterValueException"),
        ({"ParallelizationFactor": 11}, "InvalidParameterValueException"),
        ({"TumblingWindowInSeconds": 60}, "InvalidParameterValueException"),
        ({"EventSourceArn": QUEUE}, "InvalidParameterValueException"),
    ],
)
def test_a_create_outside_the_api_references_rules_is_refused(
    controlled: tuple[Any, Control], request_fields: dict[str, Any], code: str
) -> None:
    client, _ = controlled
    fields = {
        "FunctionName": "EnqueueJobsFunction",
        "EventSourceArn": NEW_STREAM,
        "StartingPosition": "LATEST",
        **request_fields,
    }
    with pytest.raises(ClientError) as refused:
        client.create_event_source_mapping(**fields)
    assert refused.value.response["Error"]["Code"] == code
    assert len(client.list_event_source_mappings()["EventSourceMappings"]) == 2
