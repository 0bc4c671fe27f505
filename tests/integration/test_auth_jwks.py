"""JWKS mode: RS256 and ES256 tokens verified against keys served on loopback, as an identity provider serves
them; the JWKS half of issue 4's attack table (item 7), key rotation, and an identity provider that is down,
slow or broken (503 within a few seconds, never access, never a 500)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jobs.auth import Authenticator
from jobs.models import AuthUnavailable, Unauthenticated
from jobs.settings import AuthSettings
from local.ports import free_port
from tests.conftest import Aws
from tests.helpers import FakeLambdaContext, api_event, load_function


class JwksServer:
    """Serves ``keys`` as a JWKS document at ``/jwks.json`` and counts the fetches. ``behaviour`` makes it
    misbehave: ``slow`` (answers after 5 s), ``drip`` (sends the body a byte every 0.3 s), ``status500``,
    ``not-json``, ``not-object``, ``no-keys``, ``redirect``, ``huge`` (2 MB)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.behaviour = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                status = 200
                if outer.behaviour == "slow":
                    time.sleep(5)
                elif outer.behaviour == "status500":
                    status = 500
                elif outer.behaviour == "not-json":
                    body = b"<html>maintenance</html>"
                elif outer.behaviour == "not-object":
                    body = b"[]"
                elif outer.behaviour == "no-keys":
                    body = b'{"keys": []}'
                elif outer.behaviour == "huge":
                    body = b'{"keys": [], "pad": "' + b"x" * 2_000_000 + b'"}'
                elif outer.behaviour == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere.json")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.behaviour == "drip":
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.3)
                    return
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        self.keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})
        return private

    def add_ec_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        private = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        self.keys.append({**public, "kid": kid, "use": "sig", "alg": "ES256"})
        return private

    def remove_key(self, kid: str) -> None:
        self.keys = [key for key in self.keys if key["kid"] != kid]


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.server.shutdown()


#: The issuer and audience every JWKS-mode test configures (JWKS mode requires both).
ISSUER = "https://idp.example"
AUDIENCE = "jobs-api"


def authenticator(url: str, **settings: Any) -> Authenticator:
    config = {
        "JWKS_URL": url,
        "JWKS_TIMEOUT_SECONDS": 1,
        "JWT_ALGORITHMS": "RS256,ES256",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        **settings,
    }
    return Authenticator(AuthSettings.model_validate(config))


def _claims(claims: dict[str, Any]) -> dict[str, Any]:
    """``sub``, ``exp``, ``iss`` and ``aud`` as the identity provider issues them, changed by ``claims``
    (``...`` removes one)."""
    body = {"sub": "alice", "exp": int(time.time()) + 600, "iss": ISSUER, "aud": AUDIENCE, **claims}
    return {key: value for key, value in body.items() if value is not ...}


def rs256(private: Any, kid: str, **claims: Any) -> str:
    return jwt.encode(_claims(claims), private, algorithm="RS256", headers={"kid": kid})


def es256(private: Any, kid: str, **claims: Any) -> str:
    return jwt.encode(_claims(claims), private, algorithm="ES256", headers={"kid": kid})


def test_a_token_signed_by_a_published_key_is_accepted(idp: JwksServer) -> None:
    key = idp.add_key("k1")

    assert authenticator(idp.url).authenticate(f"Bearer {rs256(key, 'k1')}").sub == "alice"


def test_keys_are_fetched_once_and_cached(idp: JwksServer) -> None:
    key = idp.add_key("k1")
    auth = authenticator(idp.url)

    for _ in range(5):
        auth.authenticate(f"Bearer {rs256(key, 'k1')}")

    assert idp.fetches == 1


def test_a_key_the_idp_does_not_publish_is_refused(idp: JwksServer) -> None:
    idp.add_key("k1")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    with pytest.raises(Unauthenticated):
        authenticator(idp.url).authenticate(f"Bearer {rs256(stranger, 'k1')}")
    with pytest.raises(Unauthenticated):
        authenticator(idp.url).authenticate(f"Bearer {rs256(stranger, 'unknown-kid')}")


def test_hs256_signed_with_the_public_key_is_refused(idp: JwksServer) -> None:
    key = idp.add_key("k1")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    forged = jwt.api_jws.PyJWS(algorithms=["HS256"])
    forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    token = forged.encode(
        json.dumps({"sub": "mallory", "exp": int(time.time()) + 600}).encode(),
        public_pem,
        algorithm="HS256",
        headers=header,
    )

    with pytest.raises(Unauthenticated):
        authenticator(idp.url).authenticate(f"Bearer {token}")


def test_an_unreachable_jwks_is_unavailable_not_access() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    token = rs256(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k1")

    started = time.monotonic()
    with pytest.raises(AuthUnavailable):
        authenticator(url).authenticate(f"Bearer {token}")

    assert time.monotonic() - started < 5


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], signature: bytes = b"") -> str:
    body = {"sub": "mallory", "exp": int(time.time()) + 600}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}.{b64(signature)}"


@pytest.fixture
def keys(idp: JwksServer) -> dict[str, Any]:
    return {"rsa": idp.add_key("rsa-1"), "ec": idp.add_ec_key("ec-1")}


def test_rs256_and_es256_tokens_from_published_keys_are_accepted(idp: JwksServer, keys: dict[str, Any]) -> None:
    auth = authenticator(idp.url)

    assert auth.authenticate(f"Bearer {rs256(keys['rsa'], 'rsa-1')}").sub == "alice"
    assert auth.authenticate(f"Bearer {es256(keys['ec'], 'ec-1')}").sub == "alice"
    assert idp.fetches == 1


ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())

#: (case, a function of the published keys that forges the token). Each is refused with 401.
JWKS_ATTACKS: list[tuple[str, Any]] = [
    ("alg none", lambda k: unsigned({"alg": "none", "kid": "rsa-1"})),
    ("alg NoNe", lambda k: unsigned({"alg": "NoNe", "kid": "rsa-1"})),
    ("alg none with a signature", lambda k: unsigned({"alg": "none", "kid": "rsa-1"}, b"sig")),
    ("HS256 with the RSA key's id (confusion)", lambda k: unsigned({"alg": "HS256", "kid": "rsa-1"}, b"x" * 32)),
    ("HS256 with the EC key's id (confusion)", lambda k: unsigned({"alg": "HS256", "kid": "ec-1"}, b"x" * 32)),
    ("ES256 token naming the RSA key", lambda k: es256(k["ec"], "rsa-1")),
    ("RS256 token naming the EC key", lambda k: rs256(k["rsa"], "ec-1")),
    ("PS256, not accepted", lambda k: jwt.encode({"sub": "a", "exp": 2**31}, k["rsa"], "PS256", {"kid": "rsa-1"})),
    ("another RSA key, published kid", lambda k: rs256(ATTACKER_RSA, "rsa-1")),
    ("another EC key, published kid", lambda k: es256(ATTACKER_EC, "ec-1")),
    ("unknown kid", lambda k: rs256(ATTACKER_RSA, "rsa-2")),
    ("no kid", lambda k: jwt.encode({"sub": "a", "exp": 2**31}, ATTACKER_RSA, "RS256")),
    ("kid empty", lambda k: rs256(ATTACKER_RSA, "")),
    ("kid path traversal", lambda k: rs256(ATTACKER_RSA, "../../../../etc/passwd")),
    ("kid SQL", lambda k: rs256(ATTACKER_RSA, "' OR '1'='1")),
    ("kid 10 KB", lambda k: rs256(ATTACKER_RSA, "k" * 10_000)),
    ("kid non-ASCII", lambda k: rs256(ATTACKER_RSA, "clé")),
    ("kid with NUL", lambda k: rs256(ATTACKER_RSA, "rsa-1\x00")),
    ("kid a number", lambda k: unsigned({"alg": "RS256", "kid": 1})),
    ("kid null", lambda k: unsigned({"alg": "RS256", "kid": None})),
    ("kid an object", lambda k: unsigned({"alg": "RS256", "kid": {"$ne": ""}})),
    ("kid a list", lambda k: unsigned({"alg": "RS256", "kid": ["rsa-1"]})),
    ("jku to the attacker's keys", lambda k: rs256(ATTACKER_RSA, "rsa-1", jku="http://127.0.0.1:1/jwks.json")),
    (
        "jku header",
        lambda k: jwt.encode(
            {"sub": "a", "exp": 2**31}, ATTACKER_RSA, "RS256", {"kid": "evil", "jku": "http://127.0.0.1:1/j"}
        ),
    ),
    (
        "jwk header with the attacker's key",
        lambda k: jwt.encode(
            {"sub": "a", "exp": 2**31},
            ATTACKER_RSA,
            "RS256",
            {"kid": "evil", "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ATTACKER_RSA.public_key()))},
        ),
    ),
    ("expired", lambda k: rs256(k["rsa"], "rsa-1", exp=int(time.time()) - 3600)),
    ("no sub", lambda k: jwt.encode({"exp": 2**31}, k["rsa"], "RS256", {"kid": "rsa-1"})),
    ("garbage", lambda k: "not.a.token"),
]


@pytest.mark.parametrize(("case", "forge"), JWKS_ATTACKS, ids=[case for case, _ in JWKS_ATTACKS])
def test_every_jwks_attack_is_refused_without_fetching_again(
    idp: JwksServer, keys: dict[str, Any], case: str, forge: Any
) -> None:
    auth = authenticator(idp.url)
    auth.authenticate(f"Bearer {rs256(keys['rsa'], 'rsa-1')}")  # the key set is fetched once, as in a warm function

    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {forge(keys)}")

    assert idp.fetches == 1


def test_a_flood_of_unknown_kids_refreshes_the_key_set_at_most_once_per_cooldown(
    idp: JwksServer, keys: dict[str, Any]
) -> None:
    auth = authenticator(idp.url)
    auth.authenticate(f"Bearer {rs256(keys['rsa'], 'rsa-1')}")

    for n in range(50):
        with pytest.raises(Unauthenticated):
            auth.authenticate(f"Bearer {rs256(ATTACKER_RSA, f'kid-{n}')}")

    assert idp.fetches == 1


def test_a_cold_function_hit_by_unknown_kids_fetches_once(idp: JwksServer) -> None:
    idp.add_key("rsa-1")
    auth = authenticator(idp.url)

    for n in range(20):
        with pytest.raises(Unauthenticated):
            auth.authenticate(f"Bearer {rs256(ATTACKER_RSA, f'kid-{n}')}")

    assert idp.fetches == 1


def test_a_key_rotation_adds_the_new_key_and_retires_the_old_one(idp: JwksServer) -> None:
    old = idp.add_key("2026-01")
    auth = authenticator(idp.url, JWKS_CACHE_SECONDS=1, JWKS_REFRESH_COOLDOWN_SECONDS=0.2)
    assert auth.authenticate(f"Bearer {rs256(old, '2026-01')}").sub == "alice"

    new = idp.add_ec_key("2026-02")  # the identity provider publishes the next key before it signs with it
    time.sleep(0.3)
    accepted_new = auth.authenticate(f"Bearer {es256(new, '2026-02')}").sub
    idp.remove_key("2026-01")  # and retires the old one
    time.sleep(1.2)  # the cached key set expires

    assert accepted_new == "alice"
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {rs256(old, '2026-01')}")
    assert auth.authenticate(f"Bearer {es256(new, '2026-02')}").sub == "alice"
    assert idp.fetches == 3


def test_a_verified_token_is_not_verified_again_until_its_key_is_retired(
    idp: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = idp.add_key("2026-01")
    idp.add_key("2026-02")  # stays published
    auth = authenticator(idp.url, JWKS_CACHE_SECONDS=1, JWKS_REFRESH_COOLDOWN_SECONDS=0.2)
    token = rs256(key, "2026-01")
    decodes: list[str] = []
    original = jwt.decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        decodes.append(token)
        return original(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)

    assert [auth.authenticate(f"Bearer {token}").sub for _ in range(3)] == ["alice"] * 3
    assert len(decodes) == 1
    idp.remove_key("2026-01")
    time.sleep(1.2)  # the cached key set expires: the key is gone, and the same token with it

    with pytest.raises(Unauthenticated):  # the key is looked up before the cache is: an unknown kid
        auth.authenticate(f"Bearer {token}")


@pytest.mark.parametrize(
    "behaviour", ["slow", "drip", "status500", "not-json", "not-object", "no-keys", "redirect", "huge"]
)
def test_an_identity_provider_that_misbehaves_is_unavailable_within_a_few_seconds(
    idp: JwksServer, behaviour: str
) -> None:
    key = idp.add_key("rsa-1")
    idp.behaviour = behaviour

    started = time.monotonic()
    with pytest.raises(AuthUnavailable):
        authenticator(idp.url).authenticate(f"Bearer {rs256(key, 'rsa-1')}")

    assert time.monotonic() - started < 3.5


def test_after_a_failed_fetch_requests_fail_fast_instead_of_queueing_on_the_identity_provider(idp: JwksServer) -> None:
    key = idp.add_key("rsa-1")
    idp.behaviour = "status500"
    auth = authenticator(idp.url)

    for _ in range(10):
        with pytest.raises(AuthUnavailable):
            auth.authenticate(f"Bearer {rs256(key, 'rsa-1')}")

    assert idp.fetches == 1


def test_a_down_jwks_through_the_api_handler_is_a_503_not_a_500(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWKS_URL", f"http://127.0.0.1:{free_port()}/jwks.json")
    monkeypatch.setenv("JWKS_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    api = load_function("api")
    token = rs256(ATTACKER_RSA, "rsa-1")

    response = api.lambda_handler(api_event("list_jobs", token=token), FakeLambdaContext())

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["status"] == 503


# --- Issuer and audience: required in JWKS mode; the audience rule is API Gateway's JWT authorizer's ---------

CLIENT = "4l8k2example-client-id"  # a Cognito app client id: Cognito access tokens carry it as client_id, not aud


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("aud, the first configured audience", {"aud": "jobs-api"}),
        ("aud, the second configured audience", {"aud": CLIENT}),
        ("aud an array holding one configured audience", {"aud": ["another-api", CLIENT]}),
        ("no aud, client_id a configured audience (a Cognito access token)", {"aud": ..., "client_id": CLIENT}),
    ],
)
def test_a_token_for_one_of_the_configured_audiences_is_accepted(
    idp: JwksServer, case: str, claims: dict[str, Any]
) -> None:
    key = idp.add_key("k1")
    auth = authenticator(idp.url, JWT_AUDIENCE=f"jobs-api, {CLIENT}")

    assert auth.authenticate(f"Bearer {rs256(key, 'k1', **claims)}").sub == "alice"


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("wrong aud", {"aud": "another-api"}),
        (
            "wrong aud, right client_id (aud wins: client_id is read only without aud)",
            {"aud": "x", "client_id": CLIENT},
        ),
        ("empty aud array, right client_id", {"aud": [], "client_id": CLIENT}),
        ("aud array without ours", {"aud": ["another-api", "a-third"]}),
        ("aud null, right client_id", {"aud": None, "client_id": CLIENT}),
        ("aud a number", {"aud": 1}),
        ("aud an array of non-strings", {"aud": [["jobs-api"], {"aud": "jobs-api"}]}),
        ("aud differing in case", {"aud": "JOBS-API"}),
        ("aud a prefix of ours", {"aud": "jobs"}),
        ("aud the whole configured list", {"aud": f"jobs-api,{CLIENT}"}),
        ("no aud, no client_id", {"aud": ...}),
        ("no aud, wrong client_id", {"aud": ..., "client_id": "another-client"}),
        ("no aud, client_id an array", {"aud": ..., "client_id": [CLIENT]}),
    ],
)
def test_a_token_for_another_audience_is_refused_naming_the_claim(
    idp: JwksServer, case: str, claims: dict[str, Any]
) -> None:
    key = idp.add_key("k1")
    auth = authenticator(idp.url, JWT_AUDIENCE=f"jobs-api, {CLIENT}")

    with pytest.raises(Unauthenticated) as raised:
        auth.authenticate(f"Bearer {rs256(key, 'k1', **claims)}")

    assert raised.value.description == "the aud claim, or client_id when there is no aud, names no audience of this API"


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("wrong iss", {"iss": "https://evil.example"}),
        ("no iss", {"iss": ...}),
        ("iss differing in case", {"iss": "https://IDP.example"}),
    ],
)
def test_a_token_of_another_issuer_is_refused_naming_the_claim(
    idp: JwksServer, case: str, claims: dict[str, Any]
) -> None:
    key = idp.add_key("k1")

    with pytest.raises(Unauthenticated) as raised:
        authenticator(idp.url).authenticate(f"Bearer {rs256(key, 'k1', **claims)}")

    assert raised.value.description == "the iss claim is missing or not the issuer this API accepts"


def test_a_forged_token_is_told_nothing_of_the_claims(idp: JwksServer) -> None:
    idp.add_key("k1")

    with pytest.raises(Unauthenticated) as raised:
        authenticator(idp.url).authenticate(f"Bearer {rs256(ATTACKER_RSA, 'k1', aud='another-api', sub=' ')}")

    assert raised.value.description is None


def test_a_sub_that_breaks_the_identity_rule_is_refused_in_jwks_mode_too(idp: JwksServer) -> None:
    key = idp.add_key("k1")

    with pytest.raises(Unauthenticated) as raised:
        authenticator(idp.url).authenticate(f"Bearer {rs256(key, 'k1', sub='al\ud800ice')}")

    assert raised.value.description == "the sub claim is not 1 to 255 printable ASCII characters"


def test_jwks_mode_without_an_audience_fails_the_first_invocation_naming_it(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("JWKS_URL", f"http://127.0.0.1:{free_port()}/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    api = load_function("api")

    response = api.lambda_handler(api_event("list_jobs", token=rs256(ATTACKER_RSA, "rsa-1")), FakeLambdaContext())

    assert response["statusCode"] == 500  # a misconfigured deployment, never access
    assert "JWT_AUDIENCE (template parameter JwtAudience) is required with JWKS_URL" in caplog.text
