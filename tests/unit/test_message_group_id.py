"""``jobs.queue.message_group_id``: every valid owner id gives a ``MessageGroupId`` SQS accepts (1 to 128
alphanumeric or punctuation characters, SendMessage API reference; ``local.moto_server.check_group_id`` holds the
local stack to it), stable, and different for different owners."""

from __future__ import annotations

import random
import string

import pytest

from jobs.models import is_owner_id
from jobs.queue import message_group_id
from local.moto_server import check_group_id

#: Every character an owner id may hold (0x21 to 0x7E).
OWNER_CHARACTERS = "".join(chr(code) for code in range(0x21, 0x7F))


def _owner_ids() -> list[str]:
    """Edge lengths (1, 127, 128, 129, 255), all punctuation, and 2,000 random ids of every length."""
    rng = random.Random(20251201)  # noqa: S311 - test data, fixed so every run draws the same ids
    ids = ["a", string.punctuation, OWNER_CHARACTERS, OWNER_CHARACTERS * 2]
    for length in (1, 63, 64, 65, 127, 128, 129, 191, 192, 254, 255):
        ids += ["x" * length, "~" * length, "".join(rng.choice(OWNER_CHARACTERS) for _ in range(length))]
    ids += ["".join(rng.choice(OWNER_CHARACTERS) for _ in range(rng.randint(1, 255))) for _ in range(2_000)]
    # Long ids that differ only after the prefix the derived id keeps, and only in their last character.
    ids += ["p" * 200 + tail for tail in ("a", "b", "!", "~")] + ["q" * 254 + c for c in string.punctuation]
    assert all(is_owner_id(owner_id) for owner_id in ids)
    return list(dict.fromkeys(ids))


OWNER_IDS = _owner_ids()


def test_every_owner_ids_group_id_is_one_sqs_accepts() -> None:
    for owner_id in OWNER_IDS:
        group_id = message_group_id(owner_id)
        check_group_id(group_id)  # raises InvalidMessageGroupId otherwise
        assert 1 <= len(group_id) <= 128


def test_different_owners_get_different_group_ids_and_the_same_owner_the_same() -> None:
    group_ids = [message_group_id(owner_id) for owner_id in OWNER_IDS]
    assert len(set(group_ids)) == len(OWNER_IDS)
    assert group_ids == [message_group_id(owner_id) for owner_id in OWNER_IDS]


@pytest.mark.parametrize("length", [1, 100, 127])
def test_an_owner_id_under_128_characters_is_its_own_group_id(length: int) -> None:
    owner_id = (OWNER_CHARACTERS * 2)[:length]
    assert message_group_id(owner_id) == owner_id


@pytest.mark.parametrize("length", [128, 129, 255])
def test_a_longer_owner_id_becomes_its_prefix_and_its_sha256(length: int) -> None:
    owner_id = (OWNER_CHARACTERS * 3)[:length]
    group_id = message_group_id(owner_id)
    assert len(group_id) == 128
    assert group_id.startswith(owner_id[:64])
    assert group_id != owner_id[:128]


def test_an_owner_id_of_128_characters_cannot_take_a_longer_owners_group_id() -> None:
    longer = "z" * 200
    assert message_group_id(message_group_id(longer)) != message_group_id(longer)


@pytest.mark.parametrize("owner_id", ["", "a" * 256, "has space", "tab\t", "é", "\x7f"])
def test_an_invalid_owner_id_is_refused(owner_id: str) -> None:
    with pytest.raises(ValueError, match="owner id"):
        message_group_id(owner_id)
