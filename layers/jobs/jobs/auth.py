"""Bearer JWT → principal. Tokens are verified inside the function, so the local stack and AWS agree.

Rules: the ``Authorization`` header must be ``Bearer <token>`` (scheme case-insensitive, RFC 9110 section
11.1; RFC 6750 section 2.1); algorithms come from configuration, never from the token's header (RFC 8725
section 3.1); ``exp`` and ``sub`` are required, ``iss`` and ``aud`` are checked when configured; a small,
configurable leeway absorbs clock skew. No token, claim set or secret is ever logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from jobs.models import AuthUnavailable, Unauthenticated
from jobs.observability import logger
from jobs.settings import AuthSettings


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``sub`` (the owner id of every job it touches) and its verified claims."""

    sub: str
    claims: Mapping[str, Any]


#: Optional whitespace around a header field value (RFC 9110 section 5.6.3): space and horizontal tab, nothing
#: else. Every header this API reads is trimmed by this one rule.
OWS = " \t"


def header_value(raw: str | None) -> str | None:
    """A header field value without its surrounding optional whitespace; None when absent or empty."""
    if raw is None:
        return None
    return raw.strip(OWS) or None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Surrounding whitespace is ignored; the scheme is matched case-insensitively; the token itself must be
    one run of token68 characters (RFC 6750 section 2.1), so two headers joined by a comma never parse.

    Raises:
        Unauthenticated: no header (``missing=True``), another scheme, or a malformed token.
    """
    if authorization is None or not authorization.strip():
        raise Unauthenticated("no bearer token", missing=True)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(ch.isspace() or ch == "," for ch in token):
        raise Unauthenticated("malformed Authorization header")
    return token


class SsmSecret:
    """The HS256 secret, a SecureString in SSM Parameter Store, fetched on first use and cached.

    Args:
        name: the parameter's name (``/jobs/jwt-secret``).
        max_age: seconds a fetched value is reused before the next fetch (powertools parameters cache).
    """

    def __init__(self, name: str, max_age: int) -> None:
        self.name = name
        self.max_age = max_age

    def __call__(self) -> str:
        """The secret. Raises ``AuthUnavailable`` when SSM cannot give it."""
        from aws_lambda_powertools.utilities import parameters  # imported on first use: it loads boto3

        try:
            value = parameters.get_parameter(self.name, decrypt=True, max_age=self.max_age)
        except parameters.exceptions.GetParameterError as error:
            raise AuthUnavailable("the token secret could not be read") from error
        if not value:
            raise AuthUnavailable("the token secret is empty")
        return str(value)


class Authenticator:
    """Verifies bearer tokens according to ``AuthSettings``.

    Args:
        settings: the verification rules.
        secret: returns the shared secret (HS mode); ``SsmSecret`` from the settings when omitted.
        jwks_client: a ``jwt.PyJWKClient`` (JWKS mode); built from the settings when omitted.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        secret: Callable[[], str] | None = None,
        jwks_client: jwt.PyJWKClient | None = None,
    ) -> None:
        self.settings = settings
        self._secret = secret
        self._jwks_client = jwks_client
        if settings.jwks_url is None and secret is None:
            assert settings.jwt_secret_parameter is not None  # guaranteed by AuthSettings
            self._secret = SsmSecret(settings.jwt_secret_parameter, settings.jwks_cache_seconds)

    @property
    def jwks_client(self) -> jwt.PyJWKClient:
        """The JWKS client, built on first use; keys are cached for ``jwks_cache_seconds``."""
        if self._jwks_client is None:
            assert self.settings.jwks_url is not None
            self._jwks_client = jwt.PyJWKClient(
                self.settings.jwks_url,
                cache_keys=True,
                lifespan=max(self.settings.jwks_cache_seconds, 1),
                timeout=self.settings.jwks_timeout_seconds,
            )
        return self._jwks_client

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a request's ``Authorization`` header value.

        Raises:
            Unauthenticated: no token, or a token that fails any check.
            AuthUnavailable: the JWKS or the secret could not be fetched (a 503, never access).
        """
        token = bearer_token(authorization)
        settings = self.settings
        try:
            key = self._verification_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(settings.jwt_algorithms),
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": settings.jwt_audience is not None,
                    "verify_iss": settings.jwt_issuer is not None,
                },
            )
        except jwt.PyJWKClientConnectionError as error:
            raise AuthUnavailable("the JWKS could not be fetched") from error
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"token rejected: {type(error).__name__}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise Unauthenticated("token has no usable sub")
        logger.info("User %s authenticated successfully", sub)
        return Principal(sub=sub, claims=claims)

    def _verification_key(self, token: str) -> Any:
        if self.settings.jwks_url is not None:
            return self.jwks_client.get_signing_key_from_jwt(token).key
        assert self._secret is not None
        return self._secret()


def issue_token(
    secret: str,
    sub: str,
    *,
    lifetime_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """A signed HS token for development and tests: ``sub``, ``iat``, ``exp`` (now + lifetime, seconds), and
    ``iss``/``aud`` when given. Production tokens come from the identity provider, never from here."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + lifetime_seconds}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=algorithm)
