"""moto's server as the local stack runs it: ``moto.server``'s own ``main``, after fixes to moto's SQS.

Deletes under the lock. moto 5.2.5's ``Queue.delete_message`` rebuilds the queue's message list and assigns it
back without holding the queue's ``_messages_lock``, which ``add_message`` holds to append. moto's server answers
requests in threads, so a message sent while another is deleted can be appended to the old list just before the
new one replaces it, and is lost: SQS accepted it, and no receive ever returns it. The soak (``make soak``) lost 4
of 2000 jobs this way, with the outbox relay sending batches while the consumer's poller deleted others. Deleting
under the same lock makes the two orderly.

AWS's message characters. SQS accepts in a message body, and in a message attribute's string value, only
``#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF`` (the SendMessage API reference,
MessageBody: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html; the
MessageAttributeValue reference gives string values "the same restrictions on the content as the message body").
moto accepts every character, so a message that AWS would not take passes locally. ``enforce_message_characters``
applies the rule to SendMessage and SendMessageBatch in one of the two ways that reference has described:

- ``refuse`` (the default; the reference today): SendMessage fails with ``InvalidMessageContents`` (HTTP 400, a
  sender fault); SendMessageBatch lists each such entry in ``Failed`` (``SenderFault: true``, ``Code:
  InvalidMessageContents``) and sends the others, as it reports any per-entry failure (BatchResultErrorEntry).
- ``replace`` (an earlier revision: "replaces those invalid characters with U+FFFD before storing the message in
  the queue, as long as the message body contains at least one valid character"): each character outside the set
  becomes U+FFFD and the message is sent.

Where AWS documents nothing, the local stack assumes:

- the error's text (AWS documents only the code): it names the first character refused and where it was;
- in ``replace`` mode, a body or string value with no allowed character at all is refused as above (the "as
  long as" clause, read for string attribute values too);
- in ``replace`` mode, ``MD5OfMessageBody`` and ``MD5OfMessageAttributes`` are the digests of what is stored,
  after replacement, the same digests a receive reports: one digest per message, and the stricter guess, since
  an SDK that checks the digest of what it sent (Java's, .NET's, Go's) then notices the replacement;
- the rule applies to every attribute's ``StringValue`` (``Number`` values are strings too); names, binary values
  and system attributes are left to moto;
- in a batch, AWS's whole-request errors (entry ids, count, total size) come before any entry's characters.

Message group ids. A ``MessageGroupId`` is 1 to 128 characters, each alphanumeric or punctuation
(``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~``: the SendMessage API reference, MessageGroupId, for FIFO and fair standard
queues alike); moto takes any length and any character. ``enforce_message_group_ids`` refuses the rest as
``InvalidParameterValue`` (HTTP 400, SQS's code for a parameter outside its constraints; the text is an assumption),
and, in a batch, fails just that entry (``SenderFault: true``), as for a message's characters.

Message move tasks. moto 5.2.5 does not implement ``StartMessageMoveTask``, ``ListMessageMoveTasks`` or
``CancelMessageMoveTask``, so the README's redrive command failed locally. ``play_message_move_tasks`` serves them on
SQS's wire: a task moves the source queue's messages (visible ones, as SQS moves what it can receive) to
``DestinationArn``, or, without one, back to the queue whose redrive policy names the source, which must be a
dead-letter queue (else ``InvalidParameterValue``, as the API reference says: "only ... queues that are configured
as dead-letter queues of other Amazon SQS queues"); an unknown queue is ``ResourceNotFoundException``. Locally a task
runs to its end at once and is listed ``COMPLETED``, with ``ApproximateNumberOfMessagesMoved``; moved messages are new
messages (new ids, receive count 0) with the same body and attributes. Assumed where AWS is silent: a source with
several source queues needs ``DestinationArn`` locally (moto does not record which queue a dead letter came from),
and ``MaxNumberOfMessagesPerSecond`` is accepted and not paced.

Fair queues. On a standard queue AWS treats each ``MessageGroupId`` as a tenant (a message without one is a tenant
of its own) and, while a tenant is a noisy neighbour, ReceiveMessage returns quiet tenants' messages first whenever
any wait; among noisy tenants, the one with the fewest messages in flight first; noisy messages are never dropped,
and come as usual when no quiet message waits ("How Amazon SQS fair queues work",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues-detailed.html). moto
ignores group ids on standard queues and returns messages in the order they were sent. ``play_fair_queues`` plays an
approximation of AWS's rule (AWS calls its own thresholds approximate too):

- noisy: more than 10 % of the queue's in-flight messages (received, neither deleted nor visible again) are the
  tenant's and at least 30 of its own are in flight (AWS's "concurrency share"), judged afresh at each receive from
  the messages moto holds; a tenant is quiet again as soon as that no longer holds (AWS keeps it noisy "until its
  shares drop to levels comparable to quiet tenants", which it does not quantify), when its backlog is drained
  (nothing of it waits, so nothing is reordered), or when it sent nothing for 5 minutes (judged by the newest of its
  messages the queue still holds);
- AWS's second measure, a tenant's share of recent consumer processing time over 10 %, is left out: AWS gives
  neither the window nor a floor, taken literally it marks a tenant noisy in any queue with fewer than ten busy
  tenants, and the local measure would be this machine's wall clock, so which message comes first would change
  with the machine's speed (the tests assert behaviour, never speed);
- one receive of up to 10 is ordered once, at its start; FIFO queues are untouched (their group ids order them).

``JOBS_LOCAL_SQS_FAIR_QUEUES=0`` turns the rule off in the server process (on by default, as on AWS, where every
standard queue is fair for messages with a group id), so the bench can compare the two.

Visibility and delay limits. ChangeMessageVisibility takes a ``VisibilityTimeout`` of 0 to 43200 seconds, and
the timeout may end at most 12 hours after the ReceiveMessage request that returned the message (the API reference,
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html: "If you try to
extend the visibility timeout beyond 12 hours, your request is rejected"; the developer guide, "Visibility timeout",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html: "12 hours from
the time that Amazon SQS receives the ReceiveMessage request"). AWS answers ``InvalidParameterValue``, "Value N for
parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200
seconds]." (the text SDK users report, e.g. aws/aws-sdk-net#794). moto 5.2.5 counts the 12 hours from the message's
send instead, refusing hides AWS takes (a message delayed 900 s, then hidden 11.8 hours), and takes a negative
timeout; ``enforce_visibility_limits`` counts from the latest receive and refuses a negative one (the reason's text
for it is an assumption). SendMessage's ``DelaySeconds`` is 0 to 900 (SendMessage, API reference); moto refuses more
than 900 but takes a negative delay: refused the same way, in a batch as that entry's failure, as moto fails a delay
over 900.

DynamoDB streams switch as DynamoDB's do (a disabled stream stays readable, enabling again makes a new one, and
UpdateTable refuses what DynamoDB refuses): ``local.moto_dynamodb``.

The message-characters rule reaches the server process through ``JOBS_LOCAL_SQS_INVALID_CHARACTERS`` (``refuse``
or ``replace``), which ``local.stack`` sets. Run as ``python -m local.moto_server -H 127.0.0.1 -p PORT``
(moto.server's options).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import unix_time_millis
from moto.moto_api._internal import mock_random
from moto.sqs.constants import MAXIMUM_MESSAGE_LENGTH
from moto.sqs.exceptions import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    InvalidBatchEntryId,
    InvalidParameterValue,
    ReceiptHandleIsInvalid,
    SQSException,
    TooManyEntriesInBatchRequest,
)
from moto.sqs.models import Message, Queue, SQSBackend
from moto.sqs.responses import SQSResponse

from local.moto_dynamodb import play_stream_switches

_PATCHED = "_jobs_local_locked"
_CHECKED = "_jobs_local_characters"
_GROUPS_CHECKED = "_jobs_local_group_ids"
_LIMITS_CHECKED = "_jobs_local_limits"
#: ChangeMessageVisibility's longest timeout, and the longest a message stays hidden after a receive, seconds.
MAX_VISIBILITY_SECONDS = 43200
#: SendMessage's longest ``DelaySeconds``.
MAX_DELAY_SECONDS = 900
#: Where a moto ``Message`` keeps the time of its latest receive (epoch milliseconds).
_RECEIVED_AT = "_jobs_local_received_at"
#: SendMessage, MessageGroupId: 1 to 128 alphanumeric or punctuation characters.
MESSAGE_GROUP_ID = re.compile(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}")

#: The environment variable that chooses what moto's server does with a character SQS does not allow.
INVALID_CHARACTERS_VARIABLE = "JOBS_LOCAL_SQS_INVALID_CHARACTERS"
#: Its values; the first is the default.
INVALID_CHARACTERS_MODES = ("refuse", "replace")
#: What ``replace`` puts in place of each character outside the set.
REPLACEMENT_CHARACTER = "\ufffd"
#: One character outside SQS's set. Lone surrogates (U+D800 to U+DFFF) cannot arrive as UTF-8 from boto3, whose
#: encoder refuses them, but a decoded request may still hold them; they are outside the set too.
_NOT_ALLOWED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_mode = INVALID_CHARACTERS_MODES[0]


def lock_deletes() -> None:
    """Make ``Queue.delete_message`` hold the queue's ``_messages_lock`` (idempotent)."""
    original: Callable[[Any, str], None] = Queue.delete_message
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            original(self, receipt_handle)

    setattr(delete_message, _PATCHED, True)
    Queue.delete_message = delete_message  # type: ignore[method-assign]


class InvalidMessageContents(SQSException):
    """SQS's error for a message with a character outside the allowed set (HTTP 400, a sender fault)."""

    code = "InvalidMessageContents"

    def __init__(self, character: str, where: str) -> None:
        super().__init__(
            f"Invalid character '#x{ord(character):X}' was found in the {where}; the set of allowed characters is "
            "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
        )


def allowed(text: str, where: str, mode: str) -> str:
    """``text`` as SQS keeps it: itself when every character is allowed; else, in ``replace`` mode, with U+FFFD
    for each character outside the set.

    Raises:
        InvalidMessageContents: in ``refuse`` mode for any character outside the set; in ``replace`` mode when no
            character of ``text`` is allowed.
    """
    found = _NOT_ALLOWED.search(text)
    if found is None:
        return text
    if mode == "replace":
        replaced, count = _NOT_ALLOWED.subn(REPLACEMENT_CHARACTER, text)
        if count < len(text):
            return replaced
    raise InvalidMessageContents(found.group(), where)


def _allowed_attributes(attributes: dict[str, Any] | None, mode: str) -> dict[str, Any] | None:
    if not attributes:
        return attributes
    kept = {}
    for name, value in attributes.items():
        if isinstance(value.get("StringValue"), str):
            value = {**value, "StringValue": allowed(value["StringValue"], f"message attribute {name!r}", mode)}
        kept[name] = value
    return kept


def _check_batch_request(entries: dict[str, dict[str, Any]]) -> None:
    """moto's own whole-request checks of SendMessageBatch, over every entry, refused ones included."""
    if any(not re.match(r"^[\w-]{1,80}$", entry["Id"]) for entry in entries.values()):
        raise InvalidBatchEntryId()
    length = sum(len(entry["MessageBody"]) for entry in entries.values())
    if length > MAXIMUM_MESSAGE_LENGTH:
        raise BatchRequestTooLong(length)
    ids = [entry["Id"] for entry in entries.values()]
    repeated = next((entry_id for n, entry_id in enumerate(ids) if entry_id in ids[:n]), None)
    if repeated is not None:
        raise BatchEntryIdsNotDistinct(repeated)
    if len(entries) > 10:
        raise TooManyEntriesInBatchRequest(len(entries))


def _refusing_batch(
    send_batch: Callable[..., Any], check_entry: Callable[[dict[str, Any]], None], refusal: type[SQSException]
) -> Callable[..., Any]:
    """moto's SendMessageBatch, failing as SQS does each entry that ``check_entry`` refuses with ``refusal``: that
    entry is listed in ``Failed`` as a sender fault, and the others are sent."""

    @functools.wraps(send_batch)
    def send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        refused: dict[str, dict[str, Any]] = {}
        for key, entry in entries.items():
            try:
                check_entry(entry)
            except refusal as error:
                refused[key] = {"Id": entry["Id"], "SenderFault": True, "Code": error.code, "Message": error.message}
        if not refused:
            return send_batch(self, queue_name, entries)
        self.get_queue(queue_name)
        _check_batch_request(entries)
        rest = {key: entry for key, entry in entries.items() if key not in refused}
        messages, failed = send_batch(self, queue_name, rest) if rest else ([], [])
        return messages, [*refused.values(), *failed]

    return send_message_batch


def enforce_message_characters(mode: str = INVALID_CHARACTERS_MODES[0]) -> None:
    """Hold moto's SendMessage and SendMessageBatch to SQS's message characters, ``refuse``-ing or ``replace``-ing
    (see the module's docstring). Patches once; a later call only changes the mode.

    Raises:
        ValueError: ``mode`` is neither ``refuse`` nor ``replace``.
    """
    global _mode
    if mode not in INVALID_CHARACTERS_MODES:
        raise ValueError(f"{INVALID_CHARACTERS_VARIABLE}: {mode!r} is not one of {', '.join(INVALID_CHARACTERS_MODES)}")
    _mode = mode
    send: Callable[..., Any] = SQSBackend.send_message
    send_batch: Callable[..., Any] = SQSBackend.send_message_batch
    if getattr(send, _CHECKED, False):
        return

    @functools.wraps(send)
    def send_message(
        self: Any, queue_name: str, message_body: str, message_attributes: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        self.get_queue(queue_name)  # an unknown queue is reported first, whatever the message holds
        body = allowed(message_body, "message body", _mode)
        return send(self, queue_name, body, _allowed_attributes(message_attributes, _mode), *args, **kwargs)

    def check_entry(entry: dict[str, Any]) -> None:
        allowed(entry["MessageBody"], "message body", _mode)
        _allowed_attributes(entry.get("MessageAttributes"), _mode)

    send_message_batch = _refusing_batch(send_batch, check_entry, InvalidMessageContents)

    for patched in (send_message, send_message_batch):
        setattr(patched, _CHECKED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.send_message_batch = send_message_batch  # type: ignore[method-assign]


class InvalidMessageGroupId(SQSException):
    """SQS's error for a ``MessageGroupId`` outside its constraints (HTTP 400, a sender fault)."""

    code = "InvalidParameterValue"

    def __init__(self, value: str) -> None:
        super().__init__(
            f"Value {value[:200]!r} for parameter MessageGroupId is invalid. Reason: MessageGroupId can only include "
            "1 to 128 alphanumeric and punctuation characters."
        )


def check_group_id(value: object) -> None:
    """Raise ``InvalidMessageGroupId`` unless ``value`` is None or follows SQS's ``MessageGroupId`` rule."""
    if value is not None and not (isinstance(value, str) and MESSAGE_GROUP_ID.fullmatch(value)):
        raise InvalidMessageGroupId(str(value))


def enforce_message_group_ids() -> None:
    """Hold moto's SendMessage and SendMessageBatch to SQS's ``MessageGroupId`` rule (idempotent): SendMessage
    fails with ``InvalidParameterValue``; SendMessageBatch fails each such entry and sends the others."""
    send: Callable[..., Any] = SQSBackend.send_message
    send_batch: Callable[..., Any] = SQSBackend.send_message_batch
    if getattr(send, _GROUPS_CHECKED, False):
        return

    @functools.wraps(send)
    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        self.get_queue(queue_name)
        check_group_id(kwargs.get("group_id"))
        return send(self, queue_name, *args, **kwargs)

    send_message_batch = _refusing_batch(
        send_batch, lambda entry: check_group_id(entry.get("MessageGroupId")), InvalidMessageGroupId
    )

    for patched in (send_message, send_message_batch):
        setattr(patched, _GROUPS_CHECKED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.send_message_batch = send_message_batch  # type: ignore[method-assign]


def _visibility_refused(seconds: int, reason: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Value {seconds} for parameter VisibilityTimeout is invalid. Reason: {reason}")


def enforce_visibility_limits() -> None:
    """Hold moto's ChangeMessageVisibility and SendMessage to SQS's limits (idempotent; see the module's docstring):
    a visibility timeout of 0 to 43200 s that ends within 12 hours of the message's latest receive, and a
    ``DelaySeconds`` of 0 to 900."""
    received: Callable[..., None] = Message.mark_received
    send: Callable[..., Any] = SQSBackend.send_message
    if getattr(send, _LIMITS_CHECKED, False):
        return

    @functools.wraps(received)
    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        setattr(self, _RECEIVED_AT, int(unix_time_millis()))
        received(self, visibility_timeout)

    def change_message_visibility(self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
        seconds = int(visibility_timeout)
        if not 0 <= seconds <= MAX_VISIBILITY_SECONDS:
            raise _visibility_refused(seconds, f"Must be between 0 and {MAX_VISIBILITY_SECONDS}, if provided.")
        queue = self.get_queue(queue_name)
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle):
                receive = getattr(message, _RECEIVED_AT, None) or message.sent_timestamp
                if unix_time_millis() + seconds * 1000 - receive > MAX_VISIBILITY_SECONDS * 1000:
                    limit = f"beyond the limit [{MAX_VISIBILITY_SECONDS} seconds]"
                    raise _visibility_refused(seconds, f"Total VisibilityTimeout for the message is {limit}")
                message.change_visibility(seconds)
                if message.visible and message in queue.pending_messages:
                    queue.pending_messages.remove(message)
                return
        raise ReceiptHandleIsInvalid

    @functools.wraps(send)
    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        delay = kwargs.get("delay_seconds")
        if delay is not None and int(delay) < 0:
            raise InvalidParameterValue(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= "
                f"{MAX_DELAY_SECONDS}."
            )
        return send(self, queue_name, *args, **kwargs)

    setattr(send_message, _LIMITS_CHECKED, True)
    Message.mark_received = mark_received  # type: ignore[method-assign]
    SQSBackend.change_message_visibility = change_message_visibility  # type: ignore[method-assign]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


class ResourceNotFound(SQSException):
    """SQS's error for a message move task naming a queue that does not exist."""

    code = "ResourceNotFoundException"

    def __init__(self, arn: str) -> None:
        super().__init__(f"The resource that you specified for the SourceArn parameter doesn't exist: {arn}")


class InvalidMoveTask(SQSException):
    """SQS's error for a message move task it cannot run (a source that is no dead-letter queue)."""

    code = "InvalidParameterValue"


def _queue_by_arn(backend: Any, arn: object) -> Queue:
    for queue in backend.queues.values():
        if queue.queue_arn == arn:
            return queue  # type: ignore[no-any-return]
    raise ResourceNotFound(str(arn))


def move_messages(backend: Any, source_arn: str, destination_arn: str | None) -> dict[str, Any]:
    """Run a message move task to its end: every visible message of the source queue to ``destination_arn``, or
    back to the one queue whose redrive policy names the source. Returns the task as ListMessageMoveTasks lists it.

    Raises:
        ResourceNotFound: a queue that does not exist.
        InvalidMoveTask: the source is no queue's dead-letter queue, or (locally) several queues'.
    """
    source = _queue_by_arn(backend, source_arn)
    if destination_arn is not None:
        destination = _queue_by_arn(backend, destination_arn)
    else:
        origins = [queue for queue in backend.queues.values() if queue.dead_letter_queue is source]
        if len(origins) != 1:
            raise InvalidMoveTask(
                f"Source queue {source_arn} must be configured as a dead-letter queue of "
                + ("another queue" if not origins else "one queue locally; give DestinationArn")
            )
        destination = origins[0]
    with source._messages_lock:
        moving = [message for message in source._messages if message.visible and not message.delayed]
        source._messages = [message for message in source._messages if message not in moving]
    for message in moving:
        fresh = Message(str(mock_random.uuid4()), message.body, system_attributes=message.system_attributes)
        fresh.message_attributes = dict(message.message_attributes)
        fresh.group_id = message.group_id
        fresh.mark_sent()
        destination.add_message(fresh)
    task = {
        "TaskHandle": str(mock_random.uuid4()),
        "Status": "COMPLETED",
        "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": len(moving),
        "ApproximateNumberOfMessagesToMove": len(moving),
        "StartedTimestamp": int(time.time() * 1000),
    }
    if destination_arn is not None:
        task["DestinationArn"] = destination_arn
    _tasks.setdefault(source_arn, []).insert(0, task)
    return task


#: The message move tasks run, newest first, by source queue ARN (ListMessageMoveTasks lists up to 10).
_tasks: dict[str, list[dict[str, Any]]] = {}


def play_message_move_tasks() -> None:
    """Serve ``StartMessageMoveTask``, ``ListMessageMoveTasks`` and ``CancelMessageMoveTask`` on moto's SQS."""

    def start_message_move_task(self: Any) -> ActionResult:
        task = move_messages(self.sqs_backend, self._get_param("SourceArn"), self._get_param("DestinationArn"))
        return ActionResult({"TaskHandle": task["TaskHandle"]})

    def list_message_move_tasks(self: Any) -> ActionResult:
        source_arn = self._get_param("SourceArn")
        _queue_by_arn(self.sqs_backend, source_arn)
        limit = int(self._get_param("MaxResults") or 1)
        return ActionResult({"Results": [dict(task) for task in _tasks.get(source_arn, [])[: max(1, min(10, limit))]]})

    def cancel_message_move_task(self: Any) -> ActionResult:
        # Tasks here finish as they start, so none is ever running to cancel (SQS's answer for a finished task).
        raise InvalidMoveTask("Only a task that is RUNNING can be cancelled; this task is COMPLETED")

    SQSResponse.start_message_move_task = start_message_move_task  # type: ignore[attr-defined]
    SQSResponse.list_message_move_tasks = list_message_move_tasks  # type: ignore[attr-defined]
    SQSResponse.cancel_message_move_task = cancel_message_move_task  # type: ignore[attr-defined]


#: The environment variable that turns fair queues off in the server process ("0"); anything else keeps them on.
FAIR_QUEUES_VARIABLE = "JOBS_LOCAL_SQS_FAIR_QUEUES"
#: A noisy tenant holds more than this share of the queue's in-flight messages...
NOISY_SHARE = 0.10
#: ...and at least this many of its own (both from "How Amazon SQS fair queues work").
NOISY_IN_FLIGHT = 30
#: A tenant that sent nothing for this long is quiet again, milliseconds (5 minutes).
QUIET_AFTER_MS = 5 * 60 * 1000
_FAIR = "_jobs_local_fair"
_fair = True


def noisy_tenants(held: Iterable[Message], now_ms: float) -> dict[str, int]:
    """The noisy tenants among a standard queue's messages ``held`` (all of them: waiting, in flight, delayed), by
    group id, each with its count of messages in flight, at ``now_ms`` (Unix time, milliseconds).

    A tenant is noisy when more than ``NOISY_SHARE`` of the in-flight messages are its own, at least
    ``NOISY_IN_FLIGHT`` of them, and its newest message held was sent less than ``QUIET_AFTER_MS`` ago. A message
    without a group id is a tenant of its own, so never noisy (one message cannot be 30 in flight), but it counts
    in the queue's in-flight total.
    """
    in_flight: Counter[str] = Counter()
    total = 0
    newest: dict[str, int] = {}
    for message in held:
        group = message.group_id
        if message.visible_at >= now_ms:  # moto's Message.visible: now > visible_at
            total += 1
            if group is not None:
                in_flight[group] += 1
        sent: int = getattr(message, "sent_timestamp", None) or 0  # moto types it None; mark_sent sets ms
        if group is not None:
            newest[group] = max(newest.get(group, 0), sent)
    return {
        group: count
        for group, count in in_flight.items()
        if count >= NOISY_IN_FLIGHT and count > NOISY_SHARE * total and now_ms - newest.get(group, 0) < QUIET_AFTER_MS
    }


def fair_order(waiting: list[Message], held: Iterable[Message], now_ms: float) -> list[Message]:
    """``waiting`` (the messages a receive may take, in moto's order) as a fair queue hands them out: quiet
    tenants' first, in their order; then each noisy tenant's (``noisy_tenants`` of ``held``), the one with the
    fewest in flight first. The same messages, none dropped; ``waiting`` itself when no tenant is noisy."""
    noisy = noisy_tenants(held, now_ms)
    if not noisy:
        return waiting
    quiet = [message for message in waiting if message.group_id not in noisy]
    loud = [message for message in waiting if message.group_id in noisy]
    loud.sort(key=lambda message: noisy[message.group_id])  # type: ignore[index]  # stable: each in its order
    return quiet + loud


def play_fair_queues(enabled: bool = True) -> None:
    """Make moto's ReceiveMessage on standard queues follow SQS's fair-queues rule (``fair_order``; see the
    module's docstring) while ``enabled``. Patches ``Queue.messages`` (the visible messages moto's receive walks,
    in order) once; a later call only turns the rule on or off. FIFO queues keep moto's order."""
    global _fair
    _fair = enabled
    current: Any = Queue.__dict__["messages"]  # the property itself
    visible: Callable[[Any], list[Message]] = current.fget
    if getattr(visible, _FAIR, False):
        return

    @functools.wraps(visible)
    def messages(self: Any) -> list[Message]:
        waiting = visible(self)
        if not _fair or self.fifo_queue or len(waiting) < 2:
            return waiting
        return fair_order(waiting, list(self._messages), unix_time_millis())

    setattr(messages, _FAIR, True)
    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]


def fair_queues_enabled(value: str | None) -> bool:
    """``JOBS_LOCAL_SQS_FAIR_QUEUES`` read: off for ``0``, ``false``, ``off`` or ``no`` (any case), else on."""
    return (value or "").strip().lower() not in {"0", "false", "off", "no"}


def main(argv: list[str] | None = None) -> None:
    """moto.server's command line, with EventBridge's PutEvents limits (``local.moto_events``), ``lock_deletes()``,
    ``local.moto_dynamodb.play_stream_switches()``, ``enforce_message_group_ids()``, ``enforce_visibility_limits()``,
    ``play_message_move_tasks()``, ``play_fair_queues()`` (off when ``JOBS_LOCAL_SQS_FAIR_QUEUES`` is ``0``) and
    ``enforce_message_characters()`` (in the mode ``JOBS_LOCAL_SQS_INVALID_CHARACTERS`` names, ``refuse`` by
    default) applied first."""
    from moto.server import main as moto_main

    from local.moto_events import play_eventbridge

    play_eventbridge()
    lock_deletes()
    play_stream_switches()
    enforce_message_group_ids()
    enforce_visibility_limits()
    play_message_move_tasks()
    play_fair_queues(fair_queues_enabled(os.environ.get(FAIR_QUEUES_VARIABLE)))
    try:
        enforce_message_characters(os.environ.get(INVALID_CHARACTERS_VARIABLE) or INVALID_CHARACTERS_MODES[0])
    except ValueError as error:
        raise SystemExit(str(error)) from error
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
