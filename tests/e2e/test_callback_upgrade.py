"""The README's upgrade steps for job callbacks (issue 17), rehearsed on the local stack.

The stack starts as one deployed before the deployer created the keys (its two key parameters deleted), holding
jobs written without a callback, then follows the README: the public key route answers 503, a job with a callback
still runs to its end, its callback waits (each receive fails before sending anything); ``local.webhook_keys create``
(``make webhook-keys``) writes the keys and the waiting callback is delivered, signed, at a later receive. The
callbacks queue's visibility timeout is the sender's Timeout (30 s, the least CreateEventSourceMapping accepts)
instead of 180 s, so that the later receive comes within the test."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme

from jobs_client import verify_webhook
from local.webhook_keys import DEFAULT_PUBLIC_PARAMETER, DEFAULT_SIGNING_PARAMETER
from tests.e2e.support import RunningStack, token
from tests.e2e.test_callbacks import job_when, key_tool, loopback_callbacks_stack, public_keys, submit
from tests.helpers import ROOT
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.e2e

#: The callbacks queue's visibility timeout here, seconds (the sender's Timeout; template.yaml: 180).
VISIBILITY = 30


def quick_callbacks_template(directory: Path) -> Path:
    """template.yaml with the callbacks queue's visibility timeout cut to ``VISIBILITY``; all else unchanged."""
    text = (ROOT / "template.yaml").read_text()
    queue = re.compile(r"(  JobCallbacksQueue:\n(?:    .*\n|\n)*?      VisibilityTimeout: )180")
    text, found = queue.subn(rf"\g<1>{VISIBILITY}", text)
    assert found == 1, "JobCallbacksQueue's VisibilityTimeout was not found in template.yaml"
    for folder in ("functions", "layers"):
        (directory / folder).symlink_to(ROOT / folder)
    path = directory / "template.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def keyless_stack(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[RunningStack]:
    """A stack whose key parameters do not exist yet, as after a ``sam deploy`` run before ``make webhook-keys``."""
    directory = tmp_path_factory.mktemp("callback-upgrade")
    with loopback_callbacks_stack(directory, ca, template=quick_callbacks_template(directory)) as stack:
        assert stack.process is not None
        aws(stack.process.aws_endpoint, "ssm").delete_parameters(
            Names=[DEFAULT_SIGNING_PARAMETER, DEFAULT_PUBLIC_PARAMETER]
        )
        yield stack


def aws(endpoint: str, service: str) -> Any:
    """A boto3 client of the stack's moto server."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client(service, endpoint_url=endpoint)


def test_jobs_written_before_the_upgrade_read_without_a_callback(keyless_stack: RunningStack) -> None:
    """Step 3: items written by the old code hold neither field (a job without a callback is stored the same way)
    and read as ``callback_url: null``, ``callback: null``; an event published by the old code (no
    ``has_callback``) never reaches the callbacks queue, whatever its job."""
    stack = keyless_stack
    reply = stack.request("POST", "/api/v1/jobs", token=token("old-owner"), body={"title": "t", "type": "noop"})
    assert reply.status == 201, reply.body
    job_id = reply.body["job_id"]
    [item] = [i for i in stack.items() if i.get("job_id", {}).get("S") == job_id]
    assert not [name for name in item if "callback" in name], item  # the pre-upgrade item's shape

    job = stack.request("GET", f"/api/v1/jobs/{job_id}", token=token("old-owner")).body
    listed = stack.request("GET", "/api/v1/jobs", token=token("old-owner")).body["items"]
    assert (job["callback_url"], job["callback"]) == (None, None)
    assert [(j["callback_url"], j["callback"]) for j in listed] == [(None, None)]

    assert stack.process is not None
    old_detail = {"job_id": job_id, "owner_id": "old-owner", "status": "SUCCEEDED", "version": "3"}
    aws(stack.process.aws_endpoint, "events").put_events(
        Entries=[
            {
                "Source": "chuck-norris.jobs",
                "DetailType": "Job State Change",
                "Detail": json.dumps(old_detail),
                "EventBusName": stack.physical["JobEventsBus"],
            }
        ]
    )
    sqs = aws(stack.process.aws_endpoint, "sqs")
    time.sleep(2)
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.physical["JobCallbacksQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_callback_waits_for_the_keys_and_is_delivered_once_they_are_created(
    keyless_stack: RunningStack, ca: trustme.CA
) -> None:
    """Steps 1 and 2: without the keys the job still finishes and nothing is sent; once ``make webhook-keys`` has
    created them, the next receive delivers the callback, signed by the published key."""
    stack = keyless_stack
    reply = stack.request("GET", "/api/v1/webhooks/public-key")
    assert reply.status == 503, reply.body
    assert reply.body["status"] == 503  # an RFC 9457 problem
    assert "Traceback" not in json.dumps(reply.body)

    with receiving(ca) as receiver:
        job_id = submit(stack, "new-owner", receiver.url())
        deadline = time.monotonic() + 30
        while (job := stack.request("GET", f"/api/v1/jobs/{job_id}", token=token("new-owner")).body)[
            "status"
        ] != "SUCCEEDED":
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        time.sleep(3)  # the first receive has come and failed
        assert receiver.requests == []
        assert (job["callback"] or {}).get("status") in (None, "PENDING"), job

        key_tool(stack, "create")
        keys = public_keys(stack)
        delivered = job_when(stack, "new-owner", job_id, "DELIVERED", timeout=VISIBILITY * 3)
        [request] = receiver.wait_for(1, timeout=10)

    assert delivered["status"] == "SUCCEEDED"
    assert json.loads(request.body)["job_id"] == job_id
    verify_webhook(request.headers, request.body, keys)
    assert "whsk_" not in stack.log.read_text()  # the key the tool wrote never reaches a log line
