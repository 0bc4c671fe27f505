"""An HTTP API (API Gateway v2) stand-in: routes each request by the template's ``HttpApi`` events, builds the
payload format 2.0 event that AWS documents, invokes the function, and returns its response as API Gateway
would ("Working with AWS Lambda proxy integrations for HTTP APIs", payload format version 2.0).

Errors that API Gateway itself produces look as it makes them: ``404 {"message":"Not Found"}`` for no route,
``500 {"message":"Internal Server Error"}`` for a function error, ``503 {"message":"Service Unavailable"}``
when the integration outlives API Gateway's 30 s limit.

Sizes, as API Gateway's quotas for HTTP APIs give them ("Amazon API Gateway quotas", HTTP APIs:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html): a request line and header
values of more than 10,240 bytes combined, or a body of more than 10 MB, never reach the function; nor does an event
past Lambda's synchronous request limit (6,291,556 bytes, "Lambda quotas"), which a body between about 6 and 10 MB
makes. A function's response past Lambda's response limit is a function error (``local.runtime`` measures it), so
the client gets API Gateway's ``500 {"message":"Internal Server Error"}``, as for any function error ("Troubleshooting
issues with HTTP API Lambda integrations",
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html). AWS documents
the limits, not the answers to requests past them; the local stack assumes API Gateway's own error shape:
``431 {"message":"Request Header Fields Too Large"}`` (RFC 6585's status for it) for the request line and headers,
``413 {"message":"Request Entity Too Large"}`` for the body and for an event Lambda would refuse.

Route throttling follows the stage's ``DefaultRouteSettings``: each route has a token bucket of
``ThrottlingBurstLimit`` tokens refilled at ``ThrottlingRateLimit`` per second, and a request that finds it
empty gets API Gateway's ``429 {"message":"Too Many Requests"}`` without reaching the function.

CORS follows the API's ``CorsConfiguration`` as "Configuring CORS for an HTTP API" documents it: a preflight
(``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered by the gateway itself, without
a route or a token; a response from the integration to a request with an allowed ``Origin`` gets the configured
headers, and CORS headers the integration returns are ignored.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.runtime import MAX_PAYLOAD_BYTES, FunctionPool, Invocation, payload_bytes
from local.template import ACCOUNT_ID, REGION

API_ID = "local"
#: API Gateway's maximum integration timeout for HTTP APIs, seconds.
INTEGRATION_TIMEOUT_SECONDS = 30
#: HTTP API quota: "Maximum size of request line and header values combined", bytes.
MAX_REQUEST_HEAD_BYTES = 10_240
#: HTTP API quota: "Payload size", 10 MB, bytes.
MAX_BODY_BYTES = 10 * 1024 * 1024
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|x-www-form-urlencoded|problem\+json))$"
)


@dataclass(frozen=True)
class Route:
    """One ``HttpApi`` event: ``method`` (or ``ANY``), a path template such as ``/api/v1/jobs/{job_id}``."""

    method: str
    path: str
    pool: FunctionPool

    @property
    def route_key(self) -> str:
        """The route key as API Gateway writes it: ``GET /api/v1/jobs/{job_id}``."""
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route takes ``method path``, else None."""
        if self.method not in ("ANY", method):
            return None
        pattern = "^"
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("+}"):
                pattern += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                pattern += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                pattern += re.escape(part)
        found = re.match(pattern + "$", path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


def find_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for a request: exact paths before templated ones, as API Gateway selects."""
    ordered = sorted(routes, key=lambda route: (route.path.count("{"), route.method == "ANY"))
    for route in ordered:
        parameters = route.match(method, path)
        if parameters is not None:
            return route, parameters
    return None


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    route_key: str,
    path_parameters: dict[str, str],
    source_ip: str = "127.0.0.1",
    now: float | None = None,
) -> dict[str, Any]:
    """An HTTP API payload format 2.0 event.

    Header names are lowercased and repeated headers joined with commas; cookies move from the ``cookie``
    header to ``cookies``; repeated query parameters are joined with commas; keys with no value (body,
    query, path parameters, cookies) are left out; a body that is not text is base64 encoded.
    """
    now = time.time() if now is None else now
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[lowered] = f"{joined[lowered]},{value}" if lowered in joined else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    request_id = base64.b32encode(uuid.uuid4().bytes).decode()[:16]
    moment = datetime.fromtimestamp(now, UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        content_type = joined.get("content-type", "").split(";")[0].strip().lower()
        text = None
        if not content_type or _TEXT_TYPES.match(content_type):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second, full at first; thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token; False when there is none (the request is throttled)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


@dataclass(frozen=True)
class ThrottlePolicy:
    """The stage's route throttling: ``rate`` requests per second and ``burst``, per route."""

    rate: float
    burst: int

    @classmethod
    def from_route_settings(cls, settings: Mapping[str, Any]) -> ThrottlePolicy | None:
        """The policy of resolved ``DefaultRouteSettings``, or None when they set no throttling."""
        if "ThrottlingRateLimit" not in settings and "ThrottlingBurstLimit" not in settings:
            return None
        return cls(float(settings.get("ThrottlingRateLimit", 10_000)), int(settings.get("ThrottlingBurstLimit", 5_000)))

    def buckets(self, routes: Sequence[Route], clock: Callable[[], float] = time.monotonic) -> dict[str, TokenBucket]:
        """One bucket per route key."""
        return {route.route_key: TokenBucket(self.rate, self.burst, clock) for route in routes}


@dataclass(frozen=True)
class CorsPolicy:
    """An HTTP API's ``CorsConfiguration`` (property names as in the SAM template)."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | bool) -> CorsPolicy:
        """The policy of a resolved ``CorsConfiguration``; ``True`` (SAM's shorthand) allows every origin."""
        if isinstance(configuration, bool):
            return cls(allow_origins=("*",), allow_methods=("*",), allow_headers=("*",)) if configuration else cls()

        def names(key: str) -> tuple[str, ...]:
            value = configuration.get(key) or ()
            return tuple(str(item).strip() for item in ([value] if isinstance(value, str) else value))

        age = configuration.get("MaxAge")
        return cls(
            allow_origins=names("AllowOrigins"),
            allow_methods=tuple(method.upper() for method in names("AllowMethods")),
            allow_headers=tuple(header.lower() for header in names("AllowHeaders")),
            expose_headers=tuple(header.lower() for header in names("ExposeHeaders")),
            max_age=int(age) if age is not None else None,
            allow_credentials=str(configuration.get("AllowCredentials", False)).lower() == "true",
        )

    def allowed_origin(self, origin: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed
        (``*``, an exact origin, or ``https://*``/``http://*`` for any origin of that scheme)."""
        for allowed in self.allow_origins:
            if allowed == "*":
                return "*"
            if allowed.lower() == origin.lower():
                return origin
            if allowed.endswith("://*") and origin.lower().startswith(allowed[:-1].lower()):
                return origin
        return None

    def preflight(self, origin: str, method: str) -> HttpResponse:
        """The gateway's own answer to a preflight request: 204, with the CORS headers when allowed."""
        allowed = self.allowed_origin(origin)
        headers: list[tuple[str, str]] = []
        if allowed is not None and ("*" in self.allow_methods or method.upper() in self.allow_methods):
            headers.append(("access-control-allow-origin", allowed))
            headers.append(("access-control-allow-methods", ",".join(self.allow_methods)))
            if self.allow_headers:
                headers.append(("access-control-allow-headers", ",".join(self.allow_headers)))
            if self.max_age is not None:
                headers.append(("access-control-max-age", str(self.max_age)))
            if self.allow_credentials:
                headers.append(("access-control-allow-credentials", "true"))
        return HttpResponse(204, headers, b"")

    def decorate(self, response: HttpResponse, origin: str | None) -> HttpResponse:
        """An integration's response with the integration's CORS headers dropped and the configured ones
        added for an allowed ``origin``."""
        headers = [(k, v) for k, v in response.headers if not k.lower().startswith("access-control-")]
        allowed = self.allowed_origin(origin) if origin else None
        if allowed is not None:
            headers.append(("access-control-allow-origin", allowed))
            if self.expose_headers:
                headers.append(("access-control-expose-headers", ",".join(self.expose_headers)))
            if self.allow_credentials:
                headers.append(("access-control-allow-credentials", "true"))
        return HttpResponse(response.status, headers, response.body)


@dataclass(frozen=True)
class HttpResponse:
    """What the gateway sends back: status, headers (repeatable), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def gateway_error(status: int, message: str) -> HttpResponse:
    """An error in API Gateway's own shape: ``{"message": "..."}``."""
    return HttpResponse(status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode())


def to_http_response(invocation: Invocation) -> HttpResponse:
    """A function's result as API Gateway turns it into a response (payload format 2.0).

    A dict with ``statusCode`` gives the status, ``headers``, ``cookies`` (one ``Set-Cookie`` each) and
    ``body`` (base64-decoded when ``isBase64Encoded``). Any other JSON result is sent as a 200
    ``application/json`` body, as AWS infers for format 2.0.
    """
    if not invocation.ok:
        return gateway_error(500, "Internal Server Error")
    result = invocation.payload
    if not (isinstance(result, dict) and "statusCode" in result):
        return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(result).encode())
    try:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
        body = result.get("body")
        if body is None:
            payload = b""
        elif result.get("isBase64Encoded"):
            payload = base64.b64decode(body)
        else:
            payload = str(body).encode("utf-8")
    except (TypeError, ValueError):
        return gateway_error(500, "Internal Server Error")
    if not 100 <= status <= 599:
        return gateway_error(500, "Internal Server Error")
    return HttpResponse(status, headers, payload)


def make_handler(
    routes: Sequence[Route],
    log: Callable[[str], None],
    cors: CorsPolicy | None = None,
    throttle: ThrottlePolicy | None = None,
    integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a gateway that serves ``routes`` with the API's CORS and throttling;
    ``integration_timeout`` is the integration's timeout, seconds (an HTTP API's is 50 ms to 30 s, 30 by default)."""
    buckets = throttle.buckets(routes) if throttle is not None else {}

    class GatewayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "local-api-gateway"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            raw_path = split.path or "/"
            head = len(self.requestline.encode("latin-1", "replace"))
            head += sum(len(value.encode("latin-1", "replace")) for value in self.headers.values())
            if head > MAX_REQUEST_HEAD_BYTES:
                self.close_connection = True  # the body, if any, is left unread
                self._send(gateway_error(431, "Request Header Fields Too Large"), "-")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(gateway_error(413, "Request Entity Too Large"), "-")
                return
            body = self.rfile.read(length) if length > 0 else b""
            origin = self.headers.get("Origin")
            requested_method = self.headers.get("Access-Control-Request-Method")
            if cors is not None and self.command == "OPTIONS" and origin and requested_method:
                self._send(cors.preflight(origin, requested_method), "-")
                return
            found = find_route(routes, self.command, unquote(raw_path))
            if found is None:
                self._send(gateway_error(404, "Not Found"), "-")
                return
            route, parameters = found
            bucket = buckets.get(route.route_key)
            if bucket is not None and not bucket.take():
                self._send(gateway_error(429, "Too Many Requests"), "-")
                return
            event = build_event(
                method=self.command,
                raw_path=raw_path,
                raw_query=split.query,
                headers=list(self.headers.items()),
                body=body,
                route_key=route.route_key,
                path_parameters=parameters,
                source_ip=self.client_address[0],
            )
            if payload_bytes(event) > MAX_PAYLOAD_BYTES:  # Lambda refuses the invocation itself
                self._send(gateway_error(413, "Request Entity Too Large"), event["requestContext"]["requestId"])
                return
            started = time.monotonic()
            invocation = route.pool.invoke(event)
            if time.monotonic() - started > integration_timeout:
                response = gateway_error(503, "Service Unavailable")
            else:
                response = to_http_response(invocation)
            if cors is not None:
                response = cors.decorate(response, origin)
            self._send(response, event["requestContext"]["requestId"])

        def _send(self, response: HttpResponse, request_id: str) -> None:
            self.send_response(response.status)
            names = {name.lower() for name, _ in response.headers}
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("apigw-requestid", request_id)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, PROPFIND, ...) is routed like the others (and finds no route: API Gateway's
            # 404), where http.server would answer 501 by itself.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
            log(json.dumps({"gateway": "access", "client": self.client_address[0], "request": format % args}))

    return GatewayHandler


class JsonLinesServer(ThreadingHTTPServer):
    """A threading HTTP server whose failed requests are one JSON line each in the stack's output (its ``log``),
    never a traceback on stderr as ``socketserver`` prints them: the stack's output stays JSON lines. A client
    that hangs up before its response is read (``curl ... | head -c 15``: ``BrokenPipeError``,
    ``ConnectionResetError``) is ``{"<name>": "client disconnected", ...}``; any other error names its type and
    carries its traceback as a string."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        log: Callable[[str], None],
        name: str = "gateway",
    ) -> None:
        self._log = log
        self._name = name
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002 - socketserver's signature
        """Log the error of the request being handled (called from its ``except``) as one JSON line."""
        error = sys.exc_info()[1]
        line: dict[str, Any] = {self._name: "request failed", "client": client_address[0]}
        if isinstance(error, ConnectionError):
            line[self._name] = "client disconnected"
        else:
            line["traceback"] = traceback.format_exc()
        self._log(json.dumps({**line, "error": type(error).__name__}))


class Gateway:
    """The HTTP server on ``host:port`` (port 0 picks a free one; ``port`` tells which)."""

    def __init__(
        self,
        routes: Sequence[Route],
        host: str,
        port: int,
        log: Callable[[str], None],
        cors: CorsPolicy | None = None,
        throttle: ThrottlePolicy | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        handler = make_handler(routes, log, cors, throttle, integration_timeout)
        self.server = JsonLinesServer((host, port), handler, log)

    @property
    def port(self) -> int:
        """The port the gateway listens on."""
        return int(self.server.server_address[1])

    def serve_forever(self) -> None:
        """Serve until ``shutdown``."""
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
