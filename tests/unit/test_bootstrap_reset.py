"""``jobs.bootstrap.reset`` forgets every cached object of the module: a cache it misses keeps a client or a table
name from an earlier test's environment (owner_slots did, and a test saw no slot calls)."""

from __future__ import annotations

import inspect

from jobs import bootstrap


def test_reset_names_every_cached_function_of_bootstrap() -> None:
    cached = {
        name
        for name, value in vars(bootstrap).items()
        if callable(value) and hasattr(value, "cache_clear") and getattr(value, "__module__", "") == bootstrap.__name__
    }
    source = inspect.getsource(bootstrap.reset)

    assert cached
    assert {name for name in cached if f"        {name},\n" not in source} == set()
