"""Verify a job callback (a webhook) the jobs API sent: ``verify_webhook(headers, body, public_key)``.

The API signs each delivery as the Standard Webhooks specification describes (https://www.standardwebhooks.com,
version 1, "Verifying webhook authenticity"), with the asymmetric scheme ``v1a`` (Ed25519, RFC 8032):

* ``webhook-id``: the message id (the same across retries of one event: drop a repeated one);
* ``webhook-timestamp``: Unix seconds when the attempt was signed (a receiver refuses one too far from its own
  clock, so a captured delivery cannot be replayed later);
* ``webhook-signature``: space-separated ``v1a,<base64 signature>`` entries, one per signing key (two during a key
  rotation); any one verifying with any trusted key authenticates the delivery. Entries of other versions (the
  symmetric ``v1``) are ignored.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, the body being the exact bytes received (verify
before parsing them). The public keys are those ``GET /api/v1/webhooks/public-key`` serves (a JWKS, RFC 7517, of
RFC 8037 ``OKP`` keys, each also in the specification's ``whpk_`` form). This module is written from the
specification, apart from the server's code (the client distribution does not ship it), and a test signs with the
server's code and verifies here.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from jobs_client.errors import WebhookVerificationError


class Headers(Protocol):
    """What ``verify_webhook`` reads of a request's headers: a ``Mapping``, or ``http.server``'s and
    ``email``'s ``Message`` (which yields every value of a name sent twice from ``items()``)."""

    def items(self) -> Any: ...


if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: The default tolerance between a delivery's ``webhook-timestamp`` and the receiver's clock, seconds (the
#: specification's reference libraries use five minutes).
DEFAULT_TOLERANCE_SECONDS = 300


def verify_webhook(
    headers: Headers,
    body: bytes | str,
    public_key: Any,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: datetime | float | None = None,
) -> dict[str, Any]:
    """Check that a callback delivery is the jobs API's, recent, and unaltered; return the job it carries.

    Args:
        headers: the request's headers, a ``Mapping`` or an ``http.server`` request's ``headers`` (names in any case:
            ``Webhook-Id`` or ``webhook-id``).
        body: the request's body, exactly as received (``str`` is read as UTF-8).
        public_key: the trusted key(s): a ``whpk_...`` string, a JWK dict (``{"kty": "OKP", "crv": "Ed25519",
            "x": ...}``), a JWKS dict (``{"keys": [...]}``, as ``GET /api/v1/webhooks/public-key`` returns; members
            that are not Ed25519 keys are ignored), an ``Ed25519PublicKey``, or a list of these.
        tolerance_seconds: how far ``webhook-timestamp`` may be from ``now``, either way, seconds.
        now: the receiver's time (an aware ``datetime`` or Unix seconds); the system clock when None.

    Returns:
        The job, as the JSON object ``GET /api/v1/jobs/{job_id}`` returns (``jobs.models.Job.model_validate`` reads
        it).

    Raises:
        WebhookVerificationError: a header is missing, malformed or given more than once, the timestamp is
            outside the tolerance (a replay, or a clock far off), no ``v1a`` signature verifies with any of the
            keys, or the body is not a JSON object.
        ValueError: ``public_key`` holds no key or one that is not an Ed25519 public key (the caller's mistake).
    """
    from cryptography.exceptions import InvalidSignature

    keys = _public_keys(public_key)
    if not keys:
        raise ValueError("public_key holds no Ed25519 key")
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    lowered: dict[str, str] = {}
    for header, value in headers.items():
        if (lowered_name := str(header).lower()) in names:
            if lowered_name in lowered:  # the receiver's framework may read the other one (http.server: the first)
                raise WebhookVerificationError(f"more than one {lowered_name} header")
            lowered[lowered_name] = value
    message_id, timestamp_text, signatures = (lowered.get(name) for name in names)
    if not message_id or not timestamp_text or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now.timestamp() if isinstance(now, datetime) else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookVerificationError(
            f"webhook-timestamp is {current - timestamp:+.0f} s from now, beyond the {tolerance_seconds:g} s "
            "tolerance (a replayed or delayed delivery)"
        )
    raw = body.encode() if isinstance(body, str) else bytes(body)
    content = f"{message_id}.{timestamp}.".encode() + raw
    verified = False
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1a":
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for key in keys:
            try:
                key.verify(signature, content)
            except InvalidSignature:
                continue
            verified = True
            break
        if verified:
            break
    if not verified:
        raise WebhookVerificationError("no v1a signature verifies with the given public key(s)")
    try:
        job = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(job, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return job


def _public_keys(value: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys ``value`` holds (the forms ``verify_webhook`` accepts)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(value, Ed25519PublicKey):
        return [value]
    if isinstance(value, str):
        if not value.startswith("whpk_"):
            raise ValueError("a public key string starts with whpk_")
        return [Ed25519PublicKey.from_public_bytes(_decode(value[len("whpk_") :], urlsafe=False))]
    if isinstance(value, Mapping):
        if "keys" in value:  # a JWKS: members of another kind are ignored (RFC 7517 section 5), not an error
            return _public_keys([key for key in value["keys"] if _is_ed25519_jwk(key)])
        if not _is_ed25519_jwk(value):
            raise ValueError("a JWK of a webhook key is an OKP Ed25519 key with x (RFC 8037)")
        return [Ed25519PublicKey.from_public_bytes(_decode(value["x"], urlsafe=True))]
    if isinstance(value, list | tuple):
        return [key for item in value for key in _public_keys(item)]
    raise ValueError(f"not a public key: {type(value).__name__}")


def _is_ed25519_jwk(value: Any) -> bool:
    """True for a JWK of an Ed25519 public key (RFC 8037: ``kty`` OKP, ``crv`` Ed25519, ``x``)."""
    return (
        isinstance(value, Mapping)
        and value.get("kty") == "OKP"
        and value.get("crv") == "Ed25519"
        and isinstance(value.get("x"), str)
    )


def _decode(text: str, *, urlsafe: bool) -> bytes:
    """Base64 (RFC 4648 section 4) or base64url without padding (section 5, as JWKs write it) to bytes."""
    padded = text + "=" * (-len(text) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("a public key is not valid base64") from error
