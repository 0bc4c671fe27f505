"""The attack list of issue 4, item 7, as one table, through the API function's handler (HS256 with the secret
in SSM under moto, issuer and audience configured): every case is a 401 with the Bearer challenge, never a
500 and never access. The JWKS cases (RS256, ES256, rotation, unknown and hostile kids, an identity provider
that is down or slow) are in test_auth_jwks.py, against keys served on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

from local.resources import LocalStack
from tests.helpers import ROOT, SECRET_PARAMETER, TEST_SECRET, FakeLambdaContext, api_event, load_function

ISSUER = "https://issuer.example"
AUDIENCE = "jobs-api"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def good(**changes: Any) -> str:
    return jwt.encode(claims(**changes), TEST_SECRET, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], body: Any, *, secret: str | None = TEST_SECRET) -> str:
    """A token with any header and raw body, HMAC-SHA256-signed with ``secret`` (None: no signature)."""
    payload = body if isinstance(body, str) else json.dumps(body)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload.encode())}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def numeric(raw: str) -> str:
    """A body whose exp is raw JSON text (NaN, 1e400, ...) that json.dumps would not write."""
    return json.dumps(claims(exp=0)).replace('"exp": 0', f'"exp": {raw}')


#: (case, the Authorization header value, None for no header). Each one is a 401.
ATTACKS: list[tuple[str, Callable[[], str | None]]] = [
    ("alg none", lambda: "Bearer " + forged({"alg": "none", "typ": "JWT"}, claims(), secret=None)),
    ("alg None", lambda: "Bearer " + forged({"alg": "None", "typ": "JWT"}, claims(), secret=None)),
    ("alg NONE", lambda: "Bearer " + forged({"alg": "NONE", "typ": "JWT"}, claims(), secret=None)),
    ("alg nOnE", lambda: "Bearer " + forged({"alg": "nOnE", "typ": "JWT"}, claims(), secret=None)),
    ("alg none with a signature", lambda: "Bearer " + forged({"alg": "none"}, claims())),
    ("alg missing", lambda: "Bearer " + forged({"typ": "JWT"}, claims())),
    ("alg HS512 while HS256 is pinned", lambda: "Bearer " + jwt.encode(claims(), TEST_SECRET, algorithm="HS512")),
    ("RS256 in HS mode (algorithm confusion)", lambda: "Bearer " + jwt.encode(claims(), RSA_KEY, algorithm="RS256")),
    ("RS256 header over an HMAC signature", lambda: "Bearer " + forged({"alg": "RS256"}, claims())),
    ("wrong key", lambda: "Bearer " + jwt.encode(claims(), "another-secret-" * 4, algorithm="HS256")),
    ("signature stripped", lambda: "Bearer " + good().rsplit(".", 1)[0] + "."),
    (
        "signature of another token",
        lambda: "Bearer " + good(sub="mallory").rsplit(".", 1)[0] + "." + good().rsplit(".", 1)[1],
    ),
    ("missing exp", lambda: "Bearer " + good(exp=...)),
    ("expired exp", lambda: "Bearer " + good(exp=int(time.time()) - 3600)),
    ("exp as text", lambda: "Bearer " + good(exp="tomorrow")),
    ("exp as a numeric string", lambda: "Bearer " + good(exp=str(int(time.time()) + 600))),
    ("exp null", lambda: "Bearer " + good(exp=None)),
    ("exp true", lambda: "Bearer " + good(exp=True)),
    ("exp list", lambda: "Bearer " + good(exp=[int(time.time()) + 600])),
    ("exp NaN", lambda: "Bearer " + forged({"alg": "HS256"}, numeric("NaN"))),
    ("exp Infinity", lambda: "Bearer " + forged({"alg": "HS256"}, numeric("Infinity"))),
    ("exp 1e400", lambda: "Bearer " + forged({"alg": "HS256"}, numeric("1e400"))),
    ("exp with 5000 digits", lambda: "Bearer " + forged({"alg": "HS256"}, numeric("9" * 5000))),
    ("future nbf", lambda: "Bearer " + good(nbf=int(time.time()) + 3600)),
    ("nbf as text", lambda: "Bearer " + good(nbf="0")),
    ("iat as text", lambda: "Bearer " + good(iat="now")),
    ("wrong iss", lambda: "Bearer " + good(iss="https://evil.example")),
    ("missing iss", lambda: "Bearer " + good(iss=...)),
    ("iss not a string", lambda: "Bearer " + forged({"alg": "HS256"}, claims(iss=1))),
    ("wrong aud", lambda: "Bearer " + good(aud="another-api")),
    ("missing aud", lambda: "Bearer " + good(aud=...)),
    ("aud list without ours", lambda: "Bearer " + good(aud=["another-api", "a-third"])),
    ("missing sub", lambda: "Bearer " + good(sub=...)),
    ("sub null", lambda: "Bearer " + good(sub=None)),
    ("sub a number", lambda: "Bearer " + good(sub=42)),
    ("sub a list", lambda: "Bearer " + good(sub=["alice"])),
    ("sub an object", lambda: "Bearer " + good(sub={"id": "alice"})),
    ("sub true", lambda: "Bearer " + good(sub=True)),
    ("sub empty", lambda: "Bearer " + good(sub="")),
    ("sub blank", lambda: "Bearer " + good(sub="   ")),
    ("body a list", lambda: "Bearer " + forged({"alg": "HS256"}, [claims()])),
    ("body not JSON", lambda: "Bearer " + forged({"alg": "HS256"}, "not json")),
    ("header a list", lambda: "Bearer " + forged([{"alg": "HS256"}], claims())),  # type: ignore[arg-type]
    ("crit header not understood", lambda: "Bearer " + forged({"alg": "HS256", "crit": ["exp"]}, claims())),
    (
        "hostile kid ignored, bad signature",
        lambda: forged({"alg": "HS256", "kid": "../../etc/passwd"}, claims(), secret="x" * 64),
    ),
    (
        "jku to the attacker's keys",
        lambda: forged({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}, claims(), secret="x" * 64),
    ),
    ("no header", lambda: None),
    ("empty header", lambda: ""),
    ("scheme only", lambda: "Bearer"),
    ("scheme and spaces", lambda: "Bearer    "),
    ("Basic scheme", lambda: "Basic " + base64.b64encode(b"alice:secret").decode()),
    ("Token scheme", lambda: f"Token {good()}"),
    ("JWT scheme", lambda: f"JWT {good()}"),
    ("no scheme", lambda: good()),
    ("scheme glued to the token", lambda: f"Bearer{good()}"),
    ("tab between scheme and token", lambda: f"Bearer\t{good()}"),
    ("newline in the value", lambda: f"Bearer {good()}\n"),
    ("CRLF in the value", lambda: f"Bearer {good()}\r\nX-Injected: 1"),
    ("no-break space before the scheme", lambda: f"\u00a0Bearer {good()}"),
    ("token then another word", lambda: f"Bearer {good()} extra"),
    ("two Authorization headers (joined)", lambda: f"Bearer {good()},Bearer {good(sub='bob')}"),
    ("two Authorization headers (joined, spaced)", lambda: f"Bearer {good()}, Bearer {good()}"),
    ("two schemes in one value", lambda: f"Bearer Bearer {good()}"),
    ("garbage", lambda: "Bearer not-a-token"),
    ("four segments", lambda: f"Bearer {good()}.extra"),
    ("JWE-shaped (five segments)", lambda: "Bearer a.b.c.d.e"),
    ("non-ASCII token", lambda: f"Bearer {good()}é"),
    ("10 KB of token", lambda: "Bearer " + "a" * 10_000),
]


@pytest.fixture(scope="module")
def account() -> Iterator[dict[str, dict[str, str]]]:
    """One moto account for the whole table (the cases only read): the template's resources and the secret."""
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        physical = LocalStack(ROOT / "template.yaml", session.client).create_all()
        session.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=TEST_SECRET, Type="SecureString")
        yield physical


@pytest.fixture
def api(account: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, value in {
        "JOBS_TABLE_NAME": account["JobsTable"]["Ref"],
        "JOBS_QUEUE_URL": account["JobsQueue"]["Ref"],
        "JOBS_IDEMPOTENCY_TABLE_NAME": account["IdempotencyTable"]["Ref"],
        "JWT_SECRET_PARAMETER": SECRET_PARAMETER,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
    }.items():
        monkeypatch.setenv(name, value)
    return load_function("api")


def list_jobs(api: ModuleType, headers: dict[str, str], query: dict[str, str] | None = None) -> dict[str, Any]:
    event = api_event("list_jobs", token=None, query=query)
    event["headers"].update(headers)
    return api.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


@pytest.mark.parametrize(("case", "authorization"), ATTACKS, ids=[case for case, _ in ATTACKS])
def test_every_attack_is_a_401_never_a_500_never_access(
    api: ModuleType, case: str, authorization: Callable[[], str | None]
) -> None:
    value = authorization()

    response = list_jobs(api, {} if value is None else {"authorization": value})

    assert response["statusCode"] == 401, response
    assert response["headers"]["WWW-Authenticate"].startswith('Bearer realm="jobs"')
    assert json.loads(response["body"])["detail"] == "A valid bearer token is required."


def test_the_baseline_token_of_the_table_is_accepted(api: ModuleType) -> None:
    assert list_jobs(api, {"authorization": f"Bearer {good()}"})["statusCode"] == 200


def test_a_token_only_in_the_query_string_or_a_cookie_is_not_a_credential(api: ModuleType) -> None:
    in_query = list_jobs(api, {}, query={"access_token": good()})
    event = api_event("list_jobs", token=None)
    event["cookies"] = [f"access_token={good()}"]
    in_cookie = api.lambda_handler(event, FakeLambdaContext())

    assert in_query["statusCode"] == in_cookie["statusCode"] == 401
    assert in_query["headers"]["WWW-Authenticate"] == 'Bearer realm="jobs"'


@pytest.mark.parametrize("name", ["authorization", "Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
def test_the_header_name_is_matched_case_insensitively(api: ModuleType, name: str) -> None:
    assert list_jobs(api, {name: f"Bearer {good()}"})["statusCode"] == 200


@pytest.mark.parametrize(
    "value",
    ["bearer {t}", "BEARER {t}", "bEaReR {t}", " Bearer {t}", "Bearer {t} ", "\t Bearer {t}\t", "Bearer   {t}"],
    ids=["lower", "upper", "mixed", "leading space", "trailing space", "tabs around", "several spaces"],
)
def test_the_scheme_case_and_the_one_whitespace_rule(api: ModuleType, value: str) -> None:
    assert list_jobs(api, {"authorization": value.format(t=good())})["statusCode"] == 200
