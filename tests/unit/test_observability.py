"""What the functions write besides their JSON log lines: nothing, for an invocation that records no metric."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT


def test_an_invocation_without_metrics_writes_no_warning_to_the_log_stream() -> None:
    script = (
        "from jobs.observability import metrics\n"
        "@metrics.log_metrics\n"
        "def handler(event, context):\n"
        "    return {}\n"
        "handler({}, None)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "jobs"), "POWERTOOLS_METRICS_NAMESPACE": "T"}
    environment.pop("PYTHONWARNINGS", None)
    completed = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True, timeout=60
    )

    assert completed.stderr == ""
