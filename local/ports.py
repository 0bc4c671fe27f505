"""Loopback TCP ports and child servers for the local stack (moto, DynamoDB Local, the gateway) and its tests."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import socket

# Only for typing the process argument.
import subprocess  # nosec B404
import sys
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound now (``port`` 0 is always free)."""
    if port == 0:
        return True
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: prctl(2) option: the signal the kernel sends a process when its parent exits (Linux).
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for a child server: on Linux, the kernel sends it SIGTERM when the stack's process ends,
    however it ends (SIGKILL included), so no moto or java process outlives the stack. Elsewhere, nothing.

    Only for children started before the stack starts threads (``preexec_fn`` is not thread-safe).
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
