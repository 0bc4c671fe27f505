"""Checks on the CloudFormation that AWS would receive (``local/sam_transform.py``'s output): the faults a deploy
would meet, or that would make a deployed stack's alarms and limits useless, found without deploying.

Each check takes the translated template (a dict) and returns its problems as sentences (empty: none). What they
cannot see: IAM's eventual consistency, service quotas of the account, the order CloudFormation really picks
among independent resources (only that an order that races a permission is possible), and whether AWS accepts a
property value that its schema allows (cfn-lint covers the schemas).

Sources: "Lambda execution role" and the event source pages of the Lambda developer guide for the permissions
Lambda checks when it creates a function or a mapping:
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html,
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html,
https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-eventsourcemapping.html,
https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html; CloudFormation's "Ref", "Fn::GetAtt" and
"Fn::Sub" pages for what a reference may name.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

Template = dict[str, Any]

#: Pseudo parameters a ``Ref`` or ``${}`` may name (CloudFormation, "Pseudo parameters reference").
PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

#: Actions Lambda checks on a function's role when it creates the function, by the property that needs them.
#: Active tracing: "the execution role needs xray:PutTraceSegments and xray:PutTelemetryRecords".
CREATE_FUNCTION_ACTIONS = {
    "TracingConfig": {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
    "DeadLetterConfig": {"sqs:SendMessage"},
}
#: Actions Lambda checks on the function's role when it creates an event source mapping, by source kind.
CREATE_MAPPING_ACTIONS = {
    "sqs": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "dynamodb": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"},
    "destination-sqs": {"sqs:SendMessage"},
}
#: What the AWS managed policies the template attaches allow (IAM's "AWS managed policy reference").
MANAGED_POLICY_ACTIONS = {
    "AWSXrayWriteOnlyAccess": {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    },
}
#: The property holding a resource's physical name, for the types that have one CloudFormation would refuse to
#: create twice in one account and region (or that two stacks would silently share).
PHYSICAL_NAME_PROPERTIES = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Logs::QueryDefinition": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Events::Rule": "Name",
}


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(path, node)`` of a JSON value, depth first."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")


def dangling_references(template: Template) -> list[str]:
    """``Ref``, ``Fn::GetAtt`` and ``${}`` in ``Fn::Sub`` that name no parameter, pseudo parameter or resource
    (a ``GetAtt`` or ``${X.Attr}`` must name a resource)."""
    resources = set(template.get("Resources", {}))
    names = resources | set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    problems = []
    for path, node in walk({key: template.get(key) for key in ("Resources", "Outputs", "Conditions")}):
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((function, argument),) = node.items()
        if function == "Ref" and argument not in names:
            problems.append(f"{path}: Ref {argument} names nothing")
        elif function == "Fn::GetAtt":
            target = argument[0] if isinstance(argument, list) else str(argument).split(".", 1)[0]
            if target not in resources:
                problems.append(f"{path}: GetAtt {target} names no resource")
        elif function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
            for variable in re.findall(r"\$\{([^!}][^}]*)\}", text):
                head, dot, _ = variable.partition(".")
                if variable in variables:
                    continue
                if (dot and head not in resources) or (not dot and variable not in names):
                    problems.append(f"{path}: Sub ${{{variable}}} names nothing")
    return problems


def _statements(policy_document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    statements = policy_document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Fn::If" in statement:  # the granted branch; a condition that drops it is the template's choice
            statement = statement["Fn::If"][1]
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            yield statement


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return [action] if isinstance(action, str) else list(action)


def _role_of(template: Template, function_id: str) -> str | None:
    role = template["Resources"][function_id]["Properties"].get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        return str(role["Fn::GetAtt"][0])
    return None


def _depends_on(template: Template, logical_id: str) -> set[str]:
    """What ``logical_id`` is created after: its ``DependsOn``, transitively (implicit references aside)."""
    seen: set[str] = set()
    pending = [logical_id]
    while pending:
        resource = template["Resources"].get(pending.pop(), {})
        depends = resource.get("DependsOn", [])
        for name in [depends] if isinstance(depends, str) else depends:
            if name not in seen:
                seen.add(name)
                pending.append(name)
    return seen


def granted_at_creation(template: Template, role_id: str, created: str) -> set[str]:
    """The actions ``role_id`` surely allows when ``created`` is created: its own inline policies and managed
    policies (the role exists before anything that references it), plus policy resources attached to it that
    ``created`` depends on. A separate policy without that dependency may be created after ``created``."""
    resources = template["Resources"]
    role = resources[role_id]["Properties"]
    actions = {a for p in role.get("Policies", []) for s in _statements(p["PolicyDocument"]) for a in _actions(s)}
    for arn in role.get("ManagedPolicyArns", []):
        text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else str(arn)
        actions |= MANAGED_POLICY_ACTIONS.get(text.rsplit("/", 1)[-1], set())
    before = _depends_on(template, created)
    for logical_id, resource in resources.items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") or logical_id not in before:
            continue
        properties = resource["Properties"]
        if {"Ref": role_id} in properties.get("Roles", []):
            actions |= {a for s in _statements(properties["PolicyDocument"]) for a in _actions(s)}
    return actions


def _missing(needed: set[str], granted: set[str]) -> set[str]:
    return {action for action in needed if not any(fnmatch.fnmatchcase(action, pattern) for pattern in granted)}


def creation_races(template: Template) -> list[str]:
    """Functions and event source mappings whose creation may come before a permission Lambda checks at that
    moment (a create that fails the deploy)."""
    resources = template["Resources"]
    problems = []
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            role = _role_of(template, logical_id)
            if role is None or role not in resources:
                problems.append(f"{logical_id}: its Role is not a role of this template, so it cannot be checked")
                continue
            properties = resource["Properties"]
            needed: set[str] = set()
            if properties.get("TracingConfig", {}).get("Mode") == "Active":
                needed |= CREATE_FUNCTION_ACTIONS["TracingConfig"]
            if "DeadLetterConfig" in properties:
                needed |= CREATE_FUNCTION_ACTIONS["DeadLetterConfig"]
            missing = _missing(needed, granted_at_creation(template, role, logical_id))
            if missing:
                problems.append(f"{logical_id}: may be created before its role allows {sorted(missing)}")
        elif resource["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = resource["Properties"]
            reference = properties["FunctionName"]
            function = str(reference.get("Ref", "")) if isinstance(reference, dict) else ""
            role = _role_of(template, function) if function in resources else None
            if role is None:
                problems.append(f"{logical_id}: its function's role is not a role of this template")
                continue
            source = properties["EventSourceArn"].get("Fn::GetAtt", [""])[0]
            kind = {"AWS::SQS::Queue": "sqs", "AWS::DynamoDB::Table": "dynamodb"}.get(
                resources.get(source, {}).get("Type", ""), ""
            )
            needed = set(CREATE_MAPPING_ACTIONS.get(kind, set()))
            if "DestinationConfig" in properties:
                needed |= CREATE_MAPPING_ACTIONS["destination-sqs"]
            granted = granted_at_creation(template, role, logical_id) | granted_at_creation(template, role, function)
            missing = _missing(needed, granted)
            if missing:
                problems.append(f"{logical_id}: may be created before {role} allows {sorted(missing)}")
    return problems


def mapping_problems(template: Template) -> list[str]:
    """Event source mappings without what this system relies on: partial batch responses everywhere; a
    ``MaximumConcurrency`` on SQS mappings; bounded retries, bisection and an on-failure destination on stream
    mappings; and an SQS visibility timeout of at least six times the function's timeout (Lambda developer
    guide, "Configuring a queue to use with Lambda")."""
    resources = template["Resources"]
    problems = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        properties = resource["Properties"]
        if "ReportBatchItemFailures" not in properties.get("FunctionResponseTypes", []):
            problems.append(f"{logical_id}: no partial batch responses (FunctionResponseTypes)")
        source_id = properties["EventSourceArn"].get("Fn::GetAtt", [""])[0]
        source = resources.get(source_id, {})
        if source.get("Type") == "AWS::SQS::Queue":
            if "MaximumConcurrency" not in properties.get("ScalingConfig", {}):
                problems.append(f"{logical_id}: no ScalingConfig.MaximumConcurrency: a backlog can take every slot")
            function = resources.get(properties["FunctionName"].get("Ref", ""), {}).get("Properties", {})
            visibility = source.get("Properties", {}).get("VisibilityTimeout", 30)
            timeout = function.get("Timeout", 3)
            if isinstance(visibility, int) and isinstance(timeout, int) and visibility < 6 * timeout:
                problems.append(f"{logical_id}: visibility timeout {visibility} s < 6 x the function's {timeout} s")
        elif source.get("Type") == "AWS::DynamoDB::Table":
            if properties.get("MaximumRetryAttempts", -1) in (-1, None):
                problems.append(f"{logical_id}: unbounded retries (MaximumRetryAttempts): one record stalls its shard")
            if properties.get("MaximumRecordAgeInSeconds", -1) in (-1, None):
                problems.append(f"{logical_id}: unbounded record age (MaximumRecordAgeInSeconds)")
            if properties.get("BisectBatchOnFunctionError") is not True:
                problems.append(f"{logical_id}: no BisectBatchOnFunctionError: a failing batch is retried whole")
            if "Destination" not in properties.get("DestinationConfig", {}).get("OnFailure", {}):
                problems.append(f"{logical_id}: no on-failure destination: discarded batches leave no trace")
    return problems


def alarm_problems(template: Template) -> list[str]:
    """Dead letters watched where they are seen: an alarm on the handler's ``JobsDeadLettered`` metric, one on
    each dead-letter queue's ``ApproximateAgeOfOldestMessage`` (every queue a jobs queue's redrive policy names),
    and one on the handler's ``Errors`` (its queue is drained within seconds, so a visible-messages alarm almost
    never fires). And each stream reader (the outbox relay, the event publisher) watched: its ``Errors``, its
    ``IteratorAge``, and ``NumberOfMessagesSent`` to its on-failure destination. And the callback sender: its
    ``CallbacksGaveUp`` (a client who will never be called back) and its ``Errors``."""
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    def watched(metric: str) -> list[dict[str, Any]]:
        return [alarm for alarm in alarms if alarm.get("MetricName") == metric] + [
            alarm
            for alarm in alarms
            for query in alarm.get("Metrics", [])
            if query.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric
        ]

    def dimension_refs(alarm: dict[str, Any]) -> set[str]:
        return {
            str(node.get("Ref") or node.get("Fn::GetAtt", [""])[0])
            for _, node in walk(alarm)
            if isinstance(node, dict) and ("Ref" in node or "Fn::GetAtt" in node)
        }

    # Every queue a redrive policy names (one per priority), and JobsDeadLetterQueue whatever the policies say.
    dead_letter_queues = {"JobsDeadLetterQueue"} | {
        str(target["Fn::GetAtt"][0])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::SQS::Queue"
        and isinstance(target := resource["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn"), dict)
        and "Fn::GetAtt" in target
    }
    aged = set().union(*(dimension_refs(alarm) for alarm in watched("ApproximateAgeOfOldestMessage")))
    problems = []
    if not watched("JobsDeadLettered"):
        problems.append("no alarm on JobsDeadLettered (what the dead-letter handler counts)")
    for queue in sorted(dead_letter_queues - aged):
        problems.append(f"no alarm on the dead-letter queue {queue}'s ApproximateAgeOfOldestMessage")
    if not any("DeadLettersFunction" in dimension_refs(alarm) for alarm in watched("Errors")):
        problems.append("no alarm on DeadLettersFunction's Errors")
    if "DeliverCallbacksFunction" in template["Resources"]:
        if not watched("CallbacksGaveUp"):
            problems.append("no alarm on CallbacksGaveUp (callbacks the sender gave up on)")
        if not any("DeliverCallbacksFunction" in dimension_refs(alarm) for alarm in watched("Errors")):
            problems.append("no alarm on DeliverCallbacksFunction's Errors")
    # Every stream reader: its errors and its lag (IteratorAge), and its on-failure destination's arrivals
    # (a discarded batch is work that was never done).
    for mapping_id, resource in template["Resources"].items():
        properties = resource["Properties"] if resource["Type"] == "AWS::Lambda::EventSourceMapping" else {}
        source = properties.get("EventSourceArn", {})
        if not (isinstance(source, dict) and "Fn::GetAtt" in source and source["Fn::GetAtt"][1] == "StreamArn"):
            continue
        function = str(properties["FunctionName"].get("Ref", ""))
        for metric in ("Errors", "IteratorAge"):
            if not any(function in dimension_refs(alarm) for alarm in watched(metric)):
                problems.append(f"{mapping_id}: no alarm on {function}'s {metric}")
        destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", {})
        queue = destination.get("Fn::GetAtt", [""])[0] if isinstance(destination, dict) else ""
        if queue and not any(queue in dimension_refs(alarm) for alarm in watched("NumberOfMessagesSent")):
            problems.append(f"{mapping_id}: no alarm on batches sent to its on-failure destination {queue}")
    return problems


def parameter_problems(template: Template) -> list[str]:
    """Parameters that can break a deploy or a guarantee: one used as an IAM policy's ``Resource`` without an
    ``AllowedPattern`` (a value that is not an ARN makes the policy invalid), and a ``MaxReceiveCount`` default
    with fewer than 2 receives of slack over ``JobMaxAttempts`` (docs/decisions.md, "Receives and attempts")."""
    parameters = template.get("Parameters", {})
    problems = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in _statements(policy["PolicyDocument"]):
                for _, node in walk(statement.get("Resource")):
                    name = node.get("Ref") if isinstance(node, dict) else None
                    if name in parameters and "AllowedPattern" not in parameters[name]:
                        problems.append(f"{logical_id}: policy Resource {name} is a parameter with no AllowedPattern")
    receives = parameters.get("MaxReceiveCount", {}).get("Default")
    attempts = parameters.get("JobMaxAttempts", {}).get("Default")
    if receives is None or attempts is None or int(receives) < int(attempts) + 2:
        problems.append(f"MaxReceiveCount {receives} leaves less than 2 receives over JobMaxAttempts {attempts}")
    return problems


def console_host_problems(template: Template) -> list[str]:
    """Outputs that write a console host literally rather than per partition (China and GovCloud differ)."""
    return [
        f"Outputs.{path}: a fixed console host"
        for path, node in walk(template.get("Outputs", {}))
        if isinstance(node, str) and "console.aws.amazon.com" in node
    ]


def physical_names(template: Template, stack_name: str, *, region: str = "us-east-1") -> dict[str, str]:
    """``{"<Type> <LogicalId>": name}`` of the resources that name themselves, as a stack called ``stack_name``
    would name them. A name that refers to another resource is that resource's unique id in this stack."""
    parameters = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()} | {
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }

    def value(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and "Ref" in node:
            return parameters.get(node["Ref"], f"{stack_name}-{node['Ref']}-UNIQUE")
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            return f"{stack_name}-{node['Fn::GetAtt'][0]}-UNIQUE"
        if isinstance(node, dict) and "Fn::Sub" in node:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            return re.sub(
                r"\$\{([^!}][^}]*)\}",
                lambda found: (
                    value(variables[found[1]])
                    if found[1] in variables
                    else value({"Fn::GetAtt": found[1].split(".")} if "." in found[1] else {"Ref": found[1]})
                ),
                text,
            )
        if isinstance(node, dict) and "Fn::Join" in node:
            separator, parts = node["Fn::Join"]
            return str(separator).join(value(part) for part in parts)
        raise ValueError(f"cannot evaluate {node!r}")

    names = {}
    for logical_id, resource in template["Resources"].items():
        key = PHYSICAL_NAME_PROPERTIES.get(resource["Type"])
        if key and key in resource.get("Properties", {}):
            names[f"{resource['Type']} {logical_id}"] = value(resource["Properties"][key])
    return names


def shared_names(template: Template, first: str = "jobs-a", second: str = "jobs-b") -> list[str]:
    """Resources that two stacks of this template, named ``first`` and ``second``, would both name the same."""
    a, b = physical_names(template, first), physical_names(template, second)
    return [f"{key}: both stacks name it {a[key]!r}" for key in sorted(a) if a[key] == b.get(key)]


def rule_target_problems(template: Template) -> list[str]:
    """EventBridge rules whose SQS target would drop their events: AWS sends to a queue only when the queue's resource
    policy lets ``events.amazonaws.com`` send from the rule ("Permissions for Amazon SQS", EventBridge user guide:
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions). Each
    queue target needs an ``AWS::SQS::QueuePolicy`` on it with an ``Allow`` of ``sqs:SendMessage`` for that
    principal whose ``aws:SourceArn`` condition names the rule (no condition at all would let any rule of any
    account send)."""
    resources = template["Resources"]
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    problems = []
    for rule_id, rule in resources.items():
        if rule["Type"] != "AWS::Events::Rule":
            continue
        targets = rule["Properties"].get("Targets", [])
        # Each target queue, and each target's dead-letter queue ("Granting permissions to the dead-letter queue").
        arns = [t.get("Arn") for t in targets] + [
            t["DeadLetterConfig"].get("Arn") for t in targets if "DeadLetterConfig" in t
        ]
        for arn in arns:
            queue = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None
            if queue is None or resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
                continue
            allowed = any(
                {"Ref": queue} in policy.get("Queues", [])
                and statement.get("Effect") == "Allow"
                and "events.amazonaws.com" in str(statement.get("Principal"))
                and "sqs:SendMessage" in _actions(statement)
                and {"Fn::GetAtt": [rule_id, "Arn"]}
                in [v for tests in statement.get("Condition", {}).values() for v in tests.values()]
                for policy in policies
                for statement in _statements(policy["PolicyDocument"])
            )
            if not allowed:
                problems.append(
                    f"{rule_id}: no queue policy lets events.amazonaws.com send to {queue} from this rule "
                    "(aws:SourceArn): AWS would drop every event it matches"
                )
    return problems


CHECKS = {
    "references": dangling_references,
    "rule targets": rule_target_problems,
    "creation order": creation_races,
    "event source mappings": mapping_problems,
    "alarms": alarm_problems,
    "parameters": parameter_problems,
    "console host": console_host_problems,
    "physical names": shared_names,
}


def problems(template: Template) -> dict[str, list[str]]:
    """Every check's problems, by check name (only checks that found some)."""
    found = {name: check(template) for name, check in CHECKS.items()}
    return {name: items for name, items in found.items() if items}
