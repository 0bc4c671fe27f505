"""What a Lambda execution environment keeps between invocations, and the garbage collector's view of it.

A sandbox imports its modules, builds its clients and caches once, then serves invocation after invocation. To
CPython's cyclic garbage collector all of that is long-lived: every full (oldest-generation) collection walks it
again, and in the API function that is some 190,000 tracked objects (powertools' resolver and OpenAPI models,
pydantic's validators, botocore's service models), measured at 170 to 370 ms per full collection on the bench's
machine (bench/RESULTS.md, section 2). A full collection runs whenever enough objects have survived younger ones,
so one request in a few thousand paid it, at random.

``gc.freeze()`` moves every object the collector tracks into a permanent generation that later collections skip
(https://docs.python.org/3/library/gc.html#gc.freeze). Called once, after the sandbox's first invocation (by then
its clients and caches exist), it leaves the collector only what later invocations allocate. Objects frozen stay
reachable or are freed by reference counting as before; only garbage in reference cycles from before the freeze
(a little from the first invocation) is never collected.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from functools import wraps
from typing import Any


def in_lambda() -> bool:
    """True in a Lambda execution environment (or the local stack's, or the benchmarks'): the runtime sets
    ``AWS_EXECUTION_ENV`` to ``AWS_Lambda_<runtime>`` ("Defined runtime environment variables", Lambda developer
    guide: https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).
    """
    return os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")


def freeze_after_first_invocation[Handler: Callable[..., Any]](handler: Handler) -> Handler:
    """Decorate a Lambda handler so that, in a Lambda execution environment (``in_lambda``), the first invocation
    ends with ``gc.freeze()``, whether it returned or raised; later invocations run as they are. Outside Lambda (a
    test process) it changes nothing."""
    frozen = False

    @wraps(handler)
    def handle(*args: Any, **kwargs: Any) -> Any:
        nonlocal frozen
        try:
            return handler(*args, **kwargs)
        finally:
            if not frozen:
                frozen = True
                if in_lambda():
                    gc.freeze()

    return handle  # type: ignore[return-value]
