"""Development tokens for the local stack (``jobs token``), signed the way ``make token`` signs them.

The signing (``jobs.auth.issue_token``) and the secret rule (``local.stack.jwt_secret``: ``JOBS_JWT_SECRET``, else
the stack's development default) are imported from the repository checkout this package was installed from
(``pip install -e .``), never copied: the local stack only exists there, and so does its secret.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


class LocalStackUnavailable(Exception):
    """``jobs token`` cannot work here: no repository checkout, or its development packages are missing."""


def repository_root() -> Path | None:
    """The checkout holding this package (an editable install), or None (an install from a wheel)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "template.yaml").is_file() and (parent / "local" / "stack.py").is_file():
            return parent
    return None


def _development_environment(missing: ModuleNotFoundError) -> LocalStackUnavailable:
    return LocalStackUnavailable(
        f"jobs token needs the repository's development environment ({missing.name} is not installed): "
        "use the .venv that `make run` creates, or `make -s token SUB=...`"
    )


def _reach_checkout() -> None:
    """Make ``local`` importable: it is not part of the distribution, so reach it in the checkout (as
    ``local/token.py`` reaches the layer)."""
    try:
        importlib.import_module("local.stack")
    except ModuleNotFoundError as missing:
        if missing.name != "local":
            raise _development_environment(missing) from None
    else:
        return
    root = repository_root()
    if root is None:
        raise LocalStackUnavailable(
            "jobs token signs tokens for the local stack, and needs the repository checkout it runs from "
            "(pip install -e .); against a deployed API, use your identity provider's tokens"
        )
    sys.path.insert(0, str(root))


def issue_local_token(sub: str, lifetime_seconds: int = 3600) -> str:
    """An HS256 token for ``sub`` that the local stack accepts, valid for ``lifetime_seconds``.

    Raises:
        LocalStackUnavailable: not installed from a checkout, or the development packages are missing.
        ValueError: ``sub`` is empty.
    """
    if not sub.strip():
        raise ValueError("sub must not be empty")
    _reach_checkout()
    try:
        from jobs.auth import issue_token
        from local.stack import jwt_secret
    except ModuleNotFoundError as missing:
        raise _development_environment(missing) from None
    return issue_token(jwt_secret(), sub, lifetime_seconds=lifetime_seconds)
