"""``make token SUB=alice``: print a bearer token the local stack accepts (HS256, one hour).
``make token SUB=alice SCOPE="jobs:high"`` adds a ``scope`` claim (space-separated scopes), for a stack started
with ``JOBS_PARAMETER_OVERRIDES="HighPriorityScope=jobs:high" make run``, where a HIGH job needs that scope.

It is signed with ``JOBS_JWT_SECRET`` (or the local stack's development default), the same secret
``make run`` stores in SSM for the API function.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "jobs"))

from jobs.auth import issue_token
from local.stack import jwt_secret


def main(argv: list[str] | None = None) -> int:
    """Print one token for ``--sub`` to stdout."""
    parser = argparse.ArgumentParser(prog="python -m local.token", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sub", required=True, help="the subject: the owner of the jobs this token touches")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds until exp (default 3600)")
    parser.add_argument("--issuer", default=None)
    parser.add_argument("--audience", default=None)
    parser.add_argument(
        "--scope",
        default="",
        help='scopes for the token\'s scope claim, space-separated ("jobs:high jobs:read"); none by default',
    )
    args = parser.parse_args(argv)
    if not args.sub.strip():
        parser.error("--sub must not be empty")
    token = issue_token(
        jwt_secret(),
        args.sub,
        lifetime_seconds=args.lifetime,
        issuer=args.issuer,
        audience=args.audience,
        scopes=args.scope.split(),
    )
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
