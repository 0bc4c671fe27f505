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

from jobs import aws, bootstrap, settings
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
@aws.time_budget
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Lambda entry point for the schedule (and ``aws lambda invoke``): returns ``{"replayed": n, "reconciled":
    m}``, the messages each pass sent (and ``"backfilled"``, the jobs put into the index, when asked). An event
    that is not a ``ReconcilerRequest`` raises its validation error; a pass that fails raises once both ran."""
    request = ReconcilerRequest.model_validate(event or {})
    service = bootstrap.outbox_service()
    counts = {"replayed": 0, "reconciled": 0}
    failures: list[Exception] = []
    if request.backfill:
        counts["backfilled"] = service.store.index_queued()
        logger.info("Backfill: %d QUEUED job(s) put into the Queued index", counts["backfilled"])
    # One pass failing (SQS or the stream unavailable) never keeps the other from running; the run still fails
    # afterwards, so Lambda's Errors metric (and its alarm) shows it.
    if request.replay:
        try:
            counts["replayed"] = service.replay_discarded(bootstrap.discarded_batches(), StreamReader())
        except Exception as error:  # noqa: BLE001 - re-raised below, after the other pass
            logger.exception("Replay pass failed")
            failures.append(error)
    if request.reconcile:
        seconds = request.reconcile_after_seconds or settings.reconciler_settings().reconcile_after_seconds
        try:
            counts["reconciled"] = service.reconcile(queued_for=timedelta(seconds=seconds))
        except Exception as error:  # noqa: BLE001 - re-raised below
            logger.exception("Reconcile pass failed")
            failures.append(error)
    metrics.add_metric(name="JobsReplayed", unit=MetricUnit.Count, value=counts["replayed"])
    metrics.add_metric(name="JobsReconciled", unit=MetricUnit.Count, value=counts["reconciled"])
    logger.info("Reconciler run: %d replayed, %d reconciled", counts["replayed"], counts["reconciled"])
    if failures:
        raise failures[0]
    return counts
