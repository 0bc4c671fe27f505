"""The JWKS client of JWKS mode: a ``PyJWKClient`` whose fetch is bounded in time and size, follows no
redirect, and backs off after a failure. Imported only in JWKS mode (``jobs.auth`` loads it on first use), so
that HS mode never imports PyJWT's ``cryptography`` backend.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from typing import Any
from urllib.error import URLError

import jwt

#: The largest JWKS document accepted, bytes (identity providers publish a few kilobytes).
MAX_JWKS_BYTES = 1024 * 1024
#: How long a failed JWKS fetch keeps answering 503 without fetching again, seconds.
JWKS_FAILURE_BACKOFF_SECONDS = 5.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A JWKS is fetched from its configured URL only: a redirect is a failure, not a hop."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


class BoundedJWKClient(jwt.PyJWKClient):
    """``PyJWKClient`` whose fetch ends within ``timeout`` seconds per read and about twice that in all, reads
    at most ``MAX_JWKS_BYTES``, follows no redirect, and after a failure answers "unavailable" for
    ``JWKS_FAILURE_BACKOFF_SECONDS`` without fetching. A key set that cannot be fetched, parsed or used raises
    ``PyJWKClientConnectionError``; only an unknown ``kid`` raises a plain ``PyJWKClientError``.
    """

    def __init__(self, uri: str, *, clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._clock = clock
        self._failed_at: float | None = None
        self._fetch_lock = threading.Lock()

    def fetch_data(self) -> Any:
        with self._fetch_lock:
            if self._failed_at is not None and self._clock() - self._failed_at < JWKS_FAILURE_BACKOFF_SECONDS:
                raise jwt.PyJWKClientConnectionError("the JWKS failed moments ago")
            try:
                data = self._bounded_fetch()
            except jwt.PyJWKClientConnectionError:
                self._failed_at = self._clock()
                raise
            self._failed_at = None
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        self._last_successful_fetch = time.monotonic()
        return data

    def _bounded_fetch(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        body = b""
        try:
            opener = urllib.request.build_opener(_NoRedirect())
            # PyJWKClient refuses any scheme but http and https when it is built.
            request = urllib.request.Request(url=self.uri, headers=self.headers)  # noqa: S310
            with opener.open(request, timeout=self.timeout) as response:
                while chunk := response.read1(64 * 1024):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise jwt.PyJWKClientConnectionError("the JWKS is too large")
                    if time.monotonic() > deadline:
                        raise jwt.PyJWKClientConnectionError("the JWKS took too long")
            data = json.loads(body)
        except (URLError, TimeoutError, OSError, HTTPException, ValueError, RecursionError) as error:
            raise jwt.PyJWKClientConnectionError(f"the JWKS could not be fetched: {type(error).__name__}") from None
        if not isinstance(data, dict):
            raise jwt.PyJWKClientConnectionError("the JWKS is not a JSON object")
        try:
            jwt.PyJWKSet.from_dict(data)
        except jwt.PyJWTError as error:
            raise jwt.PyJWKClientConnectionError(f"the JWKS holds no usable key: {type(error).__name__}") from None
        return data

    def get_signing_keys(self, refresh: bool = False) -> list[jwt.PyJWK]:
        try:
            return super().get_signing_keys(refresh)
        except jwt.PyJWKClientConnectionError:
            raise
        except jwt.PyJWTError as error:  # no signing key at all: the identity provider's fault, not the token's
            raise jwt.PyJWKClientConnectionError(f"the JWKS is not usable: {type(error).__name__}") from None
