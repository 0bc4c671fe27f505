"""template.yaml states what the system promises, and the local stack builds its resources from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.resources import LocalStack, event_sources, http_api_routes
from local.template import UnsupportedTemplate, load_template
from tests.helpers import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]


def properties(logical_id: str) -> dict[str, Any]:
    return dict(RESOURCES[logical_id]["Properties"])


def statements(role: str) -> list[dict[str, Any]]:
    found = []
    for policy in properties(role)["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            found.append(statement)
    return found


def actions(role: str) -> set[str]:
    result: set[str] = set()
    for statement in statements(role):
        action = statement["Action"]
        result.update([action] if isinstance(action, str) else action)
    return result


def test_the_runtime_is_python313_on_arm64() -> None:
    function = TEMPLATE["Globals"]["Function"]

    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert RESOURCES["JobsLayer"]["Metadata"]["BuildArchitecture"] == "arm64"


def test_the_layer_is_built_for_the_runtime_with_bytecode() -> None:
    """sam's python builder ships no bytecode and Lambda's /opt is read-only: the layer's own Makefile compiles it
    (unchecked-hash, PEP 552) for CPython 3.13 from arm64 wheels; .ci/check_layer.py checks the built layer."""
    assert RESOURCES["JobsLayer"]["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers" / "jobs" / "Makefile").read_text()
    assert "build-JobsLayer:" in makefile
    assert "--python-version 3.13" in makefile
    assert "--only-binary=:all:" in makefile
    assert "aarch64" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile


def test_every_function_is_built_with_its_bytecode() -> None:
    """/var/task is read-only in Lambda as /opt is: each function's modules are compiled at build time by
    functions/Makefile (unchecked-hash, CPython 3.13), not at every cold start; .ci/check_layer.py checks the build."""
    functions = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    makefile = (ROOT / "functions" / "Makefile").read_text()

    assert len(functions) >= 6
    for resource in functions.values():
        assert resource["Metadata"]["BuildMethod"] == "makefile"
        assert resource["Metadata"]["ContextPath"] == "functions"
    assert "build-%:" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile
    assert "sys.version_info[:2] == (3, 13)" in makefile


def test_the_api_function_serves_the_five_routes_and_its_description() -> None:
    events = properties("ApiFunction")["Events"].values()

    assert {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events} == {
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
        ("DELETE", "/api/v1/jobs/{job_id}"),
        ("POST", "/api/v1/jobs/{job_id}/cancel"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/docs"),
        ("GET", "/api/v1/webhooks/public-key"),
    }
    assert {e["Type"] for e in events} == {"HttpApi"}


#: Each priority's jobs queue and its own dead-letter queue.
JOBS_QUEUES = {
    "JobsHighPriorityQueue": "JobsHighPriorityDeadLetterQueue",
    "JobsQueue": "JobsDeadLetterQueue",
    "JobsLowPriorityQueue": "JobsLowPriorityDeadLetterQueue",
}
#: Each SQS mapping of the consumers: its queue, and the parameter that caps its MaximumConcurrency.
MAPPINGS = {
    "ProcessJobsFunction": {
        "JobsHighPriorityQueue": "HighPriorityMaximumConcurrency",
        "JobsQueue": "ConsumerMaximumConcurrency",
        "JobsLowPriorityQueue": "LowPriorityMaximumConcurrency",
    },
    "DeadLettersFunction": {
        "JobsHighPriorityDeadLetterQueue": "DeadLettersMaximumConcurrency",
        "JobsDeadLetterQueue": "DeadLettersMaximumConcurrency",
        "JobsLowPriorityDeadLetterQueue": "DeadLettersMaximumConcurrency",
    },
}


def sqs_events(function: str) -> dict[str, dict[str, Any]]:
    """A function's SQS events by the logical id of the queue each reads."""
    events = [event for event in properties(function)["Events"].values() if event["Type"] == "SQS"]
    by_queue = {event["Properties"]["Queue"]["Fn::GetAtt"][0]: event for event in events}
    assert len(by_queue) == len(events), f"{function} reads a queue twice"
    return by_queue


@pytest.mark.parametrize("function", sorted(MAPPINGS))
def test_each_consumer_reads_each_of_its_queues_in_batches_of_ten_with_partial_failures(function: str) -> None:
    events = sqs_events(function)

    assert set(events) == set(MAPPINGS[function])
    assert len(properties(function)["Events"]) == 3
    for event in events.values():
        assert event["Properties"]["BatchSize"] == 10
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_every_jobs_queue_redrives_to_its_own_dead_letter_queue() -> None:
    for queue, dead_letter_queue in JOBS_QUEUES.items():
        assert properties(queue)["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue, "Arn"]},
            "maxReceiveCount": {"Ref": "MaxReceiveCount"},
        }, queue
    assert len(set(JOBS_QUEUES.values())) == len(JOBS_QUEUES)
    assert "RedrivePolicy" not in properties("OutboxDiscardedBatchesQueue")


def test_the_functions_environment_names_every_queue_they_send_to_or_read() -> None:
    urls = {
        "JOBS_QUEUE_URL": {"Ref": "JobsQueue"},
        "JOBS_HIGH_PRIORITY_QUEUE_URL": {"Ref": "JobsHighPriorityQueue"},
        "JOBS_LOW_PRIORITY_QUEUE_URL": {"Ref": "JobsLowPriorityQueue"},
    }
    for sender in ("EnqueueJobsFunction", "ReconcileJobsFunction", "ProcessJobsFunction"):
        variables = properties(sender)["Environment"]["Variables"]
        assert {name: variables.get(name) for name in urls} == urls, sender
    for function, queues in MAPPINGS.items():
        sources = properties(function)["Environment"]["Variables"]["JOBS_SOURCE_QUEUE_URLS"]["Fn::Sub"]
        assert sorted(sources.split(",")) == sorted(f"${{{queue}}}" for queue in queues), function


def test_the_visibility_timeout_is_at_least_six_times_the_consumer_timeout() -> None:
    for queue, dead_letter_queue in JOBS_QUEUES.items():
        assert properties(queue)["VisibilityTimeout"] >= 6 * properties("ProcessJobsFunction")["Timeout"]
        assert properties(dead_letter_queue)["VisibilityTimeout"] >= 6 * properties("DeadLettersFunction")["Timeout"]


def test_the_consumer_knows_the_jobs_queues_retention() -> None:
    variables = properties("ProcessJobsFunction")["Environment"]["Variables"]

    for queue in JOBS_QUEUES:
        assert int(variables["JOBS_QUEUE_RETENTION_SECONDS"]) == properties(queue)["MessageRetentionPeriod"], queue


def test_a_lease_outlasts_the_consumers_run() -> None:
    for consumer in ("ProcessJobsFunction", "DeadLettersFunction"):
        variables = properties(consumer)["Environment"]["Variables"]
        assert int(variables["JOBS_LEASE_SECONDS"]) > properties("ProcessJobsFunction")["Timeout"]


def test_the_outbox_relays_every_insert_with_bounded_retries_and_an_on_failure_destination() -> None:
    [event] = properties("EnqueueJobsFunction")["Events"].values()

    # The new image carries each job's priority and start: the relay sends its message without reading the table.
    assert properties("JobsTable")["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["Stream"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    assert event["Properties"]["StartingPosition"] == "TRIM_HORIZON"
    # No record may stall the shard: retries are bounded (a record past them goes to the destination, which
    # the reconciler replays within the stream's 24 hours), and a failing batch is split to isolate its record.
    assert 0 <= event["Properties"]["MaximumRetryAttempts"] <= 100
    assert 0 < event["Properties"]["MaximumRecordAgeInSeconds"] < 24 * 3600
    assert event["Properties"]["BisectBatchOnFunctionError"] is True
    assert event["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["OutboxDiscardedBatchesQueue", "Arn"]}}
    }
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert [json.loads(f["Pattern"]) for f in event["Properties"]["FilterCriteria"]["Filters"]] == [
        {"eventName": ["INSERT"]}
    ]


def test_the_dead_letter_handler_reads_every_dead_letter_queue() -> None:
    assert set(sqs_events("DeadLettersFunction")) == set(JOBS_QUEUES.values())


def test_the_table_is_keyed_by_owner_and_job_id_with_ttl_pitr_and_encryption() -> None:
    table = properties("JobsTable")

    assert table["KeySchema"] == [
        {"AttributeName": "owner_id", "KeyType": "HASH"},
        {"AttributeName": "job_id", "KeyType": "RANGE"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True


def test_each_function_is_granted_exactly_what_its_code_calls() -> None:
    assert actions("ApiFunctionRole") == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
        "dynamodb:UpdateItem",  # the idempotency table's records, and a cancel
        "ssm:GetParameter",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("ProcessJobsFunctionRole") == {
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:GetItem",  # whether a cancel was asked
        "sqs:SendMessage",  # a continuation's message
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("DeadLettersFunctionRole") == {
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("EnqueueJobsFunctionRole") == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:UpdateItem",  # a job whose message can never be sent is marked FAILED
        "dynamodb:GetItem",  # a KEYS_ONLY record's job (written before the stream's upgrade)
        "sqs:SendMessage",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("ReconcileJobsFunctionRole") == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:GetShardIterator",
        "dynamodb:GetRecords",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("PublishJobEventsFunctionRole") == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "events:PutEvents",  # on exactly the bus it publishes to (test_template_events.py)
        "sqs:SendMessage",  # the mapping's on-failure destination
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions("DeliverCallbacksFunctionRole") == {
        "dynamodb:GetItem",  # the job, as GET returns it
        "dynamodb:UpdateItem",  # its callback's state; an owner's slot taken
        "dynamodb:DeleteItem",  # an owner's slot given back
        "ssm:GetParameter",  # the signing keys
        "kms:Decrypt",  # with WebhookSigningKeyKmsKeyArn only
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",  # a failed attempt's message hides until the next one
        "sqs:SendMessage",  # a deferred record goes back as a new message
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    roles = [name for name, resource in RESOURCES.items() if resource["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 7
    for role in roles:
        assert all(statement["Resource"] != "*" for statement in statements(role))


def granted(role: str, action: str) -> set[str]:
    """The logical ids of the resources (``!GetAtt X.Arn``) on which ``role`` is granted ``action``."""
    found: set[str] = set()
    for statement in statements(role):
        named = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        if action not in named:
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        found.update(r["Fn::GetAtt"][0] for r in resources if isinstance(r, dict) and "Fn::GetAtt" in r)
    return found


def test_each_queue_action_is_granted_on_every_queue_it_is_called_on_and_no_other() -> None:
    jobs_queues, dead_letter_queues = set(JOBS_QUEUES), set(JOBS_QUEUES.values())

    for sender in ("EnqueueJobsFunctionRole", "ReconcileJobsFunctionRole", "ProcessJobsFunctionRole"):
        assert granted(sender, "sqs:SendMessage") - {"OutboxDiscardedBatchesQueue"} == jobs_queues, sender
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert granted("ProcessJobsFunctionRole", action) == jobs_queues, action
        assert granted("DeadLettersFunctionRole", action) == dead_letter_queues, action


def test_the_template_holds_no_secret() -> None:
    text = (ROOT / "template.yaml").read_text()

    assert not re.search(r"(?i)(secret|password)\s*:\s*['\"]?[A-Za-z0-9+/]{16,}", text)


@pytest.fixture
def moto() -> Any:
    with mock_aws():
        yield boto3.client


def test_local_resources_come_from_the_template(moto: Any) -> None:
    physical = LocalStack(ROOT / "template.yaml", moto).create_all()
    sqs = moto("sqs")

    description = moto("dynamodb").describe_table(TableName=physical["JobsTable"]["Ref"])["Table"]
    ttl = moto("dynamodb").describe_time_to_live(TableName=physical["JobsTable"]["Ref"])["TimeToLiveDescription"]

    for queue, dead_letter_queue in JOBS_QUEUES.items():
        attributes = sqs.get_queue_attributes(QueueUrl=physical[queue]["Ref"], AttributeNames=["All"])["Attributes"]
        assert attributes["VisibilityTimeout"] == str(properties(queue)["VisibilityTimeout"])
        assert attributes["MessageRetentionPeriod"] == str(properties(queue)["MessageRetentionPeriod"])
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": physical[dead_letter_queue]["Arn"],
            "maxReceiveCount": int(TEMPLATE["Parameters"]["MaxReceiveCount"]["Default"]),
        }
    assert description["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert description["KeySchema"] == properties("JobsTable")["KeySchema"]
    assert ttl == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}


def test_a_changed_template_changes_the_local_queue(moto: Any, tmp_path: Path) -> None:
    changed = tmp_path / "template.yaml"
    text = (ROOT / "template.yaml").read_text()
    text = text.replace("VisibilityTimeout: 180", "VisibilityTimeout: 240")
    text = re.sub(r"(MaxReceiveCount:\n(?:    .*\n)*?    Default: )5", r"\g<1>7", text)
    changed.write_text(text)

    physical = LocalStack(changed, moto).create_all()

    for queue in JOBS_QUEUES:
        attributes = moto("sqs").get_queue_attributes(QueueUrl=physical[queue]["Ref"], AttributeNames=["All"])[
            "Attributes"
        ]
        assert attributes["VisibilityTimeout"] == "240", queue
        assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 7, queue


def test_parameter_overrides_reach_the_queue_and_the_consumer(moto: Any) -> None:
    stack = LocalStack(
        ROOT / "template.yaml", moto, parameter_overrides={"MaxReceiveCount": "8", "JobMaxAttempts": "4"}
    )
    physical = stack.create_all()

    consumer = next(spec for spec in stack.functions() if spec.logical_id == "ProcessJobsFunction")

    for queue in JOBS_QUEUES:
        attributes = moto("sqs").get_queue_attributes(QueueUrl=physical[queue]["Ref"], AttributeNames=["All"])[
            "Attributes"
        ]
        assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 8, queue
    assert consumer.environment["JOBS_MAX_RECEIVE_COUNT"] == "8"
    assert consumer.environment["JOBS_MAX_ATTEMPTS"] == "4"


def test_functions_get_globals_routes_and_queue_from_the_template(moto: Any) -> None:
    stack = LocalStack(ROOT / "template.yaml", moto)
    physical = stack.create_all()
    specs = {spec.logical_id: spec for spec in stack.functions()}

    api, consumer = specs["ApiFunction"], specs["ProcessJobsFunction"]

    assert api.environment["JOBS_TABLE_NAME"] == physical["JobsTable"]["Ref"]
    assert specs["EnqueueJobsFunction"].environment["JOBS_QUEUE_URL"] == physical["JobsQueue"]["Ref"]
    assert "JOBS_QUEUE_URL" not in api.environment
    assert api.layer_dirs == ((ROOT / "layers" / "jobs").resolve(),)
    assert (api.handler, api.timeout_seconds, consumer.timeout_seconds) == ("app.lambda_handler", 10, 30)
    assert len(http_api_routes(api, stack.resolver)) == 8
    assert sorted(s["Queue"] for s in event_sources(consumer, stack.resolver, "SQS")) == sorted(
        physical[queue]["Arn"] for queue in JOBS_QUEUES
    )
    assert consumer.environment["JOBS_SOURCE_QUEUE_URLS"].split(",") == [
        physical[queue]["Ref"] for queue in JOBS_QUEUES
    ]


def test_an_intrinsic_the_local_stack_does_not_emulate_fails_loudly(moto: Any, tmp_path: Path) -> None:
    changed = tmp_path / "template.yaml"
    text = (ROOT / "template.yaml").read_text()
    changed.write_text(text.replace("VisibilityTimeout: 180", "VisibilityTimeout: !Select [0, [180, 240]]"))

    with pytest.raises(UnsupportedTemplate, match=r"Fn::Select in JobsQueue"):
        LocalStack(changed, moto).create_all()


def test_the_retention_parameter_reaches_the_functions_that_finish_jobs(moto: Any) -> None:
    stack = LocalStack(ROOT / "template.yaml", moto, parameter_overrides={"FinishedJobRetentionDays": "7"})
    stack.create_all()
    specs = {spec.logical_id: spec for spec in stack.functions()}

    assert specs["ProcessJobsFunction"].environment["JOBS_RETENTION_DAYS"] == "7"
    assert specs["DeadLettersFunction"].environment["JOBS_RETENTION_DAYS"] == "7"
    assert TEMPLATE["Parameters"]["FinishedJobRetentionDays"]["Default"] == 30


def test_cors_allows_the_headers_the_api_reads_and_exposes_the_ones_it_sends() -> None:
    cors = properties("JobsHttpApi")["CorsConfiguration"]

    assert set(cors["AllowHeaders"]) == {"authorization", "content-type", "idempotency-key"}
    assert set(cors["AllowMethods"]) >= {"GET", "POST", "DELETE"}
    assert set(cors["ExposeHeaders"]) == {"location", "retry-after", "www-authenticate"}
    assert cors["AllowOrigins"] == {"Ref": "CorsAllowOrigins"}
    assert cors["AllowCredentials"] is False


def test_the_local_gateway_reads_cors_from_the_template(moto: Any) -> None:
    from local.gateway import CorsPolicy

    stack = LocalStack(
        ROOT / "template.yaml", moto, parameter_overrides={"CorsAllowOrigins": "https://a.example, https://b.example"}
    )
    policy = CorsPolicy.from_configuration(stack.http_apis()["JobsHttpApi"]["CorsConfiguration"])

    assert policy.allow_origins == ("https://a.example", "https://b.example")
    assert policy.allowed_origin("https://b.example") == "https://b.example"
    assert policy.allowed_origin("https://c.example") is None
    assert policy.max_age == 600


def test_an_http_api_property_the_local_gateway_does_not_emulate_fails_loudly(moto: Any, tmp_path: Path) -> None:
    changed = tmp_path / "template.yaml"
    text = (ROOT / "template.yaml").read_text()
    changed.write_text(
        text.replace("      CorsConfiguration:\n", "      DisableExecuteApiEndpoint: true\n      CorsConfiguration:\n")
    )

    with pytest.raises(UnsupportedTemplate, match="DisableExecuteApiEndpoint"):
        LocalStack(changed, moto).http_apis()


def test_route_throttling_is_set_on_the_stage_from_parameters(moto: Any) -> None:
    settings = properties("JobsHttpApi")["DefaultRouteSettings"]
    stack = LocalStack(ROOT / "template.yaml", moto, parameter_overrides={"ThrottleRateLimit": "5"})

    resolved = stack.http_apis()["JobsHttpApi"]["DefaultRouteSettings"]

    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ThrottleRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ThrottleBurstLimit"},
    }
    assert resolved == {"ThrottlingRateLimit": "5", "ThrottlingBurstLimit": "100"}


def test_a_deploy_with_a_jwks_url_but_no_issuer_or_audience_is_refused_by_a_rule() -> None:
    rule = TEMPLATE["Rules"]["JwksNeedsIssuerAndAudience"]
    asserted = [assertion["Assert"] for assertion in rule["Assertions"]]

    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwksUrl"}, ""]}]}
    assert asserted == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtAudience"}, ""]}]},
    ]
    for assertion, parameter in zip(rule["Assertions"], ("JwtIssuer", "JwtAudience"), strict=True):
        assert assertion["AssertDescription"].startswith(f"{parameter} is required when JwksUrl is set")
    assert "Comma-separated audiences" in TEMPLATE["Parameters"]["JwtAudience"]["Description"]


def test_each_function_role_grants_tracing_itself_so_no_function_races_its_permission() -> None:
    functions = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"]
    xray = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}

    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"
    for function in functions:
        role = properties(function)["Role"]["Fn::GetAtt"][0]
        assert xray in properties(role).get("ManagedPolicyArns", []), role
    # A policy of its own (AWS::IAM::Policy) is created apart from the role, and a function may be created first.
    assert not [name for name, r in RESOURCES.items() if r["Type"] == "AWS::IAM::Policy"]


def test_the_dead_letter_path_alarms_on_what_the_handler_counts_its_age_and_its_errors() -> None:
    alarms = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    watched = {(a.get("Namespace"), a.get("MetricName")) for a in alarms.values()}

    assert ("JobSystem", "JobsDeadLettered") in watched
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in watched
    for dead_letter_queue in JOBS_QUEUES.values():  # every level's dead letters are watched
        assert any(
            a.get("MetricName") == "ApproximateAgeOfOldestMessage"
            and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letter_queue, "QueueName"]}}]
            for a in alarms.values()
        ), dead_letter_queue
    assert any(
        a.get("MetricName") == "Errors"
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DeadLettersFunction"}}]
        for a in alarms.values()
    )
    # Depth alone hardly ever fires: the handler drains the queue within seconds.
    assert not any(
        a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}
        for a in alarms.values()
    )


@pytest.mark.parametrize(
    ("function", "queue", "parameter"),
    [(function, queue, parameter) for function, queues in MAPPINGS.items() for queue, parameter in queues.items()],
)
def test_each_sqs_mapping_caps_its_concurrency_by_its_own_parameter(function: str, queue: str, parameter: str) -> None:
    event = sqs_events(function)[queue]

    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": parameter}}
    assert TEMPLATE["Parameters"][parameter]["MinValue"] == 2  # SQS's least MaximumConcurrency


def test_high_priority_work_has_capacity_no_other_level_takes() -> None:
    parameters = TEMPLATE["Parameters"]
    capacity = {queue: parameters[parameter]["Default"] for queue, parameter in MAPPINGS["ProcessJobsFunction"].items()}

    assert len(set(MAPPINGS["ProcessJobsFunction"].values())) == 3  # one cap per level, none shared
    assert capacity == {"JobsHighPriorityQueue": 5, "JobsQueue": 10, "JobsLowPriorityQueue": 2}


def test_names_are_per_stack_and_urls_per_partition() -> None:
    assert properties("JobsLayer")["LayerName"] == {"Fn::Sub": "${AWS::StackName}-jobs"}
    queries = [r["Properties"]["Name"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::QueryDefinition"]
    assert queries
    assert all(name["Fn::Sub"].startswith("${AWS::StackName}/") for name in queries)
    url = TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "console.aws.amazon.com" not in json.dumps(url)
    assert set(TEMPLATE["Mappings"]["ConsoleDomain"]) == {"aws", "aws-cn", "aws-us-gov"}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab", True),
        ("arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", False),  # a key id
        ("alias/jobs", False),
        ("arn:aws:kms:us-east-1:123456789012:alias/jobs", False),
    ],
)
def test_the_secret_kms_key_must_be_a_key_arn(value: str, accepted: bool) -> None:
    pattern = TEMPLATE["Parameters"]["JwtSecretKmsKeyArn"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is accepted


def test_every_function_answers_before_its_timeout_whatever_aws_does() -> None:
    """jobs.aws's time budget (JOBS_AWS_* in a function's environment, else the defaults): every function's
    Timeout holds one AWS attempt and the answer's margin (below that, no call could be made at all), and the
    queue and stream consumers' hold a whole call: every attempt and the standard retry mode's backoff between
    them (under 2**i s before retry i + 1)."""
    from jobs.settings import AwsSettings

    functions = {
        logical_id: {**TEMPLATE["Globals"]["Function"], **resource["Properties"]}
        for logical_id, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) >= {"ApiFunction", "ProcessJobsFunction", "EnqueueJobsFunction"}
    for logical_id, function in functions.items():
        variables = {
            **TEMPLATE["Globals"]["Function"].get("Environment", {}).get("Variables", {}),
            **function.get("Environment", {}).get("Variables", {}),
        }
        prefix = "JOBS_AWS_"
        budget = AwsSettings.model_validate(
            {name.removeprefix(prefix).lower(): value for name, value in variables.items() if name.startswith(prefix)}
        )
        backoff = sum(2**retry for retry in range(budget.max_attempts - 1))
        whole_call = budget.max_attempts * budget.attempt_seconds + backoff
        timeout = int(function["Timeout"])
        assert timeout >= budget.attempt_seconds + budget.response_margin_seconds, logical_id
        if logical_id != "ApiFunction":
            assert timeout >= whole_call + budget.response_margin_seconds, logical_id


def test_the_dashboard_body_is_json_and_names_only_the_stacks_resources_and_its_services() -> None:
    """CloudFormation takes any string as DashboardBody; CloudWatch refuses one that is not JSON at deploy time."""
    body, names = TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    placeholders = set(re.findall(r"\$\{([^}]+)\}", body))
    resources = set(TEMPLATE["Resources"])
    assert placeholders <= resources | set(names) | {"AWS::Region"}, placeholders - resources - set(names)
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    services = {
        metric[metric.index("service") + 1]
        for widget in widgets
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if "service" in metric
    }
    declared = {
        resource["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
        for resource in TEMPLATE["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert services <= declared, services - declared
    assert "jobs-callbacks" in services
