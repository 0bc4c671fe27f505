"""The OpenAPI 3.1 document and the Swagger UI, served by the API function without a token, generated from the
models that validate requests, and committed in docs/openapi.json (which must stay current)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from local.openapi import COMMITTED, generate
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function

ALWAYS = {"401", "422", "429", "500", "503"}
#: Every status each operation may answer; the test fails when the document and this table disagree.
EXPECTED = {
    ("post", "/api/v1/jobs"): ALWAYS | {"201", "400", "409", "413", "415"},
    ("get", "/api/v1/jobs"): ALWAYS | {"200", "400"},
    ("get", "/api/v1/jobs/{job_id}"): ALWAYS | {"200", "404"},
    ("delete", "/api/v1/jobs/{job_id}"): ALWAYS | {"204", "404"},
}


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def public_get(api: ModuleType, path: str) -> dict[str, Any]:
    event = api_event("list_jobs", token=None)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    event.pop("queryStringParameters", None)
    event["rawQueryString"] = ""
    return api.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def document() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_committed_document_is_current() -> None:
    assert generate() == COMMITTED.read_text(encoding="utf-8"), "docs/openapi.json is stale: run make openapi"


def test_the_document_is_served_without_a_token_and_is_the_committed_one(api: ModuleType) -> None:
    response = public_get(api, "/api/v1/openapi.json")

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["body"] == COMMITTED.read_text(encoding="utf-8")


def test_the_swagger_ui_is_served_without_a_token_with_the_document_inline(api: ModuleType) -> None:
    response = public_get(api, "/api/v1/docs")

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html"
    assert "SwaggerUIBundle" in response["body"]
    assert "Chuck Norris Asynchronous Job System" in response["body"]
    assert "https://" not in response["body"].split("<script>")[0], "no assets from a CDN"


def test_it_is_openapi_31_with_the_bearer_scheme_on_every_operation() -> None:
    spec = document()

    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    assert spec["security"] == [{"bearerAuth": []}]


def test_every_operation_documents_every_status_it_answers() -> None:
    spec = document()
    found = {
        (method, path): set(operation["responses"])
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }

    assert found == EXPECTED


def test_every_error_the_function_produces_is_documented_as_problem_json() -> None:
    for operations in document()["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and status != "429":
                    assert response["content"]["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            assert "Retry-After" in operation["responses"]["503"]["headers"]


def test_the_query_and_header_parameters_are_documented() -> None:
    paths = document()["paths"]
    listing = {p["name"]: p for p in paths["/api/v1/jobs"]["get"]["parameters"]}
    create = {p["name"]: p for p in paths["/api/v1/jobs"]["post"]["parameters"]}

    assert set(listing) == {"limit", "next_token", "status"}
    assert listing["limit"]["schema"]["maximum"] == 100
    assert set(create) == {"idempotency-key"}
    assert create["idempotency-key"]["in"] == "header"
