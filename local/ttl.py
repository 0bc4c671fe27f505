"""DynamoDB's Time to Live, played locally: neither DynamoDB Local nor moto deletes expired items, and neither
marks a deletion in the stream as TTL's.

On AWS, TTL deletes an item whose TTL attribute is a Number of epoch seconds in the past, but not more than five
years in the past ("Using time to live (TTL) in DynamoDB" and "How it works: DynamoDB Time to Live (TTL)",
DynamoDB developer guide: items past expiry "are typically deleted within a few days"; "items with an expiration
time older than five years" are not deleted), and its stream record carries
``"userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}`` ("Time to Live (TTL) and
DynamoDB Streams"). A user's delete carries no ``userIdentity``.

``TtlSweeper`` scans a table every ``interval`` seconds and deletes what TTL would delete, one item at a time,
on the condition that its TTL attribute still holds the value it read (an item written again in between is left
for the next sweep, as TTL re-checks). It remembers each deletion it makes (keys and the TTL value) before it
makes it; the stream poller asks ``identity_of(record)`` for every ``REMOVE`` record, and only a deletion the
sweeper made (confirmed, not merely attempted) gets TTL's ``userIdentity``. A ``REMOVE`` of an item the sweeper
is deleting waits until that delete has answered, so a user's delete that beat the sweeper is never taken for
TTL's. The sweep is never sooner than AWS may be (at the first sweep after expiry), which a test may rely on only
as "eventually": AWS gives no bound but "a few days".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

#: ``userIdentity`` of a stream record that DynamoDB's TTL wrote.
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
#: TTL leaves alone an item whose expiry is more than five years past (365.25-day years).
FIVE_YEARS_SECONDS = int(5 * 365.25 * 24 * 3600)
#: Deletions remembered for this long, seconds (the stream's own retention: 24 hours).
REMEMBERED_SECONDS = 24 * 3600


def _key_of(keys: Mapping[str, Any]) -> str:
    return json.dumps(keys, sort_keys=True)


class TtlSweeper:
    """Deletes a table's expired items as TTL would, and tells the stream poller which deletions were TTL's.

    Args:
        dynamodb: a boto3 DynamoDB client.
        table_name: the table.
        key_names: the table's key attribute names (partition, then sort key).
        attribute: the TTL attribute (``TimeToLiveSpecification.AttributeName``).
        interval: seconds between sweeps.
        log: writes one line to the stack's output.
        clock: epoch seconds now.
    """

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        key_names: list[str],
        attribute: str,
        *,
        interval: float,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.key_names = key_names
        self.attribute = attribute
        self.interval = interval
        self.log = log
        self.clock = clock
        self._changed = threading.Condition()
        self._pending: set[str] = set()
        self._deleted: dict[str, tuple[str, float]] = {}  # key -> (the TTL value deleted, when)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ttl-sweeper", daemon=True)

    def start(self) -> None:
        """Start sweeping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the sweep in flight."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as error:  # noqa: BLE001 - the sweeper keeps going, as TTL does
                self.log(json.dumps({"ttl": self.table_name, "level": "ERROR", "error": repr(error)}))

    def expired(self, item: Mapping[str, Any], now: float) -> bool:
        """True when TTL would delete ``item`` (attribute-value map) at ``now``."""
        value = item.get(self.attribute)
        if not isinstance(value, Mapping) or "N" not in value:
            return False
        try:
            expires = float(value["N"])
        except ValueError:
            return False
        return now - FIVE_YEARS_SECONDS <= expires <= now

    def sweep(self) -> int:
        """Delete every expired item once; returns how many this sweep deleted."""
        now = self.clock()
        deleted = 0
        paginator = self.dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                if self._stop.is_set():
                    return deleted
                if self.expired(item, now):
                    deleted += self._delete(item)
        self._forget(now)
        return deleted

    def _delete(self, item: Mapping[str, Any]) -> int:
        keys = {name: item[name] for name in self.key_names}
        key = _key_of(keys)
        with self._changed:
            self._pending.add(key)
        done = False
        try:
            self.dynamodb.delete_item(
                TableName=self.table_name,
                Key=keys,
                ConditionExpression="#ttl = :seen",
                ExpressionAttributeNames={"#ttl": self.attribute},
                ExpressionAttributeValues={":seen": item[self.attribute]},
            )
            done = True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        finally:
            with self._changed:
                self._pending.discard(key)
                if done:
                    self._deleted[key] = (json.dumps(item[self.attribute], sort_keys=True), self.clock())
                self._changed.notify_all()
        if done:
            self.log(json.dumps({"ttl": self.table_name, "level": "INFO", "expired": keys}))
        return int(done)

    def _forget(self, now: float) -> None:
        with self._changed:
            for key, (_, when) in list(self._deleted.items()):
                if now - when > REMEMBERED_SECONDS:
                    del self._deleted[key]

    def identity_of(self, record: Mapping[str, Any], wait_seconds: float = 10.0) -> dict[str, str] | None:
        """The ``userIdentity`` of a GetRecords record of this table: TTL's for a ``REMOVE`` the sweeper made,
        else None (waiting up to ``wait_seconds`` while the sweeper's delete of that item has not answered)."""
        if record.get("eventName") != "REMOVE":
            return None
        change = record.get("dynamodb", {})
        keys, old = change.get("Keys"), change.get("OldImage") or {}
        if not isinstance(keys, Mapping):
            return None
        key = _key_of(keys)
        seen = json.dumps(old.get(self.attribute), sort_keys=True)
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            while key in self._pending and time.monotonic() < deadline:
                self._changed.wait(0.1)
            # The same keys and TTL value: the item the sweeper deleted (every reader of the stream asks).
            if key in self._deleted and self._deleted[key][0] == seen:
                return dict(TTL_IDENTITY)
        return None
