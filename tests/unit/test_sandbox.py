"""The sandbox's long-lived objects leave the garbage collector's reach after its first invocation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jobs.sandbox import freeze_after_first_invocation


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects go back to the collector


def serve(event: dict[str, object], context: object) -> dict[str, object]:
    if event.get("fail"):
        raise RuntimeError("the invocation failed")
    return {"statusCode": 200}


def test_in_lambda_the_first_invocation_freezes_what_exists_and_later_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    first = freeze_after_first_invocation(serve)

    assert first({}, None) == {"statusCode": 200}
    assert gc.get_freeze_count() > 1000  # this test process's modules, at least
    gc.unfreeze()
    assert first({}, None) == {"statusCode": 200}
    assert gc.get_freeze_count() == 0


def test_a_first_invocation_that_raises_freezes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    failing = freeze_after_first_invocation(serve)

    with pytest.raises(RuntimeError):
        failing({"fail": True}, None)

    assert gc.get_freeze_count() > 0


def test_outside_lambda_nothing_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    fresh = freeze_after_first_invocation(serve)

    assert fresh({}, None) == {"statusCode": 200}
    assert gc.get_freeze_count() == 0
