"""How the ``jobs`` command shows jobs: rich tables for people, the API's JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from jobs.models import Job, JobStatus

STATUS_STYLES = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "magenta",
}


def job_json(job: Job) -> dict[str, Any]:
    """The job as the API returns it (``owner_id`` excluded, RFC 3339 timestamps)."""
    return job.model_dump(mode="json")


def dumps(value: Any) -> str:
    """Indented JSON text for ``--json`` output, non-ASCII kept as is."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def status_text(status: JobStatus) -> Text:
    """The status, coloured."""
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def status_line(job: Job) -> str:
    """``Job <id> is <STATUS>`` (rich markup, the status bold), with ``(cancel requested)`` when one was asked."""
    asked = " (cancel requested)" if job.cancel_requested_at is not None and not job.is_finished else ""
    return f"Job {job.job_id} is [bold]{job.status.value}[/]{asked}"


def plain_progress(job: Job) -> str:
    """One plain line of a job's status and progress, for output that is not a terminal (logs, CI)."""
    line = f"Job {job.job_id} is {job.status.value}"
    if job.cancel_requested_at is not None and not job.is_finished:
        line += " (cancel requested)"
    if job.progress is not None:
        line += f" {job.progress.percent:g}%"
        if job.progress.message:
            line += f" {job.progress.message}"
    return line


def when(moment: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, or ``-``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def jobs_table(jobs: Iterable[Job]) -> Table:
    """One row per job: id (never cut, to be copied), status, type, created (UTC, to the minute), title."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("JOB ID", no_wrap=True, min_width=36)
    table.add_column("STATUS", no_wrap=True, min_width=9)
    table.add_column("TYPE", no_wrap=True)
    table.add_column("CREATED (UTC)", no_wrap=True, min_width=16)
    table.add_column("TITLE", overflow="fold", min_width=8)
    for job in jobs:
        created = job.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(job.job_id, status_text(job.status), Text(job.type), created, Text(job.title))
    return table


def job_detail(job: Job) -> RenderableType:
    """The job's fields as a two-column grid, then its error (FAILED) or its result (SUCCEEDED) as JSON.

    Text from the job (title, type, error) is never read as rich markup.
    """
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("job_id", job.job_id)
    grid.add_row("title", Text(job.title))
    grid.add_row("type", Text(job.type))
    grid.add_row("status", status_text(job.status))
    grid.add_row("attempts", str(job.attempts))
    grid.add_row("created", when(job.created_at))
    grid.add_row("started", when(job.started_at))
    grid.add_row("finished", when(job.finished_at))
    if job.cancel_requested_at is not None:
        grid.add_row("cancel asked", when(job.cancel_requested_at))
    if job.progress is not None:
        grid.add_row("progress", Text(f"{job.progress.percent:g}% {job.progress.message}".rstrip()))
    parts: list[RenderableType] = [grid]
    if job.error is not None:
        parts.append(Text(f"error: {job.error.type}: {job.error.message}", style="bold red"))
    if job.result is not None:
        parts += [Text("result:", style="bold"), JSON(json.dumps(job.result))]
    return Group(*parts)


def print_wide(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable``; where the output is not a terminal (a pipe, a file), as wide as it needs to be
    rather than squeezed into 80 columns, so that each job stays on one line."""
    if not console.is_terminal:
        needed = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
        console.width = max(console.width, needed)
    console.print(renderable)
