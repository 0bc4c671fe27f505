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


API_WITHOUT_BOTO3 = """
import json, sys
sys.path[:0] = [sys.argv[1]]
import app
from jobs.store import from_attribute_value, to_attribute_value
value = {"n": 9000, "ratio": 0.1, "big": 10**37, "items": [True, None, "x", {"deep": []}]}
item = to_attribute_value(value)
assert from_attribute_value(item) == value, from_attribute_value(item)
app.bootstrap.authenticator()  # builds the SSM secret's reader
loaded = set(sys.modules)
print(json.dumps({name: name in loaded for name in ("boto3", "aws_lambda_powertools.utilities.idempotency",
                                                   "aws_lambda_powertools.utilities.parameters")}))
"""


def test_the_api_function_and_the_store_never_import_boto3() -> None:
    # boto3 (with s3transfer and multiprocessing) and powertools' idempotency package cost some 40 ms of every
    # cold start: the API's clients come from botocore, the store converts values itself, the secret is one
    # GetParameter, and the idempotency utility is loaded by the first request with an Idempotency-Key.
    environment = {"JWT_SECRET_PARAMETER": "/jobs/jwt-secret"}
    code = "import os; os.environ.update(" + json.dumps(environment) + ")\n" + API_WITHOUT_BOTO3

    result = fresh(code, str(ROOT / "functions" / "api"))

    assert result == {
        "boto3": False,
        "aws_lambda_powertools.utilities.idempotency": False,
        "aws_lambda_powertools.utilities.parameters": False,
    }


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 10**38 + 1, object()],
    ids=["nan", "infinity", "39 digits", "object"],
)
def test_a_value_dynamodb_cannot_hold_is_refused_as_boto3_refuses_it(value: object) -> None:
    from decimal import DecimalException

    from boto3.dynamodb.types import TypeSerializer

    from jobs.store import _decimals_in, to_attribute_value

    with pytest.raises((TypeError, DecimalException)) as ours:
        to_attribute_value(value)
    with pytest.raises((TypeError, DecimalException)) as boto3s:
        TypeSerializer().serialize(_decimals_in(value))
    assert type(ours.value) is type(boto3s.value)


def test_values_serialise_exactly_as_boto3_serialises_them() -> None:
    from decimal import Decimal

    from boto3.dynamodb.types import TypeSerializer

    from jobs.store import _decimals_in, to_attribute_value

    value = {
        "s": "text",
        "n": [0, -1, 9000, 10**37, 0.1, -2.5e-100, 1e100, Decimal("1.50")],
        "b": [True, False, None, b"bytes"],
        "m": {"nested": {"list": [[], {}], "tuple": (1, "a")}},
        "sets": [{"a", "b"}, {1, 2}, {b"x"}],
    }

    assert to_attribute_value(value) == TypeSerializer().serialize(_decimals_in(value))


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
