"""One local stack for the whole end-to-end session (moto server, DynamoDB Local where installed, gateway,
worker processes, pollers), on free ports, as ``make run`` starts it. It runs with ``JOBS_FAULT_INJECTION=1``,
so the functions also serve the fault-injection job types (the CLI tests need ``fail`` for the FAILED path)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local import dynamodb_local
from tests.e2e.support import SECRET, RunningStack, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The running stack; stopped at the end of the session."""
    directory = tmp_path_factory.mktemp("stack")
    with running_stack(
        directory, secret=SECRET, function_environment={"Parameters": {"JOBS_FAULT_INJECTION": "1"}}
    ) as process:
        assert f"JOBS_API_URL={process.base_url}" in process.banner
        assert "jobsctl submit" in process.banner
        installed = dynamodb_local.find()
        if installed.jar is not None:  # the default, auto, keeps the tables in DynamoDB Local when it is installed
            assert f"(DynamoDB Local {installed.version})" in process.banner
            assert process.dynamodb_endpoint != process.aws_endpoint
        yield RunningStack(process.base_url, process.log, process.dynamodb_endpoint, process.physical, process)
