"""The local runtime's workers share the stack's output: each line a function logs reaches it whole
(``local.runtime.WholeLines``), however long, however many processes write at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

WRITER = """
import json, sys
from local.runtime import WholeLines
if sys.argv[1] == "whole":
    sys.stdout = WholeLines(sys.stdout.fileno(), "utf-8")
for index in range(150):
    print(json.dumps({"writer": sys.argv[2], "index": index, "filler": "\\u00e9x" * 20000}))
"""


def lines_written_together(path: Path, mode: str, writers: int = 4) -> list[str]:
    """Start ``writers`` processes that print long JSON lines into one shared file, as the stack's workers do."""
    with path.open("wb") as shared:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, mode, str(number)],
                stdout=shared,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT)},
            )
            for number in range(writers)
        ]
        for process in processes:
            assert process.wait(timeout=120) == 0
    return path.read_text(encoding="utf-8").splitlines()


def test_long_lines_from_several_processes_reach_the_output_whole(tmp_path: Path) -> None:
    lines = lines_written_together(tmp_path / "out.jsonl", "whole")

    records = [json.loads(line) for line in lines]
    assert len(records) == 4 * 150
    assert {(record["writer"], record["index"]) for record in records} == {
        (str(writer), index) for writer in range(4) for index in range(150)
    }
