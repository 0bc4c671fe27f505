"""Bearer JWT → principal. Tokens are verified inside the function, so the local stack and AWS agree.

Rules: the ``Authorization`` header must be ``Bearer <token>`` (scheme case-insensitive, RFC 9110 section
11.1; RFC 6750 section 2.1); algorithms come from configuration, never from the token's header (RFC 8725
section 3.1); ``exp`` and ``sub`` are required, ``iss`` and ``aud`` are checked when configured; a small,
configurable leeway absorbs clock skew. No token, claim set or secret is ever logged.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any

from jobs import aws
from jobs.models import AuthUnavailable, Unauthenticated
from jobs.observability import logger
from jobs.settings import AuthSettings

if TYPE_CHECKING:
    import jwt
    from aws_lambda_powertools.utilities.parameters import SSMProvider


def pyjwt(*, asymmetric: bool) -> ModuleType:
    """PyJWT, imported on first use; for the HS algorithms, without ``cryptography``.

    PyJWT imports ``cryptography`` whenever it is installed (the layer has it, for JWKS mode), which costs tens
    of milliseconds of cold start that HMAC verification never uses. PyJWT supports running without it (HS
    algorithms only), so when the first import is for a shared secret, ``cryptography`` is hidden from it; a
    sandbox's mode never changes (``AuthSettings`` is read once), and ``AuthSettings`` accepts no asymmetric
    algorithm in secret mode. When something imported PyJWT before, that import stands.
    """
    if asymmetric or "jwt" in sys.modules:
        import jwt

        return jwt
    hidden = _Hidden("cryptography")
    sys.meta_path.insert(0, hidden)
    try:
        import jwt
    finally:
        sys.meta_path.remove(hidden)
    return jwt


class _Hidden:
    """A meta path finder under which a package (and its submodules) cannot be imported."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:  # noqa: ARG002
        if fullname == self.package or fullname.startswith(self.package + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``sub`` (the owner id of every job it touches) and its verified claims."""

    sub: str
    claims: Mapping[str, Any]


#: Whitespace (as ``str.isspace``) or a comma: never inside one token. A regex, not a loop over characters: this
#: runs on every request.
_SPACE_OR_COMMA = re.compile(r"[\s,]")


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
    if scheme.lower() != "bearer" or not token or _SPACE_OR_COMMA.search(token):
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
        self._provider: SSMProvider | None = None

    def __call__(self) -> str:
        """The secret. Raises ``AuthUnavailable`` when SSM cannot give it."""
        from aws_lambda_powertools.utilities import parameters  # imported on first use: it loads boto3

        if self._provider is None:
            # On the process's shared botocore session (jobs.aws), not on a session of its own.
            self._provider = parameters.SSMProvider(boto3_client=aws.client("ssm"))
        try:
            value = self._provider.get(self.name, decrypt=True, max_age=self.max_age)
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
            self._jwks_client = pyjwt(asymmetric=True).PyJWKClient(
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
        jwt = pyjwt(asymmetric=settings.jwks_url is not None)
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
    return str(pyjwt(asymmetric=not algorithm.startswith("HS")).encode(claims, secret, algorithm=algorithm))
