"""The sandbox's own ids (``gateways/sandbox/processor.py _new_id``): ``{prefix}_sbx_`` and 20
base62 characters, as Stripe's ids look, uniform over the alphabet, made by paymux's id maker
from one read of the OS's random source (issue 10: it made 20 before)."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest

from paymux.domain import ids
from paymux.gateways.sandbox import processor

_SHAPE = re.compile(r"ch_sbx_[A-Za-z0-9]{20}")


def test_an_id_is_the_prefix_and_20_base62_characters_from_one_random_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real = ids.random_bytes

    def counted(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(ids, "random_bytes", counted)
    made = {processor._new_id("ch") for _ in range(2000)}
    assert len(made) == 2000
    assert all(_SHAPE.fullmatch(made_id) for made_id in made)
    assert 2000 <= len(reads) <= 2100  # one read per id, another only when bytes run short
    letters = Counter("".join(made_id[len("ch_sbx_") :] for made_id in made))
    assert set(letters) == set(string.ascii_letters + string.digits)
    # 40,000 characters over 62: about 645 each; a character kept from half the bytes, or
    # dropped, falls far outside this band.
    assert 500 < min(letters.values()) and max(letters.values()) < 800
