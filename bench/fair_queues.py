"""SQS fair queues on the local stack's moto server, on and off (``JOBS_LOCAL_SQS_FAIR_QUEUES``): owner A sends
200 messages (``MessageGroupId`` "A"), a consumer receives 10 at a time keeping 40 in flight (deleting the oldest
batch after each receive), and owner B sends 10 after the 5th receive. Prints at which receive B's messages came
out: a count of receives, not a time, so it does not depend on the machine.

    PYTHONPATH=.:layers/jobs .venv/bin/python -m bench.fair_queues
"""

from __future__ import annotations

import os

from bench.common import table
from local.moto_server import FAIR_QUEUES_VARIABLE
from tests.fair_queue_consumer import Receives, first_receive_of, noisy_neighbour_on_a_moto_server


def measure(fair: bool) -> Receives:
    """The receives of the scenario against a moto server started with the rule on or off."""
    os.environ[FAIR_QUEUES_VARIABLE] = "1" if fair else "0"
    return noisy_neighbour_on_a_moto_server()


def main() -> None:
    rows = []
    for fair in (True, False):
        bodies = measure(fair)
        first = first_receive_of("B", bodies)
        last = max(n for n, batch in enumerate(bodies, 1) if any(body.startswith("B-") for body in batch))
        rows.append(["on" if fair else "off", 5, first, last, first - 5, len(bodies)])
    header = [
        "fair queues",
        "B sent after receive",
        "B's first at receive",
        "B's last at receive",
        "receives B waited",
        "receives in all",
    ]
    print(table(header, rows))


if __name__ == "__main__":
    main()
