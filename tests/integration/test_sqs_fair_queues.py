"""SQS fair queues through the local stack's moto server process (``local.moto_server``, as ``local.stack`` starts
it), on and off with ``JOBS_LOCAL_SQS_FAIR_QUEUES``: owner A's backlog of 200 with 40 in flight makes A a noisy
neighbour ("How Amazon SQS fair queues work", SQS Developer Guide), so B's 10 come out first; without the rule,
after A's backlog."""

from __future__ import annotations

from collections import Counter

import boto3
import pytest

from local.moto_server import FAIR_QUEUES_VARIABLE
from local.ports import free_port
from local.stack import start_moto
from tests.fair_queue_consumer import assert_each_once, first_receive_of, noisy_neighbour


@pytest.mark.parametrize(("switch", "first_b"), [(None, 6), ("0", 21)], ids=["on-by-default", "off"])
def test_the_servers_receives_put_a_quiet_tenant_first(
    monkeypatch: pytest.MonkeyPatch, switch: str | None, first_b: int
) -> None:
    if switch is None:
        monkeypatch.delenv(FAIR_QUEUES_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(FAIR_QUEUES_VARIABLE, switch)
    port = free_port()
    process = start_moto(port)
    try:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        sqs = session.client("sqs", endpoint_url=f"http://127.0.0.1:{port}")
        url = sqs.create_queue(QueueName="shared")["QueueUrl"]
        bodies = noisy_neighbour(sqs, url)
        assert first_receive_of("B", bodies) == first_b
        assert_each_once(bodies, Counter({"A": 200, "B": 10}))
    finally:
        process.terminate()
        process.wait(5)
