"""What the end-to-end tests share: the running stack's handle, its secret, and tokens signed with it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import sign

#: The HS256 secret the session's stack is started with (its JOBS_JWT_SECRET).
SECRET = "e2e-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class RunningStack:
    """The local stack of the test session: its gateway's base URL and the file its stdout goes to."""

    base: str
    log: Path

    def request(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - loopback only
                raw, status, found = response.read(), response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, found = error.read(), error.code, error.headers
        return Reply(status, {k.lower(): v for k, v in found.items()}, json.loads(raw) if raw else None)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def token(sub: str) -> str:
    """A token the session's stack accepts for ``sub``."""
    return sign(sub, secret=SECRET)
