"""The Lambda Invoke API for the local stack's functions, as ``sam local start-lambda`` serves it (port 3001):
``POST /2015-03-31/functions/{FunctionName}/invocations``, the function named by its logical id, so that
``aws lambda invoke --endpoint-url http://127.0.0.1:3001 --function-name ReconcileJobsFunction out.json`` and
boto3's Lambda client work against it.

As the Invoke API answers ("Invoke", AWS Lambda API reference): 200 with the function's return value as JSON;
a function error is 200 too, with ``X-Amz-Function-Error: Unhandled`` and ``{"errorType", "errorMessage"}``;
an unknown function is 404 ``ResourceNotFoundException``. Only the synchronous ``RequestResponse`` invocation
type is served (any other is a 400 ``InvalidParameterValueException``, an assumption: the local stack does not
play asynchronous invocation). Lambda's synchronous payload limit, 6,291,556 bytes each way ("Lambda quotas"),
holds: a larger request is a 413 ``RequestEntityTooLargeException``; a larger response is a function error
(``Function.ResponseSizeTooLarge``, as Lambda reports it; ``local.runtime`` measures it).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.runtime import MAX_PAYLOAD_BYTES, FunctionPool

_INVOKE = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")


class LambdaApi:
    """The Invoke API on ``host:port`` (0 picks a free port; ``port`` tells which) for ``pools`` by logical id."""

    def __init__(self, pools: Mapping[str, FunctionPool], host: str, port: int) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(dict(pools)))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="lambda-api", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_address[1])

    def start(self) -> None:
        """Serve in a thread of its own."""
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _handler(pools: dict[str, FunctionPool]) -> type[BaseHTTPRequestHandler]:
    class InvokeHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            found = _INVOKE.fullmatch(self.path.split("?", 1)[0])
            if found is None or found.group(1).rsplit(":", 1)[-1] not in pools:
                name = found.group(1) if found else self.path
                self._error(404, "ResourceNotFoundException", f"Function not found: {name}")
                return
            if len(body) > MAX_PAYLOAD_BYTES:
                message = f"{len(body)} byte payload is too large for the RequestResponse invocation type"
                self._error(
                    413,
                    "RequestEntityTooLargeException",
                    f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes ({message})",
                )
                return
            if self.headers.get("X-Amz-Invocation-Type", "RequestResponse") != "RequestResponse":
                self._error(400, "InvalidParameterValueException", "only RequestResponse is served locally")
                return
            try:
                event = json.loads(body or b"{}")
            except ValueError:
                self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
                return
            invocation = pools[found.group(1).rsplit(":", 1)[-1]].invoke(event)
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            payload = invocation.payload if invocation.ok else invocation.error
            if not invocation.ok:
                headers["X-Amz-Function-Error"] = "Unhandled"
            self._send(200, payload, headers)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"Type": "User", "message": message}, {"X-Amzn-ErrorType": code})

        def _send(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return  # the stack's log is the functions' own lines

    return InvokeHandler
