"""A client nobody here wrote: openapi-python-client (in its own environment, .venv-openapi-client, which
``make test`` installs: its typer pin conflicts with the client command's) generates a client from the committed
docs/openapi.json, and the seed's scenario and API Gateway's own errors run through it against the local stack.

The generated package runs in this test's interpreter (.venv): it needs only httpx and attrs, and the test first
checks that .venv satisfies the versions the generated pyproject.toml asks for. Every response is parsed by the
generated code (``parsed``), so a body the document does not describe fails here as it would for its users.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

from jobs import examples
from tests.e2e.support import RunningStack, token
from tests.helpers import ROOT, load_event

pytestmark = pytest.mark.e2e

GENERATOR_BIN = ROOT / ".venv-openapi-client" / "bin"
PACKAGE = "generated_jobs_client"


class Generated:
    """The generated package's modules, by dotted name below the package (``api.jobs.create_job``)."""

    def __init__(self, root: Path) -> None:
        init = root / PACKAGE / "__init__.py"
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(init.parent)])
        assert spec is not None
        assert spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
        self.package = package

    def __getitem__(self, name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    def client(self, base_url: str, sub: str | None) -> Any:
        if sub is None:
            return self.package.Client(base_url=base_url, raise_on_unexpected_status=True)
        return self.package.AuthenticatedClient(base_url=base_url, token=token(sub), raise_on_unexpected_status=True)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    generator = GENERATOR_BIN / "openapi-python-client"
    assert generator.exists(), (
        "openapi-python-client is not installed: run make test (or make .venv-openapi-client/.installed)"
    )
    directory = tmp_path_factory.mktemp("generated")
    config = directory / "config.yaml"
    config.write_text(f"project_name_override: generated-jobs-client\npackage_name_override: {PACKAGE}\n")
    output = directory / "client"
    command = [str(generator), "generate", "--path", str(ROOT / "docs" / "openapi.json"), "--meta", "uv"]
    command += ["--config", str(config), "--output-path", str(output), "--fail-on-warning"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{GENERATOR_BIN}{os.pathsep}{os.environ['PATH']}"},  # its ruff post hooks
    )
    for line in tomllib.loads((output / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(version(requirement.name)), (
            f"{line}: .venv has {version(requirement.name)}"
        )
    yield Generated(output)
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_the_generated_client_runs_the_seed_scenario(stack: RunningStack, generated: Generated) -> None:
    alice = generated.client(stack.base, "alice-generated")
    request = generated["models.job_create"].JobCreate.from_dict(load_event("seed-payload.json"))

    created = generated["api.jobs.create_job"].sync_detailed(client=alice, body=request)
    job = created.parsed
    fetched = generated["api.jobs.get_job"].sync_detailed(job.job_id, client=alice).parsed
    listed = generated["api.jobs.list_jobs"].sync_detailed(client=alice, limit=10).parsed
    deleted = generated["api.jobs.delete_job"].sync_detailed(job.job_id, client=alice)
    gone = generated["api.jobs.get_job"].sync_detailed(job.job_id, client=alice)

    assert created.status_code == 201
    assert created.headers["location"] == f"/api/v1/jobs/{job.job_id}"
    assert type(job).__name__ == "Job"
    assert job.status.value == "QUEUED"
    assert job.payload.to_dict() == examples.SEED_REQUEST["payload"]
    assert job.created_at.tzinfo is not None  # parsed as a date-time, not left as text
    assert fetched.job_id == job.job_id
    assert [item.job_id for item in listed.items] == [job.job_id]
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert gone.parsed.to_dict() == examples.PROBLEMS[404]["noSuchJob"]


@pytest.mark.parametrize("job_id", ["a/b", "..", "a/b/c"])
def test_api_gateways_404_parses_as_its_message(stack: RunningStack, generated: Generated, job_id: str) -> None:
    alice = generated.client(stack.base, "alice-generated")

    for operation in ("get_job", "delete_job"):
        reply = generated[f"api.jobs.{operation}"].sync_detailed(job_id, client=alice)

        assert reply.status_code == 404
        assert type(reply.parsed).__name__ == "GatewayError", reply.content
        assert reply.parsed.message == "Not Found"


def test_the_functions_errors_parse_as_problems(stack: RunningStack, generated: Generated) -> None:
    anonymous = generated.client(stack.base, None)
    alice = generated.client(stack.base, "alice-generated")
    empty_title = generated["models.job_create"].JobCreate(title="  ")

    unauthenticated = generated["api.jobs.list_jobs"].sync_detailed(client=anonymous)
    invalid = generated["api.jobs.create_job"].sync_detailed(client=alice, body=empty_title)
    foreign_token = generated["api.jobs.list_jobs"].sync_detailed(client=alice, next_token="not-issued")

    assert unauthenticated.status_code == 401
    assert unauthenticated.parsed.to_dict() == examples.PROBLEMS[401]["noToken"]
    assert invalid.status_code == 422
    assert [issue.loc for issue in invalid.parsed.errors] == [["body", "title"]]
    assert foreign_token.status_code == 400
    assert foreign_token.parsed.to_dict() == examples.PROBLEMS[400]["foreignNextToken"]


@pytest.mark.parametrize(
    ("status", "finished"),
    [("PAUSED", False), ("ARCHIVED", True), ("CANCELLING", False)],
)
def test_a_client_generated_today_parses_a_status_added_later(
    stack: RunningStack, generated: Generated, status: str, finished: bool
) -> None:
    """A client generated from the committed document survives a status the document does not list (written by
    a later version, or met after a rollback): GET and the list parse the job, and its status reads as the text."""
    import boto3

    from jobs.models import Job, JobStatus, utc_now
    from jobs.store import DynamoJobStore

    documented = generated["models.job_status"].JobStatus
    assert status not in {member.value for member in documented}  # the document does not know it
    owner = f"later-status-{status.lower()}"
    now = utc_now()
    job_id = "019aced2-2b5b-7cc3-a1b1-4f1f1f1f1f1f"
    dynamodb = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("dynamodb", endpoint_url=stack.dynamodb_endpoint)
    later = Job(
        owner_id=owner,
        job_id=job_id,
        title="from a later version",
        type="noop",
        status=JobStatus(status),
        payload={},
        created_at=now,
        updated_at=now,
        finished_at=now if finished else None,
    )
    DynamoJobStore(stack.physical["JobsTable"], dynamodb).put_new(later)
    client = generated.client(stack.base, owner)

    fetched = generated["api.jobs.get_job"].sync_detailed(job_id, client=client)
    listed = generated["api.jobs.list_jobs"].sync_detailed(client=client, limit=10)
    known = generated["api.jobs.create_job"].sync_detailed(
        client=client, body=generated["models.job_create"].JobCreate.from_dict({"title": "t", "type": "noop"})
    )

    assert fetched.status_code == 200, fetched.content
    assert type(fetched.parsed).__name__ == "Job"
    assert fetched.parsed.status == status
    assert (fetched.parsed.finished_at is not None) is finished  # how a reader tells a finished job
    assert listed.status_code == 200, listed.content
    assert [item.status for item in listed.parsed.items if str(item.job_id) == job_id] == [status]
    assert isinstance(known.parsed.status, documented)  # a documented status still parses as the enum
    assert known.parsed.status.value == "QUEUED"
