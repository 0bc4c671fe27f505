"""Job ids in paths: one rule, the same for GET and DELETE. Only the lowercase canonical UUID names a job; every
other spelling (uppercase, braces, urn:uuid:, no hyphens, percent-encoded characters, whitespace, a trailing
slash) names none: the same 404 as a job that does not exist, never a 500, and DELETE deletes nothing."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function, sign

JOB = "01a226ee-fede-7c74-8f78-130f6101394b"

#: (case, the path segment as the client sends it, for a job whose canonical id is JOB).
SPELLINGS = [
    ("uppercase", JOB.upper()),
    ("mixed case", JOB[:8].upper() + JOB[8:]),
    ("braces", "{" + JOB + "}"),
    ("encoded braces", "%7B" + JOB + "%7D"),
    ("urn:uuid:", "urn:uuid:" + JOB),
    ("no hyphens", JOB.replace("-", "")),
    ("encoded hyphen", JOB.replace("-", "%2D", 1)),
    ("encoded first character", "%30" + JOB[1:]),
    ("encoded space before", "%20" + JOB),
    ("encoded NUL after", JOB + "%00"),
    ("plus instead of a hyphen", JOB.replace("-", "+", 1)),
    ("one character short", JOB[:-1]),
    ("one character more", JOB + "0"),
    ("fullwidth digit", "\uff10" + JOB[1:]),
    ("dot segments", ".." + JOB),
    ("10 000 characters", "a" * 10_000),
]


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def call(api: ModuleType, name: str, job_id: str, sub: str = "alice") -> tuple[int, Any]:
    response = api.lambda_handler(api_event(name, token=sign(sub), job_id=job_id), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


@pytest.fixture
def job_id(api: ModuleType, aws: Aws) -> str:
    """Alice's job, written with the canonical id JOB."""
    from jobs import bootstrap
    from jobs.models import Job, JobStatus, utc_now

    now = utc_now()
    bootstrap.api_service().store.put_new(
        Job(
            owner_id="alice",
            job_id=JOB,
            title="t",
            type="noop",
            status=JobStatus.QUEUED,
            payload={},
            created_at=now,
            updated_at=now,
        )
    )
    return JOB


@pytest.mark.parametrize(("case", "spelling"), SPELLINGS, ids=[case for case, _ in SPELLINGS])
def test_a_non_canonical_spelling_names_no_job_for_get_and_delete_alike(
    api: ModuleType, aws: Aws, job_id: str, case: str, spelling: str
) -> None:
    missing = call(api, "get_job", "01a226ee-fede-7c74-8f78-000000000000")

    got = call(api, "get_job", spelling)
    deleted = call(api, "delete_job", spelling)

    assert got == deleted == missing
    assert missing[0] == 404
    assert call(api, "get_job", job_id)[0] == 200, "the job is still there"


def test_the_canonical_spelling_names_the_job(api: ModuleType, job_id: str) -> None:
    assert call(api, "get_job", job_id)[0] == 200
    assert call(api, "delete_job", job_id)[0] == 204
