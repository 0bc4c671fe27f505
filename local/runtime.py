"""A Lambda-like runtime: each function runs in worker processes of its own (its own environment, module
state and ``sys.path`` of code folder plus layers), one invocation at a time per worker, as Lambda runs one
event at a time per execution environment.

An invocation that raises is a function error (``errorType``/``errorMessage``, as the Invoke API reports it);
one that outlives the function's ``Timeout`` is ended by killing its worker ("Task timed out"), and a fresh
worker takes its place, as Lambda replaces a timed-out execution environment.

Every invocation here is synchronous (the gateway's, the Invoke API's, the event source mappings'), so Lambda's
synchronous response limit holds for each: a result whose serialised form passes ``MAX_PAYLOAD_BYTES`` is the
function error ``Function.ResponseSizeTooLarge``, with Lambda's own message ("Lambda quotas",
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: invocation payload, request and response,
6 MB synchronous; the exact figure is the one Lambda's error message gives). The result is measured as
``json.dumps`` writes it, every non-ASCII character escaped: the serialisation of Python runtimes before 3.12,
never smaller than later runtimes' UTF-8, so that the local stack refuses whatever Lambda may refuse.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from local.resources import FunctionSpec
from local.template import ACCOUNT_ID, REGION

_SPAWN = multiprocessing.get_context("spawn")
#: Lambda's synchronous invocation payload limit, request and response each, bytes ("Lambda quotas").
MAX_PAYLOAD_BYTES = 6_291_556


def payload_bytes(value: Any) -> int:
    """``value``'s size as Lambda's Python runtime serialises it (JSON, non-ASCII escaped), bytes."""
    return len(json.dumps(value))


def response_too_large(size: int) -> dict[str, str]:
    """The function error Lambda reports for a result of ``size`` bytes past ``MAX_PAYLOAD_BYTES``."""
    return {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes).",
    }


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invoke: ``payload`` (the handler's return value) or an ``error``."""

    payload: Any = None
    error: dict[str, str] | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the handler returned."""
        return self.error is None


class LambdaContext:
    """The context object a Python handler receives (the attributes powertools reads)."""

    def __init__(self, spec: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name = spec["function_name"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec["memory_mb"]
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self._deadline - time.time()) * 1000))


class WholeLines(io.TextIOBase):
    """A worker's standard output that writes each complete line with one ``write(2)``, as Lambda's runtime hands
    each line to CloudWatch whole. The workers of every function share the stack's output: a line written in
    parts (``print`` writes the text and its newline apart; a buffered stream splits what passes its buffer) could
    be interleaved with another process's, and a JSON line would no longer parse. One ``write(2)`` on a regular
    file is never interleaved (the file position is locked for it); on a pipe, lines up to ``PIPE_BUF`` (4,096
    bytes) are not. A line not ended yet waits for its newline."""

    def __init__(self, descriptor: int, encoding: str = "utf-8") -> None:
        super().__init__()
        self._descriptor = descriptor
        self._encoding = encoding
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only on io.TextIOBase too
        return self._encoding

    def fileno(self) -> int:
        return self._descriptor

    def isatty(self) -> bool:
        return os.isatty(self._descriptor)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            end = self._pending.rfind("\n")
            if end < 0:
                return len(text)
            lines, self._pending = self._pending[: end + 1], self._pending[end + 1 :]
            data = lines.encode(self._encoding, errors="backslashreplace")
            while data:
                data = data[os.write(self._descriptor, data) :]
        return len(text)


def _worker_main(connection: Connection, spec: dict[str, Any]) -> None:
    """Body of a worker process: set the function's environment, import its handler, serve invocations."""
    os.environ.clear()
    os.environ.update(spec["environment"])
    sys.stdout = WholeLines(sys.stdout.fileno(), sys.stdout.encoding)
    repo_root = spec["repo_root"]
    sys.path[:] = [spec["code_dir"], *spec["layer_dirs"]] + [
        entry for entry in sys.path if entry not in ("", ".", repo_root)
    ]
    module_name, function_name = spec["handler"].rsplit(".", 1)
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, Path(spec["code_dir"]) / f"{module_name}.py")
        assert module_spec is not None
        assert module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
        handler = getattr(module, function_name)
    except Exception as error:  # noqa: BLE001 - reported to the caller as Runtime.ImportModuleError
        _print_error("Runtime.ImportModuleError", error)
        connection.send(("init_error", {"errorType": "Runtime.ImportModuleError", "errorMessage": str(error)}))
        return
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        request_id, event, deadline = message
        context = LambdaContext(spec, request_id, deadline)
        try:
            result = handler(event, context)
            size = payload_bytes(result)  # Lambda serialises the result; an unserialisable one is a function error
        except Exception as error:  # noqa: BLE001 - a function error, as Lambda reports it
            _print_error(type(error).__name__, error)
            connection.send(("error", {"errorType": type(error).__name__, "errorMessage": str(error)}))
            continue
        if size > MAX_PAYLOAD_BYTES:
            print(json.dumps({"level": "ERROR", **response_too_large(size), "size": size}), flush=True)
            connection.send(("error", response_too_large(size)))
            continue
        connection.send(("ok", result))


def _print_error(error_type: str, error: BaseException) -> None:
    record = {
        "level": "ERROR",
        "errorType": error_type,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error),
    }
    print(json.dumps(record), flush=True)


class _Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.parent, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_worker_main, args=(child, spec), daemon=True, name=spec["function_name"])
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.parent.poll(timeout):
            raise RuntimeError(f"{self.process.name} did not start within {timeout} s")
        status, detail = self.parent.recv()
        if status != "ready":
            raise RuntimeError(f"{self.process.name} failed to start: {detail}")

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.parent.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)


class FunctionPool:
    """``size`` workers of one function; ``invoke`` waits for an idle worker, as Lambda queues nothing but
    caps concurrency (here: at ``size``).

    Args:
        spec: the function from the template.
        size: worker processes (concurrent executions).
        base_environment: variables Lambda itself sets (region, credentials, endpoint), added to the
            function's own environment from the template.
        repo_root: removed from the workers' ``sys.path``, so functions import only their code and layers.
    """

    def __init__(self, spec: FunctionSpec, size: int, base_environment: dict[str, str], repo_root: Path) -> None:
        self.spec = spec
        self.size = size
        self._wire_spec = {
            "function_name": spec.logical_id,
            "memory_mb": spec.memory_mb,
            "handler": spec.handler,
            "code_dir": str(spec.code_dir),
            "layer_dirs": [str(path) for path in spec.layer_dirs],
            "repo_root": str(repo_root),
            "environment": {
                **base_environment,
                "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                **spec.environment,
            },
        }
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self, timeout: float = 60) -> None:
        """Start the workers and wait until each has imported its handler (the init phase)."""
        workers = [self._spawn() for _ in range(self.size)]
        for worker in workers:
            worker.wait_ready(timeout)
            self._idle.put(worker)

    def _spawn(self) -> _Worker:
        worker = _Worker(self._wire_spec)
        with self._lock:
            self._all.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start another in the background. A replacement that fails its init (a broken
        import, say) is retried every second, so the pool never loses capacity for good; meanwhile invokes
        wait, as Lambda retries a failed init on the next invoke."""
        worker.process.kill()
        worker.process.join(timeout=2)
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        threading.Thread(target=self._respawn, name=f"respawn-{self.spec.logical_id}", daemon=True).start()

    def _respawn(self) -> None:
        while not self._closed:
            fresh = self._spawn()
            try:
                fresh.wait_ready(60)
            except RuntimeError as error:
                print(json.dumps({"level": "ERROR", "function": self.spec.logical_id, "init": str(error)}), flush=True)
                fresh.stop()
                with self._lock:
                    if fresh in self._all:
                        self._all.remove(fresh)
                time.sleep(1)
                continue
            self._idle.put(fresh)
            return

    def invoke(self, event: Any) -> Invocation:
        """Run one event in an idle worker and wait for its outcome (at most the function's timeout)."""
        worker = self._idle.get()
        started = time.monotonic()
        deadline = time.time() + self.spec.timeout_seconds
        request_id = str(uuid.uuid4())
        try:
            worker.parent.send((request_id, event, deadline))
            if not worker.parent.poll(self.spec.timeout_seconds):
                message = f"Task timed out after {self.spec.timeout_seconds:.2f} seconds"
                print(json.dumps({"level": "ERROR", "requestId": request_id, "errorMessage": message}), flush=True)
                self._replace(worker)
                return Invocation(error={"errorType": "Sandbox.Timedout", "errorMessage": message})
            status, payload = worker.parent.recv()
        except (EOFError, BrokenPipeError, OSError) as error:
            self._replace(worker)
            return Invocation(error={"errorType": "Runtime.ExitError", "errorMessage": str(error)})
        self._idle.put(worker)
        elapsed = (time.monotonic() - started) * 1000
        if status == "ok":
            return Invocation(payload=payload, duration_ms=elapsed)
        return Invocation(error=payload, duration_ms=elapsed)

    def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            worker.stop()
