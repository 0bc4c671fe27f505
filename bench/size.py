"""Benchmark 5: size. What ``sam build`` makes of each function and of the layer (bytes on disk and zipped, as
Lambda stores and loads them), and what the peer would add to its function: FastAPI, Starlette, Mangum and what
they pull in (pure Python, so the figures hold on arm64). Peak memory is measured by the other benchmarks.

    .venv/bin/python -m bench.size      # runs `make build` first when .aws-sam/build is missing
"""

from __future__ import annotations

import argparse
import io
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, table

BUILD = ROOT / ".aws-sam" / "build"
#: The peer's own dependencies beyond the layer's (bench/requirements.txt and what they require).
PEER_DISTRIBUTIONS = ("fastapi", "starlette", "mangum", "anyio", "annotated-doc", "opentelemetry-api", "idna")


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes of the files under ``folder``, and of a deflated zip of them."""
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    raw = sum(path.stat().st_size for path in files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(folder))
    return raw, len(buffer.getvalue())


def distribution_size(names: tuple[str, ...]) -> tuple[int, int]:
    """Bytes of the installed files of these distributions (without bytecode caches), and zipped."""
    raw = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            for file in metadata.distribution(name).files or []:
                path = Path(str(file.locate()))
                if path.is_file() and "__pycache__" not in path.parts and ".dist-info" not in str(path.parent):
                    raw += path.stat().st_size
                    archive.write(path, str(file))
    return raw, len(buffer.getvalue())


def measure(*, build: bool = True) -> dict[str, Any]:
    if build and not (BUILD / "template.yaml").exists():
        subprocess.run(["make", "build"], cwd=ROOT, check=True)  # noqa: S607 - the project's own Makefile
    folders = sorted(BUILD.iterdir()) if BUILD.is_dir() else []
    artifacts = {path.name: folder_size(path) for path in folders if path.is_dir()}
    layer = BUILD / "JobsLayer" / "python"
    packages = {}
    if layer.is_dir():
        for path in layer.iterdir():
            if path.is_dir() and not path.name.endswith((".dist-info", ".libs")):
                packages[path.name] = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return {
        "artifacts": artifacts,
        "peer_extra": distribution_size(PEER_DISTRIBUTIONS),
        "layer_packages": sorted(packages.items(), key=lambda item: -item[1])[:8],
    }


def report(results: dict[str, Any], rss: dict[str, float] | None = None) -> str:
    rows = [[name, f"{raw:,}", f"{zipped:,}"] for name, (raw, zipped) in results["artifacts"].items()]
    raw, zipped = results["peer_extra"]
    rows.append(["(peer) its function's extra packages: " + ", ".join(PEER_DISTRIBUTIONS), f"{raw:,}", f"{zipped:,}"])
    biggest = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in results["layer_packages"])
    parts = [
        "Bytes of `sam build` output (.aws-sam/build, arm64) and the same zipped (deflate).",
        table(["artifact", "bytes", "zipped bytes"], rows),
        f"The layer's biggest packages: {biggest}.",
    ]
    if rss:
        parts += [
            "Peak RSS (Linux VmHWM) of each function's process during the benchmarks, MiB:",
            table(["function, where", "peak RSS MiB"], [[name, f"{value:.0f}"] for name, value in rss.items()]),
        ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.size", description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(report(measure()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
