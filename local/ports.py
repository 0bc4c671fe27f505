"""Loopback TCP ports for the local servers (moto, DynamoDB Local, the gateway) and their tests."""

from __future__ import annotations

import socket

# Only for typing the process argument.
import subprocess  # nosec B404
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``process`` accepts connections on 127.0.0.1:``port``; False if it exits or ``timeout``
    (seconds) passes first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
    return False
