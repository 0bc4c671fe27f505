"""``make replay-stream`` (and ``python -m local.invoke FUNCTION``): invoke a function of the running local
stack through its Lambda Invoke API, as ``aws lambda invoke`` does against AWS, and print what it returned.

Environment: ``JOBS_LOCAL_LAMBDA_PORT`` (3001), the stack's Invoke API port.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def main(argv: list[str] | None = None) -> int:
    """Invoke ``FUNCTION`` (a logical id) with ``--payload`` (JSON, ``{}``); exit 1 on a function error."""
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="the function's logical id, e.g. ReconcileJobsFunction")
    parser.add_argument("--payload", default="{}", help="the event, as JSON")
    parser.add_argument("--port", type=int, default=int(os.environ.get("JOBS_LOCAL_LAMBDA_PORT", "3001")))
    args = parser.parse_args(argv)
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{args.port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        # The local stack takes any credentials; these reach no AWS account.
        aws_secret_access_key="testing",  # nosec B106
        config=Config(read_timeout=900, retries={"max_attempts": 1}),
    )
    try:
        response = client.invoke(FunctionName=args.function, Payload=args.payload.encode())
    except (BotoCoreError, ClientError) as error:
        print(f"cannot invoke {args.function} on 127.0.0.1:{args.port} (is make run up?): {error}", file=sys.stderr)
        return 2
    print(json.dumps(json.loads(response["Payload"].read() or b"null")))
    return 1 if response.get("FunctionError") else 0


if __name__ == "__main__":
    raise SystemExit(main())
