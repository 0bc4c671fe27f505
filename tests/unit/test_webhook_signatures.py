"""The server signs (``jobs.webhooks.signature_header``), the client verifies (``jobs_client.verify_webhook``): two
implementations of the Standard Webhooks ``v1a`` rule, written apart, that must agree; and every alteration of a
signed delivery (body, timestamp, id, signature, key) fails, as does a replay outside the tolerance."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jobs import webhooks
from jobs.webhooks import SigningKey
from jobs_client import JobsClientError, WebhookVerificationError, verify_webhook

NOW = 1_796_000_000
BODY = json.dumps({"job_id": "01a226ee-0000-7000-8000-000000000001", "status": "SUCCEEDED", "title": "été"}).encode()
KEY = SigningKey.generate()
OTHER = SigningKey.generate()


def signed(
    keys: list[SigningKey] | None = None, *, body: bytes = BODY, timestamp: int = NOW, message_id: str = "msg_1_v1"
) -> dict[str, str]:
    """The headers the sender sends with ``body``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.signature_header(
            keys or [KEY], webhook_id=message_id, timestamp=timestamp, body=body
        ),
    }


def jwk_of(key: SigningKey) -> dict[str, Any]:
    document: dict[str, Any] = webhooks.jwks([key.public_key])["keys"][0]
    return document


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(webhooks.public_key_text(KEY.public_key), id="whpk string"),
        pytest.param(jwk_of(KEY), id="JWK"),
        pytest.param({k: v for k, v in jwk_of(KEY).items() if k in ("kty", "crv", "x")}, id="bare JWK"),
        pytest.param(webhooks.jwks([OTHER.public_key, KEY.public_key]), id="JWKS"),
        pytest.param(KEY.public_key, id="Ed25519PublicKey"),
        pytest.param([webhooks.public_key_text(OTHER.public_key), jwk_of(KEY)], id="list"),
    ],
)
def test_the_client_verifies_what_the_server_signed_with_every_key_form(public_key: Any) -> None:
    assert verify_webhook(signed(), BODY, public_key, now=NOW) == json.loads(BODY)


def test_a_str_body_and_headers_in_any_case_verify() -> None:
    headers = {name.title(): value for name, value in signed().items()}

    assert verify_webhook(headers, BODY.decode(), KEY.public_key, now=NOW)["title"] == "été"


class Headers(Mapping[str, str]):
    """A case-insensitive Mapping that is not a dict, as web frameworks have."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = {name.upper(): value for name, value in items.items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.upper()]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_any_mapping_of_headers_verifies() -> None:
    assert verify_webhook(Headers(signed()), BODY, KEY.public_key, now=NOW)["status"] == "SUCCEEDED"


def test_during_a_rotation_either_key_verifies_a_delivery_signed_by_both() -> None:
    headers = signed([KEY, OTHER])

    assert len(headers["webhook-signature"].split()) == 2
    assert verify_webhook(headers, BODY, OTHER.public_key, now=NOW)
    assert verify_webhook(headers, BODY, KEY.public_key, now=NOW)


def test_the_signature_is_the_specifications_ed25519_over_id_timestamp_and_body() -> None:
    """Checked with cryptography directly, apart from both implementations."""
    entry = signed()["webhook-signature"]
    version, _, encoded = entry.partition(",")

    assert version == "v1a"
    KEY.public_key.verify(base64.b64decode(encoded), b"msg_1_v1.%d." % NOW + BODY)


def _tampered() -> dict[str, tuple[dict[str, str], bytes]]:
    good = signed()
    return {
        "body": (good, BODY.replace(b"SUCCEEDED", b"FAILED\x20\x20\x20")),
        "body with a byte added": (good, BODY + b" "),
        "timestamp": ({**good, "webhook-timestamp": str(NOW + 1)}, BODY),
        "id": ({**good, "webhook-id": "msg_1_v2"}, BODY),
        "signature": ({**good, "webhook-signature": "v1a," + base64.b64encode(b"\0" * 64).decode()}, BODY),
        "signature not base64": ({**good, "webhook-signature": "v1a,@@@"}, BODY),
        "symmetric v1 only": ({**good, "webhook-signature": good["webhook-signature"].replace("v1a,", "v1,")}, BODY),
        "signed by another key": (signed([OTHER]), BODY),
    }


@pytest.mark.parametrize("what", list(_tampered()))
def test_an_altered_delivery_fails(what: str) -> None:
    headers, body = _tampered()[what]

    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(headers, body, webhooks.jwks([KEY.public_key]), now=NOW)


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_header_given_twice_fails(name: str) -> None:
    """A captured delivery replayed with a fresh ``webhook-id`` in front of the signed one: http.server's headers
    (the README's receiver) give the first value to ``headers[name]`` and both to ``items()``, so a verification
    reading one and a receiver de-duplicating on the other would let the replay through."""
    good = signed()
    message = http.client.HTTPMessage()
    first = {"webhook-id": "msg_fresh", "webhook-timestamp": str(NOW + 1), "webhook-signature": "v1a,AAAA"}
    message[name] = first[name]
    for header, value in good.items():
        message[header] = value
    assert message[name] != good[name]  # the receiver's view: the first value

    with pytest.raises(WebhookVerificationError, match="more than one"):
        verify_webhook(message, BODY, KEY.public_key, now=NOW)  # the README passes one
    with pytest.raises(WebhookVerificationError, match="more than one"):
        verify_webhook({**good, name.title(): message[name]}, BODY, KEY.public_key, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_fails(missing: str) -> None:
    headers = {name: value for name, value in signed().items() if name != missing}

    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(headers, BODY, KEY.public_key, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 10**9])
def test_a_timestamp_outside_the_tolerance_fails_as_a_replay(offset: int) -> None:
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(signed(), BODY, KEY.public_key, now=NOW + offset)


def test_the_tolerance_is_the_callers_and_now_defaults_to_the_clock() -> None:
    current = int(time.time())
    fresh, old = signed(timestamp=current), signed(timestamp=current - 3600)

    assert verify_webhook(signed(), BODY, KEY.public_key, now=NOW + 3000, tolerance_seconds=3600)
    assert verify_webhook(fresh, BODY, KEY.public_key)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(old, BODY, KEY.public_key)


def test_a_malformed_timestamp_fails() -> None:
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify_webhook({**signed(), "webhook-timestamp": "soon"}, BODY, KEY.public_key, now=NOW)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_a_signed_body_that_is_not_a_json_object_fails(body: bytes) -> None:
    with pytest.raises(WebhookVerificationError, match="JSON"):
        verify_webhook(signed(body=body), body, KEY.public_key, now=NOW)


def test_the_error_is_a_client_error() -> None:
    assert issubclass(WebhookVerificationError, JobsClientError)


def test_a_jwks_member_of_another_kind_is_ignored_as_rfc_7517_asks() -> None:
    """RFC 7517 section 5: implementations SHOULD ignore a set's JWKs of a kty they do not understand or with values
    out of the supported ranges; a key added to the served set later (another curve) must not break receivers."""
    x25519 = {"kty": "OKP", "crv": "X25519", "x": jwk_of(OTHER)["x"]}
    rsa = {"kty": "RSA", "n": "x", "e": "AQAB"}
    served = {"keys": [x25519, rsa, jwk_of(KEY)]}

    assert verify_webhook(signed(), BODY, served, now=NOW) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(signed([OTHER]), BODY, served, now=NOW)  # the X25519 member's x is OTHER's: not trusted
    with pytest.raises(ValueError, match="no Ed25519 key"):
        verify_webhook(signed(), BODY, {"keys": [x25519, rsa]}, now=NOW)


@pytest.mark.parametrize(
    "public_key",
    [
        "pk_not_a_key",
        "whpk_" + base64.b64encode(b"short").decode(),
        {"kty": "RSA", "n": "x", "e": "AQAB"},
        {"keys": []},
        [],
        Ed25519PrivateKey.generate(),
        42,
    ],
)
def test_something_that_is_not_an_ed25519_public_key_is_the_callers_mistake(public_key: Any) -> None:
    with pytest.raises(ValueError, match="key"):
        verify_webhook(signed(), BODY, public_key, now=NOW)
