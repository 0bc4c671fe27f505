"""The callback sender function (functions/deliver_callbacks) on moto, with the template's rule, queue and policy:
each job's final event goes through the bus and ``JobCallbacksRule`` to ``JobCallbacksQueue``, and the handler gets
that queue's records, as its mapping would give them. Receivers are HTTPS servers on loopback with a ``trustme``
certificate authority; loopback is allowed as the local stack's flag allows it, unless a test says otherwise.

What is checked here is the function's part: a batch delivered in parallel (one slow receiver delays no other
record), a retry that hides its message until the next attempt is due and reports it, a give-up and a delivery
that settle theirs, and a body that is no job event dropped."""

from __future__ import annotations

import json
import threading
import time
from functools import cache
from typing import Any, get_args

import pytest
import trustme

from jobs import bootstrap, settings
from jobs.callbacks import CallbackSender
from jobs.events import DETAIL_TYPE, EVENT_SOURCE
from jobs.models import SQS_MAX_VISIBILITY_SECONDS, CallbackStatus
from jobs_client import verify_webhook
from local.poller import to_record
from tests.helpers import (
    load_event,
)
from tests.integration.conftest import TIMEOUT_SECONDS, Callbacks
from tests.webhook_receiver import receiving


def public_keys() -> dict[str, Any]:
    """The keys GET /api/v1/webhooks/public-key serves."""
    return bootstrap.webhook_public_keys().model_dump()


def test_the_rule_queues_final_events_of_jobs_with_a_callback_only(callbacks: Callbacks, ca: trustme.CA) -> None:
    with receiving(ca) as receiver:
        job = callbacks.finished_job("alice", receiver.url())
    for status, has_callback in [("RUNNING", True), ("SUCCEEDED", False), ("DELETED", True)]:
        callbacks.publish(job, status=status, has_callback=has_callback)
    for status in ("SUCCEEDED", "FAILED", "CANCELLED"):
        callbacks.publish(job, status=status)

    statuses = [json.loads(r["body"])["detail"]["status"] for r in callbacks.batch(3)["Records"]]

    assert sorted(statuses) == ["CANCELLED", "FAILED", "SUCCEEDED"]


def test_a_batch_is_delivered_signed_recorded_and_settled(callbacks: Callbacks, ca: trustme.CA) -> None:
    with receiving(ca) as receiver:
        jobs = [callbacks.finished_job(owner, receiver.url(query=f"owner={owner}")) for owner in ("alice", "bob")]
        callbacks.publish(*jobs)

        response = callbacks.deliver(callbacks.batch(2))

        requests = receiver.wait_for(2, timeout=5)
    assert response == {"batchItemFailures": []}
    assert sorted(r.path for r in requests) == ["/hooks/jobs?owner=alice", "/hooks/jobs?owner=bob"]
    owners = {job.job_id: job.owner_id for job in jobs}
    for request in requests:
        delivered = verify_webhook(request.headers, request.body, public_keys())
        job = callbacks.store.get(owners[delivered["job_id"]], delivered["job_id"])
        assert job is not None
        assert job.callback is not None
        assert job.callback.status == CallbackStatus.DELIVERED
        assert job.callback.attempts == 1
        assert delivered["status"] == "SUCCEEDED"


def test_a_failed_attempt_hides_its_message_until_the_next_is_due_then_gives_up(
    callbacks: Callbacks, ca: trustme.CA
) -> None:
    with receiving(ca, status=500) as receiver:
        job = callbacks.finished_job("alice", receiver.url())
        callbacks.publish(job)
        first = callbacks.batch(1)

        response = callbacks.deliver(first)
        hidden = callbacks.aws.sqs.receive_message(QueueUrl=callbacks.queue_url).get("Messages", [])
        time.sleep(2.5)  # the schedule's wait, then the message is back as the second attempt
        second = callbacks.batch(1)
        retrying = callbacks.store.get("alice", job.job_id)

        final = callbacks.deliver(second)

    [record] = first["Records"]
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert hidden == []
    assert second["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert retrying is not None
    assert retrying.callback is not None
    assert (retrying.callback.status, retrying.callback.attempts) == (CallbackStatus.RETRYING, 1)
    assert final == {"batchItemFailures": []}  # attempt 2 of a one-wait schedule: given up, settled
    failed = callbacks.store.get("alice", job.job_id)
    assert failed is not None
    assert failed.callback is not None
    assert (failed.callback.status, failed.callback.attempts, failed.callback.last_status_code) == (
        CallbackStatus.FAILED,
        2,
        500,
    )
    assert len(receiver.requests) == 2


def test_a_slow_receiver_delays_no_other_record_of_its_batch(callbacks: Callbacks, ca: trustme.CA) -> None:
    with receiving(ca, delay=30) as slow, receiving(ca) as fast:
        jobs = [callbacks.finished_job("alice", slow.url()), callbacks.finished_job("bob", fast.url())]
        callbacks.publish(*jobs)
        event = callbacks.batch(2)

        response = callbacks.deliver(event)

    [from_alice], [from_bob] = slow.requests, fast.requests
    # Delivered one after the other, bob's request would come after alice's attempt ran out (the timeout).
    assert from_bob.at - from_alice.at < TIMEOUT_SECONDS
    by_owner = {json.loads(r["body"])["detail"]["owner_id"]: r["messageId"] for r in event["Records"]}
    assert response == {"batchItemFailures": [{"itemIdentifier": by_owner["alice"]}]}
    bob = callbacks.store.get("bob", jobs[1].job_id)
    assert bob is not None
    assert bob.callback is not None
    assert bob.callback.status == CallbackStatus.DELIVERED


def test_a_job_named_twice_in_a_batch_is_delivered_once(callbacks: Callbacks, ca: trustme.CA) -> None:
    with receiving(ca) as receiver:
        job = callbacks.finished_job("alice", receiver.url())
        callbacks.publish(job)
        callbacks.publish(job)  # the publisher's at-least-once: the same event again

        response = callbacks.deliver(callbacks.batch(2))

    assert response == {"batchItemFailures": []}
    assert len(receiver.requests) == 1


def test_a_body_that_is_no_job_event_is_dropped(callbacks: Callbacks, caplog: pytest.LogCaptureFixture) -> None:
    event = load_event("sqs/job_callback.json")
    [record] = event["Records"]
    bodies = ["not json", json.dumps({"source": "someone.else", "detail-type": DETAIL_TYPE, "detail": {}})]
    event["Records"] = [{**record, "messageId": f"m{index}", "body": body} for index, body in enumerate(bodies)]

    response = callbacks.deliver(event)

    assert response == {"batchItemFailures": []}
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "Callbacks queue message is not a Job State Change event; dropped"
    ] * 2


def test_a_job_gone_before_its_callback_is_skipped_and_settled(callbacks: Callbacks) -> None:
    response = callbacks.deliver(load_event("sqs/job_callback.json"))  # its job was never in this table

    assert response == {"batchItemFailures": []}


def test_a_name_resolving_to_loopback_is_refused_at_once_without_the_flag(
    callbacks: Callbacks, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_CALLBACK_ALLOW_LOOPBACK", "false")
    bootstrap.reset()
    store = callbacks.store
    sender = CallbackSender(
        store,
        bootstrap.callback_signing_keys,
        settings.callback_settings(),
        resolver=lambda host, port: ["127.0.0.1"],  # a public-looking name whose answer is loopback
    )
    monkeypatch.setattr(bootstrap, "callback_sender", cache(lambda: sender))  # cached, as bootstrap.reset expects
    with receiving(ca) as receiver:
        job = callbacks.finished_job("alice", receiver.url(host="hooks.example.com"))
        callbacks.publish(job)

        response = callbacks.deliver(callbacks.batch(1))

    assert response == {"batchItemFailures": []}
    assert receiver.requests == []
    refused = store.get("alice", job.job_id)
    assert refused is not None
    assert refused.callback is not None
    assert (refused.callback.status, refused.callback.attempts) == (CallbackStatus.FAILED, 1)
    assert "loopback" in (refused.callback.last_error or "")


def test_a_wait_is_cut_to_the_12_hours_sqs_allows_from_the_receive(callbacks: Callbacks) -> None:
    started = time.monotonic()

    assert callbacks.handler.retry_visibility(300, started) == 300
    assert callbacks.handler.retry_visibility(10 * SQS_MAX_VISIBILITY_SECONDS, started) <= (
        SQS_MAX_VISIBILITY_SECONDS - callbacks.handler.RECEIVE_WAIT_SECONDS
    )


def test_the_sender_reads_the_events_the_publisher_writes(callbacks: Callbacks) -> None:
    fields = callbacks.handler.CallbackEvent.model_fields

    assert get_args(fields["source"].annotation) == (EVENT_SOURCE,)
    assert get_args(fields["detail_type"].annotation) == (DETAIL_TYPE,)


def test_an_owner_whose_slot_another_invocation_holds_is_deferred_not_attempted(
    callbacks: Callbacks, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One owner's callbacks go through one invocation at a time (jobs.slots): another invocation's records of that
    owner go back to the queue as new delayed messages, spend no attempt, and come back; the other owners' records
    of the batch are delivered meanwhile."""
    monkeypatch.setattr(callbacks.handler, "DEFERRAL_BASE_SECONDS", 1)
    with receiving(ca) as receiver:
        jobs = [callbacks.finished_job(owner, receiver.url(query=f"owner={owner}")) for owner in ("alice", "bob")]
        callbacks.publish(*jobs)
        assert callbacks.slots.acquire("alice", "another-invocation", 30)  # alice's hanging receiver, elsewhere

        response = callbacks.deliver(callbacks.batch(2))
        waiting = callbacks.store.get("alice", jobs[0].job_id)
        assert callbacks.aws.sqs.receive_message(QueueUrl=callbacks.queue_url).get("Messages", []) == []  # delayed
        time.sleep(1.5)
        again = callbacks.aws.sqs.receive_message(
            QueueUrl=callbacks.queue_url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
        )["Messages"]
        callbacks.slots.release("alice", "another-invocation")
        arn = callbacks.aws.physical["JobCallbacksQueue"]["Arn"]
        later = callbacks.deliver({"Records": [to_record(message, arn) for message in again]}, request_id="later")
        requests = receiver.wait_for(2, timeout=5)

    assert response == {"batchItemFailures": []}  # alice's deferred message is a new one; the old is acknowledged
    assert waiting is not None
    assert waiting.callback is not None
    assert (waiting.callback.status, waiting.callback.attempts) == (CallbackStatus.PENDING, 0)  # no attempt made
    [message] = again
    assert message["MessageAttributes"]["deferrals"]["StringValue"] == "1"
    assert json.loads(message["Body"])["detail"]["job_id"] == jobs[0].job_id
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # a new message: the redrive count starts again
    assert later == {"batchItemFailures": []}
    assert [r.path for r in requests] == ["/hooks/jobs?owner=bob", "/hooks/jobs?owner=alice"]
    delivered = callbacks.store.get("alice", jobs[0].job_id)
    assert delivered is not None
    assert delivered.callback is not None
    assert (delivered.callback.status, delivered.callback.attempts) == (CallbackStatus.DELIVERED, 1)


def test_an_invocation_gives_its_owners_slots_back(callbacks: Callbacks, ca: trustme.CA) -> None:
    with receiving(ca, status=500) as receiver:
        callbacks.publish(callbacks.finished_job("alice", receiver.url()))

        callbacks.deliver(callbacks.batch(1), request_id="first")

    assert callbacks.slots.acquire("alice", "next", 30)


def test_the_attempt_is_counted_from_the_job_not_from_the_receives(callbacks: Callbacks, ca: trustme.CA) -> None:
    """A message received before without an attempt (a deferral, a crash before the request) does not bring the
    give-up closer: attempt 1 of a one-wait schedule is retried, whatever the receive count."""
    with receiving(ca, status=500) as receiver:
        job = callbacks.finished_job("alice", receiver.url())
        callbacks.publish(job)
        event = callbacks.batch(1)
        event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "7"

        response = callbacks.deliver(event)

    assert len(response["batchItemFailures"]) == 1  # retried, not given up
    retrying = callbacks.store.get("alice", job.job_id)
    assert retrying is not None
    assert retrying.callback is not None
    assert (retrying.callback.status, retrying.callback.attempts) == (CallbackStatus.RETRYING, 1)


@pytest.mark.parametrize(
    ("attribute", "deferrals", "delay"),
    [
        (None, 0, 2),
        ("1", 1, 4),
        ("3", 3, 16),
        ("9", 9, 900),
        ("99999", 1000, 900),
        ("9999999", 0, 2),
        ("-1", 0, 2),
        ("x", 0, 2),
        ("\u00b2", 0, 2),  # str.isdigit() is true of a superscript two, which int() refuses
        ("\u0663", 0, 2),  # an Arabic-Indic three: not the ASCII count the sender writes
    ],
)
def test_a_deferral_waits_longer_each_time_up_to_sqs_longest_delay(
    callbacks: Callbacks, attribute: str | None, deferrals: int, delay: int
) -> None:
    record = load_event("sqs/job_callback.json")["Records"][0]
    if attribute is not None:
        record["messageAttributes"] = {"deferrals": {"stringValue": attribute, "dataType": "String"}}

    parsed = callbacks.handler.CallbackRecord.model_validate(record)

    assert parsed.deferrals == deferrals
    assert callbacks.handler.deferral_delay(parsed.deferrals) == delay


def test_a_slow_owner_keeps_no_other_owners_slot_for_the_batchs_length(
    callbacks: Callbacks, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_CALLBACK_TIMEOUT_SECONDS", "10")  # alice's attempt hangs 10 s: a wide window to look
    bootstrap.reset()
    with receiving(ca, delay=30) as slow, receiving(ca) as fast:
        callbacks.publish(callbacks.finished_job("alice", slow.url()), callbacks.finished_job("bob", fast.url()))
        event = callbacks.batch(2)
        done = threading.Event()

        def invoke() -> None:
            callbacks.deliver(event)
            done.set()

        invocation = threading.Thread(target=invoke)
        invocation.start()
        fast.wait_for(1, timeout=5)
        deadline = time.monotonic() + 5
        while not (bob_free := callbacks.slots.acquire("bob", "another-invocation", 30)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        alice_free = callbacks.slots.acquire("alice", "another-invocation", 30)
        still_running = not done.is_set()
        invocation.join()

    assert still_running  # alice's attempt was still waiting for its slow receiver
    assert bob_free  # bob's slot was given back when bob's delivery ended
    assert not alice_free


def _deferred_record(callbacks: Callbacks, receive_count: int, receives: str | None) -> dict[str, Any]:
    """alice's record, received ``receive_count`` times, with its ``receives`` attribute; her slot held elsewhere."""
    assert callbacks.slots.acquire("alice", "another-invocation", 30)
    event = callbacks.batch(1)
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    if receives is not None:
        record["messageAttributes"] = {"receives": {"stringValue": receives, "dataType": "String"}}
    return event


def test_a_deferral_carries_the_receives_the_redrive_policy_counts(callbacks: Callbacks, ca: trustme.CA) -> None:
    """A deferral is a new message, whose ApproximateReceiveCount starts again: the earlier receives (retries,
    crashes) travel with it, or a record that crashes the sender whenever its busy owner's slot is free would be
    deferred in between forever and never reach the dead-letter queue."""
    with receiving(ca) as receiver:
        callbacks.publish(callbacks.finished_job("alice", receiver.url()))
        event = _deferred_record(callbacks, 3, "4")

        response = callbacks.deliver(event)
        time.sleep(2.5)
        [message] = callbacks.aws.sqs.receive_message(QueueUrl=callbacks.queue_url, MessageAttributeNames=["All"])[
            "Messages"
        ]

    assert response == {"batchItemFailures": []}
    assert message["MessageAttributes"]["receives"]["StringValue"] == "6"  # 4 carried, 2 before this one


def test_a_record_received_as_often_as_the_redrive_policy_allows_is_not_deferred_again(
    callbacks: Callbacks, ca: trustme.CA
) -> None:
    """Past the redrive policy's receives, a held slot hides the message itself (a receive spent) rather than
    sending a fresh one: the chain of deferrals ends in the dead-letter queue like any message."""
    attributes = callbacks.aws.sqs.get_queue_attributes(QueueUrl=callbacks.queue_url, AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == callbacks.handler.MAX_RECEIVES
    with receiving(ca) as receiver:
        callbacks.publish(callbacks.finished_job("alice", receiver.url()))
        event = _deferred_record(callbacks, 2, str(callbacks.handler.MAX_RECEIVES - 1))

        response = callbacks.deliver(event)
        time.sleep(2.5)
        again = callbacks.aws.sqs.receive_message(QueueUrl=callbacks.queue_url, MaxNumberOfMessages=10)["Messages"]

    message_id = event["Records"][0]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    # no new message: the old one comes back after the deferral's delay, one receive more
    assert [message["MessageId"] for message in again] == [message_id]
