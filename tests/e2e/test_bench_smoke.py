"""The benchmarks still run: one tiny iteration of each (``bench/run.py --quick``). Figures are not checked:
benchmarks never pass or fail on time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run
from jobs.observability import logger

pytestmark = pytest.mark.e2e


def test_every_benchmark_runs_one_tiny_iteration_and_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    level = logger.log_level

    text = run.run(quick=True, output=output)

    assert logger.log_level == level  # the shared logger is left as it was: later tests' log capture sees lines
    assert output.read_text(encoding="utf-8") == text
    for title in (
        "1. Cold start",
        "2. Warm",
        "3. AWS calls",
        "4. The local stack",
        "5. Size and memory",
        "6. Priority",
        "7. A fair share between owners",
        "8. A report that scales with its owner",
        "9. What a million jobs cost on AWS",
        "10. Latency budget on AWS",
        "11. Callbacks behind another owner's slow receiver",
    ):
        assert f"## {title}" in text
    assert "| get |" in text  # the cold start of ours and the peer's GET both answered
    assert "Closing note" in text
    assert "A million `noop` jobs on AWS" in text  # the bill of ours and the peer design, in the note too
