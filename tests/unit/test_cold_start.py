"""What keeps cold starts short: PyJWT without cryptography in secret mode, one botocore session whose loader
parses models into plain dicts and finds a service without listing them all, and the queue-wait metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from jobs import aws
from jobs.models import Job, JobStatus, utc_now
from jobs.observability import metrics, record_queue_wait
from tests.helpers import ROOT, TEST_SECRET

FRESH_INTERPRETER = """
import json, sys, time
from jobs.auth import Authenticator, issue_token
from jobs.settings import AuthSettings
token = issue_token(sys.argv[1], "alice")
authenticator = Authenticator(AuthSettings(JWT_SECRET_PARAMETER="/jobs/jwt-secret"), secret=lambda: sys.argv[1])
principal = authenticator.authenticate("Bearer " + token)
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"sub": principal.sub, "cryptography": "cryptography" in loaded}))
"""


def fresh(code: str, *args: str) -> dict[str, object]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "jobs")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_secret_mode_sandbox_verifies_tokens_without_loading_cryptography() -> None:
    result = fresh(FRESH_INTERPRETER, TEST_SECRET)

    assert result == {"sub": "alice", "cryptography": False}


def test_a_secret_mode_sandbox_that_loaded_cryptography_first_still_verifies_tokens() -> None:
    """The callback keys' route loads cryptography; a token verified after it in the same sandbox must not fail
    on PyJWT's import (regression: hiding the submodules of an imported package broke it, a 500 on every
    authenticated request)."""
    code = "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey\n" + FRESH_INTERPRETER

    assert fresh(code, TEST_SECRET) == {"sub": "alice", "cryptography": True}


def test_jwks_mode_imports_pyjwt_with_cryptography() -> None:
    code = "import json, sys\nfrom jobs.auth import pyjwt\njwt = pyjwt(asymmetric=True)\n"
    code += "print(json.dumps({'rs256': 'RS256' in jwt.algorithms.get_default_algorithms()}))"

    assert fresh(code) == {"rs256": True}


def test_clients_share_one_session_and_know_their_operations() -> None:
    aws.session.cache_clear()

    dynamodb, sqs = aws.client("dynamodb"), aws.client("sqs")

    assert aws.client("dynamodb") is dynamodb
    assert aws.session.cache_info().currsize == 1  # one session made both clients
    assert hasattr(dynamodb, "put_item")
    assert hasattr(sqs, "send_message")


def test_the_loader_finds_a_service_without_listing_all_and_still_rejects_unknown_ones() -> None:
    from botocore.exceptions import UnknownServiceError

    session = aws.session(("test",))

    with pytest.raises(UnknownServiceError, match="dynamodb"):  # the message lists the known services
        session.create_client("no-such-service", region_name="us-east-1")
    loader = session.get_component("data_loader")
    assert "sqs" in loader.list_available_services("service-2")
    assert "no-such-service" not in loader.list_available_services("service-2")
    assert type(loader.load_service_model("sqs", "service-2")) is dict


def test_queue_wait_is_the_time_from_creation_to_the_start_of_the_run() -> None:
    created = utc_now()
    job = Job(
        owner_id="alice",
        job_id="01a226ee-fede-7c74-8f78-130f6101394b",
        title="t",
        type="noop",
        status=JobStatus.RUNNING,
        payload={},
        created_at=created,
        updated_at=created,
        started_at=created + timedelta(seconds=2.5),
    )

    record_queue_wait(job)

    assert metrics.metric_set["QueueWait"]["Value"] == [2.5]
    metrics.clear_metrics()
