"""The local Lambda runtime: each function in processes of its own, crashes and timeouts replaced."""

from __future__ import annotations

import time
from pathlib import Path

from local.resources import FunctionSpec
from local.runtime import FunctionPool

HANDLER = """
import os
from pathlib import Path

HERE = Path(__file__).parent
if (HERE / "broken").exists():
    raise ImportError("the function's code is broken")


def lambda_handler(event, context):
    if event.get("crash"):
        os._exit(1)
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    return {"pid": os.getpid(), "env": os.environ.get("ONLY_HERE"), "request": context.aws_request_id}
"""


def pool_for(folder: Path, timeout: int = 5) -> FunctionPool:
    (folder / "app.py").write_text(HANDLER)
    spec = FunctionSpec(
        logical_id="Probe",
        code_dir=folder,
        handler="app.lambda_handler",
        runtime="python3.13",
        timeout_seconds=timeout,
        memory_mb=128,
        environment={"ONLY_HERE": "yes"},
        layer_dirs=(),
    )
    return FunctionPool(spec, 1, {"PATH": "/usr/bin:/bin"}, folder)


def test_a_function_runs_in_its_own_process_with_its_own_environment(tmp_path: Path) -> None:
    pool = pool_for(tmp_path)
    pool.start()
    try:
        outcome = pool.invoke({})
    finally:
        pool.close()

    assert outcome.ok
    assert outcome.payload["env"] == "yes"


def test_a_crashed_worker_is_replaced_even_if_its_first_replacement_cannot_start(tmp_path: Path) -> None:
    pool = pool_for(tmp_path)
    pool.start()
    try:
        first = pool.invoke({})
        (tmp_path / "broken").write_text("")  # the next init fails ...
        crashed = pool.invoke({"crash": True})
        time.sleep(1.5)  # at least one replacement fails its init meanwhile
        (tmp_path / "broken").unlink()  # ... until the code is fixed
        after = pool.invoke({})
    finally:
        pool.close()

    assert crashed.error is not None
    assert crashed.error["errorType"] == "Runtime.ExitError"
    assert after.ok
    assert after.payload["pid"] != first.payload["pid"]


def test_an_invocation_past_its_timeout_is_ended_and_the_worker_replaced(tmp_path: Path) -> None:
    pool = pool_for(tmp_path, timeout=1)
    pool.start()
    try:
        timed_out = pool.invoke({"sleep": 5})
        after = pool.invoke({})
    finally:
        pool.close()

    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert after.ok
