"""The rehearsal on issue 16's resources: the publisher's function, stream mapping, role, bus and alarms, in the
CloudFormation AWS would receive. Each fault put back on the publisher is found by exactly its own check."""

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


def test_the_generated_template_holds_the_publisher_and_its_bus(generated: dict[str, Any]) -> None:
    resources = generated["Resources"]
    mappings = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "PublishJobEventsFunction"}
    ]

    assert resources["PublishJobEventsFunction"]["Type"] == "AWS::Lambda::Function"
    assert resources["JobEventsBus"] == {
        "Type": "AWS::Events::EventBus",
        "Condition": "CreateEventBus",
        "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-jobs"}},
    }
    assert len(mappings) == 1
    assert mappings[0]["EventSourceArn"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    assert rehearsal.problems(generated) == {}
    names = rehearsal.physical_names(generated, "jobs-a")
    assert "jobs-a-jobs" in names.values()


def publisher_stream_read_in_a_separate_policy(template: dict[str, Any]) -> None:
    """The stream's read permissions in a policy the mapping does not wait for: Lambda checks them when it
    creates the mapping, which may come first."""
    role = template["Resources"]["PublishJobEventsFunctionRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    stream = statements.pop(0)
    template["Resources"]["PublisherStreamPolicy"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "stream",
            "Roles": [{"Ref": "PublishJobEventsFunctionRole"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [stream]},
        },
    }


def publisher_retries_unbounded(template: dict[str, Any]) -> None:
    """One record the publisher cannot publish would stall its shard for 24 hours."""
    events = template["Resources"]["PublishJobEventsFunction"]["Properties"]["Events"]
    events["JobChanges"]["Properties"]["MaximumRetryAttempts"] = -1


def publisher_without_iterator_age_alarm(template: dict[str, Any]) -> None:
    """Nobody hears that subscribers hear late."""
    del template["Resources"]["JobEventsIteratorAgeAlarm"]


def publisher_discarded_batches_unwatched(template: dict[str, Any]) -> None:
    """Events never published, and no alarm says so."""
    del template["Resources"]["JobEventsDiscardedBatchesAlarm"]


FAULTS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (publisher_stream_read_in_a_separate_policy, "creation order"),
    (publisher_retries_unbounded, "event source mappings"),
    (publisher_without_iterator_age_alarm, "alarms"),
    (publisher_discarded_batches_unwatched, "alarms"),
]


@pytest.mark.parametrize(("fault", "check"), FAULTS, ids=[fault.__name__ for fault, _ in FAULTS])
def test_each_fault_put_back_on_the_publisher_is_found(
    transform: Transform, fault: Callable[[dict[str, Any]], None], check: str
) -> None:
    template = copy.deepcopy(SOURCE)
    fault(template)

    found = rehearsal.problems(transform(template))

    assert set(found) == {check}, found
    assert any("Publish" in problem or "JobEvents" in problem or "JobChanges" in problem for problem in found[check])
