"""The reconciler: gives a message to every job that should have one and may not, on a schedule.

Two passes per run, each bounded:
1. Replay: the stream batches the outbox relay's event source mapping gave up on (after its bounded retries)
   sit on its on-failure destination as coordinates; each is read back from the stream (within its 24 hours)
   and the jobs it created that are still QUEUED get their messages.
2. Reconcile: QUEUED jobs not updated for ``JOBS_RECONCILE_AFTER_SECONDS`` (past the stream's retention, or
   written by an older version) get their messages again, read from the sparse ``Queued`` index.

A duplicate message is harmless: every transition is conditional. An operator runs it at once with
``aws lambda invoke`` (README, "No record stalls its pipeline"); ``make replay-stream`` does that locally. The
event may choose the passes (``{"replay": false}``, ``{"reconcile": false}``) and the bound
(``{"reconcile_after_seconds": 600}``); the schedule's event sets none of them, so both passes run. Once, when
upgrading a stack whose table predates the ``Queued`` index, ``{"backfill": true}`` first puts its QUEUED items
into the index (a Scan; README, "Upgrading").
"""

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from jobs import bootstrap, settings
from jobs.observability import MetricUnit, logger, metrics
from jobs.streams import StreamReader


class ReconcilerRequest(BaseModel):
    """What one run does: both passes by default; ``reconcile_after_seconds`` overrides the configured bound."""

    model_config = ConfigDict(extra="ignore")  # the schedule's "Scheduled Event" fields

    replay: bool = True
    reconcile: bool = True
    backfill: bool = False
    reconcile_after_seconds: int | None = Field(default=None, ge=1, le=14 * 86400)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Lambda entry point for the schedule (and ``aws lambda invoke``): returns ``{"replayed": n, "reconciled":
    m}``, the messages each pass sent. An event that is not a ``ReconcilerRequest`` raises its validation error."""
    request = ReconcilerRequest.model_validate(event or {})
    service = bootstrap.outbox_service()
    replayed = reconciled = 0
    if request.backfill:
        logger.info("Backfill: %d QUEUED job(s) put into the Queued index", service.store.index_queued())
    if request.replay:
        replayed = service.replay_discarded(bootstrap.discarded_batches(), StreamReader())
    if request.reconcile:
        seconds = request.reconcile_after_seconds or settings.reconciler_settings().reconcile_after_seconds
        reconciled = service.reconcile(queued_for=timedelta(seconds=seconds))
    metrics.add_metric(name="JobsReplayed", unit=MetricUnit.Count, value=replayed)
    metrics.add_metric(name="JobsReconciled", unit=MetricUnit.Count, value=reconciled)
    logger.info("Reconciler run: %d replayed, %d reconciled", replayed, reconciled)
    return {"replayed": replayed, "reconciled": reconciled}
