"""Proration to the second with cumulative half-even rounding: parts always sum to the whole."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.billing.rules.proration import (
    ProrationItem,
    ProrationLine,
    cancel_credit,
    change_prorations,
    prorate,
    round_half_even_div,
)

S = 1_000_000  # microseconds per second
DAY = 86_400 * S


def test_half_of_a_period_is_half_the_amount() -> None:
    assert prorate(3000, 0, 30 * DAY, 0, 15 * DAY) == 1500
    assert prorate(3000, 0, 30 * DAY, 15 * DAY, 30 * DAY) == 1500
    assert prorate(3000, 0, 30 * DAY, 10 * DAY, 20 * DAY) == 1000
    assert prorate(3000, 0, 30 * DAY, 0, 30 * DAY) == 3000
    assert prorate(3000, 0, 30 * DAY, 7 * DAY, 7 * DAY) == 0


def test_thirds_round_cumulatively_so_the_parts_sum_to_the_whole() -> None:
    # cum(1 s) = round(10/3) = 3, cum(2 s) = round(20/3) = 7: parts 3, 4, 3.
    assert prorate(10, 0, 3 * S, 0, 1 * S) == 3
    assert prorate(10, 0, 3 * S, 1 * S, 2 * S) == 4
    assert prorate(10, 0, 3 * S, 2 * S, 3 * S) == 3


@pytest.mark.parametrize(
    ("amount", "first_half"),
    [
        (1, 0),  # 0.5 -> 0 (even)
        (3, 2),  # 1.5 -> 2 (even)
        (5, 2),  # 2.5 -> 2 (even)
        (7, 4),  # 3.5 -> 4 (even)
        (-1, 0),  # -0.5 -> 0
        (-3, -2),  # -1.5 -> -2
        (-5, -2),  # -2.5 -> -2
    ],
)
def test_ties_round_half_to_even(amount: int, first_half: int) -> None:
    assert prorate(amount, 0, 2 * S, 0, 1 * S) == first_half
    assert prorate(amount, 0, 2 * S, 1 * S, 2 * S) == amount - first_half


def test_times_are_floored_to_whole_seconds() -> None:
    # 999_999 us is still second 0; 1_000_000 us is second 1.
    assert prorate(2, 0, 2 * S, 999_999, 2 * S) == 2
    assert prorate(2, 0, 2 * S, 1 * S, 2 * S) == 1
    assert prorate(2, 0, 2 * S + 999_999, 1 * S, 3 * S) == 1  # the end floors to 2 s
    # Floor, not truncation toward zero: -1 us is second -1, so the period is 2 s long.
    assert prorate(2, -1, 1 * S, 0, 1 * S) == 1


def test_from_and_to_are_clamped_into_the_period() -> None:
    assert prorate(100, 10 * S, 20 * S, 0, 100 * S) == 100
    assert prorate(100, 10 * S, 20 * S, 0, 15 * S) == 50
    assert prorate(100, 10 * S, 20 * S, 15 * S, 99 * S) == 50
    assert prorate(100, 10 * S, 20 * S, 25 * S, 30 * S) == 0
    assert prorate(100, 10 * S, 20 * S, 0, 5 * S) == 0


def test_reversed_span_is_the_negated_share() -> None:
    assert prorate(10, 0, 3 * S, 2 * S, 1 * S) == -4


def test_a_period_shorter_than_a_second_is_refused() -> None:
    with pytest.raises(ValueError):
        prorate(100, 0, 999_999, 0, 1)
    with pytest.raises(ValueError):
        prorate(100, 5 * S, 5 * S, 0, 1)
    with pytest.raises(ValueError):
        prorate(100, 5 * S, 4 * S, 0, 1)


def test_cancel_credit_is_minus_the_unused_rest() -> None:
    assert cancel_credit(3000, 0, 30 * DAY, 10 * DAY) == -2000
    assert cancel_credit(3000, 0, 30 * DAY, 0) == -3000
    assert cancel_credit(3000, 0, 30 * DAY, -5 * DAY) == -3000
    assert cancel_credit(3000, 0, 30 * DAY, 30 * DAY) == 0
    assert cancel_credit(3000, 0, 30 * DAY, 31 * DAY) == 0
    assert cancel_credit(5, 0, 2 * S, 1 * S) == -3  # 5 - round_half_even(2.5) = 5 - 2


def test_round_half_even_div() -> None:
    assert round_half_even_div(5, 2) == 2
    assert round_half_even_div(7, 2) == 4
    assert round_half_even_div(-5, 2) == -2
    assert round_half_even_div(5, -2) == -2
    assert round_half_even_div(-7, -2) == 4
    assert round_half_even_div(10, 4) == 2  # 2.5
    assert round_half_even_div(11, 4) == 3  # 2.75
    assert round_half_even_div(9, 4) == 2  # 2.25
    assert round_half_even_div(0, 7) == 0
    with pytest.raises(ZeroDivisionError):
        round_half_even_div(1, 0)


# -- change_prorations -----------------------------------------------------------------------


def test_a_mid_period_change_credits_the_old_and_debits_the_new() -> None:
    old = [
        ProrationItem("si_a", 1000, "A"),
        ProrationItem("si_b", 500, "B 1x"),
        ProrationItem("si_c", 300, "C"),
    ]
    new = [
        ProrationItem("si_a", 1000, "A"),  # unchanged: no line
        ProrationItem("si_b", 800, "B 2x"),  # changed: credit + debit
        ProrationItem("si_d", 200, "D"),  # added: debit
    ]  # si_c removed: credit
    lines = change_prorations(old, new, 0, 10 * S, 4 * S)  # 6/10 of the period left
    assert lines == [
        ProrationLine("si_b", -300, 4 * S, 10 * S, "B 1x"),
        ProrationLine("si_c", -180, 4 * S, 10 * S, "C"),
        ProrationLine("si_b", 480, 4 * S, 10 * S, "B 2x"),
        ProrationLine("si_d", 120, 4 * S, 10 * S, "D"),
    ]


def test_a_description_only_change_bills_nothing() -> None:
    old = [ProrationItem("si_a", 1000, "old name")]
    new = [ProrationItem("si_a", 1000, "new name")]
    assert change_prorations(old, new, 0, 10 * S, 4 * S) == []


def test_a_change_before_the_period_credits_and_debits_it_all() -> None:
    lines = change_prorations(
        [ProrationItem("si_a", 1000)], [ProrationItem("si_a", 2000)], 10 * S, 20 * S, 0
    )
    assert lines == [
        ProrationLine("si_a", -1000, 10 * S, 20 * S, None),
        ProrationLine("si_a", 2000, 10 * S, 20 * S, None),
    ]


def test_a_change_at_the_period_end_keeps_zero_lines() -> None:
    lines = change_prorations(
        [ProrationItem("si_a", 1000)], [ProrationItem("si_a", 2000)], 0, 10 * S, 10 * S
    )
    assert [(line.amount, line.from_us, line.to_us) for line in lines] == [
        (0, 10 * S, 10 * S),
        (0, 10 * S, 10 * S),
    ]


def test_duplicate_keys_are_refused() -> None:
    twice = [ProrationItem("si_a", 1), ProrationItem("si_a", 2)]
    with pytest.raises(ValueError):
        change_prorations(twice, [], 0, 10 * S, 5 * S)
    with pytest.raises(ValueError):
        change_prorations([], twice, 0, 10 * S, 5 * S)


# -- properties ------------------------------------------------------------------------------

amounts = st.integers(-10**12, 10**12)


@settings(max_examples=150, deadline=None)
@given(
    amount=amounts,
    start=st.integers(-(10**15), 10**15),
    length=st.integers(1 * S, 400 * DAY),
    cuts=st.lists(st.integers(-50 * DAY, 450 * DAY), max_size=12),
)
def test_parts_of_any_partition_sum_to_the_whole(
    amount: int, start: int, length: int, cuts: list[int]
) -> None:
    end = start + length
    points = [start, *sorted(start + c for c in cuts), end]
    points = sorted(points)
    parts = [prorate(amount, start, end, a, b) for a, b in itertools.pairwise(points)]
    assert sum(parts) == amount
    # And each part is within one minor unit of its exact share (to the second).
    s0, s1 = start // S, end // S
    for (a, b), part in zip(itertools.pairwise(points), parts, strict=True):
        a_s = min(max(a // S, s0), s1)
        b_s = min(max(b // S, s0), s1)
        exact = Fraction(amount * (b_s - a_s), s1 - s0)
        assert abs(part - exact) <= 1


@settings(max_examples=100, deadline=None)
@given(amount=amounts, a=st.integers(0, 90 * DAY), b=st.integers(0, 90 * DAY),
       c=st.integers(0, 90 * DAY))
def test_prorations_telescope(amount: int, a: int, b: int, c: int) -> None:
    start, end = 0, 90 * DAY
    assert prorate(amount, start, end, a, b) + prorate(amount, start, end, b, c) == prorate(
        amount, start, end, a, c
    )


@settings(max_examples=100, deadline=None)
@given(amount=amounts, at=st.integers(-DAY, 32 * DAY))
def test_used_part_plus_credit_is_nothing_left_over(amount: int, at: int) -> None:
    start, end = 0, 31 * DAY
    assert prorate(amount, start, end, start, at) - cancel_credit(amount, start, end, at) == amount


@settings(max_examples=100, deadline=None)
@given(
    old=st.lists(st.integers(0, 10**6), max_size=5),
    new=st.lists(st.integers(0, 10**6), max_size=5),
    at=st.integers(0, 30 * DAY),
)
def test_change_lines_sum_to_the_prorated_difference(
    old: list[int], new: list[int], at: int
) -> None:
    start, end = 0, 30 * DAY
    olds = [ProrationItem(f"si_{i}", a) for i, a in enumerate(old)]
    news = [ProrationItem(f"si_{i}", a) for i, a in enumerate(new)]
    lines = change_prorations(olds, news, start, end, at)
    expected = sum(prorate(a, start, end, at, end) for a in new) - sum(
        prorate(a, start, end, at, end) for a in old
    )
    assert sum(line.amount for line in lines) == expected
    changed_old = [i for i, a in enumerate(old) if i >= len(new) or new[i] != a]
    changed_new = [i for i, a in enumerate(new) if i >= len(old) or old[i] != a]
    assert [line.key for line in lines] == [f"si_{i}" for i in changed_old + changed_new]
    amounts_expected = [-prorate(old[i], start, end, at, end) for i in changed_old] + [
        prorate(new[i], start, end, at, end) for i in changed_new
    ]
    assert [line.amount for line in lines] == amounts_expected
