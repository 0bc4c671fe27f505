"""JWKS mode: RS256 tokens verified against keys served on loopback, as an identity provider serves them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jobs.auth import Authenticator
from jobs.models import AuthUnavailable, Unauthenticated
from jobs.settings import AuthSettings
from local.stack import free_port


class JwksServer:
    """Serves ``keys`` as a JWKS document at ``/jwks.json`` and counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
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


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.server.shutdown()


def authenticator(url: str, **settings: Any) -> Authenticator:
    return Authenticator(AuthSettings.model_validate({"JWKS_URL": url, "JWKS_TIMEOUT_SECONDS": 1, **settings}))


def rs256(private: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "exp": now + 600, **claims}, private, algorithm="RS256", headers={"kid": kid})


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
