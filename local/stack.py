"""``make run``: the whole system on this machine, from ``template.yaml``.

Starts moto's server (SQS and SSM, and DynamoDB unless DynamoDB Local serves it; all over the real AWS wire
protocol) and creates the template's tables and queues there; stores the development HS256 secret as the SSM
parameter the API function reads; runs each function in worker processes of its own; serves the HTTP API on
``127.0.0.1:$JOBS_LOCAL_PORT``; and plays the SQS and DynamoDB-stream event source mappings. Function logs are
JSON lines on stdout, as CloudWatch shows them; the stack's own messages go to stderr.

Environment (all optional):
    JOBS_LOCAL_PORT           gateway port (3000, sam local's)
    JOBS_LOCAL_AWS_PORT       moto server port (5000; 0 picks a free one)
    JOBS_LOCAL_LAMBDA_PORT    the functions' Lambda Invoke API port (3001, sam local start-lambda's; 0: free)
    JOBS_LOCAL_DYNAMODB       where the tables live: "auto" (DynamoDB Local when `make dynamodb-local` has
                              installed it and java runs, else moto), "local", "moto", or the URL of a running
                              DynamoDB-compatible endpoint
    JOBS_JWT_SECRET           the HS256 secret the local stack puts in SSM (a development default, with a warning)
    JOBS_LOCAL_CONCURRENCY    worker processes per function (2)
    JOBS_PARAMETER_OVERRIDES  template parameters, "Key=Value Key2=Value2" (like sam's --parameter-overrides);
                              "HighPriorityScope=jobs:high" makes HIGH jobs need that scope in the token (make
                              token SUB=alice SCOPE=jobs:high signs one)
    JOBS_LOCAL_ENV_VARS       a JSON file of extra function environment, in sam local's --env-vars shape:
                              {"Parameters": {...all functions...}, "ApiFunction": {...one function...}}
    JOBS_FAULT_INJECTION      "1" adds the fault-injection job types (flaky, fail, sleep, crash) to every function
    JOBS_LOCAL_SQS_INVALID_CHARACTERS
                              what moto's SQS does with a message character AWS does not allow (SendMessage API
                              reference, MessageBody): "refuse" (InvalidMessageContents, as AWS documents today) or
                              "replace" (each becomes U+FFFD, as it documented before); see local/moto_server.py
    JOBS_LOCAL_SQS_FAIR_QUEUES
                              "0" turns off moto's play of SQS fair queues on standard queues (on by default, as on
                              AWS); read by the moto server process (local/moto_server.py)
    JOBS_LOCAL_TTL_SWEEP_SECONDS
                              seconds between the local TTL sweeps (local/ttl.py) that delete expired items as
                              DynamoDB's TTL does, with TTL's userIdentity in their stream records (5; "0": none)
    JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK
                              "1" lets job callbacks go to loopback addresses (127.0.0.0/8, ::1, localhost), for
                              receivers on this machine (tests'): sets JOBS_CALLBACK_ALLOW_LOOPBACK on every
                              function. Off by default, as on AWS, where template.yaml never sets it; every other
                              forbidden address (private, link-local, metadata, ...) stays refused either way
    JOBS_LOCAL_CALLBACK_CA_BUNDLE
                              a PEM file of extra certificate authorities callbacks trust (a test CA such as
                              trustme's): JOBS_CALLBACK_CA_BUNDLE on every function
    JOBS_LOCAL_CALLBACK_RETRY_DELAYS
                              the callbacks' waits between attempts, seconds, "1,2,3" (or JSON "[1,2,3]"), to play
                              the 27.6-hour schedule in seconds: JOBS_CALLBACK_RETRY_DELAYS_SECONDS on every function

Job State Change events go to moto's EventBridge, on the bus the publisher's ``JOBS_EVENT_BUS_NAME`` names (the
template's ``JobEventsBus``). The stack adds a local-only tap, not in the template: the SQS queue
``jobs-local-JobEventsTap`` and a rule on that bus that delivers every event of source ``chuck-norris.jobs`` to it
(the banner's ``Job events`` line), so that a test or the AWS CLI can read what subscribers would get.

Job callbacks: the template's ``JobCallbacksRule`` (final events of jobs with a ``callback_url``) sends to
``JobCallbacksQueue`` through moto's EventBridge, once its ``JobCallbacksQueuePolicy`` is checked
(``local.resources``), and the callback sender reads that queue. At start, the stack creates the signing key
parameter (SecureString) and its public half (``local.webhook_keys``) with a fresh Ed25519 key when absent; the
banner's ``Callbacks`` line gives the public keys' URL and whether loopback receivers are allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal

# subprocess starts moto's server from a fixed argument list (local only).
import subprocess  # nosec B404
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from local import dynamodb_local
from local.gateway import CorsPolicy, Gateway, Route, ThrottlePolicy
from local.lambda_api import ApiError, EventSourceMapping, LambdaApi
from local.moto_server import INVALID_CHARACTERS_MODES, INVALID_CHARACTERS_VARIABLE
from local.poller import SqsPoller, enabled_event
from local.ports import die_with_parent, free_port, port_is_free, wait_for_port
from local.resources import LocalStack, UndeliverableRule, event_sources, http_api_routes
from local.runtime import FunctionPool
from local.schedule import Schedule
from local.streams import StreamPoller, matches
from local.template import REGION, Resolver, UnsupportedTemplate, load_template
from local.ttl import TtlSweeper

ROOT = Path(__file__).resolve().parent.parent
#: The ``source`` of Job State Change events (``jobs.events.EVENT_SOURCE``), which the local tap's rule matches.
JOB_EVENTS_SOURCE = "chuck-norris.jobs"
#: The local tap's queue and rule (``<stack>-<name>``, like the template's resources).
TAP_QUEUE = "JobEventsTap"
TAP_RULE = "job-events-tap"
#: Development-only secret (48 bytes, above HS256's 32-byte minimum of RFC 7518 section 3.2). Never deployed.
# The documented local default, never deployed.
DEVELOPMENT_SECRET = "local-development-secret-do-not-use-in-aws-0123456"  # nosec B105
#: The stack's switches for callbacks (``JOBS_LOCAL_*``) and the function variable each sets on every function.
CALLBACK_SWITCHES = {
    "JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK": "JOBS_CALLBACK_ALLOW_LOOPBACK",
    "JOBS_LOCAL_CALLBACK_CA_BUNDLE": "JOBS_CALLBACK_CA_BUNDLE",
    "JOBS_LOCAL_CALLBACK_RETRY_DELAYS": "JOBS_CALLBACK_RETRY_DELAYS_SECONDS",
}
#: moto's server accepts any credentials; these reach no AWS account.
LOCAL_CREDENTIALS = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "testing")


def jwt_secret(environ: Mapping[str, str] = os.environ) -> str:
    """The local stack's HS256 secret: ``JOBS_JWT_SECRET``, else the development default."""
    return environ.get("JOBS_JWT_SECRET") or DEVELOPMENT_SECRET


def parse_overrides(text: str) -> dict[str, str]:
    """``"Key=Value Key2='a b'"`` as a dict (the syntax of sam's ``--parameter-overrides``)."""
    pairs = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"parameter override {item!r} is not Key=Value")
        pairs[key] = value
    return pairs


def choose_dynamodb(choice: str, installation: dynamodb_local.Installation | None = None) -> str:
    """The stack's ``dynamodb`` argument for ``--dynamodb``/``JOBS_LOCAL_DYNAMODB``: ``auto`` is ``local`` when
    DynamoDB Local is installed (``installation``, else looked up) and ``moto`` otherwise, saying why on stderr.

    Raises:
        SystemExit: for a value that is none of auto, local, moto or an http(s) URL.
    """
    if choice == "auto":
        found = installation or dynamodb_local.find()
        if found.jar is not None:
            return "local"
        _say(f"DynamoDB Local: {found.reason}; the tables live in moto's server.")
        return "moto"
    if choice in ("local", "moto"):
        return choice
    if choice.startswith(("http://", "https://")):
        url = urlsplit(choice)
        try:
            valid = bool(url.hostname) and (url.port or 0) >= 0  # .port raises ValueError when not a number
        except ValueError:
            valid = False
        if valid:
            return choice
        raise SystemExit(f"JOBS_LOCAL_DYNAMODB/--dynamodb: {choice!r} is not a valid http(s) URL")
    raise SystemExit(f"JOBS_LOCAL_DYNAMODB/--dynamodb: {choice!r} is not auto, local, moto or an http(s) URL")


def callback_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The function environment the ``JOBS_LOCAL_*`` callback switches ask for (``CALLBACK_SWITCHES``): the
    loopback flag as ``true`` or ``false``, the CA bundle's absolute path, the retry waits as a JSON list.

    Raises:
        SystemExit: a CA bundle that is not a file, or waits that are not whole seconds.
    """
    found: dict[str, str] = {}
    loopback = environ.get("JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK", "")
    if loopback:
        found["JOBS_CALLBACK_ALLOW_LOOPBACK"] = "true" if loopback.lower() in ("1", "true", "yes", "on") else "false"
    bundle = environ.get("JOBS_LOCAL_CALLBACK_CA_BUNDLE", "")
    if bundle:
        if not Path(bundle).is_file():
            raise SystemExit(f"JOBS_LOCAL_CALLBACK_CA_BUNDLE: {bundle} is not a file")
        found["JOBS_CALLBACK_CA_BUNDLE"] = str(Path(bundle).resolve())
    delays = environ.get("JOBS_LOCAL_CALLBACK_RETRY_DELAYS", "").strip()
    if delays:
        try:
            values = json.loads(delays) if delays.startswith("[") else [int(v) for v in delays.split(",")]
            if not all(isinstance(v, int) and v >= 0 for v in values):
                raise ValueError(delays)
        except ValueError as error:
            raise SystemExit(f"JOBS_LOCAL_CALLBACK_RETRY_DELAYS: {delays!r} is not whole seconds, 1,2,3") from error
        found["JOBS_CALLBACK_RETRY_DELAYS_SECONDS"] = json.dumps(values)
    return found


def callbacks_banner(port: int, function_environment: Mapping[str, Mapping[str, str]]) -> str:
    """The banner's line on job callbacks: where the public keys are served, and the loopback flag's state."""
    loopback = function_environment.get("Parameters", {}).get("JOBS_CALLBACK_ALLOW_LOOPBACK") == "true"
    state = (
        "loopback receivers ALLOWED (JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK=1; never on AWS)"
        if loopback
        else "loopback receivers refused (JOBS_LOCAL_CALLBACKS_ALLOW_LOOPBACK=1 allows them)"
    )
    return f"Callbacks     public keys http://127.0.0.1:{port}/api/v1/webhooks/public-key; {state}"


def cli_usage(port: int) -> list[str]:
    """The banner's lines on using the command line (``jobsctl``, from ``pip install -e .``) against this stack."""
    url = "" if port == 3000 else f" JOBS_API_URL=http://127.0.0.1:{port}"
    return [
        f"Command line  export JOBS_TOKEN=$(make -s token SUB=alice){url}",
        "              .venv/bin/jobsctl submit --title Audit --payload @events/seed-report-payload.json --wait",
        "              (and list, get, delete, token; pip install -e . puts it on PATH; README: Command line)",
    ]


def aws_cli_environment(stack: Stack) -> str:
    """The banner's line that points the AWS CLI (v1 or v2) and the SDKs at this stack, service by service
    (``AWS_ENDPOINT_URL_<SERVICE>``, which botocore reads), so that the README's commands run unchanged."""
    variables = {
        "AWS_ENDPOINT_URL_SQS": stack.endpoint,
        "AWS_ENDPOINT_URL_SSM": stack.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": stack.dynamodb_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{stack.lambda_port}",
        "AWS_ENDPOINT_URL_EVENTBRIDGE": stack.endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # nosec B105 - the local stack takes any credentials
        "AWS_DEFAULT_REGION": REGION,
    }
    return "export " + " ".join(f"{name}={value}" for name, value in variables.items())


def start_moto(port: int, sqs_invalid_characters: str = INVALID_CHARACTERS_MODES[0]) -> subprocess.Popen[bytes]:
    """Start moto's server on 127.0.0.1:``port`` as ``local.moto_server`` (moto.server with its SQS deletes made
    thread-safe and AWS's message characters enforced: see that module) and wait until it listens.

    Args:
        port: the port to listen on.
        sqs_invalid_characters: ``refuse`` or ``replace``, passed as ``JOBS_LOCAL_SQS_INVALID_CHARACTERS``.

    Raises:
        SystemExit: the server exited at start or did not listen within 30 s.
    """
    command = [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # A fixed argument list: this interpreter, local.moto_server, loopback and a port number.
    process = subprocess.Popen(  # noqa: S603 # nosec B603
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
        env={**os.environ, "PYTHONPATH": python_path, INVALID_CHARACTERS_VARIABLE: sqs_invalid_characters},
    )
    if not wait_for_port(port, process, 30):
        if process.poll() is not None:
            raise SystemExit(f"moto's server exited at start (is port {port} free? JOBS_LOCAL_AWS_PORT)")
        process.kill()
        raise SystemExit("moto's server did not start within 30 s")
    return process


_OUTPUT_LOCK = threading.Lock()


def _table_of_stream(stream_arn: str) -> str:
    """The table name in a stream's ARN (``arn:...:table/<name>/stream/<label>``)."""
    return stream_arn.split(":table/", 1)[-1].split("/stream/", 1)[0]


def _emit(line: str) -> None:
    """One log line of the stack itself (gateway, pollers) on stdout, whole, whichever thread writes it."""
    with _OUTPUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _no_resources(logical_id: str) -> dict[str, str]:
    raise UnsupportedTemplate(f"a rule cannot refer to the resource {logical_id}")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Stack:
    """The running local stack. ``start()`` brings everything up; ``stop()`` takes it down.

    Args:
        template_path: the SAM template.
        port: the gateway port (0 for a free one).
        aws_port: moto's port (0 for a free one).
        lambda_port: the Lambda Invoke API's port (0 for a free one).
        concurrency: worker processes per function.
        parameter_overrides: template parameter values.
        secret: the HS256 secret to store in SSM.
        function_environment: extra variables, ``{"Parameters": {...}}`` for every function and
            ``{"<LogicalId>": {...}}`` for one (sam local's ``--env-vars`` shape).
        dynamodb: where the tables live: ``"moto"`` (moto's server), ``"local"`` (a DynamoDB Local server the
            stack starts and stops; ``SystemExit`` when it is not installed) or the URL of a running endpoint.
            The functions reach it through ``AWS_ENDPOINT_URL_DYNAMODB``, as boto3 reads it.
        sqs_invalid_characters: what moto's SQS does with a message character AWS does not allow: ``refuse`` or
            ``replace`` (``local.moto_server``); ``SystemExit`` for anything else.
    """

    def __init__(
        self,
        template_path: Path = ROOT / "template.yaml",
        *,
        port: int = 3000,
        aws_port: int = 5000,
        lambda_port: int = 0,
        concurrency: int = 2,
        parameter_overrides: Mapping[str, str] | None = None,
        secret: str = DEVELOPMENT_SECRET,
        function_environment: Mapping[str, Mapping[str, str]] | None = None,
        dynamodb: str = "moto",
        sqs_invalid_characters: str = INVALID_CHARACTERS_MODES[0],
    ) -> None:
        if sqs_invalid_characters not in INVALID_CHARACTERS_MODES:
            raise SystemExit(
                f"{INVALID_CHARACTERS_VARIABLE}/--sqs-invalid-characters: {sqs_invalid_characters!r} is not one of "
                + ", ".join(INVALID_CHARACTERS_MODES)
            )
        self.sqs_invalid_characters = sqs_invalid_characters
        self.template_path = template_path
        self.port = port
        self.aws_port = aws_port or free_port()
        self.lambda_port = lambda_port
        self._lambda_api: LambdaApi | None = None
        self.concurrency = concurrency
        self.parameter_overrides = dict(parameter_overrides or {})
        self.secret = secret
        self.function_environment = {k: dict(v) for k, v in (function_environment or {}).items()}
        self.endpoint = f"http://127.0.0.1:{self.aws_port}"
        self.dynamodb = dynamodb
        #: Where DynamoDB (and its streams) answer: moto's endpoint, DynamoDB Local's, or the given URL.
        self.dynamodb_endpoint = dynamodb if dynamodb.startswith(("http://", "https://")) else self.endpoint
        self._dynamodb_local: dynamodb_local.DynamoDBLocal | None = None
        self._moto: subprocess.Popen[bytes] | None = None
        self._pools: list[FunctionPool] = []
        self._pollers: list[SqsPoller | StreamPoller | Schedule] = []
        #: The SQS and stream event source mappings, as the Lambda API lists them.
        self.mappings: list[EventSourceMapping] = []
        self._mapping_pollers: dict[str, SqsPoller | StreamPoller] = {}  # by mapping UUID
        self._gateway: Gateway | None = None
        self._home = tempfile.TemporaryDirectory(prefix="jobs-local-")
        self.physical: dict[str, dict[str, str]] = {}
        #: The local tap's queue URL and the bus its rule is on (``start``), when a function publishes events.
        self.event_tap: tuple[str, str] | None = None
        self.ttl_sweep_seconds = float(os.environ.get("JOBS_LOCAL_TTL_SWEEP_SECONDS") or 5)
        self._sweepers: dict[str, TtlSweeper] = {}

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's endpoint of ``service`` (DynamoDB's own for DynamoDB, else moto's)."""
        endpoint = self.dynamodb_endpoint if service in ("dynamodb", "dynamodbstreams") else self.endpoint
        return boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ).client(service, endpoint_url=endpoint)

    def dynamodb_engine(self) -> str:
        """What serves DynamoDB, for the banner: ``moto``, ``DynamoDB Local <version>`` or the given URL's."""
        if self._dynamodb_local is not None:
            return f"DynamoDB Local {self._dynamodb_local.version}"
        return "moto" if self.dynamodb_endpoint == self.endpoint else "the given endpoint"

    def start(self) -> None:
        """Start moto (and DynamoDB Local), create the resources, start the functions, the pollers and the
        gateway.

        Raises:
            SystemExit: the template's Rules refuse the parameter values (as CloudFormation refuses the deploy),
                a port is taken (another stack, say: the stack never shares another's moto, whose queues it would
                drain), or moto or DynamoDB Local did not start.
        """
        self.check_rules()
        ports = [(self.port, "JOBS_LOCAL_PORT"), (self.aws_port, "JOBS_LOCAL_AWS_PORT")]
        ports.append((self.lambda_port, "JOBS_LOCAL_LAMBDA_PORT"))
        for port, variable in ports:
            if not port_is_free(port):
                raise SystemExit(
                    f"port {port} is in use (another make run?): stop it, or set {variable} to another port "
                    "(0 picks a free one)"
                )
        self._start_moto()
        if self.dynamodb == "local":
            installation = dynamodb_local.find()
            if installation.jar is None:
                raise SystemExit(f"DynamoDB Local: {installation.reason}")
            self._dynamodb_local = dynamodb_local.DynamoDBLocal(installation.jar)
            try:
                self.dynamodb_endpoint = self._dynamodb_local.start()
            except RuntimeError as error:
                raise SystemExit(str(error)) from error
        stack = LocalStack(self.template_path, self.client, parameter_overrides=self.parameter_overrides)
        try:
            self.physical = stack.create_all()
        except EndpointConnectionError as error:
            raise SystemExit(f"DynamoDB cannot be reached at {self.dynamodb_endpoint} ({error})") from error
        except UndeliverableRule as error:
            raise SystemExit(str(error)) from error
        specs = stack.functions()
        self._start_ttl_sweepers(stack)
        for spec in specs:
            bus = spec.environment.get("JOBS_EVENT_BUS_NAME")
            if bus and self.event_tap is None:
                self.event_tap = (self._event_tap(bus), bus)
        for event in stack.unemulated_events():
            _say(f"WARNING: the local stack does not play the event {event}")
        base_environment = {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "HOME": self._home.name,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
        }
        ssm = self.client("ssm")
        for spec in specs:
            name = spec.environment.get("JWT_SECRET_PARAMETER")
            if name and not spec.environment.get("JWKS_URL"):
                ssm.put_parameter(Name=name, Value=self.secret, Type="SecureString", Overwrite=True)
        self._webhook_keys(specs)
        routes: list[Route] = []
        for spec in specs:
            extra = {
                **self.function_environment.get("Parameters", {}),
                **self.function_environment.get(spec.logical_id, {}),
            }
            spec = replace(spec, environment={**spec.environment, **{k: str(v) for k, v in extra.items()}})
            pool = FunctionPool(spec, self.concurrency, base_environment, ROOT)
            pool.start()
            self._pools.append(pool)
            routes.extend(Route(method, path, pool) for method, path in http_api_routes(spec, stack.resolver))
            for source in event_sources(spec, stack.resolver, "DynamoDB"):
                mapping = EventSourceMapping(spec.logical_id, source["Stream"], source, enabled_event())
                self.mappings.append(mapping)
                self._start_stream_poller(mapping)
            for source in event_sources(spec, stack.resolver, "Schedule"):
                schedule = Schedule(pool, source, log=_emit)
                schedule.start()
                self._pollers.append(schedule)
            for source in event_sources(spec, stack.resolver, "SQS"):
                queue_arn = source["Queue"]
                queue_url = next(p["Ref"] for p in self.physical.values() if p.get("Arn") == queue_arn)
                mapping = EventSourceMapping(spec.logical_id, queue_arn, source, enabled_event())
                self.mappings.append(mapping)
                poller = SqsPoller(
                    self.client("sqs"),
                    queue_url,
                    queue_arn,
                    pool,
                    batch_size=int(source.get("BatchSize", 10)),
                    # ScalingConfig.MaximumConcurrency caps the concurrent invocations a mapping starts.
                    pollers=min(self.concurrency, int(source.get("ScalingConfig", {}).get("MaximumConcurrency", 1000))),
                    log=_emit,
                    enabled=mapping.enabled,
                )
                mapping.busy = poller.busy
                poller.start()
                self._pollers.append(poller)
                self._mapping_pollers[mapping.uuid] = poller
        apis = stack.http_apis()
        if len(apis) > 1:
            raise SystemExit(f"the local gateway serves one HttpApi; the template has {sorted(apis)}")
        settings = next(iter(apis.values()), {})
        cors = CorsPolicy.from_configuration(settings["CorsConfiguration"]) if "CorsConfiguration" in settings else None
        throttle = ThrottlePolicy.from_route_settings(settings.get("DefaultRouteSettings", {}))
        try:
            self._gateway = Gateway(routes, "127.0.0.1", self.port, _emit, cors=cors, throttle=throttle)
        except OSError as error:
            raise SystemExit(f"the gateway cannot listen on port {self.port} ({error}); set JOBS_LOCAL_PORT") from error
        self.port = self._gateway.port
        threading.Thread(target=self._gateway.serve_forever, name="gateway", daemon=True).start()
        try:
            self._lambda_api = LambdaApi(
                {pool.spec.logical_id: pool for pool in self._pools},
                "127.0.0.1",
                self.lambda_port,
                mappings=self.mappings,
                log=_emit,
                control=self,
            )
        except OSError as error:
            raise SystemExit(f"the Lambda API cannot listen on port {self.lambda_port} ({error})") from error
        self.lambda_port = self._lambda_api.port
        self._lambda_api.start()

    def _start_stream_poller(self, mapping: EventSourceMapping) -> StreamPoller:
        """Start the poller of a DynamoDB stream ``mapping`` (its settings: the template event's properties or a
        CreateEventSourceMapping request's fields, which share their names but the stream's)."""
        source = mapping.settings
        stream = StreamPoller(
            self.client("dynamodbstreams"),
            mapping.event_source_arn,
            next(pool for pool in self._pools if pool.spec.logical_id == mapping.function_name),
            batch_size=int(source.get("BatchSize", 100)),
            starting_position=str(source.get("StartingPosition", "LATEST")),
            filters=[f["Pattern"] for f in source.get("FilterCriteria", {}).get("Filters", [])],
            log=_emit,
            maximum_retry_attempts=int(source.get("MaximumRetryAttempts", -1)),
            maximum_record_age_seconds=int(source.get("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=bool(source.get("BisectBatchOnFunctionError", False)),
            on_failure=self._on_failure_destination(source),
            enabled=mapping.enabled,
            parallelization_factor=int(source.get("ParallelizationFactor", 1)),
            identity_of=self._stream_identities(mapping.event_source_arn),
        )
        mapping.ready = stream.started.is_set
        stream.start()
        self._pollers.append(stream)
        self._mapping_pollers[mapping.uuid] = stream
        return stream

    def create(self, function_name: str, settings: Mapping[str, Any]) -> EventSourceMapping:
        """CreateEventSourceMapping (``local.lambda_api``): a started mapping of a DynamoDB stream.

        Raises:
            ApiError: 400 ``InvalidParameterValueException`` when the stream cannot be described (Lambda checks
                the source when it creates a mapping), the on-failure destination is not one of the stack's
                queues, or a filter pattern uses an operator the local poller does not play.
        """
        arn = str(settings["EventSourceArn"])
        try:
            self.client("dynamodbstreams").describe_stream(StreamArn=arn)
        except (ClientError, BotoCoreError) as error:
            raise ApiError(400, "InvalidParameterValueException", f"Stream not found: {arn} ({error})") from error
        destination = settings.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination and not any(p.get("Arn") == destination for p in self.physical.values()):
            raise ApiError(400, "InvalidParameterValueException", f"the destination {destination} is not a queue here")
        for item in settings.get("FilterCriteria", {}).get("Filters", []):
            try:
                matches(json.loads(item["Pattern"]), {})
            except UnsupportedTemplate as error:
                raise ApiError(400, "InvalidParameterValueException", str(error)) from error
        enabled = enabled_event()
        if not settings.get("Enabled", True):
            enabled.clear()
        plain = {key: value for key, value in settings.items() if key != "Enabled"}
        mapping = EventSourceMapping(function_name, arn, plain, enabled)
        self.mappings.append(mapping)
        self._start_stream_poller(mapping)
        return mapping

    def delete(self, mapping: EventSourceMapping, done: Callable[[], object]) -> None:
        """DeleteEventSourceMapping (``local.lambda_api``): stop ``mapping``'s poller (a stream's or a queue's)
        after its batch in flight, in a thread of its own, then call ``done``."""

        def stop() -> None:
            poller = self._mapping_pollers.pop(mapping.uuid, None)
            if poller is not None:
                poller.stop()
                if poller in self._pollers:
                    self._pollers.remove(poller)
            if mapping in self.mappings:
                self.mappings.remove(mapping)
            _emit(json.dumps({"mapping": mapping.uuid, "level": "INFO", "deleted": mapping.event_source_arn}))
            done()

        threading.Thread(target=stop, name="mapping-delete", daemon=True).start()

    def _start_ttl_sweepers(self, stack: LocalStack) -> None:
        """A ``local.ttl.TtlSweeper`` per table whose TTL is enabled (none when ``ttl_sweep_seconds`` is 0)."""
        if self.ttl_sweep_seconds <= 0:
            return
        for logical_id, resource in stack.resources.items():
            if resource["Type"] != "AWS::DynamoDB::Table" or logical_id not in self.physical:
                continue
            properties = resource.get("Properties", {})
            ttl = properties.get("TimeToLiveSpecification") or {}
            if not ttl.get("Enabled"):
                continue
            keys = [key["AttributeName"] for key in properties["KeySchema"]]
            sweeper = TtlSweeper(
                self.client("dynamodb"),
                self.physical[logical_id]["Ref"],
                keys,
                str(ttl["AttributeName"]),
                interval=self.ttl_sweep_seconds,
                log=_emit,
            )
            sweeper.start()
            self._sweepers[self.physical[logical_id]["Ref"]] = sweeper

    def _stream_identities(self, stream_arn: str) -> Callable[[Mapping[str, Any]], dict[str, str] | None] | None:
        """What gives the ``userIdentity`` of a record of ``stream_arn`` (its table's TTL sweeper, whichever of the
        table's streams it is: a new one after a change of view type too), or None."""
        sweeper = self._sweepers.get(_table_of_stream(stream_arn))
        return sweeper.identity_of if sweeper is not None else None

    def _webhook_keys(self, specs: list[Any]) -> None:
        """Create the callback key parameters the functions name (the signing key parameter as a SecureString and
        its public half) with a fresh key when absent, as a deployer does with ``make webhook-keys`` before a
        deploy. (``local.webhook_keys`` imports ``jobs``: imported here, never at the module's import, which the
        function workers repeat when they start, so that they import ``jobs`` from their layer alone.)"""
        from local import webhook_keys

        names = {key: value for spec in specs for key, value in spec.environment.items()}
        signing = names.get("JOBS_CALLBACK_SIGNING_KEY_PARAMETER")
        public = names.get("JOBS_CALLBACK_PUBLIC_KEY_PARAMETER")
        if not signing or not public:
            return
        try:
            webhook_keys.ensure(webhook_keys.KeyParameters(self.client("ssm"), signing, public))
        except webhook_keys.KeyToolError as error:
            raise SystemExit(f"the callback keys: {error}") from error

    def _event_tap(self, bus: str) -> str:
        """Create the local tap on ``bus`` (the bus too, when the template did not create it, e.g. a bus named by
        ``EventBusName`` that exists only on AWS): an SQS queue and a rule sending every job event to it. Returns
        the queue's URL."""
        events, sqs = self.client("events"), self.client("sqs")
        if bus != "default" and not any(b["Name"] == bus for b in events.list_event_buses()["EventBuses"]):
            events.create_event_bus(Name=bus)
        url = sqs.create_queue(QueueName=f"jobs-local-{TAP_QUEUE}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = f"jobs-local-{TAP_RULE}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [JOB_EVENTS_SOURCE]}))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
        return str(url)

    def _on_failure_destination(self, source: Mapping[str, Any]) -> Callable[[str], None] | None:
        """What sends a discarded batch's record to a stream mapping's ``DestinationConfig.OnFailure`` (an SQS
        queue of the template; another kind raises ``UnsupportedTemplate``), or None without one."""
        destination = source.get("DestinationConfig", {}).get("OnFailure")
        if not destination:
            return None
        if destination.get("Type", "SQS") != "SQS":
            raise UnsupportedTemplate(f"on-failure destinations of type {destination.get('Type')} are not emulated")
        arn = destination["Destination"]
        queue_url = next(p["Ref"] for p in self.physical.values() if p.get("Arn") == arn)
        sqs = self.client("sqs")
        return lambda body: sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    def check_rules(self) -> None:
        """Refuse to start, before anything is started, when the template's ``Rules`` refuse the parameter values.

        Raises:
            SystemExit: the ``AssertDescription`` of every failing assertion.
        """
        resolver = Resolver(load_template(self.template_path), "jobs-local", _no_resources, self.parameter_overrides)
        broken = resolver.broken_rules()
        if broken:
            raise SystemExit("the template's Rules refuse these parameters: " + " ".join(broken))

    def _start_moto(self) -> None:
        self._moto = start_moto(self.aws_port, self.sqs_invalid_characters)

    def stop(self) -> None:
        """Stop everything this stack started."""
        for sweeper in self._sweepers.values():
            sweeper.stop()
        for poller in list(self._pollers):  # a mapping's delete may remove its poller meanwhile
            poller.stop()
        if self._gateway is not None:
            self._gateway.shutdown()
        if self._lambda_api is not None:
            self._lambda_api.shutdown()
        for pool in self._pools:
            pool.close()
        if self._dynamodb_local is not None:
            self._dynamodb_local.stop()
        if self._moto is not None:
            self._moto.terminate()
            try:
                self._moto.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._moto.kill()
        self._home.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Run the local stack until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--port", type=int, default=int(os.environ.get("JOBS_LOCAL_PORT", "3000")))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("JOBS_LOCAL_AWS_PORT", "5000")))
    parser.add_argument("--lambda-port", type=int, default=int(os.environ.get("JOBS_LOCAL_LAMBDA_PORT", "3001")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("JOBS_LOCAL_CONCURRENCY", "2")))
    parser.add_argument("--parameter-overrides", default=os.environ.get("JOBS_PARAMETER_OVERRIDES", ""))
    parser.add_argument("--env-vars", type=Path, default=os.environ.get("JOBS_LOCAL_ENV_VARS") or None)
    parser.add_argument("--dynamodb", default=os.environ.get("JOBS_LOCAL_DYNAMODB") or "auto")
    parser.add_argument(
        "--sqs-invalid-characters",
        default=os.environ.get(INVALID_CHARACTERS_VARIABLE) or INVALID_CHARACTERS_MODES[0],
    )
    args = parser.parse_args(argv)
    function_environment: dict[str, dict[str, str]] = {}
    if args.env_vars:
        function_environment = json.loads(Path(args.env_vars).read_text(encoding="utf-8"))
    if os.environ.get("JOBS_FAULT_INJECTION"):
        function_environment.setdefault("Parameters", {})["JOBS_FAULT_INJECTION"] = os.environ["JOBS_FAULT_INJECTION"]
    function_environment.setdefault("Parameters", {}).update(callback_environment())

    if not os.environ.get("JOBS_JWT_SECRET"):
        _say("WARNING: JOBS_JWT_SECRET is not set; using the development default secret (local use only).")
    stack = Stack(
        args.template,
        port=args.port,
        aws_port=args.aws_port,
        lambda_port=args.lambda_port,
        concurrency=max(1, args.concurrency),
        parameter_overrides=parse_overrides(args.parameter_overrides),
        secret=jwt_secret(),
        function_environment=function_environment,
        dynamodb=choose_dynamodb(args.dynamodb),
        sqs_invalid_characters=args.sqs_invalid_characters,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, lambda *_: stopping.set())  # the terminal closed
    try:
        stack.start()
        _say(
            "\n".join(
                [
                    f"Jobs API      http://127.0.0.1:{stack.port}/api/v1/jobs",
                    f"AWS endpoint  {stack.endpoint}  (moto: SQS, SSM, EventBridge; region {REGION}, any credentials)",
                    f"Lambda API    http://127.0.0.1:{stack.lambda_port}  (Invoke, event source mappings)",
                    f"DynamoDB      {stack.dynamodb_endpoint}  ({stack.dynamodb_engine()})",
                    "Resources     "
                    + json.dumps({logical: physical["Ref"] for logical, physical in stack.physical.items()}),
                    "AWS CLI       " + aws_cli_environment(stack),
                    *(
                        [
                            f"Job events    {stack.event_tap[0]}  (local tap: every Job State Change on bus "
                            f"{stack.event_tap[1]}; aws --endpoint-url $AWS_ENDPOINT_URL_SQS sqs receive-message "
                            f"--queue-url {stack.event_tap[0]}, the endpoint for AWS CLI v1)"
                        ]
                        if stack.event_tap
                        else []
                    ),
                    callbacks_banner(stack.port, stack.function_environment),
                    "Get a token   make token SUB=alice",
                    *cli_usage(stack.port),
                    *(
                        ["Fault types   on: the functions also serve flaky, fail, sleep and crash"]
                        if stack.function_environment.get("Parameters", {}).get("JOBS_FAULT_INJECTION")
                        else []
                    ),
                    "Ready. Ctrl-C stops the stack.",
                ]
            )
        )
        stopping.wait()
    finally:
        _say("Stopping the local stack...")
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
