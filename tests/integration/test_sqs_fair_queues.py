"""SQS fair queues through the local stack's moto server process (``local.moto_server``, as ``local.stack`` starts
it), on and off with ``JOBS_LOCAL_SQS_FAIR_QUEUES``: owner A's backlog of 200 with 40 in flight makes A a noisy
neighbour ("How Amazon SQS fair queues work", SQS Developer Guide), so B's 10 come out first; without the rule,
after A's backlog."""

from __future__ import annotations

from collections import Counter

import pytest

from local.moto_server import FAIR_QUEUES_VARIABLE
from tests.fair_queue_consumer import assert_each_once, first_receive_of, noisy_neighbour_on_a_moto_server


@pytest.mark.parametrize(("switch", "first_b"), [(None, 6), ("0", 21)], ids=["on-by-default", "off"])
def test_the_servers_receives_put_a_quiet_tenant_first(
    monkeypatch: pytest.MonkeyPatch, switch: str | None, first_b: int
) -> None:
    if switch is None:
        monkeypatch.delenv(FAIR_QUEUES_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(FAIR_QUEUES_VARIABLE, switch)
    bodies = noisy_neighbour_on_a_moto_server()

    assert first_receive_of("B", bodies) == first_b
    assert_each_once(bodies, Counter({"A": 200, "B": 10}))
