"""Writes the API's OpenAPI document to ``docs/openapi.json`` (``make openapi``), from the same resolver and models
the API function serves it from at ``/api/v1/openapi.json``. ``--check`` exits 1 when the committed copy is stale.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.json"


def generate() -> str:
    """The OpenAPI document of ``functions/api/app.py``'s resolver, as the function serves it."""
    if str(ROOT / "layers" / "jobs") not in sys.path:
        sys.path.insert(0, str(ROOT / "layers" / "jobs"))
    from jobs.http import openapi_json

    spec = importlib.util.spec_from_file_location("api_app_for_openapi", ROOT / "functions" / "api" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return openapi_json(module.app)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the committed OpenAPI document."""
    parser = argparse.ArgumentParser(prog="python -m local.openapi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/openapi.json is not current")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        if COMMITTED.read_text(encoding="utf-8") != text:
            sys.stderr.write("docs/openapi.json is stale: run make openapi\n")
            return 1
        return 0
    COMMITTED.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
