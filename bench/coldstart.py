"""Benchmark 1: cold starts. Each run is a fresh interpreter that imports a handler and serves its first event
from ``events/`` against moto's server in another process, so client creation and real HTTP round trips are
included. Targets run interleaved, round by round, so that machine noise falls on all of them alike.

Each total (process spawn to first response) is split into:

- **interpreter**: spawn until the probe is ready to import the handler (``python -c pass`` is the floor);
- **shared**: what both implementations need whatever the framework: importing the AWS SDK, pydantic and the
  job domain (models, service, store, queue, settings), creating AWS clients and the AWS calls themselves;
- **framework**: everything else: routing, validation, authentication (PyJWT), logging and metrics, the
  framework's imports and its work on the first request.

Imports are attributed by ``-X importtime`` (a module's own time goes to its package, or, for the standard
library, to the package that imported it first); client creation and AWS calls are timed by wrapping botocore.

The cold starts above import from compiled bytecode, as site-packages does. Lambda's ``/opt`` and ``/var/task``
are read-only, so modules shipped without bytecode are compiled again at every cold start: ``bytecode()``
measures the API function's first request with the layer and the function's own code as sam's python builder
ships them (sources only), with the layer as ``layers/jobs/Makefile`` builds it (unchecked-hash bytecode), and
with the function's code as ``functions/Makefile`` builds it too; the layer installed for this machine from
``layers/jobs/requirements.txt``.

    .venv/bin/python -m bench.coldstart --runs 15
"""

from __future__ import annotations

import argparse
import compileall
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from py_compile import PycInvalidationMode
from typing import Any

from bench.common import (
    EVENT_JOB_ID,
    PYTHON,
    ROOT,
    SECOND_JOB_ID,
    Aws,
    event_path,
    median,
    moto_server,
    ratio,
    table,
)

SHARED_PACKAGES = frozenset(
    {
        "botocore",
        "boto3",
        "s3transfer",
        "urllib3",
        "jmespath",
        "dateutil",
        "six",
        "certifi",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "uuid6",
        "dotenv",
    }
)
SHARED_JOBS_MODULES = frozenset(
    {"jobs.models", "jobs.store", "jobs.queue", "jobs.service", "jobs.processors", "jobs.settings", "jobs.aws"}
)
STDLIB = frozenset(sys.stdlib_module_names)

#: (target name, handler, event file, what to prepare before each run).
API_EVENTS = {
    "create": "api/create_job.json",
    "list": "api/list_jobs.json",
    "get": "api/get_job.json",
    "delete": "api/delete_job.json",
}


#: The standard library modules that the shared packages load whatever imports them first: they count as
#: shared even when a framework happens to import them first (filled by ``shared_stdlib()``).
SHARED_STDLIB: set[str] = set()


def shared_stdlib(environment: dict[str, str]) -> set[str]:
    """Standard library modules that importing the AWS SDK and pydantic loads, beyond the interpreter's own."""
    code = (
        "import sys; before = set(sys.modules); import boto3, botocore.session, botocore.client, pydantic, "
        "pydantic_settings; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(  # noqa: S603 - our own interpreter
        [PYTHON, "-c", code], env=environment, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {name for name in loaded if _is_stdlib(name)}


def _is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in STDLIB or (top.startswith("_") and top.lstrip("_") in STDLIB)


def classify(module: str) -> str | None:
    """``shared``, ``framework``, or None for the rest of the standard library (it inherits its importer's)."""
    top = module.split(".")[0]
    if top in SHARED_PACKAGES or module in SHARED_JOBS_MODULES or module in SHARED_STDLIB:
        return "shared"
    if _is_stdlib(module) or module == "jobs":
        return None
    return "framework"


def attribute_imports(lines: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Milliseconds of import time by class (``shared``, ``framework``) and by ``class:package`` from
    ``-X importtime`` lines, and each module's own milliseconds. A module inherits the class of its nearest
    classified importer."""
    entries: list[tuple[int, str, float]] = []
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, _, name = line.split("|", 2)
        own = int(head.split(":")[1])
        depth = (len(name) - 1 - len(name.lstrip(" "))) // 2
        entries.append((depth, name.strip(), own / 1000))
    # -X importtime prints a module after its children; rebuild the tree from the indentation.
    children: dict[int, list[int]] = defaultdict(list)
    pending: dict[int, list[int]] = defaultdict(list)
    roots: list[int] = []
    for index, (depth, _, _) in enumerate(entries):
        children[index] = pending.pop(depth + 1, [])
        if depth == 0:
            roots.append(index)
        else:
            pending[depth].append(index)
    roots += [index for level in pending.values() for index in level]
    totals: dict[str, float] = defaultdict(float)
    own_ms: dict[str, float] = {}

    def walk(index: int, inherited: str) -> None:
        _, name, ms = entries[index]
        kind = classify(name) or inherited
        totals[kind] += ms
        totals[f"{kind}:{name.split('.')[0] if not name.startswith('jobs.') else name}"] += ms
        own_ms[name] = ms
        for child in children[index]:
            walk(child, kind)

    for root in roots:
        walk(root, "framework")
    return dict(totals), own_ms


@dataclass
class Run:
    total_ms: float
    interpreter_ms: float
    shared_ms: float
    framework_ms: float
    shared_import_ms: float
    framework_import_ms: float
    import_ms: float
    first_event_ms: float
    aws_calls: list[str]
    status: Any
    max_rss_kb: int
    packages: dict[str, float]


@dataclass
class Target:
    name: str
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return median([getattr(run, attribute) for run in self.runs])

    def packages(self, kind: str, top: int = 8) -> list[tuple[str, float]]:
        """The packages whose imports cost most in ``kind`` (medians over the runs, ms)."""
        names = {name for run in self.runs for name in run.packages if name.startswith(kind + ":")}
        costs = {name.split(":", 1)[1]: median([run.packages.get(name, 0.0) for run in self.runs]) for name in names}
        return sorted(costs.items(), key=lambda item: -item[1])[:top]


def probe(
    aws: Aws,
    handler_name: str,
    event: str,
    environment_extra: dict[str, str] | None = None,
    layer_dirs: tuple[Path, ...] | None = None,
    code_dir: Path | None = None,
) -> Run:
    """One fresh process: import ``handler_name`` and serve ``event`` (with ``layer_dirs`` instead of the
    template's layer, and the handler's module from ``code_dir`` instead of its CodeUri, when given)."""
    handler = aws.handler(handler_name)
    if layer_dirs is not None:
        handler = replace(handler, layer_dirs=layer_dirs)
    if code_dir is not None:
        handler = replace(handler, code_dir=code_dir, path=code_dir / handler.path.name)
    spec = {
        "path": str(handler.path),
        "module": handler.module,
        "handler": handler.function,
        "code_dir": str(handler.code_dir),
        "layer_dirs": [str(path) for path in handler.layer_dirs],
        "event": str(event_path(event)),
    }
    environment = {**handler.environment, **(environment_extra or {})}
    spawned = time.monotonic()
    completed = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [PYTHON, "-X", "importtime", str(ROOT / "bench" / "probe.py"), json.dumps(spec)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise RuntimeError(f"probe of {handler_name} {event} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    stderr = completed.stderr.splitlines()
    start, end = stderr.index("PROBE-START"), stderr.index("PROBE-END")
    imports, own_ms = attribute_imports(stderr[start + 1 : end])
    nested = sum(own_ms.get(name, 0.0) for name in result["nested_imports"])
    runtime_shared = max(0.0, result["aws_ms"] + result["service_ms"] - nested)
    total = (result["answered"] - spawned) * 1000
    interpreter = (result["ready"] - spawned) * 1000
    shared = imports.get("shared", 0.0) + runtime_shared
    return Run(
        total_ms=total,
        interpreter_ms=interpreter,
        shared_ms=shared,
        framework_ms=total - interpreter - shared,
        shared_import_ms=imports.get("shared", 0.0),
        framework_import_ms=imports.get("framework", 0.0),
        import_ms=(result["imported"] - result["began"]) * 1000,
        first_event_ms=(result["answered"] - result["imported"]) * 1000,
        aws_calls=result["aws_calls"],
        status=result["status"],
        max_rss_kb=result["max_rss_kb"],
        packages={name: ms for name, ms in imports.items() if ":" in name},
    )


def floor(aws: Aws, code: str) -> float:
    """Milliseconds from spawn to exit of ``python -c code`` in the function's environment."""
    environment = aws.environment("ApiFunction")
    spawned = time.monotonic()
    subprocess.run([PYTHON, "-c", code], env=environment, check=True, timeout=60)  # noqa: S603
    return (time.monotonic() - spawned) * 1000


FLOORS = {
    "python -c pass": "pass",
    "import boto3; boto3.client('dynamodb')": "import boto3; boto3.client('dynamodb')",
    # What powertools' Tracer() adds when tracing is on: the X-Ray SDK, patching every library it supports.
    "the same, then the X-Ray SDK as Tracer() loads it (patch_all())": (
        "import boto3; boto3.client('dynamodb'); from aws_xray_sdk.core import patch_all; patch_all()"
    ),
}


def prepare(aws: Aws, target: str) -> None:
    """The table state a target's event expects: the events' job exists (QUEUED) for get, delete, the consumer."""
    if target.endswith(("get", "delete")):
        aws.put_job(EVENT_JOB_ID)
    if target == "consumer":
        payload = json.loads((ROOT / "events" / "seed-payload.json").read_text(encoding="utf-8"))
        aws.put_job(EVENT_JOB_ID, type="report", payload=payload["payload"])
        aws.put_job(SECOND_JOB_ID)


def compile_sources() -> None:
    """Bytecode for the layer, the functions and the peer, as site-packages already has (pip compiles it):
    both sides start from compiled code, so neither pays for compiling its sources."""
    for folder in ("layers/jobs", "functions", "bench/peer"):
        compileall.compile_dir(str(ROOT / folder), quiet=1)


def measure(runs: int, *, verbs: tuple[str, ...] = tuple(API_EVENTS), seed: int = 5) -> dict[str, Any]:
    """``runs`` rounds of every target in a shuffled order; returns the targets and the floors."""
    compile_sources()
    targets: dict[str, Target] = {}
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    plan: list[tuple[str, str, str]] = []
    for verb in verbs:
        event = API_EVENTS[verb]
        plan.append((f"ours {verb}", "api", event))
        plan.append((f"peer {verb}", "peer", event))
    plan.append(("consumer", "consumer", "sqs/job_batch.json"))
    shuffle = random.Random(seed)
    with moto_server() as aws:
        SHARED_STDLIB.update(shared_stdlib(aws.environment()))
        for _ in range(runs):
            order = [*plan, *((name, "floor", code) for name, code in FLOORS.items())]
            shuffle.shuffle(order)
            for name, handler, event in order:
                if handler == "floor":
                    floors[name].append(floor(aws, event))
                    continue
                prepare(aws, name.split(" ")[-1] if name != "consumer" else name)
                targets.setdefault(name, Target(name)).runs.append(probe(aws, handler, event))
    return {"targets": targets, "floors": {name: median(values) for name, values in floors.items()}, "runs": runs}


def report(results: dict[str, Any]) -> str:
    """The Markdown section of benchmark 1."""
    targets: dict[str, Target] = results["targets"]
    floors: dict[str, float] = results["floors"]
    rows = []
    for verb in [verb for verb in API_EVENTS if f"ours {verb}" in targets]:
        ours, peer = targets[f"ours {verb}"], targets[f"peer {verb}"]
        rows.append(
            [
                verb,
                f"{ours.median('total_ms'):.0f}",
                f"{peer.median('total_ms'):.0f}",
                ratio(ours.median("total_ms"), peer.median("total_ms")),
                f"{ours.median('shared_ms'):.0f}",
                f"{peer.median('shared_ms'):.0f}",
                ratio(ours.median("shared_ms"), peer.median("shared_ms")),
                f"{ours.median('framework_ms'):.0f}",
                f"{peer.median('framework_ms'):.0f}",
                ratio(ours.median("framework_ms"), peer.median("framework_ms")),
            ]
        )
    consumer = targets["consumer"]
    rows.append(
        [
            "consumer (2 records)",
            f"{consumer.median('total_ms'):.0f}",
            "",
            "",
            f"{consumer.median('shared_ms'):.0f}",
            "",
            "",
            f"{consumer.median('framework_ms'):.0f}",
            "",
            "",
        ]
    )
    header = [
        "first request",
        "total ours",
        "total peer",
        "ratio",
        "shared ours",
        "shared peer",
        "ratio",
        "framework ours",
        "framework peer",
        "ratio",
    ]
    detail = []
    for name, target in targets.items():
        statuses = sorted({json.dumps(run.status) for run in target.runs})
        detail.append(
            [
                name,
                f"{target.median('interpreter_ms'):.0f}",
                f"{target.median('import_ms'):.0f}",
                f"{target.median('shared_import_ms'):.0f}",
                f"{target.median('framework_import_ms'):.0f}",
                f"{target.median('first_event_ms'):.0f}",
                ", ".join(target.runs[0].aws_calls),
                " ".join(statuses),
                f"{target.median('max_rss_kb') / 1024:.0f}",
            ]
        )
    floor_rows = [[name, f"{value:.0f}"] for name, value in floors.items()]
    return "\n\n".join(
        [
            f"Median of {results['runs']} fresh processes per target, milliseconds, spawn to first response. "
            "Shared = AWS SDK, pydantic and the job domain (imports, client creation, AWS calls); framework = the "
            "rest (routing, validation, auth, logging, metrics). Parts are medians of their own, so they need "
            "not add up to the total exactly; the interpreter's start-up is in the total only.",
            table(header, rows),
            "Floors (spawn to exit, same environment):",
            table(["floor", "ms"], floor_rows),
            "Phases (medians, ms; imports include those made lazily during the first event), the AWS calls of the "
            "first request, its status, and the process's peak RSS:",
            table(
                [
                    "target",
                    "interpreter",
                    "import handler",
                    "imports: shared",
                    "imports: framework",
                    "first event",
                    "AWS calls",
                    "status",
                    "peak RSS MiB",
                ],
                sorted(detail),
            ),
        ]
    )


#: The builds ``bytecode()`` compares, what each stands for, and its (layer, function) folders.
BUILDS = {
    "sources only (sam's python builder for both)": ("src", "src"),
    "layer bytecode (layers/jobs/Makefile), function sources": ("pyc", "src"),
    "layer and function bytecode (functions/Makefile too)": ("pyc", "pyc"),
}


def install_layers(directory: Path) -> dict[str, Path]:
    """The layer twice under ``directory``, for this machine: ``src`` with no bytecode and ``pyc`` compiled as
    ``layers/jobs/Makefile`` compiles it. Installs ``layers/jobs/requirements.txt`` with pip (from its cache
    or the package index)."""
    source = directory / "src"
    requirements = ROOT / "layers" / "jobs" / "requirements.txt"
    pip = [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    subprocess.run(  # noqa: S603 - our own interpreter's pip, fixed arguments
        [*pip, "--target", str(source), "-r", str(requirements)],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shutil.copytree(ROOT / "layers" / "jobs" / "jobs", source / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    compiled = directory / "pyc"
    shutil.copytree(source, compiled)
    compileall.compile_dir(str(compiled), quiet=1, workers=0, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH)
    return {"src": source, "pyc": compiled}


def install_function(directory: Path) -> dict[str, Path]:
    """The API function's code twice under ``directory``: ``src`` as sam's python builder ships it (no bytecode)
    and ``pyc`` as ``functions/Makefile`` builds it (unchecked-hash bytecode beside the sources)."""
    source = directory / "src"
    shutil.copytree(ROOT / "functions" / "api", source, ignore=shutil.ignore_patterns("__pycache__"))
    compiled = directory / "pyc"
    shutil.copytree(source, compiled)
    compileall.compile_dir(str(compiled), quiet=1, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH)
    return {"src": source, "pyc": compiled}


def bytecode(runs: int, *, seed: int = 7) -> dict[str, Any]:
    """``runs`` cold starts of the API function's create with each build, interleaved."""
    shuffle = random.Random(seed)
    results: dict[str, list[Run]] = {name: [] for name in BUILDS}
    with tempfile.TemporaryDirectory(prefix="jobs-bench-layer-") as directory, moto_server() as aws:
        layers = install_layers(Path(directory) / "layer")
        functions = install_function(Path(directory) / "function")
        for _ in range(runs):
            order = list(BUILDS.items())
            shuffle.shuffle(order)
            for name, (layer, function) in order:
                run = probe(aws, "api", API_EVENTS["create"], layer_dirs=(layers[layer],), code_dir=functions[function])
                results[name].append(run)
    return {"runs": runs, "results": results}


def bytecode_report(results: dict[str, Any]) -> str:
    """The Markdown table of ``bytecode()``."""
    rows = []
    baseline = median([run.total_ms for run in next(iter(results["results"].values()))])
    for name, runs in results["results"].items():
        total = median([run.total_ms for run in runs])
        imports = median([run.import_ms for run in runs])
        first = median([run.first_event_ms for run in runs])
        rows.append([name, f"{total:.0f}", ratio(total, baseline), f"{imports:.0f}", f"{first:.0f}"])
    return "\n\n".join(
        [
            f"The API function's first request (create), median of {results['runs']} fresh processes, ms, with the "
            "layer and the function's own code built three ways (the layer installed for this machine from "
            "layers/jobs/requirements.txt). In Lambda /opt and /var/task are read-only: modules without bytecode are "
            "compiled at every cold start.",
            table(["build", "total", "vs sources only", "import handler", "first event"], rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    print(report(measure(args.runs)))
    print(bytecode_report(bytecode(args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
