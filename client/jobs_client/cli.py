"""The ``jobsctl`` command (also installed as ``jobs``): submit, list, get, wait for, cancel and delete jobs of the
API.

``jobs`` is the name the issue gave it, but ``jobs`` is a builtin of bash, zsh, dash and fish, which run their
builtin rather than a command of that name found on ``PATH``; ``jobsctl`` is the name a shell user can type.

Configuration: ``JOBS_API_URL`` (default the local stack, ``http://127.0.0.1:3000``) and ``JOBS_TOKEN``, or the
``--api-url`` and ``--token`` flags. Tables for people by default; ``--json`` prints the API's JSON for scripts.

``submit`` sends an ``Idempotency-Key`` (``--idempotency-key``, or a new UUID), so the client's own retries never
create a second job; when the outcome is unknown (no answer, a 5xx or 409 after the retries) the key is printed on
stderr, for a retry that returns the job if the first try created it.

Exit status: 0 done; 1 a waited job FAILED (its error is shown); 2 a usage error; 3 the API refused the request
or could not be reached; 4 ``--wait`` timed out with the job still QUEUED or RUNNING; 141 the output was closed
before the command finished writing (``jobsctl list | head -1``), quietly, as shells report a command that
SIGPIPE ended; 130 Ctrl-C.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from jobs.models import START_TIME, DuplicateMemberName, Job, JobPriority, JobStatus, format_timestamp, read_json
from jobs_client import render
from jobs_client.client import DEFAULT_API_URL, JobsClient, check_idempotency_key, new_idempotency_key
from jobs_client.dev_token import LocalStackUnavailable, issue_local_token
from jobs_client.errors import (
    Conflict,
    ConnectionFailed,
    JobsApiError,
    JobsClientError,
    ServerError,
    Unauthorized,
    ValidationFailed,
    WaitTimedOut,
)


class ExitCode(IntEnum):
    """The command's exit statuses (130 on Ctrl-C and 141 on a closed output, as shells report SIGINT and
    SIGPIPE: 128 plus the signal's number, so neither reads as another outcome)."""

    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    API_ERROR = 3
    TIMED_OUT = 4
    INTERRUPTED = 130
    CLOSED_PIPE = 141


def _silence_output() -> None:
    """Point standard output and error at the null device, so that nothing left in their buffers is written to a
    closed pipe at exit (Python would print "Exception ignored ... BrokenPipeError" and exit 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (AttributeError, ValueError, OSError):  # not a file descriptor (tests' captured streams)
                continue
    finally:
        os.close(devnull)


class _Commands(typer.core.TyperGroup):
    """The command group: a closed output ends the command quietly with ``ExitCode.CLOSED_PIPE``, whether it is
    found while parsing (``--help``) or while running. typer would catch the ``BrokenPipeError`` itself and exit
    1, the status of a FAILED job here."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _closed_pipe_exits():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        with _closed_pipe_exits():
            return super().invoke(ctx)


def _raise_broken_pipe(console: Console) -> None:
    console.quiet = True
    raise BrokenPipeError


class _Console(Console):
    """A rich console whose closed output raises ``BrokenPipeError`` (rich's documented hook), to end the command
    with ``ExitCode.CLOSED_PIPE``; rich's own answer is ``SystemExit(1)``, the status of a FAILED job here."""

    def on_broken_pipe(self) -> None:
        _raise_broken_pipe(self)


@contextmanager
def _closed_pipe_exits() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        _silence_output()
        raise typer.Exit(ExitCode.CLOSED_PIPE) from None


#: The name of the command for hints when it is not known (the shells' ``jobs`` builtin hides the other one).
PROG = "jobsctl"

#: Builds the client of one command from ``(api_url, token)``; tests pass one with a mock transport.
ClientFactory = Callable[[str, str | None], JobsClient]

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="JOBS_API_URL", help="The API's base URL (a stack's ApiUrl output)."),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="JOBS_TOKEN", show_default=False, help="Bearer token (locally: jobsctl token --sub alice)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables (for scripts).")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait until the job is SUCCEEDED or FAILED; exit 1 if it FAILED.")]
Timeout = Annotated[float, typer.Option("--timeout", min=0, help="Seconds --wait waits before giving up (exit 4).")]
JobId = Annotated[str, typer.Argument(help="The job's id (a UUID).", show_default=False)]


def parse_payload(text: str) -> dict[str, Any]:
    """A ``--payload`` value as a JSON object: inline JSON (``'{...}'``), ``@file.json``, or ``@-`` for stdin,
    read by the API's own rule (``jobs.models.read_json``).

    Raises:
        typer.BadParameter: the file cannot be read, the text is not a JSON object, or it names a member twice.
    """
    source = "--payload"
    if text.startswith("@"):
        name = text[1:]
        source = "standard input" if name == "-" else name
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as error:
            raise typer.BadParameter(f"cannot read {name}: {error.strerror or error}") from None
    try:
        value = read_json(text)  # the API's rule: unique member names, numbers kept as written or refused
    except DuplicateMemberName as error:
        raise typer.BadParameter(f"{source}: {error}") from None
    except (ValueError, RecursionError) as error:
        raise typer.BadParameter(f"{source} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


#: A relative ``--not-before``: ``+`` then a whole number of seconds, minutes, hours or days (``+90s``, ``+10m``).
_RELATIVE = re.compile(r"\+([0-9]{1,7})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_not_before(text: str | None, now: datetime | None = None) -> str | None:
    """A ``--not-before`` value as the RFC 3339 text the API takes (UTC, milliseconds).

    Accepts RFC 3339 with an offset (``2026-12-01T09:00:00Z``, ``2026-12-01T10:00:00+01:00``), the API's own
    rule (``jobs.models.StartTime``), or a time relative to ``now`` (this machine's clock, UTC): ``+`` and a
    whole number of ``s``, ``m``, ``h`` or ``d`` (``+30s``, ``+10m``, ``+2h``, ``+1d``). The 7-day limit is the
    API's to apply (a 422).

    Raises:
        typer.BadParameter: anything else (a time without an offset, a date alone, ``10m`` without ``+``, a
            relative time past the year 9999).
    """
    if text is None:
        return None
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        try:
            return format_timestamp((now or datetime.now(UTC)) + timedelta(seconds=amount * _UNIT_SECONDS[unit]))
        except OverflowError:  # past the year 9999 (+9999999d)
            raise typer.BadParameter("is past the year 9999; the API takes at most 7 days ahead") from None
    try:
        return format_timestamp(START_TIME.validate_python(text.strip()))
    except ValidationError:
        raise typer.BadParameter(
            "must be RFC 3339 with an offset (2026-12-01T09:00:00Z) or relative to now (+90s, +10m, +2h, +1d)"
        ) from None


def not_before_option(text: str | None) -> str | None:
    """A ``--not-before`` value as ``parse_not_before`` reads it, relative forms counted from now."""
    return parse_not_before(text)


def check_key_option(key: str | None) -> str | None:
    """A ``--idempotency-key`` value, refused as a usage error when it breaks the API's rule."""
    if key is None:
        return None
    try:
        return check_idempotency_key(key)
    except ValidationFailed:
        raise typer.BadParameter("must be 1 to 255 visible ASCII characters (no spaces, no commas)") from None


#: Errors after which a submit may or may not have created its job (the answer never came, or came 5xx or 409).
_OUTCOME_UNKNOWN = (ConnectionFailed, ServerError, Conflict)


def _prog() -> str:
    """The name this command was run as (``jobsctl``, ``jobs``, ``python -m jobs_client``), for hints."""
    context = click.get_current_context(silent=True)
    name = context.find_root().info_name if context is not None else None
    return name if name in ("jobs", "jobsctl", "python -m jobs_client") else PROG


def _stderr() -> Console:
    # Messages are lines, never wrapped at 80 columns: they end up in logs and get grepped.
    return _Console(stderr=True, soft_wrap=True)


def _default_client(api_url: str, token: str | None) -> JobsClient:
    return JobsClient(api_url, token)


def build_app(make_client: ClientFactory = _default_client) -> typer.Typer:
    """The command line (``jobsctl``). ``make_client`` builds each command's ``JobsClient``."""
    app = typer.Typer(
        name=PROG,
        help="Submit, follow and manage jobs of the Chuck Norris job API.",
        no_args_is_help=True,
        add_completion=False,
        cls=_Commands,
        # A traceback must never print its locals: they hold the bearer token.
        pretty_exceptions_show_locals=False,
    )

    @contextmanager
    def session(api_url: str, token: str | None) -> Iterator[JobsClient]:
        """A client for one command. API and connection errors become a message on stderr, followed by the
        error's notes, and exit 3; a job id or URL the client refuses, exit 2; Ctrl-C, exit 130 (not click's 1,
        which means a FAILED job here)."""
        err = _stderr()
        if not token:
            err.print(f"[red]No token.[/] Set JOBS_TOKEN or pass --token (locally: {_prog()} token --sub alice).")
            raise typer.Exit(ExitCode.USAGE)
        try:
            with make_client(api_url, token) as client:
                yield client
        except JobsApiError as error:
            _show_api_error(err, error)
            _show_notes(err, error)
            raise typer.Exit(ExitCode.API_ERROR) from None
        except JobsClientError as error:
            err.print(f"[red]Error:[/] {escape(str(error))}", highlight=False)
            _show_notes(err, error)
            raise typer.Exit(ExitCode.API_ERROR) from None
        except ValueError as error:
            err.print(f"[red]Error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(ExitCode.USAGE) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None

    @app.command()
    def submit(
        title: Annotated[str, typer.Option("--title", help="The job's title (1 to 200 characters).")],
        payload: Annotated[
            str, typer.Option("--payload", help="The job's input: '{...}', @file.json, or @- for stdin.")
        ] = "{}",
        job_type: Annotated[
            str | None, typer.Option("--type", help="report (the API's default), noop, ...", show_default=False)
        ] = None,
        idempotency_key: Annotated[
            str | None,
            typer.Option(
                "--idempotency-key",
                callback=check_key_option,
                show_default=False,
                help="Makes a repeat of this submit (same key and request, within a day) return the first job, not "
                "a second: 1 to 255 visible ASCII characters but the comma. A new UUID when omitted.",
            ),
        ] = None,
        priority: Annotated[
            JobPriority | None,
            typer.Option(
                "--priority",
                case_sensitive=False,
                show_default=False,
                help="HIGH, NORMAL or LOW. Omitted: the payload's priority when it names one, else NORMAL. HIGH may "
                "need a scope in the token (403 without it).",
            ),
        ] = None,
        not_before: Annotated[
            str | None,
            typer.Option(
                "--not-before",
                callback=not_before_option,
                show_default=False,
                help="Start no earlier than this time: RFC 3339 with an offset (2026-12-01T09:00:00Z) or relative "
                "to now (+90s, +10m, +2h, +1d); at most 7 days ahead, a past time starts at once.",
            ),
        ] = None,
        callback_url: Annotated[
            str | None,
            typer.Option(
                "--callback-url",
                show_default=False,
                help="POST the finished job to this https URL, signed (Standard Webhooks v1a; the keys are at "
                "/api/v1/webhooks/public-key). Its host must be public.",
            ),
        ] = None,
        wait: Wait = False,
        timeout: Timeout = 120.0,
        api_url: ApiUrl = DEFAULT_API_URL,
        token: Token = None,
        as_json: AsJson = False,
    ) -> None:
        """Submit a job; with --wait, follow it to SUCCEEDED or FAILED and print its result (a scheduled job
        waits for its --not-before first: give --timeout room for it)."""
        body = parse_payload(payload)
        # Chosen here, not in the client, so that it can be shown when the submit's outcome is unknown.
        key = new_idempotency_key() if idempotency_key is None else idempotency_key
        with session(api_url, token) as client:
            try:
                job = client.submit(
                    title,
                    body,
                    job_type=job_type,
                    idempotency_key=key,
                    priority=priority,
                    not_before=not_before,
                    callback_url=callback_url,
                )
            except _OUTCOME_UNKNOWN as error:
                error.add_note(
                    f"The job may have been created. Repeat this command with --idempotency-key {key} "
                    "(within a day) to get it rather than a second one."
                )
                raise
            if not wait:
                _show(job, as_json, note=f"Submitted. Follow it with: {_prog()} get {job.job_id} --wait")
                return
            _finish(client, job, timeout, as_json)

    @app.command("list")
    def list_jobs(
        status: Annotated[
            JobStatus | None,
            typer.Option(
                "--status",
                case_sensitive=False,
                show_default=False,
                help="Only jobs in this status (sent to the API as ?status= and also checked here, so it works "
                "whether or not the API filters).",
            ),
        ] = None,
        every: Annotated[
            bool, typer.Option("--all", help="Every job, all pages (default: the newest --limit).")
        ] = False,
        limit: Annotated[int, typer.Option("--limit", min=1, help="How many jobs without --all.")] = 20,
        api_url: ApiUrl = DEFAULT_API_URL,
        token: Token = None,
        as_json: AsJson = False,
    ) -> None:
        """List your jobs, newest first."""
        with session(api_url, token) as client:
            # A filter may skip most of a page, so filtered and --all listings fetch full pages.
            found = client.list(status=status, page_size=100 if every or status else min(limit, 100))
            jobs = list(found if every else islice(found, limit))
        if as_json:
            typer.echo(render.dumps([render.job_json(job) for job in jobs]))
            return
        console = _Console()
        if not jobs:
            console.print("No jobs" + (f" with status {status.value}." if status else "."))
            return
        render.print_jobs(console, jobs)
        if not every and len(jobs) == limit:
            console.print(f"The newest {limit}; --all lists every job.", style="dim")

    @app.command()
    def get(
        job_id: JobId,
        wait: Wait = False,
        timeout: Timeout = 120.0,
        api_url: ApiUrl = DEFAULT_API_URL,
        token: Token = None,
        as_json: AsJson = False,
    ) -> None:
        """Show one job; with --wait, follow it to SUCCEEDED or FAILED first."""
        with session(api_url, token) as client:
            job = client.get(job_id)
            if wait:
                _finish(client, job, timeout, as_json)
                return
        _show(job, as_json)

    @app.command()
    def delete(
        job_id: JobId,
        api_url: ApiUrl = DEFAULT_API_URL,
        token: Token = None,
        as_json: AsJson = False,
    ) -> None:
        """Delete one of your jobs, whatever its status."""
        with session(api_url, token) as client:
            client.delete(job_id)
        if as_json:
            typer.echo(render.dumps({"job_id": job_id, "deleted": True}))
        else:
            _Console().print(f"Deleted job {job_id}.", markup=False, highlight=False)

    @app.command()
    def cancel(
        job_id: JobId,
        wait: Annotated[
            bool, typer.Option("--wait", help="Wait until the job is finished (a RUNNING job ends when its run stops).")
        ] = False,
        timeout: Timeout = 120.0,
        api_url: ApiUrl = DEFAULT_API_URL,
        token: Token = None,
        as_json: AsJson = False,
    ) -> None:
        """Cancel one of your jobs and keep its record: QUEUED ends at once, RUNNING when its run stops."""
        with session(api_url, token) as client:
            job = client.cancel(job_id)
            if wait:
                _finish(client, job, timeout, as_json)
                return
        note = None if job.is_finished else f"Cancel requested. Follow it with: {_prog()} get {job.job_id} --wait"
        _show(job, as_json, note=note)

    @app.command()
    def token(
        sub: Annotated[str, typer.Option("--sub", help="The subject: the user whose jobs the token touches.")],
        lifetime: Annotated[int, typer.Option("--lifetime", min=1, help="Seconds until the token expires.")] = 3600,
    ) -> None:
        """Print a token for the local stack (make run), signed with JOBS_JWT_SECRET or its development default."""
        try:
            typer.echo(issue_local_token(sub, lifetime))
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--sub") from None
        except LocalStackUnavailable as error:
            _stderr().print(f"[red]Error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(ExitCode.USAGE) from None

    return app


def _finish(client: JobsClient, job: Job, timeout: float, as_json: bool) -> None:
    """Wait for ``job`` with a live status on stderr, show it; exit 1 when it FAILED, 4 when time ran out."""
    err = _stderr()
    # On a terminal, a live bar of the job's progress and status; elsewhere (logs, CI), one plain line per change
    # of status or progress.
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[note]}", markup=False),
        console=err,
        transient=True,
    )
    task = bar.add_task(render.status_line(job), total=100, completed=round(_percent(job)), note=_note(job))
    last = [render.plain_progress(job)]

    def progress(current: Job) -> None:
        if err.is_terminal:
            bar.update(task, description=render.status_line(current), completed=_percent(current), note=_note(current))
            return
        line = render.plain_progress(current)
        if line != last[0] and not current.is_finished and not as_json:
            err.print(line, markup=False, highlight=False)
        last[0] = line

    try:
        with bar if err.is_terminal else nullcontext():
            done = job if job.is_finished else client.wait(job.job_id, timeout, on_poll=progress)
    except WaitTimedOut as timed_out:
        _show(timed_out.job, as_json)
        err.print(
            f"[yellow]Still {timed_out.job.status.value} after {timeout:g} s.[/] "
            f"Keep waiting with: {_prog()} get {timed_out.job.job_id} --wait",
            highlight=False,
        )
        raise typer.Exit(ExitCode.TIMED_OUT) from None
    _show(done, as_json)
    if done.status == JobStatus.FAILED:
        failure = f"{done.error.type}: {done.error.message}" if done.error else "no error recorded"
        err.print(f"[bold red]Job {done.job_id} FAILED[/] {escape(failure)}", highlight=False)
        raise typer.Exit(ExitCode.JOB_FAILED)


def _percent(job: Job) -> float:
    return job.progress.percent if job.progress is not None else 0.0


def _note(job: Job) -> str:
    return job.progress.message if job.progress is not None else ""


def _show(job: Job, as_json: bool, note: str | None = None) -> None:
    if as_json:
        typer.echo(render.dumps(render.job_json(job)))
        return
    console = _Console()
    console.print(render.job_detail(job))
    if note:
        console.print(note, style="dim", markup=False, highlight=False)


def _show_notes(err: Console, error: Exception) -> None:
    for note in getattr(error, "__notes__", ()):
        err.print(note, markup=False, highlight=False)


def _show_api_error(err: Console, error: JobsApiError) -> None:
    err.print(f"[red]Error {error.status} {escape(error.title)}:[/] {escape(error.detail)}", highlight=False)
    for item in error.errors:
        loc = item.get("loc")
        location = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
        err.print(f"  {location}: {item.get('msg', '')}", markup=False, highlight=False)
    if isinstance(error, Unauthorized):
        err.print("Check JOBS_TOKEN (or --token) and that it was signed for this API.", highlight=False)


def main() -> None:
    """Entry point of the ``jobsctl`` and ``jobs`` console scripts. A closed output, even one found only when
    the last of it is flushed, ends the command quietly with ``ExitCode.CLOSED_PIPE`` (141)."""
    Console.on_broken_pipe = _raise_broken_pipe  # type: ignore[method-assign,assignment]  # typer's help consoles too
    try:
        try:
            build_app()()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_output()
        sys.exit(ExitCode.CLOSED_PIPE)
