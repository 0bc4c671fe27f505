"""Least privilege, measured: botocore event hooks record every AWS call each function's code makes while it
runs its paths (create, idempotent replay and failure, get, list, filtered list, delete, token secret; run,
retry, report, dead letter), and the test checks that the function's role in template.yaml grants exactly
those actions on exactly those resources, plus the few the Lambda platform uses on the function's behalf. The
roles are read from the template AWS would receive (after the SAM transform: the ``generated`` fixture)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import botocore.session
import pytest

from jobs import bootstrap
from jobs.models import JobCreate, JobPriority, ServiceUnavailable, format_timestamp, utc_now
from jobs.service import JobService
from jobs.store import DynamoJobStore
from local import webhook_keys
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import (
    SECRET_PARAMETER,
    WEBHOOK_PUBLIC_KEY_PARAMETER,
    WEBHOOK_SIGNING_KEY_PARAMETER,
    FakeLambdaContext,
    api_event,
    inserted_record,
    load_event,
    load_function,
    sign,
)

#: What the Lambda platform does with a function's role, not its code; granted, never seen by the hooks.
PLATFORM = {
    # Lambda writes the function's logs to its log group.
    "logs": {("logs:CreateLogStream", "{function}LogGroup"), ("logs:PutLogEvents", "{function}LogGroup")},
    # The SQS event source mapping polls and deletes with the consumer's role.
    "sqs": {("sqs:ReceiveMessage", "{queue}"), ("sqs:DeleteMessage", "{queue}"), ("sqs:GetQueueAttributes", "{queue}")},
    # SSM decrypts a SecureString with the caller's permission on a customer managed key (when one is named).
    "kms": {("kms:Decrypt", "JwtSecretKmsKeyArn")},
    # The DynamoDB stream event source mapping reads the table's stream with the outbox relay's role, and sends
    # the coordinates of the batches it gives up on to its on-failure destination with that role too.
    "stream": {
        *(
            (f"dynamodb:{action}", "JobsTable/stream/*")
            for action in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
        ),
        ("sqs:SendMessage", "OutboxDiscardedBatchesQueue"),
    },
}


#: The SSM parameters the tests store, by the template parameter that names each.
PARAMETERS = {
    SECRET_PARAMETER: "JwtSecretParameterName",
    WEBHOOK_SIGNING_KEY_PARAMETER: "WebhookSigningKeyParameterName",
    WEBHOOK_PUBLIC_KEY_PARAMETER: "WebhookPublicKeyParameterName",
}

#: SQS's batch operations are authorised by the single-message action (Amazon SQS API permissions reference:
#: "SendMessageBatch ... sqs:SendMessage"); no IAM action is named after them.
BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


class Recorder:
    """Records ``(iam action, template resource)`` for each call made while ``active``."""

    def __init__(self, physical: dict[str, dict[str, str]]) -> None:
        self.calls: set[tuple[str, str]] = set()
        self.active = False
        self._names = {value["Ref"]: logical for logical, value in physical.items() if "Ref" in value}

    def __call__(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        service = model.service_model.signing_name
        action = BATCH_ACTIONS.get(f"{service}:{model.name}", f"{service}:{model.name}")
        self.calls.add((action, self._resource(service, params)))

    def _resource(self, service: str, params: dict[str, Any]) -> str:
        if service == "dynamodb" and ("StreamArn" in params or "ShardIterator" in params):
            return "JobsTable/stream/*"
        if service == "dynamodb":
            table = self._names.get(params["TableName"], params["TableName"])
            return f"{table}/index/{params['IndexName']}" if "IndexName" in params else table
        if service == "sqs":
            return str(self._names.get(params["QueueUrl"], params["QueueUrl"]))
        if service == "ssm":
            return "parameter:" + PARAMETERS.get(str(params["Name"]), str(params["Name"]))
        return "?"

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False


def recording(found: Recorder, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """``found``, registered on every botocore client created from now on (the test's)."""
    create_client = botocore.session.Session.create_client

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("provide-client-params", found)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", hooked)
    return found


@pytest.fixture
def recorder(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return recording(Recorder(aws.physical), monkeypatch)


def granted(generated: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """``(action, resource)`` pairs of a role in the template AWS would receive (``generated``: after the SAM
    transform), resources named as the recorder names them."""
    pairs: set[tuple[str, str]] = set()
    for policy in generated["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            pairs.update((action, _resource_name(resource)) for action in actions for resource in resources)
    return pairs


def _resource_name(resource: Any) -> str:
    if "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if "Ref" in resource:
        return str(resource["Ref"])
    text = str(resource["Fn::Sub"])
    if ":parameter${" in text:
        return "parameter:" + text.split("${")[-1].rstrip("}")
    logical, _, rest = text.removeprefix("${").partition(".Arn}")
    return logical + rest


def platform(
    function: str, *, queues: tuple[str, ...] = (), secret: bool = False, stream: bool = False
) -> set[tuple[str, str]]:
    """What the platform does with ``function``'s role: its logs, the stream mapping's reads (``stream``), each SQS
    mapping's polls of its queue (``queues``), the secret's decryption (``secret``)."""
    pairs = {(a, r.format(function=function)) for a, r in PLATFORM["logs"]}
    if stream:
        pairs |= PLATFORM["stream"]
    for queue in queues:
        pairs |= {(a, r.format(queue=queue)) for a, r in PLATFORM["sqs"]}
    if secret:
        pairs |= PLATFORM["kms"]
    return pairs


#: Each priority's jobs queue and its dead-letter queue (template logical ids).
QUEUES = {
    JobPriority.HIGH: ("JobsHighPriorityQueue", "JobsHighPriorityDeadLetterQueue"),
    JobPriority.NORMAL: ("JobsQueue", "JobsDeadLetterQueue"),
    JobPriority.LOW: ("JobsLowPriorityQueue", "JobsLowPriorityDeadLetterQueue"),
}
JOBS_QUEUES = tuple(queue for queue, _ in QUEUES.values())
DEAD_LETTER_QUEUES = tuple(dead_letter_queue for _, dead_letter_queue in QUEUES.values())


def receive_all(aws: Aws, queue: str) -> dict[str, Any]:
    """An SQS event of every visible message of ``queue`` (a logical id), as its mapping would invoke with."""
    url, arn = aws.physical[queue]["Ref"], aws.physical[queue]["Arn"]
    messages = aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert messages, f"nothing on {queue}"
    return {"Records": [to_record(m, arn) for m in messages]}


def test_the_api_function_is_granted_exactly_what_its_code_calls(
    aws: Aws, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, generated: dict[str, Any]
) -> None:
    api = load_function("api")

    def call(name: str, **kwargs: Any) -> dict[str, Any]:
        with recorder.recording():
            return api.lambda_handler(api_event(name, token=sign("alice"), **kwargs), FakeLambdaContext())  # type: ignore[no-any-return]

    created = json.loads(call("create_job", body={"title": "t", "type": "noop"})["body"])
    event = api_event("create_job", token=sign("alice"), body={"title": "t", "type": "noop"})
    event["headers"]["idempotency-key"] = "k1"
    with recorder.recording():
        api.lambda_handler(event, FakeLambdaContext())
        api.lambda_handler(event, FakeLambdaContext())  # the replay
    with monkeypatch.context() as patch:  # a failed attempt releases its key; one in doubt reads the job back
        patch.setattr(bootstrap.api_service(), "new_job", lambda *_: (_ for _ in ()).throw(ServiceUnavailable("x")))
        event["headers"]["idempotency-key"] = "k2"
        with recorder.recording():
            api.lambda_handler(event, FakeLambdaContext())
    call("get_job", job_id=created["job_id"])
    call("list_jobs")
    call("list_jobs", query={"status": "QUEUED"})
    call("cancel_job", job_id=created["job_id"])
    call("delete_job", job_id=created["job_id"])
    webhook_keys.create(webhook_keys.KeyParameters(boto3.client("ssm")))
    monkeypatch.setenv("JOBS_CALLBACK_PUBLIC_KEY_PARAMETER", WEBHOOK_PUBLIC_KEY_PARAMETER)
    bootstrap.reset()
    assert call("get_webhook_public_keys")["statusCode"] == 200

    assert ("ssm:GetParameter", "parameter:WebhookPublicKeyParameterName") in recorder.calls
    assert recorder.calls | platform("ApiFunction", secret=True) == granted(generated, "ApiFunctionRole")


def test_the_consumers_are_granted_exactly_what_their_code_calls(
    aws: Aws, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, generated: dict[str, Any]
) -> None:
    monkeypatch.setenv("JOBS_FAULT_INJECTION", "1")
    service = JobService(DynamoJobStore(aws.table_name), bootstrap.job_queue(), bootstrap.registry())
    requests = [
        JobCreate(title="audit", payload={"report_type": "quarterly_audit"}),
        # A sleeping run reads whether a cancel was asked.
        JobCreate(title="sleeps", type="sleep", payload={"seconds": 1.2}),
    ]
    for priority in QUEUES:  # on each queue: a retry hides its message (ChangeMessageVisibility), a continuation
        requests += [  # sends a new one (SendMessage)
            JobCreate(title="flaky", type="flaky", payload={"attempts": 1}, priority=priority),
            JobCreate(title="continued", type="steps", payload={"steps": 2, "per_run": 1}, priority=priority),
        ]
    service.dispatch_all([service.create_job("alice", request) for request in requests])  # what the relay does
    consumer = load_function("process_jobs")
    events = [receive_all(aws, queue) for queue in JOBS_QUEUES]
    with recorder.recording():
        for event in events:
            consumer.lambda_handler(event, FakeLambdaContext())
    consumer_calls = set(recorder.calls)

    recorder.calls.clear()
    now = format_timestamp(utc_now())
    for _, dead_letter_queue in QUEUES.values():
        dead = service.create_job("alice", JobCreate(title="dead", type="noop"))
        live = service.create_job("alice", JobCreate(title="running under a live lease", type="noop"))
        service.store.start("alice", live.job_id, now_text=now, stale_before_text=now)  # comes back later
        for job in (dead, live):
            body = json.dumps({"owner_id": "alice", "job_id": job.job_id})
            aws.sqs.send_message(QueueUrl=aws.physical[dead_letter_queue]["Ref"], MessageBody=body)
    monkeypatch.setenv("JOBS_SOURCE_QUEUE_URLS", ",".join(aws.physical[q]["Ref"] for q in DEAD_LETTER_QUEUES))
    bootstrap.reset()
    dead_letters = load_function("dead_letters")
    events = [receive_all(aws, queue) for queue in DEAD_LETTER_QUEUES]
    with recorder.recording():
        for event in events:
            dead_letters.lambda_handler(event, FakeLambdaContext())

    assert {("sqs:ChangeMessageVisibility", q) for q in JOBS_QUEUES} <= consumer_calls
    assert {("sqs:SendMessage", q) for q in JOBS_QUEUES} <= consumer_calls
    assert consumer_calls | platform("ProcessJobsFunction", queues=JOBS_QUEUES) == granted(
        generated, "ProcessJobsFunctionRole"
    )
    assert {("sqs:ChangeMessageVisibility", q) for q in DEAD_LETTER_QUEUES} <= recorder.calls
    assert recorder.calls | platform("DeadLettersFunction", queues=DEAD_LETTER_QUEUES) == granted(
        generated, "DeadLettersFunctionRole"
    )


def test_the_outbox_relay_is_granted_exactly_what_its_code_calls(
    aws: Aws, recorder: Recorder, generated: dict[str, Any]
) -> None:
    outbox = load_function("enqueue_jobs")
    creator = JobService(DynamoJobStore(aws.table_name))
    event = load_event("dynamodb/job_inserted.json")  # the seed job, HIGH
    number = int(event["Records"][0]["dynamodb"]["SequenceNumber"])
    normal = creator.new_job("alice", JobCreate(title="t", type="noop"))
    low = creator.new_job("alice", JobCreate(title="t", type="noop", priority=JobPriority.LOW))
    # A KEYS_ONLY record, written before the stream's upgrade: its job is read (GetItem).
    before_upgrade = creator.create_job("alice", JobCreate(title="t", type="noop"))
    # A job whose owner no token can hold: marked FAILED (UpdateItem).
    unsendable = creator.create_job("no owner", JobCreate(title="t", type="noop"))
    event["Records"] += [
        inserted_record(normal, number + 1),
        inserted_record(low, number + 2),
        inserted_record(before_upgrade, number + 3, keys_only=True),
        inserted_record(unsendable, number + 4),
    ]

    with recorder.recording():
        response = outbox.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert {("sqs:SendMessage", q) for q in JOBS_QUEUES} | {("dynamodb:GetItem", "JobsTable")} <= recorder.calls
    assert recorder.calls | platform("EnqueueJobsFunction", stream=True) == granted(
        generated, "EnqueueJobsFunctionRole"
    )


def test_the_reconciler_is_granted_exactly_what_its_code_calls(
    aws: Aws, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, generated: dict[str, Any]
) -> None:
    monkeypatch.setenv("JOBS_RECONCILE_AFTER_SECONDS", "60")
    service = JobService(DynamoJobStore(aws.table_name), clock=lambda: utc_now() - timedelta(hours=1))
    job = service.create_job("alice", JobCreate(title="t", type="noop"))
    for priority in (JobPriority.HIGH, JobPriority.LOW):  # re-sent to their own queues
        service.create_job("alice", JobCreate(title="t", type="noop", priority=priority))
    streams = boto3.client("dynamodbstreams")
    arn = aws.physical["JobsTable"]["StreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    record = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"][0]
    number = record["dynamodb"]["SequenceNumber"]
    batch = {"shardId": shard["ShardId"], "startSequenceNumber": number, "endSequenceNumber": number, "streamArn": arn}
    aws.sqs.send_message(QueueUrl=aws.discarded_url, MessageBody=json.dumps({"DDBStreamBatchInfo": batch}))
    assert job.job_id == record["dynamodb"]["Keys"]["job_id"]["S"]
    service.create_job("no owner", JobCreate(title="t", type="noop"))  # reconciled into FAILED (UpdateItem)

    with recorder.recording():
        load_function("reconcile_jobs").lambda_handler({"backfill": True}, FakeLambdaContext())

    assert {("sqs:SendMessage", q) for q in JOBS_QUEUES} <= recorder.calls
    assert recorder.calls | platform("ReconcileJobsFunction") == granted(generated, "ReconcileJobsFunctionRole")
