"""Object ids: prefix, length, alphabet, and every character drawn uniformly."""

from __future__ import annotations

import string
from collections import Counter

from paymux.domain.ids import new_id

ALPHABET = set(string.ascii_letters + string.digits)


def test_an_id_is_the_prefix_an_underscore_and_24_letters_or_digits() -> None:
    value = new_id("pi")
    assert value.startswith("pi_")
    assert len(value) == 3 + 24
    assert set(value[3:]) <= ALPHABET


def test_an_id_can_be_asked_for_in_any_length() -> None:
    for length in (1, 8, 20, 24, 64, 300):
        assert len(new_id("x", length)) == 2 + length


def test_ids_do_not_repeat() -> None:
    assert len({new_id("evt") for _ in range(20_000)}) == 20_000


def test_every_letter_and_digit_is_about_equally_likely() -> None:
    counts = Counter("".join(new_id("x", 62)[2:] for _ in range(2_000)))
    assert set(counts) == ALPHABET
    expected = 2_000  # 124,000 characters over 62 symbols
    # A byte-modulo bias (the first 8 symbols drawn 5/4 as often) would show as +25%.
    assert all(abs(n - expected) < 0.12 * expected for n in counts.values()), counts
