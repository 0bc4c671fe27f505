"""The seed's "logging proof", word for word, in the local stack's output for the walkthrough, and found by the
saved Logs Insights queries of template.yaml: each query's ``message like /.../`` pattern is run over the
messages of the stack's JSON lines (Logs Insights patterns are RE2; these use only what Python's ``re`` reads
the same way)."""

from __future__ import annotations

import json
import re

import pytest

from local.template import load_template
from tests.e2e.support import RunningStack, token
from tests.helpers import ROOT, load_event

pytestmark = pytest.mark.e2e

#: The three saved queries, by logical id, and the line each finds (``{sub}``, ``{job_id}``, ``{count}``).
QUERIES = {
    "SeedAuthenticatedQuery": "User {sub} authenticated successfully",
    "SeedListedQuery": "\N{WHITE MEDIUM STAR} Chuck Norris List Job: Retrieved {count} job(s) for user {sub}",
    "SeedRemovedQuery": "\N{WHITE MEDIUM STAR} Chuck Norris Success: Job {job_id} was successfully hit and removed",
}


def query_pattern(logical_id: str) -> re.Pattern[str]:
    """The ``message like /.../`` pattern of one of template.yaml's saved queries."""
    resource = load_template(ROOT / "template.yaml")["Resources"][logical_id]
    assert resource["Type"] == "AWS::Logs::QueryDefinition"
    assert resource["Properties"]["Name"]["Fn::Sub"].startswith("${AWS::StackName}/seed: ")
    assert resource["Properties"]["LogGroupNames"] == [{"Ref": "ApiFunctionLogGroup"}]
    found = re.search(r"\| filter message like /(.+)/\n", resource["Properties"]["QueryString"])
    assert found is not None, resource["Properties"]["QueryString"]
    return re.compile(found.group(1))


def test_the_walkthrough_logs_the_seeds_lines_and_the_saved_queries_find_them(stack: RunningStack) -> None:
    sub = "seed-log-reader"
    job = stack.request("POST", "/api/v1/jobs", token=token(sub), body=load_event("seed-payload.json")).body
    listed = stack.request("GET", "/api/v1/jobs", token=token(sub))
    assert stack.request("DELETE", f"/api/v1/jobs/{job['job_id']}", token=token(sub)).status == 204
    assert listed.status == 200

    records = [json.loads(line) for line in stack.logs().splitlines() if line.startswith("{")]
    messages = [str(r.get("message")) for r in records if r.get("function_name") == "ApiFunction"]
    values = {"sub": sub, "job_id": job["job_id"], "count": 1}
    patterns = {logical_id: query_pattern(logical_id) for logical_id in QUERIES}
    for logical_id, line in QUERIES.items():
        expected = line.format(**values)

        assert expected in messages, f"{expected!r} is not in the stack's output"
        assert patterns[logical_id].search(expected), f"{logical_id} does not find {expected!r}"
        others = [name for name in QUERIES if name != logical_id]
        assert not any(patterns[name].search(expected) for name in others), f"{expected!r} is found by another query"
    seed_words = ("authenticated successfully", "Chuck Norris List Job", "Chuck Norris Success")
    for message in messages:  # no other line of the walkthrough is found by a query
        if not any(word in message for word in seed_words):
            assert not any(pattern.search(message) for pattern in patterns.values()), message
