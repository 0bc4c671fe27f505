"""The local stack evaluates the template's Rules as CloudFormation does before a deploy, and refuses to start
with the parameters a deploy would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from local.ports import free_port
from local.stack import Stack
from local.template import Resolver, UnsupportedTemplate, load_template
from tests.helpers import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
ISSUER_REQUIRED = "JwtIssuer is required when JwksUrl is set"
AUDIENCE_REQUIRED = "JwtAudience is required when JwksUrl is set"


def broken(parameters: dict[str, str], template: dict[str, Any] | None = None) -> list[str]:
    def no_resources(logical_id: str) -> dict[str, str]:
        raise AssertionError(f"a rule reached the resource {logical_id}")

    return Resolver(template or TEMPLATE, "test", no_resources, parameters).broken_rules()


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({}, []),
        ({"JwtIssuer": "https://idp.example"}, []),
        ({"JwksUrl": "https://idp.example/jwks", "JwtIssuer": "https://idp.example", "JwtAudience": "api"}, []),
        ({"JwksUrl": "https://idp.example/jwks", "JwtAudience": "api"}, [ISSUER_REQUIRED]),
        ({"JwksUrl": "https://idp.example/jwks", "JwtIssuer": "https://idp.example"}, [AUDIENCE_REQUIRED]),
        ({"JwksUrl": "https://idp.example/jwks"}, [ISSUER_REQUIRED, AUDIENCE_REQUIRED]),
    ],
    ids=["hs256 defaults", "hs256 with an issuer", "jwks complete", "jwks no issuer", "jwks no aud", "jwks neither"],
)
def test_the_templates_rules_refuse_jwks_mode_without_issuer_and_audience(
    parameters: dict[str, str], refused: list[str]
) -> None:
    found = broken(parameters)

    assert [next(p for p in refused if text.startswith(p)) for text in found] == refused


SIGNING_KEY_SHARED = "WebhookSigningKeyParameterName must be a parameter of its own"


@pytest.mark.parametrize(
    "parameters",
    [
        {"WebhookPublicKeyParameterName": "/chuck-norris-jobs/webhooks/signing-key"},
        {"WebhookSigningKeyParameterName": "/chuck-norris-jobs/webhooks/public-key"},
        {"WebhookSigningKeyParameterName": "/jobs/jwt-secret", "JwtSecretParameterName": "/jobs/jwt-secret"},
    ],
    ids=["public key parameter is the signing key's", "signing key is the public key's", "signing key is the JWT's"],
)
def test_the_templates_rules_refuse_a_signing_key_parameter_the_api_reads(parameters: dict[str, str]) -> None:
    """The API role may read the public key and JWT secret parameters (with the aws/ssm key, which any role of the
    account may decrypt through SSM with): naming the signing key parameter for either hands the API the key."""
    assert [text for text in broken(parameters) if text.startswith(SIGNING_KEY_SHARED)]
    assert broken({}) == []


def rules(rule: Any) -> dict[str, Any]:
    return {**TEMPLATE, "Rules": {"Only": rule}}


def test_a_false_rule_condition_means_the_rule_does_not_apply() -> None:
    rule = {
        "RuleCondition": {"Fn::Equals": ["a", "b"]},
        "Assertions": [{"Assert": {"Fn::Equals": ["a", "b"]}, "AssertDescription": "never"}],
    }

    assert broken({}, rules(rule)) == []


@pytest.mark.parametrize(
    "condition",
    [
        {"Fn::Or": [{"Fn::Equals": ["a", "a"]}]},
        {"Fn::And": [{"Fn::Equals": ["a", "a"]}]},
        {"Fn::Contains": [["a"], "a"]},
        {"Fn::EachMemberEquals": [["a"], "a"]},
        {"Fn::ValueOf": ["JwksUrl", "Tags"]},
        {"Condition": "UseJwtSecret"},
        {"Ref": "JobsTable"},
        {"Fn::Not": [{"Fn::Equals": ["a", "a"]}, {"Fn::Equals": ["a", "a"]}]},
        "not a condition",
    ],
)
def test_a_rule_function_the_local_stack_does_not_emulate_fails_loudly(condition: Any) -> None:
    with pytest.raises(UnsupportedTemplate):
        broken({}, rules({"Assertions": [{"Assert": condition, "AssertDescription": "x"}]}))


def test_the_stack_refuses_to_start_with_the_assertions_description_before_starting_anything() -> None:
    stack = Stack(port=free_port(), aws_port=0, parameter_overrides={"JwksUrl": "https://idp.example/jwks"})
    try:
        with pytest.raises(SystemExit, match=f"{ISSUER_REQUIRED}.*{AUDIENCE_REQUIRED}"):
            stack.start()
        assert stack._moto is None
    finally:
        stack.stop()
