"""How the ``jobs`` command shows jobs: rich tables for people, the API's JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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


#: Characters between two columns of ``jobs_table`` (one of padding on each side and rich's separator).
COLUMN_GAP = 3
#: The narrowest a shortened title is shown; below it the title column is dropped.
MIN_TITLE = 10
#: Widths of the columns that are never cut: a job id (to be copied), a status, a creation time to the minute.
ID_WIDTH, STATUS_WIDTH, CREATED_WIDTH = 36, len("SUCCEEDED"), len("YYYY-MM-DD HH:MM")
#: The width the three whole columns need on one line.
ESSENTIAL_WIDTH = ID_WIDTH + STATUS_WIDTH + CREATED_WIDTH + 2 * COLUMN_GAP


def created_text(job: Job) -> str:
    """When the job was created, UTC, to the minute (``YYYY-MM-DD HH:MM``)."""
    return job.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def list_layout(jobs: Sequence[Job], width: int | None) -> tuple[str, ...]:
    """The columns ``jobsctl list`` shows in ``width`` terminal columns (None: not a terminal, no limit).

    ``JOB ID``, ``STATUS`` and ``CREATED (UTC)`` are never cut. What gives way, in this order: the title is
    shortened with an ellipsis (down to ``MIN_TITLE`` characters); then ``TYPE`` is dropped, the title getting its
    room; then ``TITLE`` is dropped. Narrower than the three whole columns (``ESSENTIAL_WIDTH``, 67), each job
    takes two lines (``stacked``): its id, then status, created time, type and title. Where the output is not a
    terminal, every column is shown whole, one job per line.
    """
    if width is None:
        return ("id", "status", "type", "created", "title")
    type_width = max((len(job.type) for job in jobs), default=4)
    with_type = ESSENTIAL_WIDTH + COLUMN_GAP + max(type_width, len("TYPE"))
    if width - with_type - COLUMN_GAP >= MIN_TITLE:
        return ("id", "status", "type", "created", "title")
    if width - ESSENTIAL_WIDTH - COLUMN_GAP >= MIN_TITLE:
        return ("id", "status", "created", "title")
    if width >= ESSENTIAL_WIDTH:
        return ("id", "status", "created")
    return ("stacked",)


def jobs_table(jobs: Iterable[Job], width: int | None = None) -> RenderableType:
    """The jobs as ``list_layout`` lays them out for ``width`` columns (None: not a terminal, every column
    whole). Text from the job is never read as markup."""
    jobs = list(jobs)
    columns = list_layout(jobs, width)
    if columns == ("stacked",):
        grid = Table.grid()
        grid.add_column(no_wrap=True, overflow="ellipsis")
        for job in jobs:
            grid.add_row(Text(job.job_id))
            status = Text(job.status.value.ljust(STATUS_WIDTH), style=STATUS_STYLES.get(job.status, ""))
            line = Text("  ").append_text(status)
            line.append(f"  {created_text(job)}  ").append(job.type).append("  ").append(job.title)
            grid.add_row(line)
        return grid
    # Fixed widths where a terminal's width is known: rich otherwise shrinks every column in proportion.
    fixed = width is not None
    type_width = max((len(job.type) for job in jobs), default=0)
    used = ESSENTIAL_WIDTH + (COLUMN_GAP + max(type_width, len("TYPE")) if "type" in columns else 0)
    title_width = min(max((len(job.title) for job in jobs), default=0), width - used - COLUMN_GAP) if width else None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("JOB ID", no_wrap=True, min_width=ID_WIDTH, width=ID_WIDTH if fixed else None)
    table.add_column("STATUS", no_wrap=True, min_width=STATUS_WIDTH, width=STATUS_WIDTH if fixed else None)
    if "type" in columns:
        table.add_column("TYPE", no_wrap=True, width=max(type_width, len("TYPE")) if fixed else None)
    table.add_column("CREATED (UTC)", no_wrap=True, width=CREATED_WIDTH if fixed else None)
    if "title" in columns:
        table.add_column(
            "TITLE", no_wrap=True, overflow="ellipsis", width=max(title_width or 0, len("TITLE")) if fixed else None
        )
    for job in jobs:
        row: list[RenderableType] = [job.job_id, status_text(job.status)]
        if "type" in columns:
            row.append(Text(job.type))
        row.append(created_text(job))
        if "title" in columns:
            row.append(Text(job.title))
        table.add_row(*row)
    return table


def is_terminal(console: Console) -> bool:
    """True when ``console`` writes to a terminal itself. ``FORCE_COLOR`` and ``TTY_COMPATIBLE`` make rich treat
    a pipe as a terminal (colours, and a width of 80); they may colour the output, never lay it out for a
    terminal that is not there."""
    try:
        return bool(console.file.isatty())
    except (AttributeError, ValueError, OSError):  # no file, or a closed one
        return False


def print_jobs(console: Console, jobs: Sequence[Job]) -> None:
    """Print ``jobs`` for ``jobsctl list``: in a terminal, in its width (``list_layout``); elsewhere (a pipe, a
    file) one job per line with every column whole, however wide that is."""
    if is_terminal(console):
        console.print(jobs_table(jobs, console.width))
    else:
        print_wide(console, jobs_table(jobs))


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
    """Print ``renderable``; where the output is not a terminal (a pipe, a file, whatever ``FORCE_COLOR`` or
    ``TTY_COMPATIBLE`` say), as wide as it needs to be rather than squeezed into 80 columns, so that each job
    stays on one line."""
    if not is_terminal(console):
        needed = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
        console.width = max(console.width, needed)
    console.print(renderable)
