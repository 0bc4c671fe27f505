"""template.yaml's job callback resources (issue 17) and the local stack's play of them: the rule and its queue
(retention, visibility, redrive sized from the sender's own settings), the queue policy that lets only that rule
send (without which AWS drops every event: the local stack refuses to start), the key parameters' readers, and the
deployer's key tool (``local.webhook_keys``) and the stack's callback switches."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobs.settings import AwsSettings, CallbackSettings
from jobs.webhooks import public_key_text, signing_keys
from local import webhook_keys
from local.resources import LocalStack, UndeliverableRule, queue_policy_allows
from local.stack import callback_environment, callbacks_banner
from local.template import UnsupportedTemplate, load_template
from tests.helpers import ROOT, WEBHOOK_PUBLIC_KEY_PARAMETER, WEBHOOK_SIGNING_KEY_PARAMETER

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
QUEUE = "arn:aws:sqs:us-east-1:123456789012:jobs-local-JobCallbacksQueue"
RULE = "arn:aws:events:us-east-1:123456789012:rule/jobs-local-jobs/jobs-local-JobCallbacksRule"


def properties(logical_id: str) -> dict[str, Any]:
    return dict(RESOURCES[logical_id]["Properties"])


def test_the_queue_keeps_a_callback_for_the_whole_schedule_and_sends_past_it_to_its_dead_letter_queue() -> None:
    schedule = CallbackSettings().retry_delays_seconds
    queue = properties("JobCallbacksQueue")
    timeout = properties("DeliverCallbacksFunction")["Timeout"]

    assert len(schedule) + 1 == 8  # Standard Webhooks: eight attempts
    assert queue["MessageRetentionPeriod"] >= sum(schedule) + 24 * 3600  # 27.6 h, and a day to spare
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["RedrivePolicy"]["maxReceiveCount"] > len(schedule) + 1
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobCallbacksDeadLetterQueue", "Arn"]}
    assert queue["SqsManagedSseEnabled"] is True
    assert max(schedule) <= 43200  # a wait SQS can hide a message for (ChangeMessageVisibility)


def test_the_sender_outlasts_one_attempt_and_its_aws_calls() -> None:
    """A batch's attempts run in parallel: one attempt (connect and answer, bounded by the callback timeout) plus
    reading the job and writing its outcome must fit the function's Timeout."""
    callback, budget = CallbackSettings(), AwsSettings()
    timeout = properties("DeliverCallbacksFunction")["Timeout"]

    assert timeout > callback.timeout_seconds + 3 * budget.attempt_seconds + budget.response_margin_seconds


def test_the_rule_sends_final_events_of_jobs_with_a_callback_to_the_queue_on_the_stacks_bus() -> None:
    rule = properties("JobCallbacksRule")

    assert rule["EventPattern"] == {
        "source": ["chuck-norris.jobs"],
        "detail-type": ["Job State Change"],
        "detail": {"status": ["SUCCEEDED", "FAILED", "CANCELLED"], "has_callback": [True]},
    }
    assert (
        rule["EventBusName"]
        == properties("PublishJobEventsFunction")["Environment"]["Variables"]["JOBS_EVENT_BUS_NAME"]
    )
    assert rule["Targets"] == [
        {
            "Id": "callbacks",
            "Arn": {"Fn::GetAtt": ["JobCallbacksQueue", "Arn"]},
            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["JobCallbacksDeadLetterQueue", "Arn"]}},
        }
    ]


@pytest.mark.parametrize(
    ("policy_id", "queue"),
    [
        ("JobCallbacksQueuePolicy", "JobCallbacksQueue"),
        ("JobCallbacksDeadLetterQueuePolicy", "JobCallbacksDeadLetterQueue"),
    ],
)
def test_only_that_rule_may_send_to_the_queue_and_to_its_dead_letter_queue(policy_id: str, queue: str) -> None:
    policy = properties(policy_id)
    [statement] = policy["PolicyDocument"]["Statement"]

    assert policy["Queues"] == [{"Ref": queue}]
    assert statement["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["JobCallbacksRule", "Arn"]}}}


def test_each_function_names_only_the_key_parameter_it_reads_and_none_allows_loopback() -> None:
    variables = {
        name: resource["Properties"].get("Environment", {}).get("Variables", {})
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }

    assert {name for name, v in variables.items() if "JOBS_CALLBACK_SIGNING_KEY_PARAMETER" in v} == {
        "DeliverCallbacksFunction"
    }
    assert {name for name, v in variables.items() if "JOBS_CALLBACK_PUBLIC_KEY_PARAMETER" in v} == {"ApiFunction"}
    assert "JOBS_CALLBACK_ALLOW_LOOPBACK" not in (ROOT / "template.yaml").read_text()
    assert "JOBS_CALLBACK_ALLOW_LOOPBACK" not in json.dumps(TEMPLATE.get("Globals", {}))


# --- The local stack ---------------------------------------------------------------------------------------------


def write(template: dict[str, Any], directory: Path) -> Path:
    path = directory / "template.json"
    path.write_text(json.dumps(template))
    return path


@pytest.mark.parametrize(
    "fault",
    [
        "no policy",
        "another rule's policy",
        "another principal",
        "no policy on the target's dead-letter queue",
    ],
)
def test_the_local_stack_refuses_a_rule_whose_queue_would_drop_its_events(fault: str, tmp_path: Path) -> None:
    template = copy.deepcopy(TEMPLATE)
    policy = template["Resources"]["JobCallbacksQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    if fault == "no policy":
        del template["Resources"]["JobCallbacksQueuePolicy"]
    elif fault == "no policy on the target's dead-letter queue":
        del template["Resources"]["JobCallbacksDeadLetterQueuePolicy"]
    elif fault == "another rule's policy":
        policy["Condition"]["ArnEquals"]["aws:SourceArn"] = RULE.replace("JobCallbacksRule", "Other")
    else:
        policy["Principal"] = {"Service": "sns.amazonaws.com"}

    with mock_aws(), pytest.raises(UndeliverableRule, match="JobCallbacksRule"):
        LocalStack(write(template, tmp_path), boto3.client).create_all()


def test_the_local_rule_and_policy_are_the_templates(tmp_path: Path) -> None:
    with mock_aws():
        physical = LocalStack(ROOT / "template.yaml", boto3.client).create_all()
        rule = boto3.client("events").describe_rule(Name="jobs-local-JobCallbacksRule", EventBusName="jobs-local-jobs")
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=physical["JobCallbacksQueue"]["Ref"], AttributeNames=["Policy"]
        )["Attributes"]

    assert json.loads(rule["EventPattern"])["detail"]["has_callback"] == [True]
    assert rule["Arn"] == physical["JobCallbacksRule"]["Arn"] == RULE
    assert json.loads(attributes["Policy"])["Statement"][0]["Condition"] == {"ArnEquals": {"aws:SourceArn": RULE}}


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ({"Action": "sqs:SendMessage", "Resource": QUEUE, "Condition": {"ArnEquals": {"aws:SourceArn": RULE}}}, True),
        ({"Action": ["sqs:*"], "Resource": "*"}, True),
        (
            {"Action": "sqs:SendMessage", "Resource": QUEUE, "Condition": {"ArnLike": {"aws:SourceArn": "*/jobs-*"}}},
            True,
        ),
        ({"Action": "sqs:ReceiveMessage", "Resource": QUEUE}, False),
        ({"Action": "sqs:SendMessage", "Resource": QUEUE + "-other"}, False),
        ({"Action": "sqs:SendMessage", "Resource": QUEUE, "Effect": "Deny"}, False),
    ],
)
def test_a_queue_policy_is_read_as_aws_would_for_an_eventbridge_rule(statement: dict[str, Any], allowed: bool) -> None:
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, **statement}]}

    assert queue_policy_allows(policy, QUEUE, RULE) is allowed


def test_a_queue_policy_condition_the_local_stack_cannot_read_is_reported() -> None:
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": QUEUE,
        "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
    }

    with pytest.raises(UnsupportedTemplate, match="aws:SourceAccount"):
        queue_policy_allows({"Statement": [statement]}, QUEUE, RULE)


def test_the_stack_module_imports_no_jobs_module() -> None:
    """The function workers are spawned: each imports the stack's module again before it puts its layer on the
    path, so a ``jobs`` imported there would be the stack's, not the layer's."""
    code = "import sys, local.stack; print(sorted(m for m in sys.modules if m.split('.')[0] == 'jobs'))"
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert found.stdout.strip() == "[]"


def test_the_callback_switches_set_the_functions_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    switches = {
        "JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK": "1",
        "JOBS_LOCAL_CALLBACK_CA_BUNDLE": str(bundle),
        "JOBS_LOCAL_CALLBACK_RETRY_DELAYS": "1,2, 3",
    }

    found = callback_environment(switches)

    assert found == {
        "JOBS_CALLBACK_ALLOW_LOOPBACK": "true",
        "JOBS_CALLBACK_CA_BUNDLE": str(bundle.resolve()),
        "JOBS_CALLBACK_RETRY_DELAYS_SECONDS": "[1, 2, 3]",
    }
    for name, value in found.items():  # as a function reads them
        monkeypatch.setenv(name, value)
    settings = CallbackSettings()
    assert (settings.allow_loopback, settings.retry_delays_seconds) == (True, (1, 2, 3))
    assert "ALLOWED" in callbacks_banner(3000, {"Parameters": found})
    assert "refused" in callbacks_banner(3000, {})
    assert callback_environment({}) == {}


@pytest.mark.parametrize(
    "switches",
    [
        {"JOBS_LOCAL_CALLBACK_CA_BUNDLE": "/no/such/ca.pem"},
        {"JOBS_LOCAL_CALLBACK_RETRY_DELAYS": "1,two"},
        {"JOBS_LOCAL_CALLBACK_RETRY_DELAYS": "[-1]"},
    ],
)
def test_a_wrong_callback_switch_stops_the_stack(switches: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        callback_environment(switches)


# --- The deployer's key tool --------------------------------------------------------------------------------------


class RecordingSsm:
    """moto's SSM client, recording the names of the parameters written, in order."""

    def __init__(self) -> None:
        self.client = boto3.client("ssm")
        self.exceptions = self.client.exceptions
        self.written: list[str] = []

    def get_parameter(self, **kwargs: Any) -> Any:
        return self.client.get_parameter(**kwargs)

    def put_parameter(self, **kwargs: Any) -> Any:
        self.written.append(kwargs["Name"])
        return self.client.put_parameter(**kwargs)


def stored(ssm: RecordingSsm) -> tuple[list[str], list[str], str]:
    """The signing keys' texts, the public keys' texts, and the signing parameter's type."""
    signing = ssm.client.get_parameter(Name=WEBHOOK_SIGNING_KEY_PARAMETER, WithDecryption=True)["Parameter"]
    public = ssm.client.get_parameter(Name=WEBHOOK_PUBLIC_KEY_PARAMETER)["Parameter"]
    assert public["Type"] == "String"
    return signing["Value"].split(), public["Value"].split(), signing["Type"]


def test_keys_are_created_rotated_and_retired_so_every_signature_stays_verifiable() -> None:
    with mock_aws():
        ssm = RecordingSsm()
        parameters = webhook_keys.KeyParameters(ssm)

        webhook_keys.create(parameters)
        [first], [first_public], kind = stored(ssm)
        with pytest.raises(webhook_keys.KeyToolError, match="exists already"):
            webhook_keys.create(parameters)
        ssm.written.clear()
        webhook_keys.rotate(parameters)
        rotated, rotated_public, _ = stored(ssm)
        rotation_order = list(ssm.written)
        ssm.written.clear()
        webhook_keys.retire(parameters)
        retired, retired_public, _ = stored(ssm)
        retire_order = list(ssm.written)
        with pytest.raises(webhook_keys.KeyToolError, match="only one key"):
            webhook_keys.retire(parameters)

    assert kind == "SecureString"
    assert first_public == public_key_text(signing_keys(first)[0].public_key)
    assert rotated[0] == first
    assert len(rotated) == 2
    assert rotated_public == [public_key_text(key.public_key) for key in signing_keys(" ".join(rotated))]
    assert rotation_order == [WEBHOOK_PUBLIC_KEY_PARAMETER, WEBHOOK_SIGNING_KEY_PARAMETER]  # published, then signs
    assert retired == rotated[1:]
    assert retired_public == rotated_public[1:]
    assert retire_order == [WEBHOOK_SIGNING_KEY_PARAMETER, WEBHOOK_PUBLIC_KEY_PARAMETER]  # stops signing, then gone


def test_parameters_that_disagree_are_left_alone() -> None:
    with mock_aws():
        ssm = RecordingSsm()
        parameters = webhook_keys.KeyParameters(ssm)
        webhook_keys.create(parameters)
        ssm.client.put_parameter(Name=WEBHOOK_PUBLIC_KEY_PARAMETER, Value="whpk_AAAA", Type="String", Overwrite=True)
        ssm.written.clear()

        with pytest.raises(webhook_keys.KeyToolError, match="public halves"):
            webhook_keys.rotate(parameters)

    assert ssm.written == []


def test_the_command_prints_public_keys_only(capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        assert webhook_keys.main(["create"]) == 0
        secret = boto3.client("ssm").get_parameter(Name=WEBHOOK_SIGNING_KEY_PARAMETER, WithDecryption=True)
        assert webhook_keys.main(["create"]) == 1

    out, err = capsys.readouterr()
    assert "whpk_" in out
    assert "whsk_" not in out + err
    assert secret["Parameter"]["Value"] not in out + err
    assert "exists already" in err
