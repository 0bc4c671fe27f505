"""The rehearsal: template.yaml through the SAM translator, and checks on what AWS would receive
(``local.rehearsal``). Each check passes on the template and fails on a copy with one known fault put back
(issue 12's faults, and the ones like them)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from local import rehearsal
from local.template import load_template
from tests.helpers import ROOT
from tests.rehearsal.conftest import Transform

SOURCE = load_template(ROOT / "template.yaml")


def test_the_generated_template_has_no_known_fault(generated: dict[str, Any]) -> None:
    assert rehearsal.problems(generated) == {}


def test_the_transform_produces_what_the_checks_look_at(generated: dict[str, Any]) -> None:
    types = [resource["Type"] for resource in generated["Resources"].values()]
    assert "Transform" not in generated
    assert types.count("AWS::Lambda::Function") == 7
    # The two stream readers (relay, event publisher), one SQS mapping per priority for the consumer and for the
    # dead-letter handler, and the callback sender's.
    assert types.count("AWS::Lambda::EventSourceMapping") == 9
    assert not any(kind.startswith("AWS::Serverless::") for kind in types)
    names = rehearsal.physical_names(generated, "jobs-a")
    assert any(kind.startswith("AWS::Lambda::LayerVersion") for kind in names)
    assert sum(kind.startswith("AWS::Logs::QueryDefinition") for kind in names) >= 4


def _roles(template: dict[str, Any]) -> list[str]:
    return [k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]


def tracing_in_a_separate_policy(template: dict[str, Any]) -> None:
    """Issue 12, item 1 as it was: X-Ray granted by one AWS::IAM::Policy that no function depends on."""
    roles = _roles(template)
    for role in roles:
        template["Resources"][role]["Properties"].pop("ManagedPolicyArns", None)
    template["Resources"]["TracingPolicy"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "tracing",
            "Roles": [{"Ref": role} for role in roles],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                        "Resource": "*",
                    }
                ],
            },
        },
    }


def sqs_mapping_read_in_a_separate_policy(template: dict[str, Any]) -> None:
    """The consumer's queue permissions moved out of its role into a policy its mapping does not wait for."""
    role = template["Resources"]["ProcessJobsFunctionRole"]["Properties"]
    for policy in role["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        policy["PolicyDocument"]["Statement"] = [
            s for s in statements if not (isinstance(s, dict) and "sqs:ReceiveMessage" in str(s.get("Action")))
        ]
    template["Resources"]["ConsumerQueuePolicy"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "consumer-queue",
            "Roles": [{"Ref": "ProcessJobsFunctionRole"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                        "Resource": {"Fn::GetAtt": ["JobsQueue", "Arn"]},
                    }
                ],
            },
        },
    }


def dead_letter_alarm_on_visible_messages(template: dict[str, Any]) -> None:
    """Issue 12, item 2 as it was: only the dead-letter queue's visible messages are watched."""
    for name in ("JobsDeadLetteredAlarm", "DeadLetterQueueAgeAlarm", "DeadLettersErrorsAlarm"):
        template["Resources"].pop(name)
    template["Resources"]["DeadLetterQueueAlarm"] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    }


def low_priority_dead_letters_unwatched(template: dict[str, Any]) -> None:
    """A dead-letter queue added (the LOW queue's) without an age alarm of its own."""
    template["Resources"].pop("LowPriorityDeadLetterQueueAgeAlarm")


def no_maximum_concurrency(template: dict[str, Any]) -> None:
    """Issue 12, item 3 as it was: the consumer's SQS mapping has no ScalingConfig."""
    events = template["Resources"]["ProcessJobsFunction"]["Properties"]["Events"]
    for event in events.values():
        event["Properties"].pop("ScalingConfig", None)


def stream_retries_unbounded(template: dict[str, Any]) -> None:
    """The relay's stream mapping as it was before issue 10: endless retries, no destination."""
    events = template["Resources"]["EnqueueJobsFunction"]["Properties"]["Events"]
    for event in events.values():
        for key in ("MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError"):
            event["Properties"].pop(key, None)
        event["Properties"].pop("DestinationConfig", None)


def receives_without_slack(template: dict[str, Any]) -> None:
    """Issue 12, item 4 as it was: MaxReceiveCount 3, so crashed batches spend a job's tries."""
    template["Parameters"]["MaxReceiveCount"]["Default"] = 3


def kms_key_without_pattern(template: dict[str, Any]) -> None:
    """Issue 12, item 6 as it was: a key id or alias would make the role's kms:Decrypt resource invalid."""
    template["Parameters"]["JwtSecretKmsKeyArn"].pop("AllowedPattern")


def fixed_layer_name(template: dict[str, Any]) -> None:
    """Issue 12, item 6 as it was: two stacks share one layer."""
    template["Resources"]["JobsLayer"]["Properties"]["LayerName"] = "jobs"


def fixed_query_name(template: dict[str, Any]) -> None:
    """Issue 12, item 6 as it was: two stacks' saved queries share names."""
    query = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Logs::QueryDefinition")
    query["Properties"]["Name"] = "errors by type"


def fixed_console_host(template: dict[str, Any]) -> None:
    """Issue 12, item 6 as it was: the dashboard URL names the commercial partition's console."""
    template["Outputs"]["DashboardUrl"]["Value"] = {
        "Fn::Sub": "https://console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards:"
    }


def dangling_reference(template: dict[str, Any]) -> None:
    """A reference to a resource that a rename left behind."""
    variables = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    variables["JOBS_TABLE_NAME"] = {"Ref": "JobTable"}


def dangling_attribute(template: dict[str, Any]) -> None:
    """The same in a Sub."""
    template["Outputs"]["JobsTableName"]["Value"] = {"Fn::Sub": "${JobTable.Arn}"}


FAULTS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (tracing_in_a_separate_policy, "creation order"),
    (sqs_mapping_read_in_a_separate_policy, "creation order"),
    (dead_letter_alarm_on_visible_messages, "alarms"),
    (low_priority_dead_letters_unwatched, "alarms"),
    (no_maximum_concurrency, "event source mappings"),
    (stream_retries_unbounded, "event source mappings"),
    (receives_without_slack, "parameters"),
    (kms_key_without_pattern, "parameters"),
    (fixed_layer_name, "physical names"),
    (fixed_query_name, "physical names"),
    (fixed_console_host, "console host"),
    (dangling_reference, "references"),
    (dangling_attribute, "references"),
]


@pytest.mark.parametrize(("fault", "check"), FAULTS, ids=[fault.__name__ for fault, _ in FAULTS])
def test_each_fault_put_back_is_found(
    transform: Transform, fault: Callable[[dict[str, Any]], None], check: str
) -> None:
    template = copy.deepcopy(SOURCE)
    fault(template)

    found = rehearsal.problems(transform(template))

    assert check in found, found
    assert set(found) == {check}, found


def test_a_policy_the_function_depends_on_is_in_time(transform: Transform) -> None:
    template = copy.deepcopy(SOURCE)
    tracing_in_a_separate_policy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["DependsOn"] = ["TracingPolicy"]

    assert "creation order" not in rehearsal.problems(transform(template))
