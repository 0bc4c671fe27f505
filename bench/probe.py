"""One cold start, in a fresh interpreter: import a handler by path and serve its first event, timing the phases.

Run by ``bench/coldstart.py`` as ``python -X importtime bench/probe.py SPEC`` (SPEC is JSON: ``code_dir``,
``layer_dirs``, ``module``, ``handler``, ``event``), so that only what the handler itself loads is timed.
It imports nothing of the benchmarks, and writes one JSON line to stdout's original descriptor:

- ``started``: ``time.monotonic()`` when this script began (the interpreter's own start-up precedes it), and
  ``ready`` when its own set-up was done (the part a Lambda runtime's bootstrap plays);
- ``imported``/``answered``: the same clock after the import and after the first response;
- ``aws_ms``: time spent creating AWS clients and making AWS calls (outermost spans only), and ``service_ms``
  in ``JobService`` calls, both less the imports that ran inside them (listed in ``nested_imports``);
- ``aws_calls``: the AWS operations made; ``status``: the handler's response status (or batch failures);
- ``max_rss_kb``: the process's peak resident set size (Linux ``VmHWM``).

``-X importtime`` reports every module's own import time on stderr, after the line ``PROBE-START``.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import importlib.util  # noqa: E402 - the probe's own imports come after the start time, before the handler's
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from importlib.machinery import ModuleSpec  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    spec = json.loads(sys.argv[1])
    with open(spec["event"], encoding="utf-8") as file:
        event = json.load(file)
    out = os.fdopen(os.dup(1), "w")
    if not spec.get("show_logs"):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    script_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [spec["code_dir"], *spec["layer_dirs"]] + [p for p in sys.path if p not in ("", script_dir)]
    spans = _Spans()
    sys.meta_path.insert(0, spans)
    sys.stderr.write("PROBE-START\n")
    sys.stderr.flush()
    ready = time.monotonic()

    began = time.monotonic()
    module_spec = importlib.util.spec_from_file_location(spec["module"], spec["path"])
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[spec["module"]] = module
    module_spec.loader.exec_module(module)
    handler = getattr(module, spec["handler"])
    imported = time.monotonic()
    response = handler(event, _Context(spec["module"]))
    answered = time.monotonic()
    status: object = None
    if isinstance(response, dict):
        status = response.get("statusCode", response.get("batchItemFailures"))
    sys.stderr.write("PROBE-END\n")
    sys.stderr.flush()
    out.write(
        json.dumps(
            {
                "started": STARTED,
                "ready": ready,
                "began": began,
                "imported": imported,
                "answered": answered,
                "aws_ms": spans.total["aws"] * 1000,
                "service_ms": spans.total["service"] * 1000,
                "nested_imports": sorted(spans.nested),
                "aws_calls": spans.calls,
                "status": status,
                "max_rss_kb": peak_rss_kb(),
            }
        )
        + "\n"
    )
    out.flush()


def peak_rss_kb() -> int:
    """The process's peak resident set size (``VmHWM``; ``ru_maxrss`` would carry the parent's over exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class _Context:
    """The attributes of Lambda's context object that powertools reads."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = "00000000-0000-4000-8000-000000000001"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "probe"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


#: module -> (attribute path, span kind): what is timed once the module has loaded.
_TARGETS = {
    "botocore.session": [("Session.create_client", "aws")],
    "botocore.client": [("BaseClient._make_api_call", "aws")],
    "jobs.service": [
        ("JobService.create_job", "service"),
        ("JobService.get_job", "service"),
        ("JobService.list_jobs", "service"),
        ("JobService.delete_job", "service"),
        ("JobService.run_job", "service"),
    ],
}


class _Spans:
    """A meta-path finder that wraps the targets above once their modules load, and times outermost spans
    (a span inside another counts once, in the outer one); imports made inside a span are recorded, so that
    their import time (reported by ``-X importtime``) can be taken out of the span's."""

    def __init__(self) -> None:
        self.depth = 0
        self.total = {"aws": 0.0, "service": 0.0}
        self.nested: set[str] = set()
        self.calls: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if self.depth:
            self.nested.add(fullname)
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _Spans):
                continue
            found = finder.find_spec(fullname, path, target)
            if found is not None and found.loader is not None:
                original = found.loader.exec_module

                def exec_module(module: ModuleType, original: Any = original, name: str = fullname) -> None:
                    original(module)
                    self._patch(module, name)

                setattr(found.loader, "exec_module", exec_module)  # noqa: B010 - an instance attribute, on purpose
                return found
        return None

    def _patch(self, module: object, name: str) -> None:
        for dotted, kind in _TARGETS[name]:
            owner_name, attribute = dotted.split(".")
            owner = getattr(module, owner_name)
            setattr(owner, attribute, self._timed(getattr(owner, attribute), kind, attribute))

    def _timed(self, function: object, kind: str, attribute: str) -> object:
        spans = self

        def timed(*args: object, **kwargs: object) -> object:
            if attribute == "_make_api_call":
                spans.calls.append(f"{args[0].meta.service_model.service_name}.{args[1]}")  # type: ignore[attr-defined]
            if spans.depth:
                return function(*args, **kwargs)  # type: ignore[operator]
            spans.depth += 1
            begun = time.monotonic()
            try:
                return function(*args, **kwargs)  # type: ignore[operator]
            finally:
                spans.total[kind] += time.monotonic() - begun
                spans.depth -= 1

        return timed


if __name__ == "__main__":
    main()
