"""Creates the template's tables, queues, event buses, rules and queue policies in moto's server, and reads its
functions, from ``template.yaml``.

The local resources come from the template's own resource definitions (key schema, TTL, visibility timeout,
redrive policy), so the local stack and a deployed stack cannot drift apart. A property this module does not
know raises ``UnsupportedTemplate``, so a new property is either emulated or reported, never dropped silently.

EventBridge rules (``AWS::Events::Rule``) are created on their bus with their pattern and SQS targets, and moto's
EventBridge delivers matching events to those queues. AWS sends to an SQS target only when the queue's resource
policy lets ``events.amazonaws.com`` send from the rule ("Permissions for Amazon SQS", EventBridge user guide:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions); otherwise
it drops every event, which moto does not play. So ``create_all`` refuses (``UndeliverableRule``) a rule whose
target queue, or a target's dead-letter queue (``DeadLetterConfig``, which needs the same permission), has no
``AWS::SQS::QueuePolicy`` allowing it (``queue_policy_allows``). moto's delivery to a queue never fails, so a
target's dead-letter queue is kept on the target but never receives anything here.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.template import ACCOUNT_ID, REGION, Resolver, UnsupportedTemplate, load_template

_TABLE_PROPERTIES = {
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "SSESpecification",
    "TimeToLiveSpecification",
    "PointInTimeRecoverySpecification",
    "DeletionProtectionEnabled",
    "Tags",
}
#: ``AWS::Serverless::HttpApi`` properties the local gateway emulates, or that change nothing it does.
#: (AccessLogSettings: the local gateway writes its own access line per request to stdout.)
_HTTP_API_PROPERTIES = {"Description", "CorsConfiguration", "DefaultRouteSettings", "AccessLogSettings"}
_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
}


#: ``AWS::Events::Rule`` properties the local stack plays (a schedule, a role or another target kind is reported).
_RULE_PROPERTIES = {"Name", "Description", "EventBusName", "EventPattern", "State", "Targets"}
#: Target properties it plays.
_RULE_TARGET_PROPERTIES = {"Id", "Arn", "DeadLetterConfig"}
#: The principal EventBridge sends to a target as.
EVENTS_PRINCIPAL = "events.amazonaws.com"


class UndeliverableRule(Exception):
    """A rule's SQS target queue has no policy that lets EventBridge send from the rule: AWS would drop every event
    the rule matches."""


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def queue_policy_allows(policy: Mapping[str, Any] | None, queue_arn: str, rule_arn: str) -> bool:
    """Whether a queue's resource policy lets EventBridge send messages from the rule ``rule_arn`` to ``queue_arn``: an
    ``Allow`` statement for the service principal ``events.amazonaws.com``, the action ``sqs:SendMessage`` (or
    ``sqs:*``), the queue (or ``*``) as resource, and, when it has a condition, ``aws:SourceArn`` naming the rule
    (``ArnEquals``/``StringEquals``, or a pattern of ``ArnLike``/``StringLike``). A ``Deny`` that matches refuses.

    Raises:
        UnsupportedTemplate: a statement with a condition operator or key this check does not read (it would rather
            say so than guess what AWS decides).
    """
    allowed = False
    for statement in _listed((policy or {}).get("Statement", [])):
        principal = statement.get("Principal", {})
        services = _listed(principal.get("Service", [])) if isinstance(principal, dict) else [principal]
        actions = {str(a).lower() for a in _listed(statement.get("Action", []))}
        resources = [str(r) for r in _listed(statement.get("Resource", "*"))]
        if not (EVENTS_PRINCIPAL in services or "*" in services):
            continue
        if not actions & {"sqs:sendmessage", "sqs:*", "*"}:
            continue
        if not any(fnmatch.fnmatchcase(queue_arn, resource) for resource in resources):
            continue
        if not _condition_holds(statement.get("Condition", {}), rule_arn):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _condition_holds(condition: Mapping[str, Any], rule_arn: str) -> bool:
    for operator, tests in condition.items():
        for key, values in tests.items():
            if key.lower() != "aws:sourcearn":
                raise UnsupportedTemplate(f"queue policy condition key {key} is not read by the local stack")
            patterns = [str(v) for v in _listed(values)]
            if operator in ("ArnEquals", "StringEquals"):
                if rule_arn not in patterns:
                    return False
            elif operator in ("ArnLike", "StringLike"):
                if not any(fnmatch.fnmatchcase(rule_arn, pattern) for pattern in patterns):
                    return False
            else:
                raise UnsupportedTemplate(f"queue policy condition operator {operator} is not read by the local stack")
    return True


@dataclass(frozen=True)
class FunctionSpec:
    """A function of the template as the local runtime runs it (Globals merged, intrinsics resolved)."""

    logical_id: str
    code_dir: Path
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    layer_dirs: tuple[Path, ...]
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


class LocalStack:
    """The template's resources, created on demand in the AWS endpoint that ``clients`` talk to.

    Args:
        template_path: ``template.yaml``.
        clients: returns a boto3 client for a service name, pointed at moto's server.
        stack_name: ``AWS::StackName``; physical names are ``<stack_name>-<LogicalId>``.
        parameter_overrides: values for the template's parameters.
    """

    def __init__(
        self,
        template_path: Path,
        clients: Any,
        *,
        stack_name: str = "jobs-local",
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.template_path = template_path
        self.root = template_path.parent
        self.template = load_template(template_path)
        self.clients = clients
        self.stack_name = stack_name
        self._physical: dict[str, dict[str, str]] = {}
        self._creating: set[str] = set()
        self.resolver = Resolver(self.template, stack_name, self.physical, dict(parameter_overrides or {}))

    @property
    def resources(self) -> dict[str, Any]:
        """The template's ``Resources`` section."""
        return dict(self.template["Resources"])

    def physical(self, logical_id: str) -> dict[str, str]:
        """The ``Ref`` value and attributes of a resource, creating it on first use."""
        if logical_id in self._physical:
            return self._physical[logical_id]
        if logical_id in self._creating:
            raise UnsupportedTemplate(f"circular reference through {logical_id}")
        self._creating.add(logical_id)
        try:
            resource = self.template["Resources"][logical_id]
            kind = resource["Type"]
            if "Condition" in resource and not self.resolver.condition(str(resource["Condition"])):
                raise UnsupportedTemplate(
                    f"{logical_id} is not created: its Condition {resource['Condition']} is false"
                )
            name = f"{self.stack_name}-{logical_id}"
            if kind == "AWS::DynamoDB::Table":
                self._physical[logical_id] = self._create_table(logical_id, resource.get("Properties", {}), name)
            elif kind == "AWS::SQS::Queue":
                self._physical[logical_id] = self._create_queue(logical_id, resource.get("Properties", {}), name)
            elif kind == "AWS::Serverless::LayerVersion":
                content = self.root / resource["Properties"]["ContentUri"]
                self._physical[logical_id] = {"Ref": str(content.resolve())}
            elif kind in ("AWS::Serverless::HttpApi", "AWS::Serverless::Api"):
                self._physical[logical_id] = {"Ref": "local"}
            elif kind == "AWS::Logs::LogGroup":
                group = self.resolver.resolve(resource["Properties"].get("LogGroupName", name), logical_id)
                arn = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}:*"
                self._physical[logical_id] = {"Ref": group, "Arn": arn}
            elif kind == "AWS::Events::EventBus":
                self._physical[logical_id] = self._create_event_bus(logical_id, resource.get("Properties", {}), name)
            elif kind == "AWS::Events::Rule":
                self._physical[logical_id] = self._create_rule(logical_id, resource.get("Properties", {}), name)
            elif kind == "AWS::SQS::QueuePolicy":
                self._physical[logical_id] = self._create_queue_policy(logical_id, resource.get("Properties", {}))
            elif kind == "AWS::IAM::Role":
                self._physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"}
            else:
                raise UnsupportedTemplate(f"{logical_id}: resource type {kind} is not emulated by the local stack")
        finally:
            self._creating.discard(logical_id)
        return self._physical[logical_id]

    def http_apis(self) -> dict[str, dict[str, Any]]:
        """Every ``AWS::Serverless::HttpApi`` of the template with its properties resolved, by logical id.

        Raises:
            UnsupportedTemplate: a property the local gateway does not emulate.
        """
        found = {}
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::HttpApi":
                continue
            props = self.resolver.resolve(dict(resource.get("Properties", {})), logical_id)
            unknown = set(props) - _HTTP_API_PROPERTIES
            if unknown:
                raise UnsupportedTemplate(f"{logical_id}: HttpApi properties {sorted(unknown)} are not emulated")
            found[logical_id] = props
        return found

    def create_all(self) -> dict[str, dict[str, str]]:
        """Create every table, queue, event bus, rule and queue policy of the template (those whose ``Condition``
        holds); returns their physical ids by logical id.

        Raises:
            UndeliverableRule: a rule's target queue has no policy letting EventBridge send from the rule.
        """
        kinds = (
            "AWS::DynamoDB::Table",
            "AWS::SQS::Queue",
            "AWS::Events::EventBus",
            "AWS::Events::Rule",
            "AWS::SQS::QueuePolicy",
        )
        for logical_id, resource in self.resources.items():
            if "Condition" in resource and not self.resolver.condition(str(resource["Condition"])):
                continue
            if resource["Type"] in kinds:
                self.physical(logical_id)
        self.check_rule_targets()
        return dict(self._physical)

    def check_rule_targets(self) -> None:
        """Refuse a rule whose SQS target's queue policy does not let EventBridge send from it (module docstring).

        Raises:
            UndeliverableRule: naming the rule and the queue.
        """
        sqs = self.clients("sqs")
        queues = {p["Arn"]: p["Ref"] for p in self._physical.values() if "QueueUrl" in p}
        for logical_id, physical in self._physical.items():
            for target_arn in json.loads(physical.get("TargetArns", "[]")):
                attributes = sqs.get_queue_attributes(QueueUrl=queues[target_arn], AttributeNames=["Policy"])
                policy = attributes.get("Attributes", {}).get("Policy")
                if not queue_policy_allows(json.loads(policy) if policy else None, target_arn, physical["Arn"]):
                    raise UndeliverableRule(
                        f"{logical_id}: its target queue {target_arn} has no policy letting {EVENTS_PRINCIPAL} send "
                        f"from the rule (AWS::SQS::QueuePolicy with aws:SourceArn {physical['Arn']}): AWS would drop "
                        "every event it matches"
                    )

    def _create_table(self, logical_id: str, properties: Mapping[str, Any], name: str) -> dict[str, str]:
        props = self.resolver.resolve(dict(properties), logical_id)
        unknown = set(props) - _TABLE_PROPERTIES
        if unknown:
            raise UnsupportedTemplate(f"{logical_id}: table properties {sorted(unknown)} are not emulated")
        table_name = props.get("TableName", name)
        request: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                request[key] = props[key]
        if "SSESpecification" in props:  # CloudFormation's SSEEnabled is the API's Enabled
            sse = dict(props["SSESpecification"])
            request["SSESpecification"] = {"Enabled": bool(sse.pop("SSEEnabled", False)), **sse}
        if "StreamSpecification" in props:
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        dynamodb = self.clients("dynamodb")
        description = dynamodb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            try:
                dynamodb.update_continuous_backups(
                    TableName=table_name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )
            except ClientError as error:  # DynamoDB Local has no backups; PITR changes nothing a test sees
                if error.response.get("Error", {}).get("Code") != "UnknownOperationException":
                    raise
        physical = {"Ref": table_name, "Arn": description["TableArn"]}
        if "LatestStreamArn" in description:
            physical["StreamArn"] = description["LatestStreamArn"]
        return physical

    def _create_event_bus(self, logical_id: str, properties: Mapping[str, Any], name: str) -> dict[str, str]:
        """An EventBridge bus in moto's server (``Ref`` is its name, as CloudFormation's is)."""
        props = self.resolver.resolve(dict(properties), logical_id)
        unknown = set(props) - {"Name", "Description", "Tags"}
        if unknown:
            raise UnsupportedTemplate(f"{logical_id}: event bus properties {sorted(unknown)} are not emulated")
        bus_name = str(props.get("Name", name))
        arn = self.clients("events").create_event_bus(Name=bus_name)["EventBusArn"]
        return {"Ref": bus_name, "Arn": arn, "Name": bus_name}

    def _create_rule(self, logical_id: str, properties: Mapping[str, Any], name: str) -> dict[str, str]:
        """An EventBridge rule with its pattern and SQS targets in moto's server (``Ref`` is ``<bus>|<name>`` on a
        custom bus, as CloudFormation's is). The bus is created when missing (one named by a parameter, which
        exists only on AWS).

        Raises:
            UnsupportedTemplate: a property, a target property or a target that is not one of the stack's queues.
        """
        props = self.resolver.resolve(dict(properties), logical_id)
        unknown = set(props) - _RULE_PROPERTIES
        if unknown:
            raise UnsupportedTemplate(f"{logical_id}: rule properties {sorted(unknown)} are not emulated")
        if "EventPattern" not in props:
            raise UnsupportedTemplate(f"{logical_id}: a rule without EventPattern (a schedule) is not emulated")
        events = self.clients("events")
        bus = str(props.get("EventBusName", "default"))
        if bus != "default" and not any(b["Name"] == bus for b in events.list_event_buses()["EventBuses"]):
            events.create_event_bus(Name=bus)
        rule_name = str(props.get("Name", name))
        pattern = props["EventPattern"]
        arn = events.put_rule(
            Name=rule_name,
            EventBusName=bus,
            EventPattern=pattern if isinstance(pattern, str) else json.dumps(pattern),
            State=str(props.get("State", "ENABLED")),
            Description=str(props.get("Description", "")),
        )["RuleArn"]
        targets = []
        for target in props.get("Targets", []):
            extra = set(target) - _RULE_TARGET_PROPERTIES
            if extra:
                raise UnsupportedTemplate(f"{logical_id}: rule target properties {sorted(extra)} are not emulated")
            if not str(target["Arn"]).startswith("arn:aws:sqs:"):
                raise UnsupportedTemplate(f"{logical_id}: rule targets other than SQS queues are not emulated")
            entry: dict[str, Any] = {"Id": str(target["Id"]), "Arn": str(target["Arn"])}
            dead_letters = target.get("DeadLetterConfig", {}).get("Arn")
            if dead_letters is not None:
                if not str(dead_letters).startswith("arn:aws:sqs:"):
                    raise UnsupportedTemplate(f"{logical_id}: a target's dead-letter queue must be an SQS queue")
                # Kept on the target as AWS keeps it; moto's delivery never fails, so nothing is ever sent there.
                entry["DeadLetterConfig"] = {"Arn": str(dead_letters)}
            targets.append(entry)
        if targets:
            events.put_targets(Rule=rule_name, EventBusName=bus, Targets=targets)
        ref = rule_name if bus == "default" else f"{bus}|{rule_name}"
        # Every queue EventBridge may send to for this rule: each target and each target's dead-letter queue.
        receivers = [t["Arn"] for t in targets] + [
            t["DeadLetterConfig"]["Arn"] for t in targets if "DeadLetterConfig" in t
        ]
        return {"Ref": ref, "Arn": arn, "TargetArns": json.dumps(receivers)}

    def _create_queue_policy(self, logical_id: str, properties: Mapping[str, Any]) -> dict[str, str]:
        """An ``AWS::SQS::QueuePolicy``: the policy set on each of its queues (``Policy`` attribute)."""
        props = self.resolver.resolve(dict(properties), logical_id)
        unknown = set(props) - {"Queues", "PolicyDocument"}
        if unknown:
            raise UnsupportedTemplate(f"{logical_id}: queue policy properties {sorted(unknown)} are not emulated")
        sqs = self.clients("sqs")
        for url in props["Queues"]:
            sqs.set_queue_attributes(QueueUrl=str(url), Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        return {"Ref": logical_id}

    def _create_queue(self, logical_id: str, properties: Mapping[str, Any], name: str) -> dict[str, str]:
        props = self.resolver.resolve(dict(properties), logical_id)
        queue_name = props.pop("QueueName", name)
        props.pop("Tags", None)
        unknown = set(props) - _QUEUE_ATTRIBUTES
        if unknown:
            raise UnsupportedTemplate(f"{logical_id}: queue properties {sorted(unknown)} are not emulated")
        attributes: dict[str, str] = {}
        for key, value in props.items():
            if key in ("RedrivePolicy", "RedriveAllowPolicy"):
                policy = dict(value)
                if "maxReceiveCount" in policy:
                    policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
                attributes[key] = json.dumps(policy)
            elif isinstance(value, bool):
                attributes[key] = "true" if value else "false"
            else:
                attributes[key] = str(value)
        sqs = self.clients("sqs")
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "Arn": arn, "QueueName": queue_name, "QueueUrl": url}

    def unemulated_events(self) -> list[str]:
        """Function events of types the local stack does not play (it says so at start rather than drop them
        silently)."""
        emulated = {"HttpApi", "SQS", "DynamoDB", "Schedule"}
        return [
            f"{spec.logical_id}.{name} ({event.get('Type')})"
            for spec in self.functions()
            for name, event in spec.events.items()
            if event.get("Type") not in emulated
        ]

    def functions(self) -> list[FunctionSpec]:
        """Every ``AWS::Serverless::Function`` with the template's Globals merged in, as SAM merges them
        (maps merged with the function's values winning, lists such as ``Layers`` appended)."""
        defaults = self.template.get("Globals", {}).get("Function", {})
        specs = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            own = resource.get("Properties", {})
            variables = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **own.get("Environment", {}).get("Variables", {}),
            }
            layers = [*defaults.get("Layers", []), *own.get("Layers", [])]

            def setting(key: str, fallback: Any, own: Mapping[str, Any] = own) -> Any:
                return own.get(key, defaults.get(key, fallback))

            resolve = self.resolver.resolve
            environment = {
                key: str(resolve(value, f"{logical_id}.Environment.{key}")) for key, value in variables.items()
            }
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_dir=(self.root / resolve(setting("CodeUri", "."), logical_id)).resolve(),
                    handler=resolve(setting("Handler", "app.lambda_handler"), logical_id),
                    runtime=resolve(setting("Runtime", "python3.13"), logical_id),
                    timeout_seconds=int(resolve(setting("Timeout", 3), logical_id)),
                    memory_mb=int(resolve(setting("MemorySize", 128), logical_id)),
                    environment=environment,
                    layer_dirs=tuple(Path(resolve(layer, f"{logical_id}.Layers")) for layer in layers),
                    events=dict(own.get("Events", {})),
                )
            )
        return specs


def http_api_routes(spec: FunctionSpec, resolver: Resolver) -> list[tuple[str, str]]:
    """The ``(METHOD, path template)`` pairs of a function's ``HttpApi`` events."""
    routes = []
    for name, event in spec.events.items():
        if event.get("Type") != "HttpApi":
            continue
        properties = resolver.resolve(event.get("Properties", {}), f"{spec.logical_id}.Events.{name}")
        routes.append((str(properties.get("Method", "ANY")).upper(), str(properties.get("Path", "$default"))))
    return routes


#: The properties of each event type that the local stack plays, or that change nothing it does; any other is
#: an ``UnsupportedTemplate`` error rather than a setting silently ignored.
EVENT_PROPERTIES = {
    "SQS": {"Queue", "BatchSize", "FunctionResponseTypes", "MaximumBatchingWindowInSeconds", "ScalingConfig"},
    "DynamoDB": {
        "Stream",
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "DestinationConfig",
        "FunctionResponseTypes",
        "FilterCriteria",
        "ParallelizationFactor",
    },
    "Schedule": {"Schedule", "Description", "Input", "Name"},
}


def event_sources(spec: FunctionSpec, resolver: Resolver, kind: str) -> list[dict[str, Any]]:
    """The resolved properties of a function's events of type ``kind`` (``SQS``: Queue, BatchSize, ...;
    ``DynamoDB``: Stream, StartingPosition, FilterCriteria, MaximumRetryAttempts, DestinationConfig, ...;
    ``Schedule``: Schedule, Input, ...).

    Raises:
        UnsupportedTemplate: a property of the event that the local stack does not play.
    """
    sources = []
    for name, event in spec.events.items():
        if event.get("Type") != kind:
            continue
        where = f"{spec.logical_id}.Events.{name}"
        properties = resolver.resolve(event.get("Properties", {}), where)
        unknown = set(properties) - EVENT_PROPERTIES.get(kind, set(properties))
        if unknown:
            raise UnsupportedTemplate(f"{where}: {kind} event properties {sorted(unknown)} are not emulated")
        sources.append(properties)
    return sources
