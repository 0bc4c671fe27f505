"""Deliver one job's callback: read the job, check where it goes, POST it signed, record how it went.

The sender function calls ``CallbackSender.deliver`` once per message of its queue (fed by the Job State Change
events of finished jobs with a ``callback_url``) and turns the ``CallbackOutcome`` into the message's fate: deleted
(delivered, gave up, skipped) or made visible again after ``retry_after_seconds`` (retry). The rules:

* What is sent: the job as ``GET /api/v1/jobs/{job_id}`` returns it (``Job.model_dump_json()``), signed as the
  Standard Webhooks specification describes (https://www.standardwebhooks.com, ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature`` with one ``v1a`` Ed25519 signature per signing key), the signed bytes
  being the bytes sent.
* ``webhook-id`` is the same for every attempt at one event (``webhook_id``), so a receiver can drop duplicates,
  as the specification asks of it.
* Where: ``jobs.webhooks.check_callback_url`` and ``public_addresses`` again at every attempt (a name may have
  moved to a forbidden address since submit); a refusal gives up at once (no retry makes it pass), but a name that
  does not resolve is retried on the schedule (a later lookup may find it).
* When: 2xx is delivered; 410 Gone gives up at once (the receiver says it wants no more, as the Standard Webhooks
  specification lets it); anything else (another status, a redirect, a timeout, a TLS or connection failure)
  is retried after ``CallbackSettings.retry_delays_seconds[attempt - 1]``, and given up after the last.
* Only a finished job (SUCCEEDED, FAILED, CANCELLED, as read now: not as the event says) is delivered.
* Nothing resurrects a job or undoes a delivery: ``JobStore.record_callback`` writes nothing for a deleted job or
  an already DELIVERED callback, and such a job is skipped before any request is made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from jobs import aws, webhooks
from jobs.models import CallbackStatus, JobCallback, ServiceUnavailable, utc_now
from jobs.observability import MetricUnit, logger, metrics
from jobs.webhooks import CallbackRefused, DeliveryResult, Resolver, SigningKey, system_resolver

if TYPE_CHECKING:
    from jobs.settings import CallbackSettings
    from jobs.store import JobStore

#: Seconds an attempt needs beyond its timeout: recording its outcome on the job and answering the batch.
ATTEMPT_MARGIN_SECONDS = 2.0
#: The ``User-Agent`` of deliveries (RFC 9110 section 10.1.5), so receivers can tell them apart.
USER_AGENT = "jobs-callbacks/1"

Action = Literal["delivered", "retry", "gave_up", "skipped"]


@dataclass(frozen=True)
class CallbackOutcome:
    """What one ``CallbackSender.deliver`` came to.

    ``action``: ``delivered`` (2xx), ``retry`` (try again after ``retry_after_seconds``), ``gave_up`` (refused
    address, 410, or the last attempt failed), ``skipped`` (the job is gone, not finished, has no
    ``callback_url``, or its callback is already DELIVERED; nothing was sent or written).
    ``retry_after_seconds``: the wait before the next attempt, seconds; set only for ``retry``.
    ``callback``: the state written to the job; None when skipped.
    """

    action: Action
    retry_after_seconds: int | None
    callback: JobCallback | None


SKIPPED = CallbackOutcome("skipped", None, None)
#: powertools' Metrics is not thread-safe, and the sender function settles a batch's deliveries from several threads.
METRICS_LOCK = threading.Lock()


class HostCircuits:
    """Per process (one Lambda sandbox): which receivers are failing, and how many attempts each has in flight.

    A receiver (``host:port``) whose attempt got no HTTP answer (a timeout, a refused or reset connection, a TLS
    failure) is *open* for ``cooldown_seconds``: further attempts to it in this sandbox fail at once, without a
    connection, and follow the retry schedule like any failed attempt. At most ``per_host`` attempts to one
    receiver run at once; the others wait for a slot and then see whether it failed. So one owner's hanging
    receiver holds ``per_host`` of the sandbox's threads for one timeout per cool-down, not every thread of every
    batch its jobs fill (bench/callback_delay.py measures the other owners' deliveries meanwhile). An answer of any
    status closes the circuit.
    """

    def __init__(self, cooldown_seconds: float, per_host: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_seconds = cooldown_seconds
        self.per_host = per_host
        self.clock = clock
        self._lock = threading.Lock()
        self._open_until: dict[str, float] = {}
        self._slots: dict[str, threading.Semaphore] = {}

    def failing_since(self, receiver: str) -> float | None:
        """Seconds since the receiver's circuit opened, while it is open; else None."""
        with self._lock:
            until = self._open_until.get(receiver)
            now = self.clock()
            if until is None or now >= until:
                self._open_until.pop(receiver, None)
                return None
            return now - (until - self.cooldown_seconds)

    def settle(self, receiver: str, *, answered: bool) -> None:
        """Record an attempt's end: an HTTP answer closes the receiver's circuit, none opens it."""
        with self._lock:
            if answered:
                self._open_until.pop(receiver, None)
            else:
                self._open_until[receiver] = self.clock() + self.cooldown_seconds

    def slot(self, receiver: str) -> threading.Semaphore:
        """The receiver's semaphore of ``per_host`` slots (``with circuits.slot(r): ...``)."""
        with self._lock:
            return self._slots.setdefault(receiver, threading.Semaphore(self.per_host))


def webhook_id(job_id: str, version: str) -> str:
    """The ``webhook-id`` of a job's callback for one version of the job (the event's): ``msg_{job_id}_{version}``,
    the same across retries and re-published events, as Standard Webhooks' idempotency asks ("webhook-id ... the
    same when the message is resent")."""
    return f"msg_{job_id}_{version}"


class CallbackSender:
    """Delivers callbacks (module docstring).

    Args:
        store: where the job is read and its callback state written.
        keys: the current signing keys (read at each delivery, so a rotated parameter shows without a restart);
            every key signs.
        settings: timeouts, size limit, retry schedule, loopback flag, extra certificate authorities.
        resolver: resolves the callback host (tests give a fake one).
        clock: now, timezone-aware UTC.
    """

    def __init__(
        self,
        store: JobStore,
        keys: Callable[[], Sequence[SigningKey]],
        settings: CallbackSettings,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.resolver = resolver
        self.clock = clock
        self.circuits = HostCircuits(settings.circuit_cooldown_seconds, settings.per_host_concurrency)

    def deliver(self, owner_id: str, job_id: str, *, version: str, attempt: int | None = None) -> CallbackOutcome:
        """Make one attempt at the job's callback and record it on the job.

        Args:
            owner_id: the job's owner.
            job_id: the job.
            version: the version of the job the event announced (part of ``webhook-id``).
            attempt: 1-based number of this attempt; the retry wait is ``retry_delays_seconds[attempt - 1]``, and
                past the schedule's end the delivery gives up. None (the sender function's way): one more than the
                attempts recorded on the job, so a receive that made no attempt (a deferral, a crash before the
                request) spends none.

        Returns:
            The ``CallbackOutcome``.

        Raises:
            jobs.models.ServiceUnavailable: DynamoDB failed, the signing keys could not be read, or the invocation
                (``jobs.aws.time_budget``) has less than an attempt's timeout left once the receiver's turn came
                (nothing was sent; the caller leaves the message to the queue's retry).
        """
        job = self.store.get(owner_id, job_id)
        previous_attempts = job.callback.attempts if job is not None and job.callback is not None else 0
        attempt = previous_attempts + 1 if attempt is None else attempt
        if job is None or not job.callback_url:
            return self._log_skipped(owner_id, job_id, attempt, "the job is gone or has no callback_url")
        if not job.status.is_terminal:  # the event is only a hint (anyone who may PutEvents on the bus can send one)
            return self._log_skipped(owner_id, job_id, attempt, "the job is not finished")
        if job.callback is not None and job.callback.status == CallbackStatus.DELIVERED:
            return self._log_skipped(owner_id, job_id, attempt, "already delivered")
        if job.callback is not None and job.callback.status == CallbackStatus.FAILED:
            # Given up: an event published again (a replayed stream batch) does not start a second schedule.
            return self._log_skipped(owner_id, job_id, attempt, "already given up")
        url = job.callback_url
        started_at = self.clock()
        try:
            parts = webhooks.check_callback_url(url, allow_loopback=self.settings.allow_loopback)
            addresses = webhooks.public_addresses(
                parts.hostname or "",
                parts.port or 443,
                resolver=webhooks.bounded(self.resolver, self.settings.connect_timeout_seconds),
                allow_loopback=self.settings.allow_loopback,
            )
        except CallbackRefused as refused:
            if refused.kind == "dns":  # the name does not resolve now: a later attempt may find it, as after a timeout
                result = DeliveryResult(None, refused.reason, 0.0)
                action: Action = "retry" if attempt <= len(self.settings.retry_delays_seconds) else "gave_up"
                return self._settle(owner_id, job_id, url, attempt, previous_attempts, started_at, result, action)
            result = DeliveryResult(None, f"refused: {refused.reason}", 0.0)
            return self._settle(owner_id, job_id, url, attempt, previous_attempts, started_at, result, "gave_up")
        body = job.model_dump_json().encode()
        timestamp = int(started_at.timestamp())
        message_id = webhook_id(job_id, version)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.signature_header(
                self.keys(), webhook_id=message_id, timestamp=timestamp, body=body
            ),
        }
        receiver = f"{parts.hostname}:{parts.port or 443}"
        with self.circuits.slot(receiver):
            left = aws.seconds_left()
            if left is not None and left < self.settings.timeout_seconds + ATTEMPT_MARGIN_SECONDS:
                # Waiting for the receiver's turn used up the invocation: an attempt now could outlive it, and a
                # timed-out invocation fails its whole batch (deliveries already made would be made again).
                raise ServiceUnavailable(f"no time left for an attempt ({left:.1f} s); nothing was sent")
            failing = self.circuits.failing_since(receiver)
            if failing is None:
                result = webhooks.deliver_once(url, body, headers, addresses=addresses, settings=self.settings)
                self.circuits.settle(receiver, answered=result.status_code is not None)
        if failing is not None:
            result = DeliveryResult(
                None, f"not attempted: {receiver} gave no answer to an attempt {failing:.0f} s ago", 0.0
            )
        if result.delivered:
            action = "delivered"
        elif result.status_code == 410:
            action = "gave_up"
        else:
            action = "retry" if attempt <= len(self.settings.retry_delays_seconds) else "gave_up"
        return self._settle(owner_id, job_id, url, attempt, previous_attempts, started_at, result, action)

    def _settle(
        self,
        owner_id: str,
        job_id: str,
        url: str,
        attempt: int,
        previous_attempts: int,
        started_at: datetime,
        result: DeliveryResult,
        action: Action,
    ) -> CallbackOutcome:
        """Write the attempt's outcome on the job, log it, count it."""
        delay = self.settings.retry_delays_seconds[attempt - 1] if action == "retry" else None
        callback = JobCallback(
            status={
                "delivered": CallbackStatus.DELIVERED,
                "retry": CallbackStatus.RETRYING,
                "gave_up": CallbackStatus.FAILED,
            }[action],
            attempts=previous_attempts + 1,
            last_attempt_at=started_at,
            next_attempt_at=started_at + timedelta(seconds=delay) if delay is not None else None,
            delivered_at=self.clock() if action == "delivered" else None,
            last_status_code=result.status_code,
            last_error=result.error,
        )
        recorded = self.store.record_callback(owner_id, job_id, callback)
        logger.info(
            "Callback attempt",
            extra={
                "job_id": job_id,
                "owner_id": owner_id,
                "host": urlsplit(url).hostname,
                "url": webhooks.redacted(url),
                "attempt": attempt,
                "outcome": action,
                "status_code": result.status_code,
                "elapsed_ms": round(result.elapsed_seconds * 1000),
                "error": result.error,
                "recorded": recorded,
            },
        )
        with METRICS_LOCK:
            if action == "delivered":
                metrics.add_metric(name="CallbacksDelivered", unit=MetricUnit.Count, value=1)
            else:
                metrics.add_metric(name="CallbacksFailedAttempts", unit=MetricUnit.Count, value=1)
                if action == "gave_up":
                    metrics.add_metric(name="CallbacksGaveUp", unit=MetricUnit.Count, value=1)
        if not recorded:  # deleted meanwhile, or a duplicate delivered it first: nothing more to do
            return SKIPPED
        return CallbackOutcome(action, delay, callback)

    def _log_skipped(self, owner_id: str, job_id: str, attempt: int, why: str) -> CallbackOutcome:
        logger.info(
            "Callback skipped",
            extra={"job_id": job_id, "owner_id": owner_id, "attempt": attempt, "outcome": "skipped", "why": why},
        )
        return SKIPPED
