"""Bearer JWT → principal. Tokens are verified inside the function, so the local stack and AWS agree.

Rules: the ``Authorization`` header must be ``Bearer <token>`` (scheme case-insensitive, RFC 9110 section
11.1; RFC 6750 section 2.1); algorithms come from configuration, never from the token's header (RFC 8725
section 3.1); ``exp`` and ``sub`` are required, ``iss`` and ``aud`` are checked when configured (always, in JWKS
mode); a small, configurable leeway absorbs clock skew. No token, claim set or secret is ever logged.

``sub`` follows the identity rule of ``jobs.models`` (``is_owner_id``: 1 to 255 printable ASCII characters, no
space), since it becomes a partition key and travels in every queue message. The audience rule is API Gateway's
JWT authorizer's: ``aud`` (a string or an array) names one of the configured audiences; only a token without
``aud`` may be let in by its ``client_id`` (Cognito's access tokens carry ``client_id``, not ``aud``). A token
refused by a claim rule after its signature was verified says which claim in its challenge; nothing else does.

In JWKS mode, a token's ``alg`` and ``kid`` are checked before any key is looked up, so a forged header never
causes a fetch; an unknown ``kid`` refreshes the key set at most once per cooldown; a fetch is bounded in time
and size, and a key set that cannot be fetched or used is ``AuthUnavailable`` (503), never access.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from jobs import aws
from jobs.models import AuthUnavailable, Unauthenticated, is_owner_id
from jobs.observability import SEED_AUTH_LINE, logger
from jobs.settings import AuthSettings

if TYPE_CHECKING:
    import jwt

#: A ``kid`` this API looks up: printable ASCII, at most this long; anything else is refused unfetched.
_KID = re.compile(r"[!-~]{1,256}")


def pyjwt(*, asymmetric: bool) -> ModuleType:
    """PyJWT, imported on first use; for the HS algorithms, without ``cryptography``.

    PyJWT imports ``cryptography`` whenever it is installed (the layer has it, for JWKS mode), which costs tens
    of milliseconds of cold start that HMAC verification never uses. PyJWT supports running without it (HS
    algorithms only), so when the first import is for a shared secret, ``cryptography`` is hidden from it; a
    sandbox's mode never changes (``AuthSettings`` is read once), and ``AuthSettings`` accepts no asymmetric
    algorithm in secret mode. When something imported PyJWT before, that import stands; when something imported
    ``cryptography`` before (the callback keys' route does), PyJWT imports it too: the cost is paid, and hiding the
    submodules of a package already imported would make PyJWT's ``from cryptography import x509`` an ImportError,
    which PyJWT does not take for an absent ``cryptography``.
    """
    if asymmetric or "jwt" in sys.modules or "cryptography" in sys.modules:
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

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the token grants: its ``scope`` claim (a space-separated string; RFC 8693 section 4.2, RFC
        9068 section 2.2.3), and its ``scp`` claim (a list of strings, or a space-separated string, as some identity
        providers write it); API Gateway's JWT authorizer reads the same two claims ("Controlling access to HTTP
        APIs with JWT authorizers"). A claim of any other shape grants nothing."""
        found: set[str] = set()
        for name in ("scope", "scp"):
            value = self.claims.get(name)
            if isinstance(value, str):
                found.update(value.split(" "))
            elif isinstance(value, list | tuple):  # a JSON array (a tuple once verified: VerifiedTokens)
                found.update(item for item in value if isinstance(item, str))
        found.discard("")
        return frozenset(found)


#: Optional whitespace around a header field value (RFC 9110 section 5.6.3): space and horizontal tab, nothing
#: else. Every header this API reads is trimmed by this one rule.
OWS = " \t"


def header_value(raw: str | None) -> str | None:
    """A header field value without its surrounding optional whitespace; None when absent or empty."""
    if raw is None:
        return None
    return raw.strip(OWS) or None


#: ``Bearer <token68>`` (RFC 9110 section 11.4: the scheme, then one or more spaces; RFC 6750 section 2.1).
_CREDENTIALS = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +([A-Za-z0-9._~+/-]+=*)")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    The one whitespace rule of this API applies: optional whitespace (space, tab) around the value is ignored
    (``OWS``), the scheme is matched case-insensitively and followed by one or more spaces, and the token is
    one run of token68 characters. Anything else is refused: another scheme, other whitespace, a second
    credential (two headers arrive joined by a comma), or characters a token cannot hold.

    Raises:
        Unauthenticated: no header (``missing=True``), another scheme, or a malformed token.
    """
    value = header_value(authorization)
    if value is None:
        raise Unauthenticated("no bearer token", missing=True)
    found = _CREDENTIALS.fullmatch(value)
    if found is None or found.group(1).lower() != "bearer":
        raise Unauthenticated("malformed Authorization header")
    return found.group(2)


class SsmSecret:
    """The HS256 secret, a SecureString in SSM Parameter Store, fetched on first use and cached.

    One ``GetParameter`` with ``WithDecryption`` (SSM API reference, "GetParameter":
    https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html) on the process's SSM
    client (``jobs.aws``), whose value is reused for ``max_age`` seconds, as powertools' parameters utility would
    cache it; that utility imports boto3 (tens of milliseconds of cold start) for a client it never needs here.
    A failed fetch is not cached: the next request tries again.

    Args:
        name: the parameter's name (``/jobs/jwt-secret``).
        max_age: seconds a fetched value is reused before the next fetch.
        clock: ``time.monotonic`` (tests pass another).
    """

    def __init__(self, name: str, max_age: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.max_age = max_age
        self._parameter = aws.SsmParameter(name, max_age, decrypt=True, clock=clock)

    def __call__(self) -> str:
        """The secret.

        Raises:
            AuthUnavailable: SSM cannot give it (any AWS SDK error: throttled, denied, missing, unreachable, out of
                the invocation's time), or it is empty.
        """
        try:
            return self._parameter()
        except aws.ParameterUnavailable as error:
            raise AuthUnavailable(
                "the token secret could not be read" if error.__cause__ else "the token secret is empty"
            ) from error


def _is_numeric_date(value: object) -> bool:
    """A JSON number (RFC 7519 section 2, NumericDate): an int of any size, or a finite float; never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def audience_matches(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> bool:
    """API Gateway's JWT authorizer's audience rule: ``aud`` (a string or an array of strings) names one of
    ``audiences``; only when the token has no ``aud`` claim at all, its ``client_id`` must be one of them.
    A token with a wrong ``aud`` is refused whatever its ``client_id``. Values are compared exactly."""
    if "aud" in claims:
        aud = claims["aud"]
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list | tuple) else []
        return any(isinstance(value, str) and value in audiences for value in values)
    client_id = claims.get("client_id")
    return isinstance(client_id, str) and client_id in audiences


#: How many verified tokens one sandbox remembers (``VerifiedTokens``). A sandbox serves one request at a time, so
#: a few hundred distinct recent callers is plenty.
VERIFIED_TOKENS_SIZE = 256
#: The longest token remembered, characters (identity providers' access tokens are 1 to 2 KB); a longer one is
#: verified on every request. With ``VERIFIED_TOKENS_SIZE`` it bounds the cache: a token of many tiny claims takes
#: about 13 times its length once parsed, so at most about 14 MB, and a few hundred KB for ordinary tokens.
MAX_CACHED_TOKEN_LENGTH = 4096


def _frozen(value: Any) -> Any:
    """A JSON value that cannot be changed at any depth: objects as read-only mappings, arrays as tuples."""
    if isinstance(value, dict):
        return MappingProxyType({name: _frozen(item) for name, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


@dataclass(frozen=True)
class _Verified:
    key: Any
    claims: Mapping[str, Any]
    expires: int
    starts: int | None


class VerifiedTokens:
    """The claims of the tokens this sandbox verified lately, so that a client's next request with the same token
    is not decoded and its signature not checked again (PyJWT's ``decode``: about half of the authentication's
    CPU time in HS256 mode, bench/RESULTS.md section 2; a public-key signature costs more).

    An entry holds the SHA-256 of the token (never the token), the key that verified it and the claims, read-only
    at every depth (arrays as tuples: a request cannot change what the next one reads). It answers
    only while both of these hold; otherwise the token is decoded and verified in full again:

    - the key the token's verification takes now equals that key (compared by value), so a rotated secret or a
      key the identity provider retired stops a cached token exactly when it stops a new one (the secret and the
      key set are themselves cached for ``jwks_cache_seconds``);
    - the time claims PyJWT checked still hold, with the same leeway and the same integer reading:
      ``exp`` > now - leeway, and ``nbf`` and ``iat`` <= now + leeway (RFC 7519 sections 4.1.4 to 4.1.6).

    Only tokens that passed every check are put, and only those of at most ``MAX_CACHED_TOKEN_LENGTH`` characters.
    At most ``size`` are kept; the least recently used goes first.

    Args:
        leeway: seconds of clock skew allowed, as ``AuthSettings.jwt_leeway_seconds``.
        size: how many tokens are kept.
        clock: seconds since the epoch (``time.time``; tests pass another).
    """

    def __init__(self, leeway: float, size: int = VERIFIED_TOKENS_SIZE, clock: Callable[[], float] = time.time) -> None:
        self.leeway = leeway
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, key: Any) -> Mapping[str, Any] | None:
        """The claims of ``token`` when it was verified with ``key`` and its time claims still hold, else None."""
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._entries.get(digest)
        if entry is None:
            return None
        now = self._clock()
        if (
            entry.key != key
            or entry.expires <= now - self.leeway
            or (entry.starts is not None and entry.starts > now + self.leeway)
        ):
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry.claims

    def put(self, token: str, key: Any, claims: Mapping[str, Any]) -> Mapping[str, Any]:
        """Remember that ``token`` verified with ``key`` and has ``claims`` (which hold a numeric ``exp``); returns
        the claims read-only at every depth, as they are kept (and as they are returned for a token too long to
        keep)."""
        kept: Mapping[str, Any] = _frozen(dict(claims))
        if len(token) > MAX_CACHED_TOKEN_LENGTH:
            return kept
        starts = [int(claims[name]) for name in ("nbf", "iat") if name in claims]
        digest = hashlib.sha256(token.encode()).digest()
        self._entries[digest] = _Verified(key, kept, int(claims["exp"]), max(starts) if starts else None)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return kept


#: What a caller is told (RFC 6750 error_description) when a verified token breaks a claim rule. Never a value.
NO_SUB = "the token has no sub claim"
BAD_SUB = "the sub claim is not 1 to 255 printable ASCII characters"
BAD_AUDIENCE = "the aud claim, or client_id when there is no aud, names no audience of this API"
BAD_ISSUER = "the iss claim is missing or not the issuer this API accepts"


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
        self.verified = VerifiedTokens(settings.jwt_leeway_seconds)
        if settings.jwks_url is None and secret is None:
            assert settings.jwt_secret_parameter is not None  # guaranteed by AuthSettings
            self._secret = SsmSecret(settings.jwt_secret_parameter, settings.jwks_cache_seconds)

    @property
    def jwks_client(self) -> jwt.PyJWKClient:
        """The JWKS client, built on first use. The key set is cached for ``jwks_cache_seconds`` (so a key the
        identity provider retires stops working within that time; no per-key cache outlives it), and an unknown
        ``kid`` refreshes it at most once per ``jwks_refresh_cooldown_seconds``."""
        if self._jwks_client is None:
            assert self.settings.jwks_url is not None
            from jobs.jwks import BoundedJWKClient  # JWKS mode only: it imports PyJWT with cryptography

            self._jwks_client = BoundedJWKClient(
                self.settings.jwks_url,
                cache_keys=False,
                lifespan=max(self.settings.jwks_cache_seconds, 1),
                timeout=self.settings.jwks_timeout_seconds,
                cooldown_duration=self.settings.jwks_refresh_cooldown_seconds,
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
            known = self.verified.get(token, key)  # this token, verified with this key, and not expired
            claims = (
                known
                if known is not None
                else jwt.decode(
                    token,
                    key,
                    algorithms=list(settings.jwt_algorithms),
                    issuer=settings.jwt_issuer,
                    leeway=settings.jwt_leeway_seconds,
                    options={
                        "require": ["exp"],
                        # Checked below, after the signature: PyJWT's aud check knows no client_id, and its sub
                        # check takes any string.
                        "verify_aud": False,
                        "verify_sub": False,
                        "verify_iss": settings.jwt_issuer is not None,
                    },
                )
            )
        except jwt.PyJWKClientConnectionError as error:
            raise AuthUnavailable("the JWKS could not be fetched") from error
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token rejected: InvalidIssuerError", description=BAD_ISSUER) from None
        except jwt.MissingRequiredClaimError as error:
            description = BAD_ISSUER if error.claim == "iss" else None
            raise Unauthenticated("token rejected: MissingRequiredClaimError", description=description) from None
        except jwt.PyJWTError as error:  # every PyJWT error class: they all derive from PyJWTError
            raise Unauthenticated(f"token rejected: {type(error).__name__}") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as error:  # a token PyJWT did not foresee
            logger.warning("Token rejected by an unexpected parse error", extra={"error": type(error).__name__})
            raise Unauthenticated(f"token rejected: {type(error).__name__}") from None
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_numeric_date(claims[name]):
                # RFC 7519 section 2: a NumericDate is a JSON number; PyJWT also takes "9999999999" (a string).
                raise Unauthenticated(f"token {name} is not a number")
        if settings.audiences and not audience_matches(claims, settings.audiences):
            raise Unauthenticated("token is not for this audience", description=BAD_AUDIENCE)
        sub = claims.get("sub")
        if sub is None:
            raise Unauthenticated("token has no sub", description=NO_SUB)
        if not is_owner_id(sub):
            raise Unauthenticated("token sub breaks the identity rule", description=BAD_SUB)
        if known is None:
            claims = self.verified.put(token, key, claims)
        logger.info(SEED_AUTH_LINE, sub)
        return Principal(sub=sub, claims=claims)

    def _verification_key(self, token: str) -> Any:
        if self.settings.jwks_url is None:
            assert self._secret is not None
            return self._secret()
        # Look at the unverified header first: a token whose alg is not accepted, or whose kid is not a
        # plausible key id, never reaches the key set (and never causes a fetch).
        jwt = pyjwt(asymmetric=True)
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if header.get("alg") not in self.settings.jwt_algorithms:
            raise jwt.InvalidAlgorithmError("algorithm not accepted")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise jwt.InvalidTokenError("no usable kid")
        signing_key = self.jwks_client.get_signing_key(kid)
        if signing_key.algorithm_name != header["alg"]:
            raise jwt.InvalidAlgorithmError("the key is not for this algorithm")
        return signing_key.key


def issue_token(
    secret: str,
    sub: str,
    *,
    lifetime_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str = "HS256",
    scopes: Sequence[str] = (),
) -> str:
    """A signed HS token for development and tests: ``sub``, ``iat``, ``exp`` (now + lifetime, seconds), and
    ``iss``/``aud`` when given, and ``scope`` (the ``scopes`` space-separated, as RFC 9068 section 2.2.3 writes
    it; ``Principal.scopes`` reads it) when there are any. Production tokens come from the identity provider,
    never from here.

    Raises:
        ValueError: a scope that is empty or holds a space (RFC 6749 section 3.3: a scope-token has none).
    """
    if any(not scope or " " in scope for scope in scopes):
        raise ValueError("a scope is one non-empty word without spaces")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + lifetime_seconds}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if scopes:
        claims["scope"] = " ".join(scopes)
    return str(pyjwt(asymmetric=not algorithm.startswith("HS")).encode(claims, secret, algorithm=algorithm))
