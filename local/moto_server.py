"""moto's server as the local stack runs it: ``moto.server``'s own ``main``, after two fixes to moto's SQS.

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

The rule reaches the server process through ``JOBS_LOCAL_SQS_INVALID_CHARACTERS`` (``refuse`` or ``replace``),
which ``local.stack`` sets. Run as ``python -m local.moto_server -H 127.0.0.1 -p PORT`` (moto.server's options).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from moto.sqs.constants import MAXIMUM_MESSAGE_LENGTH
from moto.sqs.exceptions import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    InvalidBatchEntryId,
    SQSException,
    TooManyEntriesInBatchRequest,
)
from moto.sqs.models import Queue, SQSBackend

_PATCHED = "_jobs_local_locked"
_CHECKED = "_jobs_local_characters"

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

    @functools.wraps(send_batch)
    def send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        refused: dict[str, dict[str, Any]] = {}
        for key, entry in entries.items():
            try:
                allowed(entry["MessageBody"], "message body", _mode)
                _allowed_attributes(entry.get("MessageAttributes"), _mode)
            except InvalidMessageContents as error:
                refused[key] = {"Id": entry["Id"], "SenderFault": True, "Code": error.code, "Message": error.message}
        if not refused:
            return send_batch(self, queue_name, entries)
        self.get_queue(queue_name)
        _check_batch_request(entries)
        rest = {key: entry for key, entry in entries.items() if key not in refused}
        messages, failed = send_batch(self, queue_name, rest) if rest else ([], [])
        return messages, [*refused.values(), *failed]

    for patched in (send_message, send_message_batch):
        setattr(patched, _CHECKED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.send_message_batch = send_message_batch  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """moto.server's command line, with ``lock_deletes()`` and ``enforce_message_characters()`` (in the mode
    ``JOBS_LOCAL_SQS_INVALID_CHARACTERS`` names, ``refuse`` by default) applied first."""
    from moto.server import main as moto_main

    lock_deletes()
    try:
        enforce_message_characters(os.environ.get(INVALID_CHARACTERS_VARIABLE) or INVALID_CHARACTERS_MODES[0])
    except ValueError as error:
        raise SystemExit(str(error)) from error
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
