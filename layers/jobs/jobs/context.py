"""What a processor may do with its job: the ``JobContext`` it is given, the one door to the rest of the system.

A processor is ``(job, context) -> result`` (``jobs.processors``). Through the context it may read its owner's own
jobs (never anyone else's; whole jobs, or summaries a page at a time with a position to resume from), report
progress, learn that a cancel was asked, see how long its invocation has left, save a checkpoint, and ask to be
continued by a new delivery from that checkpoint. Every write the context makes is conditional on the run still
holding the job (its lease token, ``run_id``), so a run that lost its job writes nothing.

For processor authors:

- Return the result (a JSON object) well before ``remaining_seconds()`` reaches 0. What is left after that is kept
  for the run's own final writes: AWS calls refuse to start an attempt with less than one attempt's time left
  (``jobs.aws``, 4 s by default), and a continuation needs two (the checkpoint's write and the new message).
- Work longer than one invocation: save progress in a checkpoint and call ``continue_later(checkpoint)`` while
  ``remaining_seconds()`` is still above 0; a new delivery runs the processor again with ``context.checkpoint``
  set to it. A continuation is not a retry: it spends no attempt and no receive of the redrive policy.
- Check ``cancel_requested()`` between steps and return early when it is True: whatever the run returns then, the
  job ends CANCELLED and its result is discarded.
- Be idempotent: at-least-once delivery may run the same step twice (after a crash, from the last checkpoint).
- Checkpoints are JSON objects of at most ``MAX_CHECKPOINT_BYTES``; progress is stored at most once per
  ``progress_interval`` (a second), the latest value winning.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NoReturn

from pydantic import JsonValue, TypeAdapter

from jobs import aws
from jobs.models import MAX_PROGRESS_MESSAGE_LENGTH, ContinueLater, Job, format_timestamp, utc_now
from jobs.settings import aws_settings
from jobs.store import JobStore, SummaryPage

#: A checkpoint's size as compact UTF-8 JSON, bytes: with a full payload (64 KiB) and a result, the item stays far
#: below DynamoDB's 400 KB item limit (developer guide, "Quotas": item size).
MAX_CHECKPOINT_BYTES = 64 * 1024
_JSON_OBJECT: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])


def checked_checkpoint(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` when it is a JSON object of at most ``MAX_CHECKPOINT_BYTES`` as compact UTF-8 JSON.

    Raises:
        ValueError: not a JSON object (a pydantic ``ValidationError``), or too large.
    """
    checked = _JSON_OBJECT.validate_python(data)
    size = len(json.dumps(checked, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"checkpoint is {size} bytes as JSON; the limit is {MAX_CHECKPOINT_BYTES}")
    return checked


class JobContext:
    """One run's view of its job and what it may do with it.

    Args:
        job: the RUNNING job, as the run's start wrote it (``run_id`` is its lease token).
        store: where the job lives; reads name the job's owner only.
        clock: the current UTC time (timestamps of progress and checkpoints).
        monotonic: seconds on a monotonic clock (the progress and cancel-check intervals).
        seconds_left: seconds before the invocation must answer, or None outside one (``jobs.aws.seconds_left``).
        progress_interval: the least time between two stored progress reports (and two cancel reads), seconds.
    """

    def __init__(
        self,
        job: Job,
        store: JobStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        seconds_left: Callable[[], float | None] = aws.seconds_left,
        progress_interval: float = 1.0,
    ) -> None:
        if job.run_id is None:
            raise ValueError("a context needs a job held by a run (run_id)")
        self._job = job
        self._run_id = job.run_id
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._seconds_left = seconds_left
        self._interval = progress_interval
        self._last_progress = -math.inf
        self._last_read = -math.inf
        self._cancel = job.cancel_requested_at is not None

    @property
    def job(self) -> Job:
        """The job as this run last saw it."""
        return self._job

    @property
    def checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint this run resumes from (saved by an earlier run of the job), or None to start afresh."""
        return self._job.checkpoint

    def list_jobs(self, lowest_job_id: str, highest_job_id: str) -> Iterator[Job]:
        """The owner's own jobs whose ids lie in ``[lowest_job_id, highest_job_id]``, oldest first (a read view:
        only this job's owner's partition, strongly consistent)."""
        return self._store.list_range(self._job.owner_id, lowest_job_id, highest_job_id)

    def summary_pages(
        self, lowest_job_id: str, highest_job_id: str, *, after_job_id: str | None = None, page_size: int | None = None
    ) -> Iterator[SummaryPage]:
        """The summaries (id, type, status, timestamps) of the owner's own jobs whose ids lie in
        ``[lowest_job_id, highest_job_id]`` and follow ``after_job_id``, oldest first, a page at a time: a page's
        ``next_after`` resumes the read in a later run (``jobs.store.JobStore.summary_pages``; eventually
        consistent)."""
        return self._store.summary_pages(
            self._job.owner_id, lowest_job_id, highest_job_id, after_job_id=after_job_id, page_size=page_size
        )

    def get_job(self, job_id: str) -> Job | None:
        """One of the owner's own jobs, or None."""
        return self._store.get(self._job.owner_id, job_id)

    def report_progress(self, percent: float, message: str = "") -> None:
        """Store how far the run is: ``percent`` 0 to 100 and a short ``message`` (cut to 200 characters). At most
        one write per ``progress_interval``; reports in between are dropped (the next one carries the news). The
        write also tells the run whether a cancel was asked.

        Raises:
            ValueError: ``percent`` is not a finite number from 0 to 100.
            jobs.models.TransitionRejected: the run no longer holds the job (its lease was taken over, or the job
                was deleted): stop.
        """
        if not (isinstance(percent, int | float) and math.isfinite(percent) and 0 <= percent <= 100):
            raise ValueError(f"percent must be a number from 0 to 100, not {percent!r}")
        now = self._monotonic()
        if now - self._last_progress < self._interval:
            return
        self._last_progress = self._last_read = now
        self._seen(
            self._store.report_progress(
                self._job.owner_id,
                self._job.job_id,
                run_id=self._run_id,
                now_text=format_timestamp(self._clock()),
                percent=float(percent),
                message=message[:MAX_PROGRESS_MESSAGE_LENGTH],
            )
        )

    def cancel_requested(self) -> bool:
        """True once a cancel was asked of the job (read from the table at the first call, then at most once per
        ``progress_interval``; a progress report reads it too)."""
        if not self._cancel and self._monotonic() - self._last_read >= self._interval:
            self._last_read = self._monotonic()
            current = self._store.get(self._job.owner_id, self._job.job_id)
            if current is None:  # deleted: nothing left to do for it
                self._cancel = True
            else:
                self._seen(current)
        return self._cancel

    def remaining_seconds(self) -> float:
        """Seconds the processor may still work in this invocation: the invocation's time before its response
        margin (``jobs.aws.seconds_left``) less what the run's own writes need (two AWS attempts: a final write, or
        a checkpoint and the continuation's message). Never negative; ``math.inf`` outside an invocation."""
        left = self._seconds_left()
        if left is None:
            return math.inf
        return max(0.0, left - 2 * aws_settings().attempt_seconds)

    def save_checkpoint(self, data: dict[str, Any]) -> None:
        """Store ``data`` as the checkpoint a later run of this job resumes from (after a crash, a retry or a
        continuation), replacing the previous one.

        Raises:
            ValueError: ``data`` is not a JSON object of at most ``MAX_CHECKPOINT_BYTES``.
            jobs.models.TransitionRejected: the run no longer holds the job.
        """
        self._seen(self._save(data, release=False))

    def continue_later(self, data: dict[str, Any]) -> NoReturn:
        """End this run and have a new delivery continue the job from the checkpoint ``data``: raises
        ``ContinueLater``, which the consumer turns into the checkpoint's write and a new message (not a retry).
        A job with a cancel asked ends CANCELLED instead.

        Raises:
            ContinueLater: always (let it propagate).
            ValueError: ``data`` is not a JSON object of at most ``MAX_CHECKPOINT_BYTES``.
        """
        raise ContinueLater(checked_checkpoint(data))

    def _save(self, data: dict[str, Any], *, release: bool) -> Job:
        return self._store.save_checkpoint(
            self._job.owner_id,
            self._job.job_id,
            run_id=self._run_id,
            now_text=format_timestamp(self._clock()),
            checkpoint=checked_checkpoint(data),
            release=release,
        )

    def _seen(self, job: Job) -> None:
        self._job = job
        self._cancel = self._cancel or job.cancel_requested_at is not None
