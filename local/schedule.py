"""A ``Schedule`` event (an EventBridge rule with a rate expression): invokes the function every period with
the event EventBridge sends ("Scheduled Event"), or with the event's ``Input`` when it has one.

Only ``rate(value unit)`` is played ("Creating an Amazon EventBridge rule that runs on a schedule": minute(s),
hour(s), day(s); value 1 takes the singular unit, larger values the plural). A ``cron(...)`` expression raises
``UnsupportedTemplate``. As in EventBridge, the first run comes one period after the rule exists.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from local.runtime import FunctionPool
from local.template import ACCOUNT_ID, REGION, UnsupportedTemplate

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """The period of a ``rate(...)`` expression, seconds.

    Raises:
        UnsupportedTemplate: a cron expression, or a rate EventBridge refuses (value 0, ``rate(2 minute)``).
    """
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise UnsupportedTemplate(f"schedule {expression!r} is not a rate expression the local stack plays")
    value, unit = int(found.group(1)), found.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise UnsupportedTemplate(f"schedule {expression!r}: EventBridge takes rate(1 minute), rate(5 minutes)")
    return value * _UNIT_SECONDS[unit.rstrip("s")]


class Schedule:
    """Invokes ``pool`` every period of ``source["Schedule"]`` until stopped.

    Args:
        pool: the function.
        source: the event's resolved properties (``Schedule``, optional ``Input`` as JSON text).
        log: writes one line to the stack's output.
    """

    def __init__(self, pool: FunctionPool, source: Mapping[str, Any], *, log: Callable[[str], None]) -> None:
        self.pool = pool
        self.period = rate_seconds(str(source["Schedule"]))
        self.input = json.loads(source["Input"]) if "Input" in source else None
        self.rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{pool.spec.logical_id}-schedule"
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)

    def event(self) -> Any:
        """The event of one run."""
        if self.input is not None:
            return self.input
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [self.rule_arn],
            "detail": {},
        }

    def start(self) -> None:
        """Start the schedule."""
        self._thread.start()

    def stop(self) -> None:
        """Stop; a run in flight finishes on its own."""
        self._stop.set()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            invocation = self.pool.invoke(self.event())
            if not invocation.ok:
                self.log(json.dumps({"schedule": self.rule_arn, "level": "ERROR", "error": invocation.error}))
