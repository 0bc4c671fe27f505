"""CI: the built layer (.aws-sam/build/JobsLayer, from `make build`) is what the python3.13 arm64 runtime loads,
and so are the built functions (.aws-sam/build/<Function>).

- every compiled extension module (.so) is ELF for AArch64 (e_machine 183);
- every module has bytecode for CPython 3.13 that is unchecked-hash (PEP 552: flags word 0b01), so Lambda,
  whose /opt is read-only, never compiles the layer at a cold start (layers/jobs/Makefile says why);
- the AWS SDK (boto3, botocore) is in the layer at the versions layers/jobs/requirements.txt pins, so the
  runtime's own copy never decides;
- every function of template.yaml is built with its modules' bytecode, the same way, since /var/task is
  read-only too (functions/Makefile).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import struct
import sys

BUILD = pathlib.Path(".aws-sam/build")
LAYER = BUILD / "JobsLayer" / "python"
TEMPLATE = pathlib.Path("template.yaml")
REQUIREMENTS = pathlib.Path("layers/jobs/requirements.txt")
SDK = ("boto3", "botocore")
#: CPython 3.13's bytecode magic number (importlib.util.MAGIC_NUMBER on 3.13; stable across 3.13 releases).
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH = 0b01


def bytecode_problems(folder: pathlib.Path) -> tuple[list[pathlib.Path], list[pathlib.Path], list[pathlib.Path]]:
    """The modules under ``folder``, those without bytecode, and the bytecode that is not unchecked-hash 3.13."""
    sources = list(folder.rglob("*.py"))
    missing, wrong = [], []
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not compiled.exists():
            missing.append(source)
            continue
        header = compiled.read_bytes()[:8]
        if header[:4] != MAGIC_313 or struct.unpack_from("<I", header, 4)[0] != UNCHECKED_HASH:
            wrong.append(compiled)
    return sources, missing, wrong


def function_ids() -> list[str]:
    """The logical ids of template.yaml's functions (each resource's id, then its ``Type`` on the next line)."""
    return re.findall(r"^  (\w+):\n    Type: AWS::Serverless::Function$", TEMPLATE.read_text(), re.MULTILINE)


def main() -> int:
    if sys.version_info[:2] == (3, 13):
        assert importlib.util.MAGIC_NUMBER == MAGIC_313
    extensions = list(LAYER.rglob("*.so"))
    not_arm64 = [f for f in extensions if struct.unpack_from("<H", f.read_bytes()[:20], 18)[0] != 183]
    sources, missing, wrong = bytecode_problems(LAYER)
    print(f"layer: {len(extensions)} compiled modules, {len(not_arm64)} not arm64")
    print(f"layer: {len(sources)} modules, {len(missing)} without bytecode, {len(wrong)} not unchecked-hash 3.13")
    for path in [*not_arm64, *missing[:10], *wrong[:10]]:
        print(f"  {path}")
    pins = dict(line.split("==", 1) for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    sdk_wrong = []
    for name in SDK:
        built = sorted(path.name for path in LAYER.glob(f"{name}-*.dist-info"))
        print(f"layer: {name} {built} (pinned {pins.get(name)})")
        if built != [f"{name}-{pins.get(name)}.dist-info"]:
            sdk_wrong.append(name)
    functions_wrong = []
    functions = function_ids()
    for function in functions:
        code, without, stale = bytecode_problems(BUILD / function)
        print(f"{function}: {len(code)} modules, {len(without)} without bytecode, {len(stale)} not unchecked-hash 3.13")
        for path in [*without, *stale]:
            print(f"  {path}")
        if not code or without or stale:
            functions_wrong.append(function)
    failed = not_arm64 or missing or wrong or sdk_wrong or not extensions or not sources
    return 1 if failed or functions_wrong or not functions else 0


if __name__ == "__main__":
    raise SystemExit(main())
