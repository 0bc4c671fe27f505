"""template.yaml's Job State Change resources (issue 16): the publisher's stream mapping, its bus and exactly
that bus in its role, its on-failure destination and alarms. The local stack resolves the same template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.resources import LocalStack
from local.template import Resolver, UnsupportedTemplate, load_template
from tests.helpers import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]


def properties(logical_id: str) -> dict[str, Any]:
    return dict(RESOURCES[logical_id]["Properties"])


def test_the_publisher_reads_every_kind_of_record_with_bounded_retries_and_a_destination() -> None:
    [event] = properties("PublishJobEventsFunction")["Events"].values()
    source = event["Properties"]

    assert event["Type"] == "DynamoDB"
    assert source["Stream"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    assert properties("JobsTable")["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]] == [
        {"eventName": ["INSERT", "MODIFY", "REMOVE"]}
    ]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 <= source["MaximumRetryAttempts"] <= 100
    assert 0 < source["MaximumRecordAgeInSeconds"] < 24 * 3600
    assert source["BisectBatchOnFunctionError"] is True
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["JobEventsDiscardedBatchesQueue", "Arn"]
    }


def test_the_stream_has_exactly_two_readers() -> None:
    """DynamoDB Streams serves at most two simultaneous readers per shard before throttling (DynamoDB developer
    guide, "DynamoDB Streams ... read requests"): the relay and the publisher are all it can have."""
    readers = [
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "DynamoDB"
    ]
    assert sorted(readers) == ["EnqueueJobsFunction", "PublishJobEventsFunction"]


def test_the_role_may_put_events_on_exactly_the_bus_the_function_publishes_to() -> None:
    role = properties("PublishJobEventsFunctionRole")
    [put] = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Action"] == "events:PutEvents"]
    variable = properties("PublishJobEventsFunction")["Environment"]["Variables"]["JOBS_EVENT_BUS_NAME"]

    assert put["Resource"] == {
        "Fn::If": [
            "CreateEventBus",
            {"Fn::GetAtt": ["JobEventsBus", "Arn"]},
            {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"},
        ]
    }
    assert variable == {"Fn::If": ["CreateEventBus", {"Ref": "JobEventsBus"}, {"Ref": "EventBusName"}]}
    assert RESOURCES["JobEventsBus"]["Condition"] == "CreateEventBus"
    assert TEMPLATE["Conditions"]["CreateEventBus"] == {"Fn::Equals": [{"Ref": "EventBusName"}, ""]}


def test_the_publisher_is_alarmed_on_errors_iterator_age_and_discarded_batches() -> None:
    watched = {
        (alarm["Properties"]["MetricName"], json.dumps(alarm["Properties"]["Dimensions"]))
        for alarm in RESOURCES.values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm" and "MetricName" in alarm["Properties"]
    }
    function = json.dumps([{"Name": "FunctionName", "Value": {"Ref": "PublishJobEventsFunction"}}])
    queue = json.dumps(
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobEventsDiscardedBatchesQueue", "QueueName"]}}]
    )
    assert {("Errors", function), ("IteratorAge", function), ("NumberOfMessagesSent", queue)} <= watched


@pytest.mark.parametrize(("bus_parameter", "expected"), [("", "jobs-local-jobs"), ("partners", "partners")])
def test_the_local_stack_resolves_the_bus_as_cloudformation_would(bus_parameter: str, expected: str) -> None:
    with mock_aws():
        stack = LocalStack(ROOT / "template.yaml", boto3.client, parameter_overrides={"EventBusName": bus_parameter})
        physical = stack.create_all()
        [publisher] = [spec for spec in stack.functions() if spec.logical_id == "PublishJobEventsFunction"]

        assert publisher.environment["JOBS_EVENT_BUS_NAME"] == expected
        assert ("JobEventsBus" in physical) is (bus_parameter == "")


@pytest.mark.parametrize("bus_parameter", ["default", "arn:aws:events:us-east-1:123456789012:event-bus/x", "a b"])
def test_the_accounts_default_bus_or_a_bus_arn_is_refused_as_the_event_bus(bus_parameter: str) -> None:
    # The default bus would show every job's owner id to every rule of the account (EventBusName's description).
    with mock_aws(), pytest.raises(UnsupportedTemplate, match="EventBusName"):
        LocalStack(
            ROOT / "template.yaml", boto3.client, parameter_overrides={"EventBusName": bus_parameter}
        ).create_all()


def test_a_condition_the_local_stack_cannot_evaluate_is_reported(tmp_path: Path) -> None:
    template = {**TEMPLATE, "Conditions": {**TEMPLATE["Conditions"], "CreateEventBus": {"Fn::Contains": [[], ""]}}}
    resolver = Resolver(template, "jobs-local", lambda _: {})

    with pytest.raises(UnsupportedTemplate):
        resolver.condition("CreateEventBus")
