"""Invoice totals: discount, per-line tax, customer balance; consistent for any lines."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.billing.rules.totals import (
    CouponTerms,
    LineInput,
    LineTotals,
    TaxTerms,
    invoice_totals,
    split_proportionally,
)

VAT = TaxTerms("txr_vat", Decimal("8.25"), inclusive=False)
INCL = TaxTerms("txr_incl", Decimal("20"), inclusive=True)
RATES = {VAT.id: VAT, INCL.id: INCL}


def test_percent_off_spread_over_lines_including_a_proration_credit() -> None:
    lines = [
        LineInput(1000, tax_rate_ids=("txr_vat",)),
        LineInput(2000, tax_rate_ids=("txr_vat",)),
        LineInput(-500),  # a proration credit
    ]
    totals = invoice_totals(lines, CouponTerms("co_10", percent_off=Decimal("10")), RATES, 0)
    assert totals.subtotal == 2500
    assert totals.total_discount == 250
    # 250 split over 1000 : 2000 : -500 -> 100, 200, -50.
    # Tax 8.25 %: 900 -> 74.25 -> 74; 1800 -> 148.5 -> 148 (half even).
    assert totals.lines == (
        LineTotals(1000, 100, (("txr_vat", 74, False),)),
        LineTotals(2000, 200, (("txr_vat", 148, False),)),
        LineTotals(-500, -50, ()),
    )
    assert totals.tax == 222
    assert totals.exclusive_tax == 222
    assert totals.inclusive_tax == 0
    assert totals.total == 2500 - 250 + 222
    assert totals.amount_due == 2472
    assert totals.tax_amounts == (("txr_vat", 222, False),)
    assert (totals.starting_balance, totals.ending_balance) == (0, 0)


def test_inclusive_tax_is_contained_not_added() -> None:
    totals = invoice_totals([LineInput(1200, tax_rate_ids=("txr_incl",))], None, RATES, 0)
    assert totals.lines[0].tax_amounts == (("txr_incl", 200, True),)  # 1200 - 1000
    assert totals.tax == 200
    assert totals.inclusive_tax == 200
    assert totals.exclusive_tax == 0
    assert totals.total == 1200
    assert totals.tax_amounts == (("txr_incl", 200, True),)


@pytest.mark.parametrize(
    ("net", "tax"),
    [
        (5, 3),  # 5 * 100/200 = 2.5 -> 2 (even): tax 3
        (7, 3),  # 3.5 -> 4: tax 3
        (9, 5),  # 4.5 -> 4: tax 5
        (-5, -3),  # -2.5 -> -2: tax -3
    ],
)
def test_inclusive_tax_ties_round_half_even(net: int, tax: int) -> None:
    rates = {"txr_100": TaxTerms("txr_100", Decimal("100"), inclusive=True)}
    totals = invoice_totals([LineInput(net, tax_rate_ids=("txr_100",))], None, rates, 0)
    assert totals.lines[0].tax_amounts == (("txr_100", tax, True),)


@pytest.mark.parametrize(
    ("net", "tax"),
    [(10, 0), (30, 2), (50, 2), (70, 4), (-10, 0), (-30, -2), (11, 1), (29, 1)],
)
def test_exclusive_tax_ties_round_half_even(net: int, tax: int) -> None:
    # 5 %: 10 -> 0.5 -> 0; 30 -> 1.5 -> 2; 50 -> 2.5 -> 2; 70 -> 3.5 -> 4; 11 -> 0.55 -> 1.
    rates = {"txr_5": TaxTerms("txr_5", Decimal("5"), inclusive=False)}
    totals = invoice_totals([LineInput(net, tax_rate_ids=("txr_5",))], None, rates, 0)
    assert totals.lines[0].tax_amounts == (("txr_5", tax, False),)
    assert totals.total == net + tax


def test_several_rates_on_one_line_each_on_the_same_net() -> None:
    line = LineInput(1000, tax_rate_ids=("txr_vat", "txr_incl"))
    totals = invoice_totals([line], CouponTerms("co", amount_off=400), RATES, 0)
    # net 600: exclusive 8.25 % = 49.5 -> 50 (even); inclusive 20 % = 600 - 500 = 100.
    assert totals.lines[0] == LineTotals(1000, 400, (("txr_vat", 50, False), ("txr_incl", 100, True)))
    assert totals.tax == 150
    assert totals.total == 1000 - 400 + 50
    assert totals.tax_amounts == (("txr_vat", 50, False), ("txr_incl", 100, True))


@pytest.mark.parametrize(
    ("base", "percent", "discount"),
    [
        (25, "10", 2),  # 2.5 -> 2
        (35, "10", 4),  # 3.5 -> 4
        (100, "12.5", 12),  # 12.5 -> 12
        (300, "12.5", 38),  # 37.5 -> 38
        (1000, "33.33", 333),  # 333.3
        (1000, "100", 1000),
        (1000, "0", 0),
    ],
)
def test_percent_off_rounds_half_even(base: int, percent: str, discount: int) -> None:
    totals = invoice_totals([LineInput(base)], CouponTerms("co", percent_off=Decimal(percent)), {}, 0)
    assert totals.total_discount == discount
    assert totals.total == base - discount


def test_amount_off_is_capped_at_the_discountable_subtotal() -> None:
    lines = [LineInput(3000), LineInput(700, discountable=False)]
    totals = invoice_totals(lines, CouponTerms("co", amount_off=5000), {}, 0)
    assert totals.total_discount == 3000
    assert [line.discount_amount for line in totals.lines] == [3000, 0]
    assert totals.total == 700
    exact = invoice_totals(lines, CouponTerms("co", amount_off=3000), {}, 0)
    assert exact.total_discount == 3000
    under = invoice_totals(lines, CouponTerms("co", amount_off=2999), {}, 0)
    assert under.total_discount == 2999


def test_non_discountable_lines_take_no_share() -> None:
    lines = [LineInput(1000), LineInput(1000, discountable=False), LineInput(3000)]
    totals = invoice_totals(lines, CouponTerms("co", amount_off=400), {}, 0)
    assert [line.discount_amount for line in totals.lines] == [100, 0, 300]


def test_a_net_credit_invoice_has_no_discount() -> None:
    lines = [LineInput(500), LineInput(-800)]
    totals = invoice_totals(lines, CouponTerms("co", percent_off=Decimal("50")), {}, 0)
    assert totals.total_discount == 0
    assert totals.total == -300
    assert totals.amount_due == 0
    assert totals.ending_balance == -300


def test_no_lines() -> None:
    totals = invoice_totals([], None, {}, -100)
    assert (totals.subtotal, totals.total, totals.amount_due, totals.ending_balance) == (
        0, 0, 0, -100,
    )


@pytest.mark.parametrize(
    "coupon",
    [
        CouponTerms("co_both", percent_off=Decimal("5"), amount_off=5),
        CouponTerms("co_none"),
        CouponTerms("co_big", percent_off=Decimal("100.01")),
        CouponTerms("co_neg", percent_off=Decimal("-1")),
        CouponTerms("co_nan", percent_off=Decimal("NaN")),
        CouponTerms("co_negamt", amount_off=-1),
    ],
)
def test_bad_coupons_are_refused(coupon: CouponTerms) -> None:
    with pytest.raises(ValueError):
        invoice_totals([LineInput(100)], coupon, {}, 0)


def test_an_unknown_tax_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        invoice_totals([LineInput(100, tax_rate_ids=("txr_missing",))], None, {}, 0)


# -- the customer balance (negative = credit held, positive = owed) --------------------------


@pytest.mark.parametrize(
    ("total", "starting", "amount_due", "ending"),
    [
        (300, -500, 0, -200),  # a credit larger than the invoice: the rest stays
        (800, -500, 300, 0),  # a credit smaller than the invoice: used up
        (500, -500, 0, 0),  # exactly
        (300, 200, 500, 0),  # a debit is added to the amount due
        (-400, 0, 0, -400),  # a negative total adds to the credit
        (-400, -100, 0, -500),
        (-400, 200, 0, -200),  # the credit settles the debit first
        (-200, 500, 300, 0),
        (1000, 0, 1000, 0),
        (0, 0, 0, 0),
    ],
)
def test_customer_balance(total: int, starting: int, amount_due: int, ending: int) -> None:
    totals = invoice_totals([LineInput(total)], None, {}, starting)
    assert totals.total == total
    assert (totals.starting_balance, totals.amount_due, totals.ending_balance) == (
        starting, amount_due, ending,
    )


# -- split_proportionally --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (100, [1, 1, 1], [34, 33, 33]),  # equal remainders: the earlier index first
        (10, [3, 3, 4], [3, 3, 4]),
        (7, [1, 2], [2, 5]),  # 2.33, 4.67: the larger remainder gets the unit
        (8, [2, 1], [5, 3]),  # 5.33, 2.67
        (-7, [1, 2], [-2, -5]),
        (6, [-1, -2], [2, 4]),
        (250, [1000, 2000, -500], [100, 200, -50]),
        (1, [1, 0, 1], [1, 0, 0]),
        (0, [0, 0], [0, 0]),
        (0, [], []),
        (3, [5], [3]),
    ],
)
def test_split_proportionally(total: int, weights: list[int], shares: list[int]) -> None:
    assert split_proportionally(total, weights) == shares


def test_split_over_zero_weights_is_refused() -> None:
    with pytest.raises(ValueError):
        split_proportionally(5, [0, 0])
    with pytest.raises(ValueError):
        split_proportionally(5, [2, -2])
    with pytest.raises(ValueError):
        split_proportionally(5, [])


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**9), 10**9), st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=8))
def test_split_always_sums_to_the_total(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        return
    shares = split_proportionally(total, weights)
    assert sum(shares) == total
    w = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert abs(share * w - total * weight) < abs(w)  # within one unit of the exact share


# -- properties: totals consistent with their lines ------------------------------------------

_RATE_POOL = {
    "txr_a": TaxTerms("txr_a", Decimal("8.25"), inclusive=False),
    "txr_b": TaxTerms("txr_b", Decimal("19"), inclusive=True),
    "txr_c": TaxTerms("txr_c", Decimal("7.5"), inclusive=False),
}

_lines = st.lists(
    st.builds(
        LineInput,
        amount=st.integers(-(10**6), 10**7),
        discountable=st.booleans(),
        tax_rate_ids=st.lists(st.sampled_from(sorted(_RATE_POOL)), unique=True, max_size=3).map(
            tuple
        ),
    ),
    max_size=8,
)
_coupons = st.none() | st.builds(
    CouponTerms,
    id=st.just("co"),
    percent_off=st.decimals(0, 100, places=2, allow_nan=False, allow_infinity=False),
) | st.builds(CouponTerms, id=st.just("co"), amount_off=st.integers(0, 10**7))


@settings(max_examples=120, deadline=None)
@given(_lines, _coupons, st.integers(-(10**7), 10**7))
def test_totals_are_consistent_with_their_lines(
    lines: list[LineInput], coupon: CouponTerms | None, starting: int
) -> None:
    totals = invoice_totals(lines, coupon, _RATE_POOL, starting)
    assert totals.subtotal == sum(line.amount for line in lines)
    assert sum(lt.discount_amount for lt in totals.lines) == totals.total_discount
    base = max(0, sum(line.amount for line in lines if line.discountable))
    assert 0 <= totals.total_discount <= base
    exclusive = sum(a for lt in totals.lines for _, a, inc in lt.tax_amounts if not inc)
    inclusive = sum(a for lt in totals.lines for _, a, inc in lt.tax_amounts if inc)
    assert totals.total == totals.subtotal - totals.total_discount + exclusive
    assert totals.tax == exclusive + inclusive
    assert (totals.exclusive_tax, totals.inclusive_tax) == (exclusive, inclusive)
    assert totals.amount_due >= 0
    assert totals.ending_balance <= 0
    assert totals.starting_balance == starting
    # The balance equation: what is due plus the balance left is the total plus the balance
    # brought in; and never both something due and credit left.
    assert totals.amount_due + totals.ending_balance == totals.total + starting
    assert totals.amount_due == 0 or totals.ending_balance == 0
    for line, lt in zip(lines, totals.lines, strict=True):
        assert lt.amount == line.amount
        if not line.discountable:
            assert lt.discount_amount == 0
        # A discount never flips a line's sign nor exceeds it.
        assert abs(lt.discount_amount) <= abs(line.amount)
        assert lt.discount_amount * line.amount >= 0
        assert [rid for rid, _, _ in lt.tax_amounts] == list(line.tax_rate_ids)
    per_rate: dict[str, int] = {}
    for lt in totals.lines:
        for rid, amount, _ in lt.tax_amounts:
            per_rate[rid] = per_rate.get(rid, 0) + amount
    assert {rid: amount for rid, amount, _ in totals.tax_amounts} == per_rate
    assert all(inc == _RATE_POOL[rid].inclusive for rid, _, inc in totals.tax_amounts)
