"""One Logger and one Metrics for every function of the job system (powertools).

Both are configured from the environment the template sets: ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_LOG_LEVEL`` and ``POWERTOOLS_METRICS_NAMESPACE``. Logs are JSON on stdout, which Lambda sends to
CloudWatch Logs; metrics are CloudWatch embedded metric format (EMF) lines in the same stream. Nothing here
ever logs a token, a secret or a job's payload.

Metrics (namespace ``JobSystem``, dimension ``service``): ``JobsCreated`` and ``AuthFailures`` (API),
``JobsSucceeded``, ``JobsFailed``, ``JobsRetried``, ``JobsHeldUntilDue``, ``ProcessingTime`` and ``QueueWait``
(consumer; ``QueueWait`` also per ``priority``),
``JobsDeadLettered`` (dead-letter handler), and ``ColdStart`` (every function). There is no X-Ray Tracer: its
SDK costs more cold start than it tells (docs/decisions.md); Lambda's own segments are on (``Tracing: Active``).
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from jobs.models import Job

#: The seed's "logging proof", word for word (with the seed's star before the last two): what operators search
#: CloudWatch for, and what template.yaml's saved queries (``${AWS::StackName}/seed: ...``) find. %-style, for
#: the logger's arguments: the caller's ``sub``; the page's job count and ``sub``; the deleted job's id.
SEED_AUTH_LINE = "User %s authenticated successfully"
SEED_LIST_LINE = "\N{WHITE MEDIUM STAR} Chuck Norris List Job: Retrieved %d job(s) for user %s"
SEED_DELETE_LINE = "\N{WHITE MEDIUM STAR} Chuck Norris Success: Job %s was successfully hit and removed"

logger = Logger()
metrics = Metrics()
# powertools warns on stderr, as a plain-text line in the function's log stream, for every invocation that
# records no metric; here most requests (every GET, every DELETE) record none by design.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)


class Started(Protocol):
    """What ``queue_wait_seconds`` reads of a job (a ``Job`` or a ``jobs.store.JobSummary``)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def not_before(self) -> datetime | None: ...
    @property
    def started_at(self) -> datetime | None: ...


def queue_wait_seconds(job: Started) -> float | None:
    """How long a started job waited in its queue, seconds: from the later of ``created_at`` and ``not_before`` (a
    scheduled job waits from its start time) to ``started_at``; None before it started."""
    if job.started_at is None:
        return None
    since = max(job.created_at, job.not_before) if job.not_before is not None else job.created_at
    return max(0.0, (job.started_at - since).total_seconds())


def record_queue_wait(job: Job) -> None:
    """``QueueWait`` (seconds, ``queue_wait_seconds``), once under the function's dimensions and once more with
    the job's ``priority``, so each level's wait is a metric of its own (three values: no cardinality to fear).
    Call it once a run has started the job."""
    seconds = queue_wait_seconds(job)
    if seconds is None:
        return
    metrics.add_metric(name="QueueWait", unit=MetricUnit.Seconds, value=seconds)
    dimensions = {"service": str(metrics.service), "priority": job.priority.value}
    with single_metric(
        name="QueueWait",
        unit=MetricUnit.Seconds,
        value=seconds,
        namespace=metrics.namespace,
        default_dimensions=dimensions,
    ):
        pass


__all__ = [
    "SEED_AUTH_LINE",
    "SEED_DELETE_LINE",
    "SEED_LIST_LINE",
    "MetricUnit",
    "logger",
    "metrics",
    "record_queue_wait",
]
