"""Bearer tokens in HS256 mode: what is accepted, what is refused, and what is logged."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from jobs.auth import MAX_CACHED_TOKEN_LENGTH, Authenticator, VerifiedTokens, bearer_token, issue_token
from jobs.models import AuthUnavailable, Unauthenticated
from jobs.settings import AuthSettings
from tests.helpers import BAD_SUBS, GOOD_SUBS, TEST_SECRET, sign, sign_sub


def authenticator(**settings: object) -> Authenticator:
    config = AuthSettings.model_validate({"JWT_SECRET_PARAMETER": "/jobs/jwt-secret", **settings})
    return Authenticator(config, secret=lambda: TEST_SECRET)


def test_a_valid_token_gives_its_subject() -> None:
    principal = authenticator().authenticate(f"Bearer {sign('alice')}")

    assert principal.sub == "alice"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_scheme_is_matched_case_insensitively(scheme: str) -> None:
    assert authenticator().authenticate(f"  {scheme}   {sign('alice')}  ").sub == "alice"


def test_no_header_is_a_missing_credential() -> None:
    with pytest.raises(Unauthenticated) as raised:
        bearer_token(None)

    assert raised.value.missing


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", f"Bearer {sign()}, Bearer {sign()}", "Bearer a b"],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(Unauthenticated):
        authenticator().authenticate(header)


def _unsigned(claims: dict[str, object]) -> str:
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("expired", lambda: sign(exp=int(time.time()) - 3600)),
        ("no exp", lambda: sign(exp=None)),
        ("no sub", lambda: sign(None)),
        ("empty sub", lambda: sign("")),
        ("blank sub", lambda: sign("   ")),
        ("wrong secret", lambda: sign(secret="another-secret-of-at-least-thirty-two-bytes")),
        ("alg none", lambda: _unsigned({"sub": "alice", "exp": int(time.time()) + 60})),
        ("HS512 while HS256 is pinned", lambda: sign(algorithm="HS512")),
        ("future nbf", lambda: sign(nbf=int(time.time()) + 3600)),
        ("garbage", lambda: "not.a.token"),
    ],
)
def test_bad_tokens_are_refused(case: str, token: object) -> None:
    with pytest.raises(Unauthenticated):
        authenticator().authenticate(f"Bearer {token()}")  # type: ignore[operator]


def test_issuer_and_audience_are_checked_when_configured() -> None:
    strict = authenticator(JWT_ISSUER="https://issuer.example", JWT_AUDIENCE="jobs-api")

    assert strict.authenticate(f"Bearer {sign(iss='https://issuer.example', aud='jobs-api')}").sub == "alice"
    for token in (sign(iss="https://evil.example", aud="jobs-api"), sign(iss="https://issuer.example"), sign()):
        with pytest.raises(Unauthenticated):
            strict.authenticate(f"Bearer {token}")


def test_small_clock_skew_is_tolerated_by_the_leeway() -> None:
    token = sign(exp=int(time.time()) - 5)

    assert authenticator(JWT_LEEWAY_SECONDS=30).authenticate(f"Bearer {token}").sub == "alice"
    with pytest.raises(Unauthenticated):
        authenticator(JWT_LEEWAY_SECONDS=0).authenticate(f"Bearer {token}")


def test_success_is_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = sign("alice")

    authenticator().authenticate(f"Bearer {token}")

    output = caplog.text
    assert "User alice authenticated successfully" in output
    assert token not in output
    assert TEST_SECRET not in output


def _every_pyjwt_error_class() -> list[type[jwt.PyJWTError]]:
    found: list[type[jwt.PyJWTError]] = []
    pending: list[type[jwt.PyJWTError]] = [jwt.PyJWTError]
    while pending:
        error_class = pending.pop()
        found.append(error_class)
        pending.extend(error_class.__subclasses__())
    return sorted(set(found), key=lambda c: c.__name__)


def test_the_error_class_list_is_complete() -> None:
    names = {c.__name__ for c in _every_pyjwt_error_class()}

    assert {name for name in dir(jwt.exceptions) if name.endswith("Error")} <= names
    assert len(names) >= 19


@pytest.mark.parametrize("error_class", _every_pyjwt_error_class(), ids=lambda c: c.__name__)
def test_every_pyjwt_error_class_is_a_401_or_for_an_unreachable_jwks_a_503(
    error_class: type[jwt.PyJWTError], monkeypatch: pytest.MonkeyPatch
) -> None:
    error = error_class("exp") if error_class is jwt.MissingRequiredClaimError else error_class("boom")

    def failing(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(jwt, "decode", failing)
    expected = AuthUnavailable if issubclass(error_class, jwt.PyJWKClientConnectionError) else Unauthenticated

    with pytest.raises(expected):
        authenticator().authenticate(f"Bearer {sign('alice')}")


@pytest.mark.parametrize("error", [ValueError("x"), TypeError("x"), OverflowError("x"), RecursionError("x")])
def test_a_parse_error_pyjwt_did_not_foresee_is_a_401_not_a_500(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(jwt, "decode", failing)

    with pytest.raises(Unauthenticated):
        authenticator().authenticate(f"Bearer {sign('alice')}")


# --- The identity rule: sub is 1 to 255 printable ASCII characters without space (jobs.models.is_owner_id) ---


@pytest.mark.parametrize(("case", "sub"), BAD_SUBS, ids=[case for case, _ in BAD_SUBS])
def test_a_sub_that_breaks_the_identity_rule_is_refused_naming_the_claim(case: str, sub: object) -> None:
    with pytest.raises(Unauthenticated) as raised:
        authenticator().authenticate(f"Bearer {sign_sub(sub)}")

    assert raised.value.description is not None
    assert "sub claim" in raised.value.description
    assert not raised.value.missing


@pytest.mark.parametrize(("case", "sub"), GOOD_SUBS, ids=[case for case, _ in GOOD_SUBS])
def test_a_sub_at_the_edges_of_the_identity_rule_is_accepted_exactly(case: str, sub: str) -> None:
    assert authenticator().authenticate(f"Bearer {sign_sub(sub)}").sub == sub


def test_a_lone_surrogate_sub_is_minted_as_an_ascii_escape_and_decoded_back_as_itself() -> None:
    token = issue_token(TEST_SECRET, "al\ud800ice")

    assert jwt.decode(token, TEST_SECRET, algorithms=["HS256"])["sub"] == "al\ud800ice"


def test_a_refused_sub_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    sub = "mallory " + "x" * 300

    with pytest.raises(Unauthenticated):
        authenticator().authenticate(f"Bearer {sign_sub(sub)}")

    assert "mallory" not in caplog.text


def test_a_refusal_by_a_claim_rule_tells_no_value_and_fits_rfc_6750() -> None:
    token = sign_sub('a"b\\c d')

    with pytest.raises(Unauthenticated) as raised:
        authenticator().authenticate(f"Bearer {token}")

    assert raised.value.description == "the sub claim is not 1 to 255 printable ASCII characters"


def test_an_error_description_outside_rfc_6750_cannot_be_made() -> None:
    for text in ('say "hi"', "back\\slash", "caf\u00e9", "line\nbreak"):
        with pytest.raises(ValueError, match="RFC 6750"):
            Unauthenticated("x", description=text)


# --- HS256 mode: issuer and audience optional, and when set the same audience rule as JWKS mode ---------------


def test_without_an_audience_configured_any_aud_or_none_is_accepted() -> None:
    for token in (sign(), sign(aud="another-api"), sign(aud=["x", "y"])):
        assert authenticator().authenticate(f"Bearer {token}").sub == "alice"


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"aud": "jobs-api"}, True),
        ({"aud": "web-client"}, True),
        ({"aud": ["another-api", "web-client"]}, True),
        ({"client_id": "web-client"}, True),
        ({"aud": "another-api", "client_id": "web-client"}, False),
        ({"aud": [], "client_id": "jobs-api"}, False),
        ({"client_id": "another-client"}, False),
        ({}, False),
    ],
    ids=[
        "aud",
        "second aud",
        "aud array",
        "client_id without aud",
        "wrong aud right client_id",
        "empty aud",
        "x",
        "none",
    ],
)
def test_a_configured_audience_list_follows_the_api_gateway_rule(claims: dict[str, Any], accepted: bool) -> None:
    auth = authenticator(JWT_AUDIENCE="jobs-api,web-client")
    header = f"Bearer {sign(**claims)}"

    if accepted:
        assert auth.authenticate(header).sub == "alice"
    else:
        with pytest.raises(Unauthenticated, match="audience"):
            auth.authenticate(header)


def test_the_ssm_secret_is_fetched_once_per_max_age_and_a_failure_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws

    from jobs import aws
    from jobs.auth import SsmSecret

    now = [1000.0]
    with mock_aws():
        ssm = boto3.client("ssm")
        secret = SsmSecret("/jobs/jwt-secret", max_age=300, clock=lambda: now[0])
        with pytest.raises(AuthUnavailable, match="could not be read"):  # no parameter yet
            secret()
        ssm.put_parameter(Name="/jobs/jwt-secret", Value="first", Type="SecureString")
        assert secret() == "first"  # the failure was not cached
        ssm.put_parameter(Name="/jobs/jwt-secret", Value="second", Type="SecureString", Overwrite=True)
        now[0] += 299
        assert secret() == "first"  # still within max_age: no call
        now[0] += 1
        assert secret() == "second"
        monkeypatch.setattr(aws.client("ssm"), "get_parameter", lambda **_: {"Parameter": {"Value": ""}})
        now[0] += 300
        with pytest.raises(AuthUnavailable, match="empty"):
            secret()


# --- verified tokens: a repeated token is not decoded again, and never outlives its key or its exp ----------


class Decodes:
    """Counts PyJWT's decodes, passing each on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = jwt.decode

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counted)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def cached(secret: list[str], clock: Clock, *, leeway: int = 10, size: int = 1024) -> Authenticator:
    config = AuthSettings.model_validate({"JWT_SECRET_PARAMETER": "/jobs/jwt-secret", "JWT_LEEWAY_SECONDS": leeway})
    found = Authenticator(config, secret=lambda: secret[0])
    found.verified = VerifiedTokens(leeway, size=size, clock=clock)
    return found


def test_a_repeated_token_is_decoded_once_and_still_logged_each_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decodes = Decodes(monkeypatch)
    auth = cached([TEST_SECRET], Clock())
    token = sign("alice", scope="jobs:high")

    first = auth.authenticate(f"Bearer {token}")
    again = auth.authenticate(f"Bearer {token}")

    assert decodes.count == 1
    assert again == first
    assert again.sub == "alice"
    assert again.scopes == {"jobs:high"}
    assert [r.getMessage() for r in caplog.records].count("User alice authenticated successfully") == 2


def test_a_cached_token_is_verified_in_full_again_once_its_exp_passes_the_leeway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decodes = Decodes(monkeypatch)
    clock = Clock()
    auth = cached([TEST_SECRET], clock, leeway=10)
    exp = int(clock.now) + 60
    token = sign("alice", exp=exp)
    auth.authenticate(f"Bearer {token}")

    clock.now = exp + 9.5  # inside the leeway: still the cached answer
    assert auth.authenticate(f"Bearer {token}").sub == "alice"
    assert decodes.count == 1
    clock.now = exp + 10  # PyJWT's rule: exp <= now - leeway is expired; PyJWT's own clock then decides
    assert auth.verified.get(token, TEST_SECRET) is None
    assert len(auth.verified) == 0
    auth.authenticate(f"Bearer {token}")
    assert decodes.count == 2


def test_a_cached_token_whose_nbf_or_iat_is_ahead_of_a_clock_set_back_is_verified_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decodes = Decodes(monkeypatch)
    clock = Clock()
    auth = cached([TEST_SECRET], clock, leeway=10)
    now = int(clock.now)
    for claim in ("nbf", "iat"):
        token = sign("alice", nbf=now) if claim == "nbf" else sign("alice", iat=now)
        auth.authenticate(f"Bearer {token}")
        auth.authenticate(f"Bearer {token}")  # cached
        clock.now = now - 11  # the clock went back past the leeway: PyJWT decides again
        auth.authenticate(f"Bearer {token}")
        clock.now = now
    assert decodes.count == 4


def test_a_rotated_secret_stops_a_cached_token_at_once() -> None:
    secret = [TEST_SECRET]
    auth = cached(secret, Clock())
    token = sign("alice")
    auth.authenticate(f"Bearer {token}")

    secret[0] = "a-rotated-secret-of-at-least-thirty-two-bytes"
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {token}")
    assert auth.authenticate(f"Bearer {sign('alice', secret=secret[0])}").sub == "alice"


def test_a_token_changed_in_one_character_is_never_served_from_the_cache() -> None:
    auth = cached([TEST_SECRET], Clock())
    token = sign("alice")
    auth.authenticate(f"Bearer {token}")
    last = token[-1]
    forged = token[:-1] + ("A" if last != "A" else "B")

    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {forged}")


def test_refused_tokens_are_never_kept() -> None:
    auth = cached([TEST_SECRET], Clock())
    strict = authenticator(JWT_AUDIENCE="jobs-api")
    for token in (sign("alice", secret="another-secret-of-at-least-thirty-two-bytes"), sign(None), sign("al ice")):
        for each in (auth, strict):
            with pytest.raises(Unauthenticated):
                each.authenticate(f"Bearer {token}")
    with pytest.raises(Unauthenticated):
        strict.authenticate(f"Bearer {sign('alice', aud='another-api')}")
    assert len(auth.verified) == len(strict.verified) == 0


def test_the_cache_keeps_the_most_recently_used_tokens_only(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = cached([TEST_SECRET], Clock(), size=3)
    tokens = [sign(f"user-{n}") for n in range(4)]
    for token in tokens[:3]:
        auth.authenticate(f"Bearer {token}")
    auth.authenticate(f"Bearer {tokens[0]}")  # used again: the least recently used is now user-1
    auth.authenticate(f"Bearer {tokens[3]}")

    decodes = Decodes(monkeypatch)
    for token in (tokens[0], tokens[2], tokens[3]):
        auth.authenticate(f"Bearer {token}")
    assert decodes.count == 0
    auth.authenticate(f"Bearer {tokens[1]}")
    assert decodes.count == 1
    assert len(auth.verified) == 3


def test_cached_claims_are_read_only_and_the_token_itself_is_not_kept() -> None:
    auth = cached([TEST_SECRET], Clock())
    token = sign("alice")
    principal = auth.authenticate(f"Bearer {token}")

    with pytest.raises(TypeError):
        principal.claims["sub"] = "bob"  # type: ignore[index]
    assert all(token not in repr(entry) for entry in auth.verified._entries.items())


def test_an_exp_too_large_for_a_float_is_a_number_not_a_crash() -> None:
    # RFC 7519 section 2: a NumericDate is a JSON number, of any size; math.isfinite(10**400) raises OverflowError.
    assert authenticator().authenticate(f"Bearer {sign('alice', exp=10**400)}").sub == "alice"


def test_cached_claims_are_read_only_at_every_depth() -> None:
    auth = cached([TEST_SECRET], Clock())
    token = sign("alice", scp=["jobs:read"], aud=["jobs-api", "other"], extra={"nested": [{"k": "v"}]})
    first = auth.authenticate(f"Bearer {token}")

    for claims in (first.claims, auth.authenticate(f"Bearer {token}").claims):
        with pytest.raises((TypeError, AttributeError)):
            claims["scp"].append("jobs:admin")
        with pytest.raises(TypeError):
            claims["extra"]["nested"][0]["k"] = "changed"
    assert auth.authenticate(f"Bearer {token}").scopes == {"jobs:read"}


def test_an_audience_list_and_a_scope_list_read_the_same_from_the_cache() -> None:
    config = {"JWT_SECRET_PARAMETER": "/jobs/jwt-secret", "JWT_AUDIENCE": "jobs-api"}
    auth = Authenticator(AuthSettings.model_validate(config), secret=lambda: TEST_SECRET)
    token = sign("alice", aud=["other", "jobs-api"], scp=["a", "b"])

    assert [auth.authenticate(f"Bearer {token}").scopes for _ in range(2)] == [{"a", "b"}] * 2
    refused = sign("alice", aud=["other"])
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.authenticate(f"Bearer {refused}")


def test_a_very_long_token_is_verified_every_time_and_never_kept() -> None:
    auth = cached([TEST_SECRET], Clock())
    token = sign("alice", padding="x" * MAX_CACHED_TOKEN_LENGTH)

    assert auth.authenticate(f"Bearer {token}").sub == "alice"
    assert len(auth.verified) == 0
