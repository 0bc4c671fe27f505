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

``CreateEventSourceMapping`` (``POST /2015-03-31/event-source-mappings/``) and ``DeleteEventSourceMapping`` (``DELETE
/2015-03-31/event-source-mappings/{UUID}``) are served too (a create for DynamoDB stream sources; a delete for any
mapping), so that the steps CloudFormation takes when a mapping is replaced (a new stream after a change of
``StreamViewType``) can be taken locally (``local.upgrade``). A create takes the fields the Lambda API reference gives
for a stream source (``EventSourceArn``, ``FunctionName``, ``StartingPosition``, ``BatchSize``,
``MaximumBatchingWindowInSeconds``, ``FilterCriteria``, ``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``,
``BisectBatchOnFunctionError``, ``DestinationConfig.OnFailure``, ``FunctionResponseTypes``, ``ParallelizationFactor``,
``Enabled``), checked
against that reference's ranges (a value outside them is a 400 ``InvalidParameterValueException``; an unknown function a
404; a second mapping of the same function and stream a 409 ``ResourceConflictException``), and answers 202
``Creating``; its poller starts, and reads say ``Enabled`` once it has read the stream. A delete answers 202
``Deleting``; the poller stops after its batch in flight, and from then on the UUID is a 404. Fields the local stack
does not play (``TumblingWindowInSeconds``, ...), an SQS source, ``AT_TIMESTAMP`` and a
destination that is not one of the stack's queues are a 400 locally.
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
from typing import Any, Protocol
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
    #: True once the poller has started (a created mapping is ``Creating`` until then).
    ready: Callable[[], bool] = lambda: True
    #: Set once DeleteEventSourceMapping was asked for it (``Deleting`` until its poller has stopped).
    deleting: bool = False

    def state(self) -> str:
        """``Creating`` until a created mapping's poller has started; ``Deleting`` once deleted; ``Enabled``;
        ``Disabling`` while a disabled mapping's poller still has work in flight; ``Disabled``."""
        if self.deleting:
            return "Deleting"
        if not self.ready():
            return "Creating"
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
            "MaximumBatchingWindowInSeconds",
            "FunctionResponseTypes",
            "ScalingConfig",
            "StartingPosition",
            "MaximumRetryAttempts",
            "MaximumRecordAgeInSeconds",
            "BisectBatchOnFunctionError",
            "FilterCriteria",
            "ParallelizationFactor",
        ):
            if key in self.settings:
                body[key] = self.settings[key]
        destination = self.settings.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination:
            body["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
        return body


class ApiError(Exception):
    """A request the Lambda API refuses: the HTTP ``status``, the error ``code`` (``X-Amzn-ErrorType``) and the
    message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class MappingControl(Protocol):
    """What starts and stops the pollers of mappings created and deleted through the API (the stack)."""

    def create(self, function_name: str, settings: Mapping[str, Any]) -> EventSourceMapping:
        """A started mapping of ``function_name`` with ``settings`` (``stream_mapping_settings``' answer).

        Raises:
            ApiError: the source or the destination is not one the stack can play.
        """
        ...

    def delete(self, mapping: EventSourceMapping, done: Callable[[], object]) -> None:
        """Stop ``mapping``'s poller (after its batch in flight), then call ``done``; returns at once."""
        ...


#: CreateEventSourceMapping's fields for a DynamoDB stream source that the local stack plays
#: ("CreateEventSourceMapping", AWS Lambda API reference), with their integer ranges where they have one.
_INTEGER_RANGES = {
    "BatchSize": (1, 10_000),
    "MaximumBatchingWindowInSeconds": (0, 300),
    "MaximumRetryAttempts": (-1, 10_000),
    "MaximumRecordAgeInSeconds": (-1, 604_800),
    "ParallelizationFactor": (1, 10),
}
_PLAYED_FIELDS = {
    "EventSourceArn",
    "FunctionName",
    "Enabled",
    "StartingPosition",
    "BisectBatchOnFunctionError",
    "FilterCriteria",
    "DestinationConfig",
    "FunctionResponseTypes",
    *_INTEGER_RANGES,
}
_STREAM_ARN = re.compile(r"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table/[A-Za-z0-9_.-]{3,255}/stream/.+")


def stream_mapping_settings(request: Any) -> dict[str, Any]:
    """A CreateEventSourceMapping request for a DynamoDB stream source, checked, with Lambda's defaults filled in
    (``BatchSize`` 100, ``MaximumBatchingWindowInSeconds`` 0, ``MaximumRetryAttempts`` and
    ``MaximumRecordAgeInSeconds`` -1, ``BisectBatchOnFunctionError`` false: the API reference's defaults for a
    stream). The answer has the request's API field names.

    Raises:
        ApiError: 400 ``InvalidParameterValueException`` for a missing, mistyped or out-of-range field (the API
            reference's ranges), ``AT_TIMESTAMP`` (Kinesis and Kafka only), an ``OnSuccess`` destination (not for
            streams), or a field or source the local stack does not play.
    """

    def invalid(message: str) -> ApiError:
        return ApiError(400, "InvalidParameterValueException", message)

    if not isinstance(request, dict):
        raise invalid("the request is not a JSON object")
    unplayed = sorted(set(request) - _PLAYED_FIELDS)
    if unplayed:
        raise invalid(f"the local stack does not play {', '.join(unplayed)} for a mapping")
    arn = request.get("EventSourceArn")
    if not isinstance(arn, str) or not _STREAM_ARN.fullmatch(arn):
        raise invalid(f"the local stack creates mappings for DynamoDB streams only; EventSourceArn is {arn!r}")
    position = request.get("StartingPosition")
    if position not in ("TRIM_HORIZON", "LATEST"):
        raise invalid(f"StartingPosition must be TRIM_HORIZON or LATEST for a DynamoDB stream, not {position!r}")
    settings: dict[str, Any] = {
        "EventSourceArn": arn,
        "StartingPosition": position,
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": False,
    }
    for name, (low, high) in _INTEGER_RANGES.items():
        if name in request:
            value = request[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise invalid(f"{name} must be an integer from {low} to {high}, not {value!r}")
            settings[name] = value
    for name in ("Enabled", "BisectBatchOnFunctionError"):
        if name in request and not isinstance(request[name], bool):
            raise invalid(f"{name} must be true or false")
    settings["BisectBatchOnFunctionError"] = request.get("BisectBatchOnFunctionError", False)
    types = request.get("FunctionResponseTypes", [])
    if not isinstance(types, list) or len(types) > 1 or any(item != "ReportBatchItemFailures" for item in types):
        raise invalid("FunctionResponseTypes holds at most ReportBatchItemFailures")
    if types:
        settings["FunctionResponseTypes"] = types
    criteria = request.get("FilterCriteria")
    if criteria is not None:
        filters = criteria.get("Filters") if isinstance(criteria, dict) else None
        if (
            not isinstance(filters, list)
            or len(filters) > 5
            or not all(isinstance(f, dict) and isinstance(f.get("Pattern"), str) for f in filters)
            or not all(len(f["Pattern"]) <= 4096 for f in filters)
        ):
            raise invalid("FilterCriteria is {Filters: [{Pattern: text of at most 4096 characters}]}, 5 at most")
        for item in filters:
            try:
                json.loads(item["Pattern"])
            except ValueError:
                raise invalid(f"the filter pattern {item['Pattern']!r} is not JSON") from None
        settings["FilterCriteria"] = {"Filters": [{"Pattern": f["Pattern"]} for f in filters]}
    destination = request.get("DestinationConfig")
    if destination is not None:
        on_failure = destination.get("OnFailure") if isinstance(destination, dict) else None
        if (
            not isinstance(destination, dict)
            or set(destination) - {"OnFailure"}
            or not isinstance(on_failure, dict)
            or not isinstance(on_failure.get("Destination"), str)
        ):
            raise invalid("DestinationConfig is {OnFailure: {Destination: arn}} for a stream (no OnSuccess)")
        settings["DestinationConfig"] = {"OnFailure": {"Destination": on_failure["Destination"]}}
    return settings


class LambdaApi:
    """The Invoke API on ``host:port`` (0 picks a free port; ``port`` tells which) for ``pools`` by logical id, and
    the event source mappings API for ``mappings``; ``control`` starts and stops the pollers of the mappings
    created and deleted through it (without it, Create and Delete are a 400)."""

    def __init__(
        self,
        pools: Mapping[str, FunctionPool],
        host: str,
        port: int,
        mappings: Sequence[EventSourceMapping] = (),
        log: Callable[[str], None] = print,
        control: MappingControl | None = None,
    ) -> None:
        #: The mappings the API serves, by UUID (created ones added, deleted ones removed).
        self.mappings: dict[str, EventSourceMapping] = {m.uuid: m for m in mappings}
        handler = _handler(dict(pools), self.mappings, control)
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


def _handler(
    pools: dict[str, FunctionPool], mappings: dict[str, EventSourceMapping], control: MappingControl | None
) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()  # one create or delete at a time (the conflict check and the insert together)

    class InvokeHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            if _MAPPINGS.fullmatch(split.path):
                query = {key: values[-1] for key, values in parse_qs(split.query).items()}
                found = [
                    mapping
                    for mapping in list(mappings.values())
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

        def do_DELETE(self) -> None:
            mapping = self._mapping(urlsplit(self.path).path)
            if mapping is None:
                return
            if control is None:
                self._error(400, "InvalidParameterValueException", "this Lambda API deletes no mapping")
                return
            with lock:
                if not mapping.deleting:
                    mapping.deleting = True
                    mapping.last_modified = time.time()
                    control.delete(mapping, lambda: mappings.pop(mapping.uuid, None))
            self._send(202, mapping.configuration("Deleting"), {})

        def _create_mapping(self, body: bytes) -> None:
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
                return
            try:
                if control is None:
                    raise ApiError(400, "InvalidParameterValueException", "this Lambda API creates no mapping")
                settings = stream_mapping_settings(request)
                name = request.get("FunctionName")
                function = name.rsplit(":", 1)[-1] if isinstance(name, str) else ""
                if function not in pools:
                    raise ApiError(404, "ResourceNotFoundException", f"Function not found: {name}")
                with lock:
                    for other in list(mappings.values()):
                        if other.function_name == function and other.event_source_arn == settings["EventSourceArn"]:
                            raise ApiError(
                                409,
                                "ResourceConflictException",
                                f"The event source arn ({settings['EventSourceArn']}) and function ({function}) "
                                f"provided mapping already exists. Please update or delete the existing mapping "
                                f"with UUID {other.uuid}",
                            )
                    mapping = control.create(function, {**settings, "Enabled": request.get("Enabled", True)})
                    mappings[mapping.uuid] = mapping
            except ApiError as error:
                self._error(error.status, error.code, error.message)
                return
            self._send(202, mapping.configuration("Creating"), {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if _MAPPINGS.fullmatch(self.path.split("?", 1)[0]):
                self._create_mapping(body)
                return
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
