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

It serves the stack's event source mappings too (the template's SQS and DynamoDB stream events), as the Lambda API
reference gives them, so that an operator's commands work locally: ``ListEventSourceMappings`` (``GET
/2015-03-31/event-source-mappings/``, filtered by ``EventSourceArn`` and ``FunctionName``, paged by ``Marker`` and
``MaxItems``), ``GetEventSourceMapping`` and ``UpdateEventSourceMapping`` (``GET``/``PUT
/2015-03-31/event-source-mappings/{UUID}``; an unknown UUID is a 404 ``ResourceNotFoundException``). An update sets
``Enabled`` only: the mapping's poller stops receiving (its batches in flight finish) or starts again; the answer,
a 202, says ``Disabling`` or ``Enabling``; later reads say ``Enabled``, or ``Disabling`` until the poller's receive or
batch in flight ends, then ``Disabled`` (from then on nothing is received). Any other field of an
update is a 400 ``InvalidParameterValueException`` locally (the local stack takes batch sizes and the rest from the
template only).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.gateway import JsonLinesServer
from local.runtime import MAX_PAYLOAD_BYTES, FunctionPool
from local.template import ACCOUNT_ID, REGION

_INVOKE = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")
_MAPPINGS = re.compile(r"/2015-03-31/event-source-mappings/?")
_MAPPING = re.compile(r"/2015-03-31/event-source-mappings/([^/]+)")


@dataclass
class EventSourceMapping:
    """One event source mapping of the stack: the function (logical id), its source's ARN, the settings the
    template gives (``BatchSize``, ``ScalingConfig``, ...: shown as the API shows them) and the event its poller
    polls while it is set."""

    function_name: str
    event_source_arn: str
    settings: Mapping[str, Any]
    enabled: threading.Event
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: float = field(default_factory=time.time)
    #: True while the poller has a receive or a batch in flight.
    busy: Callable[[], bool] = lambda: False

    def state(self) -> str:
        """``Enabled``; ``Disabling`` while a disabled mapping's poller still has work in flight; ``Disabled``."""
        if self.enabled.is_set():
            return "Enabled"
        return "Disabling" if self.busy() else "Disabled"

    def configuration(self, state: str | None = None) -> dict[str, Any]:
        """The mapping as the API answers it (``EventSourceMappingConfiguration``)."""
        body: dict[str, Any] = {
            "UUID": self.uuid,
            "EventSourceArn": self.event_source_arn,
            "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}",
            "LastModified": self.last_modified,
            "State": state or self.state(),
            "StateTransitionReason": "USER_INITIATED",
            "MaximumBatchingWindowInSeconds": 0,
        }
        for key in (
            "BatchSize",
            "FunctionResponseTypes",
            "ScalingConfig",
            "StartingPosition",
            "MaximumRetryAttempts",
            "MaximumRecordAgeInSeconds",
            "BisectBatchOnFunctionError",
            "FilterCriteria",
        ):
            if key in self.settings:
                body[key] = self.settings[key]
        destination = self.settings.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination:
            body["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
        return body


class LambdaApi:
    """The Invoke API on ``host:port`` (0 picks a free port; ``port`` tells which) for ``pools`` by logical id, and
    the event source mappings API for ``mappings``."""

    def __init__(
        self,
        pools: Mapping[str, FunctionPool],
        host: str,
        port: int,
        mappings: Sequence[EventSourceMapping] = (),
        log: Callable[[str], None] = print,
    ) -> None:
        handler = _handler(dict(pools), {m.uuid: m for m in mappings})
        self.server = JsonLinesServer((host, port), handler, log, name="lambda-api")
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


def _handler(pools: dict[str, FunctionPool], mappings: dict[str, EventSourceMapping]) -> type[BaseHTTPRequestHandler]:
    class InvokeHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            if _MAPPINGS.fullmatch(split.path):
                query = {key: values[-1] for key, values in parse_qs(split.query).items()}
                found = [
                    mapping
                    for mapping in mappings.values()
                    if query.get("EventSourceArn") in (None, mapping.event_source_arn)
                    and query.get("FunctionName", mapping.function_name).rsplit(":", 1)[-1] == mapping.function_name
                ]
                start = int(query.get("Marker") or 0)
                size = max(1, min(10_000, int(query.get("MaxItems") or 100)))
                page: dict[str, Any] = {"EventSourceMappings": [m.configuration() for m in found[start : start + size]]}
                if start + size < len(found):
                    page["NextMarker"] = str(start + size)
                self._send(200, page, {})
                return
            mapping = self._mapping(split.path)
            if mapping is not None:
                self._send(200, mapping.configuration(), {})

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            mapping = self._mapping(urlsplit(self.path).path)
            if mapping is None:
                return
            try:
                update = json.loads(body or b"{}")
            except ValueError:
                self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
                return
            others = sorted(set(update) - {"Enabled"})
            if others or not isinstance(update.get("Enabled", True), bool):
                names = ", ".join(others) or "Enabled"
                message = f"the local stack updates only Enabled (true or false), not {names}"
                self._error(400, "InvalidParameterValueException", message)
                return
            state = None
            if "Enabled" in update:
                if update["Enabled"]:
                    mapping.enabled.set()
                else:
                    mapping.enabled.clear()
                mapping.last_modified = time.time()
                state = "Enabling" if update["Enabled"] else "Disabling"
            self._send(202, mapping.configuration(state), {})

        def _mapping(self, path: str) -> EventSourceMapping | None:
            """The mapping a path names; None, after answering 404, when it names none."""
            found = _MAPPING.fullmatch(path)
            mapping = mappings.get(found.group(1)) if found else None
            if mapping is None:
                self._error(404, "ResourceNotFoundException", f"The resource you requested does not exist. ({path})")
            return mapping

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
