"""No metric takes the owner id as a dimension: every distinct dimension value is a metric of its own in
CloudWatch, billed and kept apart, and owners are unbounded ("Amazon CloudWatch pricing", custom metrics; EMF:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
The dimensions are the function's ``service``, for ``QueueWait`` the job's ``priority`` (three values), and for
powertools' ``ColdStart`` the ``function_name``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs import bootstrap
from jobs.models import JobCreate, JobMessage
from local.poller import to_record
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

OWNER = "owner-7f3a9c"


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The EMF documents among a function's stdout lines."""
    found = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            found.append(document)
    return found


def test_no_metric_of_the_api_or_the_consumer_has_the_owner_as_a_dimension(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    api = load_function("api")
    forged = sign(OWNER, secret="another-secret-another-secret-0123")
    for event in (
        api_event("create_job", token=sign(OWNER), body={"title": "t", "type": "noop"}),
        api_event("list_jobs", token=forged),  # AuthFailures
    ):
        api.lambda_handler(event, FakeLambdaContext())
    service = bootstrap.outbox_service()
    job = service.create_job(OWNER, JobCreate(title="t", type="noop"))
    service.dispatch_all([JobMessage(owner_id=OWNER, job_id=job.job_id)])
    messages = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )
    arn = next(value["Arn"] for value in aws.physical.values() if value.get("Ref") == aws.queue_url)
    load_function("process_jobs").lambda_handler(
        {"Records": [to_record(message, arn) for message in messages["Messages"]]}, FakeLambdaContext()
    )

    documents = emf_lines(capsys.readouterr().out)
    names = {metric["Name"] for d in documents for m in d["_aws"]["CloudWatchMetrics"] for metric in m["Metrics"]}
    assert {"JobsCreated", "AuthFailures", "JobsSucceeded", "QueueWait"} <= names
    for document in documents:
        for group in document["_aws"]["CloudWatchMetrics"]:
            dimensions = {name for names_ in group["Dimensions"] for name in names_}
            assert dimensions <= {"service", "priority", "function_name"}, dimensions
            assert OWNER not in {str(document.get(name)) for name in dimensions}
