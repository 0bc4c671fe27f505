"""Job callbacks (webhooks): which URLs and addresses a callback may go to, and how a delivery is signed.

A job submitted with a ``callback_url`` is POSTed, as ``GET /api/v1/jobs/{job_id}`` returns it, to that URL once it
reaches a final status (the sender function, fed by the Job State Change events). This module holds the rules the
API and the sender share.

**Request forgery** (OWASP's "Server-Side Request Forgery Prevention Cheat Sheet"): a callback URL is the
client's choice of where this system's network sends a request, so:

* ``check_callback_url`` (at submit, no lookup): ``https`` only; a host, in ASCII (a name in letters, digits,
  hyphens and dots, or a literal address: brackets hold an IPv6 address without a zone id, an IPv4 address has
  no final dot); no user info; no fragment; at most ``MAX_CALLBACK_URL_LENGTH``
  characters; a literal address (including the shorthand forms such as ``2130706433`` or ``0x7f.1`` that
  ``inet_aton`` reads, which are refused outright) must pass ``address_refusal``; ``localhost`` and names under
  ``.localhost`` (RFC 6761, section 6.3) are refused.
* ``address_refusal`` (at each delivery, for every address the name resolves to): the ``FORBIDDEN_NETWORKS`` table,
  applied to the address and to the IPv4 address an IPv6 address carries (IPv4-mapped ``::ffff:0:0/96``, NAT64
  ``64:ff9b::/96`` (RFC 6052), 6to4 ``2002::/16`` (RFC 3056)), then, for IPv6, global unicast space only
  (``2000::/3``), and then IANA's special-purpose registries (``ipaddress``' ``is_global``) for whatever the table
  does not name.

**Signatures** follow the Standard Webhooks specification (https://www.standardwebhooks.com, version 1,
"Signature scheme" ``v1a``: Ed25519): the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the
``webhook-signature`` header holds one ``v1a,<base64 signature>`` per signing key, space-separated, so that a key
can be rotated (sign with the old and the new key while receivers move to the new one). Keys are written as the
specification writes them: ``whsk_`` + base64 of the 32-byte Ed25519 private key (the seed), ``whpk_`` + base64 of
the 32-byte public key; the public keys are also served as a JWKS (RFC 8037 ``OKP`` keys, ``kid`` the RFC 7638
thumbprint).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import SplitResult, urlsplit

from jobs.models import MAX_CALLBACK_URL_LENGTH

if TYPE_CHECKING:  # cryptography is imported where keys are used: the API's URL check must not load it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Networks no callback may reach, with the reason a refusal gives. Sources: IANA's IPv4 and IPv6 Special-Purpose
#: Address Registries (RFC 6890), RFC 1918 (private), RFC 6598 (carrier-grade NAT), RFC 3927 and RFC 4291
#: (link-local), RFC 4193 (unique local), RFC 5771 / RFC 4291 (multicast); the EC2 instance metadata service
#: listens on 169.254.169.254 and fd00:ec2::254 ("Access instance metadata", EC2 user guide:
#: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html), inside link-local and
#: unique-local space respectively, and is named first so a refusal says so. RFC 9637 made 3fff::/20 documentation
#: space (after Python 3.13's ``ipaddress`` registry).
FORBIDDEN_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("169.254.169.254/32", "the instance metadata address"),
        ("fd00:ec2::254/128", "the instance metadata address"),
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)

#: The loopback networks a local stack started with the loopback flag may reach (tests' receivers).
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: IPv6 global unicast space (IANA "Internet Protocol Version 6 Address Space" registry; RFC 4291 section 2.4):
#: every other block is reserved by the IETF or special (unique local, link-local, multicast), and Python's
#: ``is_global`` knows only the special-purpose registry's entries (``::ffff:0:7f00:1``, SIIT's IPv4-translated
#: form of 127.0.0.1, is "global" to it).
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A DNS host name (RFC 1123 section 2.1): labels of letters, digits and inner hyphens, at most 63 characters each
#: and 253 in all, an optional final dot.
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$){_LABEL}(\.{_LABEL})*\.?")


class CallbackRefused(ValueError):
    """A callback URL or address this system will not send to; ``reason`` says why in words a client can act on."""

    def __init__(self, reason: str, *, kind: str = "callback_url_refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, or None: IPv4-mapped (``::ffff:a.b.c.d``), NAT64's well-known
    prefix (``64:ff9b::a.b.c.d``, RFC 6052) or 6to4 (``2002:AABB:CCDD::/48``, RFC 3056)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a callback may not go to ``address``, or None when it may: a ``FORBIDDEN_NETWORKS`` entry, an IPv6
    address outside global unicast ``2000::/3``, or "not globally reachable" for anything else IANA's registries
    mark so; an IPv6 address carrying an IPv4 address is
    judged by both. ``allow_loopback`` lets ``LOOPBACK_NETWORKS`` through (a local stack's flag for tests' receivers,
    never set on AWS)."""
    if allow_loopback and any(address in network for network in LOOPBACK_NETWORKS):
        return None
    inner = embedded_ipv4(address)
    if inner is not None:
        refusal = address_refusal(inner, allow_loopback=allow_loopback)
        if refusal is not None:
            return f"{refusal} ({address} carries {inner})"
    for network, reason in FORBIDDEN_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address} is {reason}"
    if inner is None and address.version == 6 and address not in _GLOBAL_UNICAST:
        return f"{address} is outside IPv6 global unicast space (2000::/3)"
    if inner is None and not address.is_global:
        return f"{address} is not globally reachable"
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, or None for a name; the shorthand IPv4 forms ``inet_aton`` reads
    (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``) are refused, since resolvers read them as
    addresses too."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
    except OSError:
        return None
    raise CallbackRefused(f"callback_url's host {host!r} is an IPv4 address in a shorthand form; write a name")


def check_callback_url(url: str, *, allow_loopback: bool = False) -> SplitResult:
    """Check a ``callback_url`` as far as it can be without a lookup (module docstring); returns its parts.

    Raises:
        CallbackRefused: the URL is not one a callback may go to (``reason`` says which rule).
    """
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise CallbackRefused(f"callback_url must be at most {MAX_CALLBACK_URL_LENGTH} characters")
    if not url.isascii() or any(ord(c) < 0x21 or c in '"<>\\^`{|}' for c in url):
        raise CallbackRefused("callback_url must be an ASCII URL without spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as error:  # unbalanced brackets, an IPv4 address in brackets (RFC 3986 section 3.2.2)
        raise CallbackRefused(f"callback_url is not a valid URL: {error}") from None
    if parts.scheme.lower() != "https":
        raise CallbackRefused("callback_url must be an https URL")
    if "@" in parts.netloc:
        raise CallbackRefused("callback_url must not hold user info (user:password@)")
    if parts.fragment or url.endswith("#"):
        raise CallbackRefused("callback_url must not have a fragment")
    try:
        port = parts.port
    except ValueError as error:
        raise CallbackRefused("callback_url's port must be a number from 1 to 65535") from error
    if port == 0:
        raise CallbackRefused("callback_url's port must be a number from 1 to 65535")
    host = parts.hostname or ""
    if not host:
        raise CallbackRefused("callback_url must name a host")
    address = _literal_address(host)
    if address is None and host.endswith(".") and _literal_address(host[:-1]) is not None:
        # WHATWG's URL parser (browsers, and receivers' frameworks) reads "127.0.0.1." as the address; DNS as a name
        raise CallbackRefused("callback_url's host is an IPv4 address with a final dot; write it without")
    if "[" in parts.netloc and not isinstance(address, ipaddress.IPv6Address):
        raise CallbackRefused("callback_url's brackets must hold an IPv6 address")  # not RFC 3986's IPvFuture
    if address is not None:
        refusal = address_refusal(address, allow_loopback=allow_loopback)
        if refusal is not None:
            raise CallbackRefused(f"callback_url's host is not a public address: {refusal}")
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            # a zone id (RFC 6874) names a local interface: meaningful only for the scoped addresses refused above
            raise CallbackRefused("callback_url's IPv6 address must not have a zone id")
        return parts
    if not _HOST_NAME.fullmatch(host):
        raise CallbackRefused("callback_url's host must be a DNS name (IDNA names in their xn-- form) or an address")
    if (host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost")) and not allow_loopback:
        raise CallbackRefused("callback_url's host is localhost (loopback)")
    return parts


#: A resolver: (host, port) -> the addresses it resolves to, as ``socket.getaddrinfo`` gives them.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to through the system's resolver (TCP), in its order, duplicates dropped."""
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


#: Lookups run here so that one can be abandoned at its deadline (``getaddrinfo`` takes no timeout); a stalled one
#: keeps its thread until the system resolver gives up, and the pool's size bounds how many can.
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="callback-lookup")


def bounded(resolver: Resolver, seconds: float) -> Resolver:
    """``resolver`` with a deadline: a lookup that takes longer than ``seconds`` raises ``TimeoutError`` (an
    ``OSError``: a failed lookup, retried on the schedule) rather than holding the delivery past its time."""

    def lookup(host: str, port: int) -> Sequence[str]:
        future = _LOOKUPS.submit(resolver, host, port)
        try:
            return future.result(timeout=seconds)
        except FuturesTimeout:
            future.cancel()
            raise TimeoutError(f"the lookup of {host} took more than {seconds:g} s") from None

    return lookup


def public_addresses(
    host: str, port: int, *, resolver: Resolver = system_resolver, allow_loopback: bool = False
) -> list[IPAddress]:
    """Resolve ``host`` once and check every answer with ``address_refusal``; returns the addresses, in the
    resolver's order, for the caller to connect to (never resolve again: an answer that changes between a check
    and a connection is how DNS rebinding gets past a check).

    Raises:
        CallbackRefused: the name does not resolve, or any answer is refused (one forbidden answer refuses the name:
            a client cannot choose which answer a connection uses).
    """
    literal = _literal_address(host)
    if literal is not None:
        answers: Sequence[str] = [str(literal)]
    else:
        try:
            answers = resolver(host, port)
        except OSError as error:
            raise CallbackRefused(f"callback_url's host does not resolve: {error}", kind="dns") from error
    if not answers:
        raise CallbackRefused("callback_url's host does not resolve", kind="dns")
    addresses = [ipaddress.ip_address(answer) for answer in answers]
    for address in addresses:
        refusal = address_refusal(address, allow_loopback=allow_loopback)
        if refusal is not None:
            raise CallbackRefused(f"callback_url's host resolves to a forbidden address: {refusal}", kind="address")
    return addresses


def redacted(url: str) -> str:
    """The URL as logs may show it: scheme, host, port and path; never the query (it may hold a client's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


class _RedactedUrls(logging.Filter):
    """Rewrites the URLs among a log record's arguments as ``redacted`` shows them. urllib3 logs the request's URL,
    query included, when an answer's head has a defect ("Failed to parse headers (url=%s)", ``urllib3.connection``,
    a warning): a receiver can send one at will, and a query may hold a client's token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redacted(arg) if isinstance(arg, str) and "://" in arg else arg for arg in record.args)
        return True


logging.getLogger("urllib3.connection").addFilter(_RedactedUrls())


# --- Signatures -----------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as Standard Webhooks writes it: ``whpk_`` + base64 of its 32 raw bytes."""
    return "whpk_" + _b64(_raw(key))


def key_id(key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (base64url SHA-256 of its canonical OKP members), its ``kid``."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 signing key and its ``kid`` (the thumbprint of its public half)."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key's public half."""
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        """The key id (``key_id`` of the public half)."""
        return key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> SigningKey:
        """Read ``whsk_`` + base64 of the 32-byte private key.

        Raises:
            ValueError: not such a key.
        """
        if not text.startswith("whsk_"):
            raise ValueError("a signing key starts with whsk_")
        raw = base64.b64decode(text[len("whsk_") :], validate=True)
        if len(raw) != 32:
            raise ValueError("a signing key holds 32 bytes")
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def text(self) -> str:
        """The key as ``from_text`` reads it (secret: only the signing key parameter holds it)."""
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        return "whsk_" + _b64(self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def signing_keys(text: str) -> list[SigningKey]:
    """The signing keys a signing key parameter holds: ``whsk_`` keys separated by spaces or newlines, the first
    being the current one (a rotation adds the next key after it, then removes the old one).

    Raises:
        ValueError: no key, or a malformed one.
    """
    keys = [SigningKey.from_text(word) for word in text.split()]
    if not keys:
        raise ValueError("the signing key parameter holds no key")
    return keys


def jwks(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Any]:
    """A JSON Web Key Set (RFC 7517) of Ed25519 public keys (RFC 8037 ``OKP``), each with ``kid``, ``use`` sig,
    ``alg`` EdDSA and the Standard Webhooks form in ``whpk``."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64url(_raw(key)),
                "kid": key_id(key),
                "use": "sig",
                "alg": "EdDSA",
                "whpk": public_key_text(key),
            }
            for key in public_keys
        ]
    }


def public_keys_of(text: str) -> list[Ed25519PublicKey]:
    """The public keys a public key parameter holds: ``whpk_`` keys separated by spaces or newlines.

    Raises:
        ValueError: no key, or a malformed one.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for word in text.split():
        if not word.startswith("whpk_"):
            raise ValueError("a public key starts with whpk_")
        keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(word[len("whpk_") :], validate=True)))
    if not keys:
        raise ValueError("the public key parameter holds no key")
    return keys


def signature_header(keys: Sequence[SigningKey], *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1a,<base64 Ed25519 signature>`` per key, space-separated, over
    ``{webhook_id}.{timestamp}.{body}`` (Standard Webhooks, "Signature scheme"); ``timestamp`` in Unix seconds."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(f"v1a,{_b64(key.private_key.sign(content))}" for key in keys)


# --- Delivery --------------------------------------------------------------------------------------------------


class _DeliverySettings(Protocol):
    """What ``deliver_once`` reads of ``jobs.settings.CallbackSettings`` (this module imports no settings)."""

    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def connect_timeout_seconds(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_response_bytes(self) -> int: ...


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery attempt came to.

    ``status_code``: the receiver's HTTP status, None when no answer came (refused, timed out, TLS failure).
    ``error``: None when the receiver answered 2xx; otherwise why the attempt failed, in words fit for the job's
    ``callback.last_error`` (never the URL's query, never the body). ``elapsed_seconds``: the attempt's wall time.
    ``response_bytes``: how much of the answer's body was read (at most ``max_response_bytes``).
    """

    status_code: int | None
    error: str | None
    elapsed_seconds: float
    response_bytes: int = 0

    @property
    def delivered(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.error is None


@cache
def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The TLS context of deliveries: Python's default (the system's certificate authorities, certificate and
    host name verification, ``ssl.create_default_context``), plus the authorities of ``ca_bundle`` when set."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _cut(connection: Any) -> None:
    """Shut the connection's socket down (the delivery's deadline passed): any read or write blocked on it in the
    delivering thread returns at once. ``shutdown`` rather than ``close``, which another thread may be using."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def deliver_once(
    url: str, body: bytes, headers: Mapping[str, str], *, addresses: Sequence[IPAddress], settings: _DeliverySettings
) -> DeliveryResult:
    """POST ``body`` to ``url`` once, connecting only to ``addresses`` (those ``public_addresses`` checked).

    How (urllib3 2, ``urllib3.connection.HTTPSConnection``,
    https://urllib3.readthedocs.io/en/stable/reference/urllib3.connection.html):

    * The TCP connection goes to a checked address, never to the name (which could resolve again, elsewhere: DNS
      rebinding); the addresses are tried in order until one accepts, each within ``connect_timeout_seconds``.
    * TLS sends the URL's host name as SNI and verifies the certificate against it (``server_hostname``: "Custom
      SNI Hostname", https://urllib3.readthedocs.io/en/stable/advanced-usage.html#custom-sni-hostname; RFC 6066
      section 3; RFC 6125 / RFC 9110 section 4.3.4 for the name check, done by OpenSSL in the handshake as
      ``ssl.SSLContext.check_hostname`` describes), with the default trust store and ``ca_bundle``.
    * ``Host`` is the URL's host (and port when not 443), as RFC 9110 section 7.2 requires.
    * No proxy: a bare connection has none, and urllib3 reads no proxy variables from the environment (only
      ``ProxyManager`` proxies, when given one); a test sets ``HTTPS_PROXY`` and friends and sees no connection.
    * No redirect: a connection never follows one, and a 3xx is a failure ("redirect refused"): the ``Location``
      would be a request to an unchecked place.
    * No retry within an attempt (the sender's queue retries, on its schedule).
    * Bounded time: ``timeout_seconds`` from the start to the last byte read; a watchdog shuts the socket down at
      that deadline, so a receiver that trickles its answer a byte at a time is cut too (a per-read timeout alone
      would let it go on).
    * Bounded size: at most ``max_response_bytes`` of the answer's body are read (undecoded), then the connection
      is closed; http.client bounds the head (at most 100 header lines of at most 64 KiB each: more, or a status
      line it cannot read, raises its ``HTTPException``, a failed attempt like any other).

    Returns:
        A ``DeliveryResult``; nothing is raised for the receiver's failures.
    """
    from http.client import HTTPException

    from urllib3.connection import HTTPSConnection
    from urllib3.exceptions import HTTPError

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    shown_host = f"[{host}]" if ":" in host else host
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {**headers, "Host": shown_host if port == 443 else f"{shown_host}:{port}"}
    started = time.monotonic()
    deadline = started + settings.timeout_seconds

    def result(status_code: int | None, error: str | None, read: int = 0) -> DeliveryResult:
        return DeliveryResult(status_code, error, time.monotonic() - started, read)

    timed_out = f"timed out after {settings.timeout_seconds:g} s"
    made: list[Any] = []  # the connections made, the last one current: the watchdog cuts it at the deadline

    def cut() -> None:
        if made:
            _cut(made[-1])

    watchdog = threading.Timer(settings.timeout_seconds, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection: Any = None
        errors: list[str] = []
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            candidate = HTTPSConnection(
                str(address),
                port,
                timeout=min(settings.connect_timeout_seconds, remaining),
                server_hostname=host,
                ssl_context=_tls_context(settings.ca_bundle),
            )
            made.append(candidate)  # its socket is set before the TLS handshake: the watchdog can cut that too
            try:
                candidate.connect()
            except (ssl.SSLError, ValueError) as error:  # a certificate not for the host (CertificateError), say
                return result(None, timed_out if time.monotonic() >= deadline else f"TLS failed: {error}")
            except (OSError, HTTPError) as error:
                errors.append(f"{address}: {_connect_error(error)}")
                continue
            connection = candidate
            break
        if time.monotonic() >= deadline:
            return result(None, timed_out)
        if connection is None:
            return result(None, "connection failed: " + "; ".join(errors))
        try:
            connection.timeout = max(0.001, deadline - time.monotonic())  # getresponse() puts it on the socket
            connection.sock.settimeout(connection.timeout)
            connection.request("POST", target, body=body, headers=request_headers, preload_content=False)
            response = connection.getresponse()
            status = int(response.status)
            limit = settings.max_response_bytes
            answer = response.read(limit, decode_content=False) if limit else b""
        except (OSError, HTTPError, HTTPException, ValueError) as error:  # HTTPException: a malformed answer
            if isinstance(error, TimeoutError) or time.monotonic() >= deadline:
                return result(None, timed_out)
            return result(None, f"no answer: {type(error).__name__}: {error}"[:500])
        if time.monotonic() >= deadline:
            return result(status, timed_out, len(answer))
        if 200 <= status < 300:
            return result(status, None, len(answer))
        if 300 <= status < 400:
            return result(status, f"redirect refused (HTTP {status})", len(answer))
        return result(status, f"HTTP {status}", len(answer))
    finally:
        watchdog.cancel()
        for made_connection in made:
            made_connection.close()


def _connect_error(error: BaseException) -> str:
    """A connection failure in a few words: refused, timed out, or the OS's message."""
    cause = error.__cause__ or error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError) or "timed out" in str(error).lower():
        return "connect timed out"
    return f"{type(cause).__name__}: {cause}"[:200]
