"""The OpenAPI 3.1 document and the Swagger UI, served by the API function without a token, generated from the
models that validate requests, and committed in docs/openapi.json (which must stay current)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from datetime import datetime
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from openapi_spec_validator import validate

import jobs.http
from jobs import examples
from jobs.http import ERROR_RESPONSES
from jobs.models import (
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    MAX_REQUEST_BYTES,
    MAX_TITLE_LENGTH,
    IdempotencyInProgress,
    Job,
    JobFinished,
    JobStatus,
    ServiceUnavailable,
)
from jobs.processors import BUILT_IN_TYPES, quarterly_audit
from jobs.settings import auth_settings
from local.openapi import COMMITTED, generate
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_event, load_function, sign

ALWAYS = {"401", "422", "429", "500", "503"}
#: Every status each operation may answer; the test fails when the document and this table disagree.
EXPECTED = {
    ("post", "/api/v1/jobs"): ALWAYS | {"201", "400", "403", "409", "413", "415"},
    ("get", "/api/v1/jobs"): ALWAYS | {"200", "400"},
    ("get", "/api/v1/jobs/{job_id}"): ALWAYS | {"200", "404"},
    ("delete", "/api/v1/jobs/{job_id}"): ALWAYS | {"204", "404"},
    ("post", "/api/v1/jobs/{job_id}/cancel"): ALWAYS | {"200", "404", "409"},
    # Public, without input: no 401, no 422.
    ("get", "/api/v1/webhooks/public-key"): {"200", "429", "500", "503"},
}


@pytest.fixture
def api(aws: Aws) -> ModuleType:
    return load_function("api")


def public_get(
    api: ModuleType, path: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    event = api_event("list_jobs", token=None, query=query)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    if query is None:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    event["headers"].update(headers or {})
    return api.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def body_of(response: dict[str, Any]) -> bytes:
    """A response's body as API Gateway sends it (base64 decoded)."""
    return base64.b64decode(response["body"]) if response["isBase64Encoded"] else response["body"].encode()


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
    head = response["body"].split("</head>")[0]

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html"
    assert "SwaggerUIBundle" in response["body"]
    assert "<title>Chuck Norris Asynchronous Job System: API</title>" in head
    assert '<link rel="icon" href="data:,">' in head  # the browser asks no /favicon.ico (a 404: no such route)
    assert "no-store" not in head
    assert "https://" not in response["body"].split("<script>")[0], "no assets from a CDN"


def test_the_pages_spec_link_serves_the_document(api: ModuleType) -> None:
    page = public_get(api, "/api/v1/docs")["body"]
    link = re.search(r'updateUrl\(currentUrl\.pathname \+ "\?(\w+)=(\w+)"\)', page)
    assert link is not None, "Swagger UI's spec link is this path with a query"

    followed = public_get(api, "/api/v1/docs", query={link.group(1): link.group(2)})

    assert followed["statusCode"] == 200
    assert followed["headers"]["Content-Type"] == "application/json"
    assert followed["body"] == COMMITTED.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/openapi.json"])
@pytest.mark.parametrize("encoding", ["gzip", "gzip, deflate, br, zstd", "br;q=1, gzip;q=0.5", "*", "x-gzip"])
def test_the_description_is_gzipped_for_clients_that_take_it(api: ModuleType, path: str, encoding: str) -> None:
    plain = public_get(api, path)
    compressed = public_get(api, path, {"accept-encoding": encoding})

    assert compressed["isBase64Encoded"] is True
    assert compressed["headers"]["Content-Encoding"] == "gzip"
    assert gzip.decompress(body_of(compressed)) == body_of(plain)
    assert len(body_of(compressed)) < len(body_of(plain)) / 3
    assert compressed["headers"]["Vary"] == plain["headers"]["Vary"] == "Accept-Encoding"


@pytest.mark.parametrize("encoding", ["", "identity", "deflate, br", "gzip;q=0", "*;q=0", "gzip;q=0, *", "gzip;q=x"])
def test_the_description_is_sent_plain_to_clients_that_do_not_take_gzip(api: ModuleType, encoding: str) -> None:
    response = public_get(api, "/api/v1/docs", {"accept-encoding": encoding})

    assert response["isBase64Encoded"] is False
    assert "Content-Encoding" not in response["headers"]


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/openapi.json"])
def test_the_description_is_cached_and_revalidated_with_its_etag(api: ModuleType, path: str) -> None:
    first = public_get(api, path)
    etag = first["headers"]["ETag"]

    for if_none_match in (etag, etag.removeprefix("W/"), f'"other", {etag}', "*"):
        again = public_get(api, path, {"if-none-match": if_none_match, "accept-encoding": "gzip"})
        assert (again["statusCode"], again["body"]) == (304, None)
        assert again["headers"]["ETag"] == etag
        assert again["headers"]["Cache-Control"] == first["headers"]["Cache-Control"] == "public, max-age=300"
    assert public_get(api, path, {"if-none-match": '"other"'})["statusCode"] == 200
    assert public_get(api, path)["headers"]["ETag"] == etag  # the same body, the same tag


def test_the_description_is_built_once_per_function_instance(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    public_get(api, "/api/v1/docs")
    calls: list[str] = []

    def counted(document: str) -> str:
        calls.append(document)
        return ""

    monkeypatch.setattr(jobs.http, "swagger_html", counted)

    public_get(api, "/api/v1/docs")
    public_get(api, "/api/v1/openapi.json")

    assert calls == []


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


#: The statuses API Gateway itself may answer (its own {"message"} body), on every route.
GATEWAY_STATUSES = {"404", "429", "500", "503"}


def test_every_error_body_is_documented_so_that_one_parser_reads_it() -> None:
    """A generator reads one media type per status: where the function and API Gateway both answer a status,
    every media type carries the schema of either body (ErrorBody)."""
    for operations in document()["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                schemas = {json.dumps(entry["schema"]) for entry in response["content"].values()}
                expected = {
                    (True, True): {"ErrorBody"},
                    (True, False): {"Problem"},
                    (False, True): {"GatewayError"},
                }[("application/problem+json" in response["content"], "application/json" in response["content"])]
                assert schemas == {json.dumps({"$ref": f"#/components/schemas/{name}"}) for name in expected}
                assert ("application/json" in response["content"]) == (status in GATEWAY_STATUSES)
            if operation.get("security") != []:  # a public route answers no 401
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            assert "Retry-After" in operation["responses"]["503"]["headers"]


def test_every_example_fits_its_schema() -> None:
    spec = document()
    found = 0
    for operations in spec["paths"].values():
        for operation in operations.values():
            media = [*operation.get("requestBody", {}).get("content", {}).values()]
            media += [
                entry for answer in operation["responses"].values() for entry in answer.get("content", {}).values()
            ]
            for entry in media:
                for example in entry["examples"].values():
                    jsonschema.validate(example["value"], {**entry["schema"], "components": spec["components"]})
                    found += 1
    assert found >= 20


def test_the_document_validates_as_openapi_31() -> None:
    validate(document())  # raises on any error


def test_operations_have_short_ids_and_the_jobs_tag() -> None:
    paths = document()["paths"]
    ids = {(method, path): operation["operationId"] for path, ops in paths.items() for method, operation in ops.items()}

    assert ids == {
        ("post", "/api/v1/jobs"): "createJob",
        ("get", "/api/v1/jobs"): "listJobs",
        ("get", "/api/v1/jobs/{job_id}"): "getJob",
        ("delete", "/api/v1/jobs/{job_id}"): "deleteJob",
        ("post", "/api/v1/jobs/{job_id}/cancel"): "cancelJob",
        ("get", "/api/v1/webhooks/public-key"): "getWebhookPublicKeys",
    }
    tags = {path: op["tags"] for path, ops in paths.items() for op in ops.values()}
    assert tags.pop("/api/v1/webhooks/public-key") == ["webhooks"]
    assert all(tag == ["jobs"] for tag in tags.values())
    assert [tag["name"] for tag in document()["tags"]] == ["jobs", "webhooks"]


def test_ids_are_uuids_times_date_times_and_only_the_request_lists_job_types() -> None:
    schemas = document()["components"]["schemas"]
    job = schemas["Job"]["properties"]

    assert job["job_id"]["format"] == "uuid"
    assert {name for name, p in job.items() if "date-time" in json.dumps(p)} == {
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "cancel_requested_at",
        "not_before",
    }
    assert schemas["JobCreate"]["properties"]["not_before"]["anyOf"][0]["format"] == "date-time"
    assert schemas["JobPriority"]["enum"] == ["HIGH", "NORMAL", "LOW"]
    # A job's priority stays open to levels added later, as its status does; a request names a known one.
    assert {"type": "string", "description": "A priority added after this document."} in job["priority"]["anyOf"]
    assert schemas["JobCreate"]["properties"]["priority"]["anyOf"] == [
        {"$ref": "#/components/schemas/JobPriority"},
        {"type": "null"},
    ]
    assert schemas["JobCreate"]["properties"]["type"]["enum"] == sorted(BUILT_IN_TYPES)
    assert "enum" not in job["type"]  # a type added later never breaks an older client
    for path in ("/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/cancel"):
        for operation in document()["paths"][path].values():
            assert operation["parameters"][0]["schema"]["format"] == "uuid"


def test_descriptions_state_numbers_and_no_storage_details() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    descriptions = re.findall(r'"description": "((?:[^"\\]|\\.)*)"', text)

    assert descriptions
    for description in descriptions:
        assert not re.search(r"\b[A-Z]+_[A-Z_]+\b", description), description  # no Python constant names
        assert "``" not in description, description
        for word in ("partition", "DynamoDB item", "owner_id", "sort key"):
            assert word not in description, description
    create = document()["components"]["schemas"]["JobCreate"]["properties"]
    assert f"1 to {MAX_TITLE_LENGTH} characters" in create["title"]["description"]
    assert f"{MAX_PAYLOAD_DEPTH} levels deep and {MAX_PAYLOAD_BYTES} bytes" in create["payload"]["description"]


def test_optional_parameters_have_one_type() -> None:
    for operations in document()["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert "anyOf" not in parameter["schema"], parameter


def test_the_request_example_is_the_seed_and_the_audit_example_is_what_the_report_computes() -> None:
    body = document()["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    job = Job.model_validate({**examples.QUEUED_JOB, "owner_id": "alice"})
    running = job.model_copy(
        update={"status": JobStatus.RUNNING, "started_at": parse(examples.SUCCEEDED_JOB["started_at"])}
    )

    assert body["examples"]["seed"]["value"] == load_event("seed-payload.json")
    assert examples.SUCCEEDED_JOB["result"] == quarterly_audit(running, [running])
    for example in (examples.QUEUED_JOB, examples.SUCCEEDED_JOB):
        assert Job.model_validate({**example, "owner_id": "alice"}).model_dump(mode="json") == example


def test_the_query_and_header_parameters_are_documented() -> None:
    paths = document()["paths"]
    listing = {p["name"]: p for p in paths["/api/v1/jobs"]["get"]["parameters"]}
    create = {p["name"]: p for p in paths["/api/v1/jobs"]["post"]["parameters"]}

    assert set(listing) == {"limit", "next_token", "status"}
    assert listing["limit"]["schema"]["maximum"] == 100
    assert set(create) == {"Idempotency-Key"}  # as documented; API Gateway sends it lowercased
    assert create["Idempotency-Key"]["in"] == "header"


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_error_examples_are_the_bodies_the_api_sends(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = sign("alice")
    # A deployment that names a scope for HIGH jobs (HighPriorityScope), and a token without it.
    monkeypatch.setenv("JOBS_HIGH_PRIORITY_SCOPE", "jobs/priority.high")
    auth_settings.cache_clear()
    text = api_event("create_job", token=alice, raw_body="title=x")
    text["headers"]["content-type"] = "text/plain"
    requests = {
        (400, "notJson"): api_event("create_job", token=alice, raw_body="{"),
        (400, "foreignNextToken"): api_event("list_jobs", token=alice, query={"next_token": "not-issued"}),
        (401, "noToken"): api_event("list_jobs", token=None),
        (403, "highPriority"): api_event("create_job", token=sign("alice", scope="jobs/read jobs/write")),
        (404, "noSuchJob"): api_event("get_job", token=alice, job_id=examples.SEED_JOB_ID),
        (413, "tooLarge"): api_event("create_job", token=alice, raw_body=" " * (MAX_REQUEST_BYTES + 1)),
        (415, "notJson"): text,
        (422, "emptyTitle"): api_event("create_job", token=alice, body={"title": " "}),
        (422, "unknownType"): api_event("create_job", token=alice, body={"title": "x", "type": "roundhouse"}),
    }
    from_the_table = {
        (409, "inProgress"): ERROR_RESPONSES[IdempotencyInProgress](IdempotencyInProgress("in progress")),
        (409, "jobFinished"): ERROR_RESPONSES[JobFinished](JobFinished(examples.SEED_JOB_ID, "SUCCEEDED")),
        (500, "unexpected"): ERROR_RESPONSES[Exception](RuntimeError("boom")),
        (503, "busy"): ERROR_RESPONSES[ServiceUnavailable](ServiceUnavailable("throttled")),
    }
    try:
        sent = {key: api.lambda_handler(event, FakeLambdaContext()) for key, event in requests.items()}
    finally:
        auth_settings.cache_clear()  # the next test reads the environment as monkeypatch restores it
    sent |= {key: {"statusCode": r.status_code, "body": r.body} for key, r in from_the_table.items()}

    assert set(sent) == {(status, name) for status, bodies in examples.PROBLEMS.items() for name in bodies}
    for (status, name), response in sent.items():
        assert (response["statusCode"], json.loads(response["body"])) == (status, examples.PROBLEMS[status][name])
