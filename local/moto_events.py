"""EventBridge's PutEvents limits on moto's server, which enforces only the ten entries per call.

- Entries per call: at most 10 ("PutEvents", EventBridge API reference,
  https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html: ``Entries``, "Array Members:
  Minimum number of 1 item. Maximum number of 10 items"); moto refuses more with ``ValidationException`` already.
- Size: the entries' total size, counted as "Calculating Amazon EventBridge PutEvents event entry size" says
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html: ``Time`` 14 bytes when given;
  ``Source``, ``DetailType``, ``Detail`` and each of ``Resources`` their UTF-8 bytes), must be under the limit.
  The limit is 1 MB since 29 January 2026 (AWS Compute Blog, "More room to build: serverless services now
  support payloads up to 1 MB"; 256 KB before, which that page still says). Over it, the whole call fails with
  ``ValidationException`` "Total size of the entries in the request is over the limit." (the text AWS answers,
  as reported in awslabs/aws-service-catalog-puppet issue 563). Assumed: "less than 1 MB" means under
  1,048,576 bytes, so 1,048,576 is refused.
- ``Detail``: "A valid JSON object" (PutEventsRequestEntry). moto refuses text that is not JSON
  (``MalformedDetail``) but accepts any other JSON value with a warning. Here an entry whose ``Detail`` is JSON
  but not an object fails as text that is not JSON does: ``ErrorCode`` ``MalformedDetail`` in its place of
  ``Entries`` and ``FailedEntryCount`` counting it (assumed: AWS documents only that it must be an object).

And the event a rule's target receives: moto 5.2.5's default input template leaves out ``account``, which every
EventBridge event carries ("Amazon EventBridge events", EventBridge user guide: the top-level fields ``version``,
``id``, ``detail-type``, ``source``, ``account``, ``time``, ``region``, ``resources``, ``detail``).
``play_eventbridge`` puts it back.
"""

from __future__ import annotations

import json
from typing import Any

from moto.events.exceptions import ValidationException
from moto.events.models import EventsBackend
from moto.events.utils import EventTemplateParser

#: Entries' total size at which a PutEvents call is refused, bytes.
MAX_REQUEST_BYTES = 1024 * 1024
#: What a ``Time`` counts.
TIME_BYTES = 14
_PATCHED = "_jobs_local_limits"


def entry_size(entry: dict[str, Any]) -> int:
    """The size EventBridge counts for one ``PutEventsRequestEntry`` (as the request's JSON gives it), bytes."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        value = entry.get(name)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode("utf-8"))
    return size


def _detail_is_object(entry: dict[str, Any]) -> bool:
    detail = entry.get("Detail")
    if not isinstance(detail, str) or not detail:
        return True  # moto's own checks answer a missing one
    try:
        return isinstance(json.loads(detail), dict)
    except ValueError:
        return True  # moto's own MalformedDetail


def enforce_put_events_limits() -> None:
    """Make moto's ``PutEvents`` refuse what EventBridge refuses (this module's docstring). Idempotent."""
    original = EventsBackend.put_events
    if getattr(original, _PATCHED, False):
        return

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(events) <= 10 and sum(entry_size(entry) for entry in events) >= MAX_REQUEST_BYTES:
            raise ValidationException("Total size of the entries in the request is over the limit.")
        malformed = {index for index, entry in enumerate(events) if not _detail_is_object(entry)}
        accepted = original(self, [entry for index, entry in enumerate(events) if index not in malformed])
        results = iter(accepted)
        return [
            {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
            if index in malformed
            else next(results)
            for index in range(len(events))
        ]

    setattr(put_events, _PATCHED, True)
    EventsBackend.put_events = put_events  # type: ignore[method-assign]


def deliver_whole_events() -> None:
    """Targets get every top-level field of the event, ``account`` included. Idempotent."""
    template = EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE
    if '"account"' not in template:
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = template.replace(
            '"version": "0", ', '"version": "0", "account": "<account>", '
        )


def play_eventbridge() -> None:
    """Everything this module changes in moto: ``enforce_put_events_limits`` and ``deliver_whole_events``."""
    enforce_put_events_limits()
    deliver_whole_events()
