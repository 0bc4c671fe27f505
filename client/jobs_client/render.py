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

from jobs.models import Job, JobPriority, JobStatus
from jobs_client.client import ReceivedJob

STATUS_STYLES = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "magenta",
}


def job_json(job: Job) -> dict[str, Any]:
    """The job as the API sent it: a ``ReceivedJob``'s body as it came (fields this version does not know kept,
    fields an older API did not send left out); any other ``Job`` as this version's API would send it
    (``owner_id`` excluded, RFC 3339 timestamps)."""
    if isinstance(job, ReceivedJob):
        return job.sent
    return job.model_dump(mode="json")


def dumps(value: Any) -> str:
    """Indented JSON text for ``--json`` output, non-ASCII kept as is."""
    return json.dumps(value, indent=2, ensure_ascii=False)


#: How each priority is shown; a level this version does not know is shown plain, by its name.
PRIORITY_STYLES = {JobPriority.HIGH: "bold", JobPriority.NORMAL: "", JobPriority.LOW: "dim"}


def priority_text(priority: JobPriority) -> Text:
    """The priority, styled (HIGH bold, LOW dim; a level added later plain)."""
    return Text(priority.value, style=PRIORITY_STYLES.get(priority, ""))


def is_scheduled(job: Job) -> bool:
    """True for a job that waits for its ``not_before``: QUEUED with one set (it may be due already)."""
    return job.status == JobStatus.QUEUED and job.not_before is not None


def status_text(status: JobStatus) -> Text:
    """The status, coloured."""
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def status_line(job: Job) -> str:
    """``Job <id> is <STATUS>`` (rich markup, the status bold), with ``(cancel requested)`` when one was asked."""
    asked = " (cancel requested)" if job.cancel_requested_at is not None and not job.is_finished else ""
    waits = f" (not before {when(job.not_before)} UTC)" if is_scheduled(job) else ""
    return f"Job {job.job_id} is [bold]{job.status.value}[/]{asked}{waits}"


def plain_progress(job: Job) -> str:
    """One plain line of a job's status and progress, for output that is not a terminal (logs, CI)."""
    line = f"Job {job.job_id} is {job.status.value}"
    if job.cancel_requested_at is not None and not job.is_finished:
        line += " (cancel requested)"
    if is_scheduled(job):
        line += f" (not before {when(job.not_before)} UTC)"
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
#: The headers of the columns shown only for some lists (``list_layout``).
PRIORITY_HEADER, NOT_BEFORE_HEADER = "PRIORITY", "NOT BEFORE (UTC)"


def created_text(job: Job) -> str:
    """When the job was created, UTC, to the minute (``YYYY-MM-DD HH:MM``)."""
    return job.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def not_before_text(job: Job) -> str:
    """When a scheduled job (``is_scheduled``) may start, UTC, to the minute; "" for any other job."""
    return job.not_before.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if is_scheduled(job) and job.not_before else ""


def _optional_widths(jobs: Sequence[Job]) -> dict[str, int]:
    """The optional columns these jobs call for, with their widths: ``priority`` when one of them is not NORMAL,
    ``type`` always, ``not_before`` when one of them is scheduled."""
    widths = {"type": max(max((len(job.type) for job in jobs), default=0), len("TYPE"))}
    if any(job.priority != JobPriority.NORMAL for job in jobs):
        widths["priority"] = max(max(len(job.priority.value) for job in jobs), len(PRIORITY_HEADER))
    if any(is_scheduled(job) for job in jobs):
        widths["not_before"] = len(NOT_BEFORE_HEADER)
    return widths


#: The order of the columns on a line; ``list_layout`` drops optional ones in ``_GIVE_WAY`` order.
_ORDER = ("id", "status", "priority", "type", "created", "not_before", "title")
_GIVE_WAY = ("type", "priority", "not_before")


def list_layout(jobs: Sequence[Job], width: int | None) -> tuple[str, ...]:
    """The columns ``jobsctl list`` shows in ``width`` terminal columns (None: not a terminal, no limit).

    ``JOB ID``, ``STATUS`` and ``CREATED (UTC)`` are never cut. Two columns appear only when the list calls for
    them: ``PRIORITY`` when a job's priority is not NORMAL, ``NOT BEFORE (UTC)`` when a job is QUEUED with a
    ``not_before`` (scheduled; the cell is empty for the others). What gives way, in this order: the title is
    shortened with an ellipsis (down to ``MIN_TITLE`` characters); then ``TYPE`` is dropped, then ``PRIORITY``,
    then ``NOT BEFORE``, the title getting their room; then ``TITLE`` is dropped. Narrower than the three whole
    columns (``ESSENTIAL_WIDTH``, 67), each job takes two lines (``stacked``): its id, then status, created time,
    priority and not_before where called for, type and title. Where the output is not a terminal, every column
    the list calls for is shown whole, one job per line.
    """
    optional = _optional_widths(jobs)
    if width is None:
        return tuple(column for column in _ORDER if column in optional or column not in _GIVE_WAY)
    kept = dict(optional)
    for dropped in (None, *_GIVE_WAY):
        if dropped is not None:
            kept.pop(dropped, None)
        used = ESSENTIAL_WIDTH + sum(COLUMN_GAP + w for w in kept.values())
        if width - used - COLUMN_GAP >= MIN_TITLE:
            return tuple(column for column in _ORDER if column in kept or column not in _GIVE_WAY)
    if width >= ESSENTIAL_WIDTH:
        return ("id", "status", "created")
    return ("stacked",)


def jobs_table(jobs: Iterable[Job], width: int | None = None) -> RenderableType:
    """The jobs as ``list_layout`` lays them out for ``width`` columns (None: not a terminal, every column
    whole). Text from the job is never read as markup."""
    jobs = list(jobs)
    columns = list_layout(jobs, width)
    optional = _optional_widths(jobs)
    if columns == ("stacked",):
        grid = Table.grid()
        grid.add_column(no_wrap=True, overflow="ellipsis")
        for job in jobs:
            grid.add_row(Text(job.job_id))
            status = Text(job.status.value.ljust(STATUS_WIDTH), style=STATUS_STYLES.get(job.status, ""))
            line = Text("  ").append_text(status).append(f"  {created_text(job)}")
            if "priority" in optional:
                line.append("  ").append_text(priority_text(job.priority))
            if is_scheduled(job):
                line.append(f"  not before {not_before_text(job)}")
            line.append("  ").append(job.type).append("  ").append(job.title)
            grid.add_row(line)
        return grid
    # Fixed widths where a terminal's width is known: rich otherwise shrinks every column in proportion.
    fixed = width is not None
    used = ESSENTIAL_WIDTH + sum(COLUMN_GAP + w for name, w in optional.items() if name in columns)
    title_width = min(max((len(job.title) for job in jobs), default=0), width - used - COLUMN_GAP) if width else None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    headers = {
        "priority": PRIORITY_HEADER,
        "type": "TYPE",
        "not_before": NOT_BEFORE_HEADER,
    }
    for column in columns:
        if column == "id":
            table.add_column("JOB ID", no_wrap=True, min_width=ID_WIDTH, width=ID_WIDTH if fixed else None)
        elif column == "status":
            table.add_column("STATUS", no_wrap=True, min_width=STATUS_WIDTH, width=STATUS_WIDTH if fixed else None)
        elif column == "created":
            table.add_column("CREATED (UTC)", no_wrap=True, width=CREATED_WIDTH if fixed else None)
        elif column == "title":
            table.add_column(
                "TITLE", no_wrap=True, overflow="ellipsis", width=max(title_width or 0, len("TITLE")) if fixed else None
            )
        else:
            table.add_column(headers[column], no_wrap=True, width=optional[column] if fixed else None)
    for job in jobs:
        cells: dict[str, RenderableType] = {
            "id": job.job_id,
            "status": status_text(job.status),
            "priority": priority_text(job.priority),
            "type": Text(job.type),
            "created": created_text(job),
            "not_before": not_before_text(job),
            "title": Text(job.title),
        }
        table.add_row(*(cells[column] for column in columns))
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


def callback_text(job: Job) -> str:
    """The callback's URL (its query shown as ``?…``: it may hold a token) and delivery state: ``<url>
    DELIVERED after 1 attempt``, ``<url> RETRYING (2 attempts; last: HTTP 500 ...)``, ``<url> PENDING``."""
    url = job.callback_url or ""
    base, _, query = url.partition("?")
    shown = base + ("?…" if query else "")
    callback = job.callback
    if callback is None:
        return shown
    line = f"{shown} {callback.status.value}"
    if callback.attempts:
        line += f" after {callback.attempts} attempt{'s' if callback.attempts != 1 else ''}"
    if callback.last_error and callback.status.value != "DELIVERED":
        line += f" (last: {callback.last_error})"
    return line


def job_detail(job: Job) -> RenderableType:
    """The job's fields as a two-column grid (``priority`` always, ``not before`` when the job has one, ``callback``
    when it has one), then its
    error (FAILED) or its result (SUCCEEDED) as JSON.

    Text from the job (title, type, error) is never read as rich markup.
    """
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("job_id", job.job_id)
    grid.add_row("title", Text(job.title))
    grid.add_row("type", Text(job.type))
    grid.add_row("status", status_text(job.status))
    grid.add_row("priority", priority_text(job.priority))
    grid.add_row("attempts", str(job.attempts))
    grid.add_row("created", when(job.created_at))
    if job.not_before is not None:
        grid.add_row("not before", when(job.not_before))
    grid.add_row("started", when(job.started_at))
    grid.add_row("finished", when(job.finished_at))
    if job.cancel_requested_at is not None:
        grid.add_row("cancel asked", when(job.cancel_requested_at))
    if job.progress is not None:
        grid.add_row("progress", Text(f"{job.progress.percent:g}% {job.progress.message}".rstrip()))
    if job.callback_url is not None:
        grid.add_row("callback", Text(callback_text(job)))
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
