"""Typed settings: the two authentication modes and their algorithms."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.settings import AuthSettings


def test_a_secret_parameter_selects_hs256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")

    assert AuthSettings().jwt_algorithms == ("HS256",)


def test_a_jwks_url_selects_rs256_and_wins_over_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/jobs/jwt-secret")
    monkeypatch.setenv("JWKS_URL", "https://idp.example/.well-known/jwks.json")

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
    monkeypatch.setenv("JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256, ES256")

    assert AuthSettings().jwt_algorithms == ("RS256", "ES256")
