"""The rehearsal on issue 17's resources: the callback sender's function, mapping, role, rule, queue, queue policy
and alarms, in the CloudFormation AWS would receive. Each fault put back on them is found by exactly its own
check."""

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


def test_the_generated_template_holds_the_sender_its_rule_and_its_queue_policy(generated: dict[str, Any]) -> None:
    resources = generated["Resources"]
    [mapping] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "DeliverCallbacksFunction"}
    ]

    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobCallbacksQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert resources["JobCallbacksRule"]["Type"] == "AWS::Events::Rule"
    assert resources["JobCallbacksQueuePolicy"]["Type"] == "AWS::SQS::QueuePolicy"
    assert rehearsal.problems(generated) == {}


def queue_policy_missing(template: dict[str, Any]) -> None:
    """EventBridge may not send to the queue: every callback event is dropped, silently."""
    del template["Resources"]["JobCallbacksQueuePolicy"]


def queue_policy_for_any_rule(template: dict[str, Any]) -> None:
    """No aws:SourceArn: any rule (of any account) could fill the sender's queue."""
    [statement] = template["Resources"]["JobCallbacksQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    del statement["Condition"]


def dead_letter_queue_policy_missing(template: dict[str, Any]) -> None:
    """EventBridge may not send an undeliverable event to the target's dead-letter queue: it is dropped after all."""
    del template["Resources"]["JobCallbacksDeadLetterQueuePolicy"]


def gave_up_unwatched(template: dict[str, Any]) -> None:
    """A client never called back, and nobody hears of it."""
    del template["Resources"]["CallbacksGaveUpAlarm"]


def dead_letters_unwatched(template: dict[str, Any]) -> None:
    """Callback events the sender could not settle, waiting where nobody looks."""
    del template["Resources"]["JobCallbacksDeadLetterQueueAgeAlarm"]


def visibility_shorter_than_six_timeouts(template: dict[str, Any]) -> None:
    """A batch still delivering is received again by another invocation."""
    template["Resources"]["JobCallbacksQueue"]["Properties"]["VisibilityTimeout"] = 60


def unbounded_concurrency(template: dict[str, Any]) -> None:
    """A backlog of callbacks takes every slot of the account's concurrency."""
    events = template["Resources"]["DeliverCallbacksFunction"]["Properties"]["Events"]
    del events["Callbacks"]["Properties"]["ScalingConfig"]


FAULTS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (queue_policy_missing, "rule targets"),
    (dead_letter_queue_policy_missing, "rule targets"),
    (queue_policy_for_any_rule, "rule targets"),
    (gave_up_unwatched, "alarms"),
    (dead_letters_unwatched, "alarms"),
    (visibility_shorter_than_six_timeouts, "event source mappings"),
    (unbounded_concurrency, "event source mappings"),
]


@pytest.mark.parametrize(("fault", "check"), FAULTS, ids=[fault.__name__ for fault, _ in FAULTS])
def test_each_fault_put_back_on_the_callbacks_is_found(
    transform: Transform, fault: Callable[[dict[str, Any]], None], check: str
) -> None:
    template = copy.deepcopy(SOURCE)
    fault(template)

    found = rehearsal.problems(transform(template))

    assert set(found) == {check}, found
    assert any("Callback" in problem for problem in found[check]), found
