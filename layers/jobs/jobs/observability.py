"""One Logger and one Metrics for every function of the job system (powertools).

Both are configured from the environment the template sets: ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_LOG_LEVEL`` and ``POWERTOOLS_METRICS_NAMESPACE``. Logs are JSON on stdout, which Lambda sends to
CloudWatch Logs; metrics are CloudWatch embedded metric format (EMF) lines in the same stream. Nothing here
ever logs a token, a secret or a job's payload.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics"]
