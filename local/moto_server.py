"""moto's server as the local stack runs it: ``moto.server``'s own ``main``, after one fix to moto's SQS.

moto 5.2.5's ``Queue.delete_message`` rebuilds the queue's message list and assigns it back without holding the
queue's ``_messages_lock``, which ``add_message`` holds to append. moto's server answers requests in threads, so
a message sent while another is deleted can be appended to the old list just before the new one replaces it,
and is lost: SQS accepted it, and no receive ever returns it. The soak (``make soak``) lost 4 of 2000 jobs this
way, with the outbox relay sending batches while the consumer's poller deleted others. Deleting under the same
lock makes the two orderly. Run as ``python -m local.moto_server -H 127.0.0.1 -p PORT`` (moto.server's options).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from moto.sqs.models import Queue

_PATCHED = "_jobs_local_locked"


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


def main(argv: list[str] | None = None) -> None:
    """moto.server's command line, with ``lock_deletes()`` applied first."""
    from moto.server import main as moto_main

    lock_deletes()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
