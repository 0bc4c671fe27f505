"""One local stack for the whole end-to-end session (moto server, gateway, worker processes, poller), on free ports.

It runs with ``JOBS_ENABLE_TEST_TYPES=1``, so the functions also serve the test-only ``fail`` job type.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from local.stack import free_port
from tests.e2e.support import SECRET, RunningStack
from tests.helpers import ROOT


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The running stack; stopped at the end of the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("stack") / "stdout.jsonl"
    environment = {**os.environ, "JOBS_JWT_SECRET": SECRET, "JOBS_ENABLE_TEST_TYPES": "1", "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.stack", "--port", str(port), "--aws-port", "0"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            banner = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                line = process.stderr.readline().decode()
                banner.append(line)
                if "Ready." in line or not line:
                    break
            assert any("Ready." in line for line in banner), "".join(banner)
            assert any(f"http://127.0.0.1:{port}/api/v1/jobs" in line for line in banner)
            assert any(f"JOBS_API_URL=http://127.0.0.1:{port}" in line for line in banner), "".join(banner)
            assert any("jobsctl submit" in line for line in banner), "".join(banner)
            assert any("JOBS_ENABLE_TEST_TYPES=1" in line for line in banner), "".join(banner)
            yield RunningStack(f"http://127.0.0.1:{port}", log)
        finally:
            process.terminate()
            process.wait(timeout=30)
