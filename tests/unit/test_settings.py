"""Typed settings: the two authentication modes and their algorithms."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.settings import AuthSettings


def test_a_secret_parameter_selects_hs256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")

    assert AuthSettings().jwt_algorithms == ("HS256",)


def jwks_mode(monkeypatch: pytest.MonkeyPatch, url: str = "https://idp.example/.well-known/jwks.json") -> None:
    """JWKS mode as a deployment configures it: the URL, the issuer and the audience."""
    monkeypatch.setenv("JWKS_URL", url)
    monkeypatch.setenv("JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("JWT_AUDIENCE", "jobs-api")


def test_a_jwks_url_selects_rs256_and_wins_over_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")
    jwks_mode(monkeypatch)

    settings = AuthSettings()

    assert settings.jwt_algorithms == ("RS256",)
    assert settings.jwks_url is not None


def test_missing_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET_PARAMETER", raising=False)
    monkeypatch.setenv("JWKS_URL", "")

    with pytest.raises(ValidationError, match=r"JWKS_URL.*JWT_SECRET_PARAMETER"):
        AuthSettings()


@pytest.mark.parametrize(
    ("mode", "algorithms"),
    [("JWT_SECRET_PARAMETER", "RS256"), ("JWKS_URL", "HS256"), ("JWT_SECRET_PARAMETER", "none")],
)
def test_algorithms_that_do_not_fit_the_mode_are_refused(
    monkeypatch: pytest.MonkeyPatch, mode: str, algorithms: str
) -> None:
    monkeypatch.setenv(mode, "/jobs/jwt-secret" if mode == "JWT_SECRET_PARAMETER" else "https://idp.example/jwks")
    monkeypatch.setenv("JWT_ALGORITHMS", algorithms)

    with pytest.raises(ValidationError, match="cannot be used"):
        AuthSettings()


def test_algorithms_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_mode(monkeypatch, "https://idp.example/jwks")
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256, ES256")

    assert AuthSettings().jwt_algorithms == ("RS256", "ES256")


@pytest.mark.parametrize(("variable", "parameter"), [("JWT_ISSUER", "JwtIssuer"), ("JWT_AUDIENCE", "JwtAudience")])
@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_jwks_mode_without_an_issuer_or_an_audience_is_refused_naming_both_names(
    monkeypatch: pytest.MonkeyPatch, variable: str, parameter: str, value: str | None
) -> None:
    jwks_mode(monkeypatch)
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)

    with pytest.raises(
        ValidationError, match=rf"{variable} \(template parameter {parameter}\) is required with JWKS_URL"
    ):
        AuthSettings()


def test_secret_mode_keeps_issuer_and_audience_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")

    settings = AuthSettings()

    assert (settings.jwt_issuer, settings.audiences) == (None, ())


def test_the_audience_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_mode(monkeypatch)
    monkeypatch.setenv("JWT_AUDIENCE", " jobs-api, 4l8k2example-client-id ,,")

    assert AuthSettings().audiences == ("jobs-api", "4l8k2example-client-id")


def test_an_audience_list_of_nothing_but_commas_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")
    monkeypatch.setenv("JWT_AUDIENCE", ", ,")

    with pytest.raises(ValidationError, match=r"JWT_AUDIENCE .* names no audience"):
        AuthSettings()
