"""The job types a function serves: the built-in ones always, the fault-injection types only on request."""

from __future__ import annotations

import pytest

from jobs import bootstrap
from jobs.models import JobCreate, JobMessage, JobStatus, UnknownJobType
from jobs.processors import BUILT_IN_TYPES, FAULT_TYPES, Registry
from jobs.queue import InMemoryJobQueue
from jobs.service import JobService
from jobs.store import InMemoryJobStore
from tests.helpers import ROOT


def test_by_default_only_the_built_in_types_are_served() -> None:
    assert bootstrap.registry().names() == sorted(BUILT_IN_TYPES)
    with pytest.raises(UnknownJobType):
        bootstrap.registry()["fail"]


@pytest.mark.parametrize("value", ["1", "true"])
def test_jobs_fault_injection_adds_the_fault_types(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JOBS_FAULT_INJECTION", value)

    assert bootstrap.registry().names() == sorted([*BUILT_IN_TYPES, "crash", "fail", "flaky", "sleep", "steps"])


def test_the_template_never_enables_fault_injection() -> None:
    assert "JOBS_FAULT_INJECTION" not in (ROOT / "template.yaml").read_text(encoding="utf-8")


def test_a_fail_job_is_accepted_then_ends_failed_with_its_message() -> None:
    # Given a service that serves the fault types
    service = JobService(
        InMemoryJobStore(), InMemoryJobQueue(), Registry([*BUILT_IN_TYPES.values(), *FAULT_TYPES.values()])
    )
    job = service.create_job("alice", JobCreate(title="boom", type="fail", payload={"message": "roundhouse missed"}))

    # When the consumer runs it
    finished = service.run_job(JobMessage(owner_id="alice", job_id=job.job_id))

    # Then it is FAILED with the payload's message, after one attempt
    assert finished is not None
    assert finished.status == JobStatus.FAILED
    assert finished.error is not None
    assert (finished.error.type, finished.error.message) == ("ProcessorError", "roundhouse missed")
    assert finished.attempts == 1
