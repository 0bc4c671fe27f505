"""Least privilege, measured, for the callback sender (issue 17), as tests/integration/test_iam_actions.py measures
the other functions: botocore's hooks record every AWS call the sender's code makes while it delivers one callback,
retries another (its message hidden until the next attempt), defers a third (its owner's slot held by another
invocation) and skips a job that is gone, and its role in the template AWS would receive grants exactly those
actions on exactly those resources, plus what the Lambda platform
does with it (its logs, the SQS mapping's polls, the signing key's decryption under a customer managed key).
And nobody else may read the signing key."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trustme

from tests.conftest import Aws
from tests.helpers import load_event
from tests.integration.conftest import Callbacks
from tests.integration.test_iam_actions import PLATFORM, Recorder, granted, platform, recording
from tests.webhook_receiver import receiving


@pytest.fixture
def recorder(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """As test_iam_actions.py's ``recorder``."""
    return recording(Recorder(aws.physical), monkeypatch)


def test_the_sender_is_granted_exactly_what_its_code_calls(
    aws: Aws, callbacks: Callbacks, recorder: Recorder, ca: trustme.CA, generated: dict[str, Any]
) -> None:
    with receiving(ca) as delivered, receiving(ca, status=503) as failing:
        jobs = [
            callbacks.finished_job("alice", delivered.url()),
            callbacks.finished_job("bob", failing.url()),
            callbacks.finished_job("carol", delivered.url()),
        ]
        callbacks.publish(*jobs)
        event = callbacks.batch(3)
        event["Records"] += load_event("sqs/job_callback.json")["Records"]  # a job that is not in the table
        assert callbacks.slots.acquire("carol", "another-invocation", 30)  # carol's record is deferred

        with recorder.recording():
            response = callbacks.deliver(event)

    assert len(response["batchItemFailures"]) == 1  # bob's retry
    assert ("sqs:ChangeMessageVisibility", "JobCallbacksQueue") in recorder.calls
    assert ("sqs:SendMessage", "JobCallbacksQueue") in recorder.calls  # carol's deferral
    assert ("dynamodb:DeleteItem", "CallbackSlotsTable") in recorder.calls
    assert ("ssm:GetParameter", "parameter:WebhookSigningKeyParameterName") in recorder.calls
    kms = {("kms:Decrypt", "WebhookSigningKeyKmsKeyArn")}  # SSM decrypts with the caller's permission on the key
    expected = recorder.calls | platform("DeliverCallbacksFunction", queues=("JobCallbacksQueue",)) | kms
    assert expected == granted(generated, "DeliverCallbacksFunctionRole")


@pytest.mark.parametrize("parameter", ["WebhookSigningKeyParameterName", "WebhookSigningKeyKmsKeyArn"])
def test_only_the_sender_may_read_the_signing_key(generated: dict[str, Any], parameter: str) -> None:
    roles = {name: r for name, r in generated["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    readers = {name for name, role in roles.items() if parameter in json.dumps(role)}

    assert readers == {"DeliverCallbacksFunctionRole"}
    assert PLATFORM["kms"] == {("kms:Decrypt", "JwtSecretKmsKeyArn")}  # the API's own key, not this one
