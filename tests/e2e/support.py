"""Starting the local stack as a user does (``python -m local.stack``), for end-to-end tests and benchmarks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.stack import free_port
from tests.helpers import ROOT


def short_template(directory: Path, *, consumer_timeout: int = 3, lease: int = 4, visibility: int = 6) -> Path:
    """A copy of template.yaml in ``directory`` with a short consumer Timeout, lease and visibility timeout
    (seconds), so that faults play out within a test; every other value is the template's own."""
    text = (ROOT / "template.yaml").read_text()
    text = text.replace("VisibilityTimeout: 180", f"VisibilityTimeout: {visibility}")
    text = text.replace('JOBS_LEASE_SECONDS: "35"', f'JOBS_LEASE_SECONDS: "{lease}"')
    text = re.sub(
        r"(CodeUri: functions/process_jobs/\n(?:      .*\n)*?      Timeout: )30", rf"\g<1>{consumer_timeout}", text
    )
    for folder in ("functions", "layers"):
        link = directory / folder
        if not link.exists():
            link.symlink_to(ROOT / folder)
    path = directory / "template.yaml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class StackProcess:
    """A running ``python -m local.stack``: its API base URL, AWS endpoint and stdout log file."""

    base_url: str
    aws_endpoint: str
    log: Path
    physical: dict[str, str]


@contextmanager
def running_stack(
    directory: Path,
    *,
    secret: str,
    template: Path | None = None,
    function_environment: Mapping[str, Mapping[str, str]] | None = None,
    concurrency: int = 2,
    parameter_overrides: str = "",
) -> Iterator[StackProcess]:
    """Start the local stack on free ports, wait for its banner, and stop it on exit."""
    port = free_port()
    log = directory / "stdout.jsonl"
    command = [sys.executable, "-m", "local.stack", "--port", str(port), "--aws-port", "0"]
    command += ["--concurrency", str(concurrency)]
    if parameter_overrides:
        command += ["--parameter-overrides", parameter_overrides]
    if template is not None:
        command += ["--template", str(template)]
    if function_environment:
        env_vars = directory / "env.json"
        env_vars.write_text(json.dumps(function_environment))
        command += ["--env-vars", str(env_vars)]
    environment = {**os.environ, "JOBS_JWT_SECRET": secret, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            banner: list[str] = []
            while not banner or ("Ready." not in banner[-1] and banner[-1]):
                banner.append(process.stderr.readline().decode())
            text = "".join(banner)
            if "Ready." not in text:
                raise RuntimeError(f"the local stack did not start:\n{text}")
            endpoint = re.search(r"AWS endpoint\s+(\S+)", text)
            resources = re.search(r"Resources\s+(\{.*\})", text)
            assert endpoint is not None
            assert resources is not None
            physical: dict[str, Any] = json.loads(resources.group(1))
            yield StackProcess(f"http://127.0.0.1:{port}", endpoint.group(1), log, physical)
        finally:
            process.terminate()
            process.wait(timeout=30)
