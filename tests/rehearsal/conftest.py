"""The rehearsal's fixtures: ``template.yaml`` (or a changed copy) through the SAM translator in ``.venv-sam``,
as ``local/sam_transform.py`` runs it; ``make test`` and ``make rehearse`` install that environment first."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, transform_file

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def transform(tmp_path: Path) -> Transform:
    """Translate a template given as data (long-form intrinsics, as ``local.template.load_template`` reads)."""

    def run(template: dict[str, Any]) -> dict[str, Any]:
        source = tmp_path / "template.json"
        source.write_text(json.dumps(template))
        for folder in ("functions", "layers"):
            link = tmp_path / folder
            if not link.exists():
                link.symlink_to(ROOT / folder)
        return transform_file(source, tmp_path / "generated.json")

    return run
