"""One local stack for the whole end-to-end session (moto server, gateway, worker processes, pollers), on free
ports. It runs with ``JOBS_FAULT_INJECTION=1``, so the functions also serve the fault-injection job types
(the CLI tests need ``fail`` for the FAILED path)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
        yield RunningStack(process.base_url, process.log)
