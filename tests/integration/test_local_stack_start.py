"""Starting the local stack: it never shares another stack's ports, says clearly what it cannot reach, and leaves
no server behind however its process ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.ports import free_port, port_is_free
from local.stack import Stack
from tests.helpers import ROOT


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(free_port())
    assert port_is_free(0)


@pytest.mark.parametrize("which", ["port", "aws_port"])
def test_a_taken_port_stops_the_start_before_anything_runs(which: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        ports = {"port": free_port(), "aws_port": free_port(), which: taken}
        stack = Stack(port=ports["port"], aws_port=ports["aws_port"])
        try:
            with pytest.raises(SystemExit, match=f"port {taken} is in use"):
                stack.start()
            assert stack._moto is None  # another stack's moto would have been shared: nothing was started
        finally:
            stack.stop()


def test_an_unreachable_dynamodb_endpoint_is_a_clear_message() -> None:
    stack = Stack(port=free_port(), aws_port=0, dynamodb=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(SystemExit, match=r"DynamoDB cannot be reached at http://127\.0\.0\.1:"):
            stack.start()
    finally:
        stack.stop()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_server_ends_when_the_stack_is_killed(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "from local.ports import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], preexec_fn=die_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can end the child
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z":
            break  # ended; a zombie until init reaps it
        time.sleep(0.1)
    alive = Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] != "Z"
    assert not alive
