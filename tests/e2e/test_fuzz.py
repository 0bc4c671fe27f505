"""Fuzzing (issue 4, item 10): schemathesis generates requests from the OpenAPI document the running local stack
serves, valid and invalid, with valid tokens for two users, and checks every response: no 5xx, and nothing
that breaks the document (status code, content type, headers, body schema). A fixed number of examples per
operation and derandomised generation keep CI time bounded and runs repeatable."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from tests.e2e.support import StackProcess, running_stack
from tests.helpers import sign

pytestmark = pytest.mark.e2e

SECRET = "fuzz-secret-that-is-long-enough-for-hs256-0123456789"
#: Examples per operation and generation mode (positive, negative): the CI time bound.
MAX_EXAMPLES = 40
USERS = itertools.cycle(["alice", "bob"])
#: Checks that ask for more than "no 5xx, nothing that breaks the document", each at odds with a documented rule:
#: - positive_data_acceptance wants every schema-valid request accepted, but some valid-looking values are
#:   refused by design: a next_token this API did not issue (400), an Idempotency-Key reused with another body
#:   (422), a job type that is not registered (422);
#: - unsupported_method wants 405 for an undeclared method, but API Gateway answers 404 {"message":"Not Found"}
#:   (no route), and the local gateway does the same.
EXCLUDED_CHECKS = [positive_data_acceptance, unsupported_method]
#: Cases run per operation, printed at the end of the module (the figure CI logs).
CASES: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[StackProcess]:
    # On moto's DynamoDB, the stack a machine without java gets; the session's stack covers DynamoDB Local.
    with running_stack(tmp_path_factory.mktemp("fuzz"), secret=SECRET, dynamodb="moto") as stack:
        yield stack
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nschemathesis: {sum(CASES.values())} cases, by operation {CASES}")


#: The document the stack serves; test_the_fuzzed_document_is_the_committed_one checks they are the same text.
#: (Loaded at import because schemathesis's lazy fixture loader does not run on pytest 9.)
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
schema = schemathesis.openapi.from_dict(
    json.loads(COMMITTED.read_text(encoding="utf-8")),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # The harness sends a valid token for one of two users with every request; requests without
                # one, or with bad ones, are the attack table's (tests/integration/test_auth_attacks.py).
                "with-security-parameters": False,
                # Unknown query parameters are ignored by design (a client's cache buster must not fail).
                "allow-extra-parameters": False,
            }
        }
    ),
)


@schema.parametrize()
def test_no_5xx_and_no_response_that_breaks_the_document(case: Any, fuzzed_stack: StackProcess) -> None:
    user = next(USERS)
    CASES[case.operation.label] = CASES.get(case.operation.label, 0) + 1
    token = sign(user, secret=SECRET)
    case.call_and_validate(
        base_url=fuzzed_stack.base_url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=EXCLUDED_CHECKS,
        timeout=15,
    )


def test_the_fuzzed_document_is_the_committed_one(fuzzed_stack: StackProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{fuzzed_stack.base_url}/api/v1/openapi.json", timeout=15) as response:  # noqa: S310
        served = response.read().decode()

    assert served == COMMITTED.read_text(encoding="utf-8")
