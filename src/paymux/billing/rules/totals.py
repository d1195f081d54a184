"""Invoice totals from lines, one coupon, tax rates and the customer's balance. Exact: rates
are ``Decimal`` turned into fractions, every rounding is half-even on exact integers.

The order is Stripe's: discount first, then tax on what is left of each line, then the
customer balance, which moves ``amount_due`` but not ``total``.

**Discount.** The base is the positive part of the sum of the discountable lines (credits such
as proration lines count, negatively). ``percent_off`` takes ``round_half_even(base * pct /
100)``; ``amount_off`` is capped at the base. That invoice discount is then spread over the
discountable lines in proportion to their (signed) amounts by :func:`split_proportionally`, so
the line discounts sum to it exactly and a credit line's share is negative (a credit shrinks
with the discount, as on Stripe). Since the discount never exceeds the base, no line's
discount exceeds its own amount.

**Tax** on each line's ``net = amount - discount_amount``, for each of its rates on the same
``net``: exclusive ``round_half_even(net * pct / 100)`` is added on top; inclusive ``net -
round_half_even(net * 100 / (100 + pct))`` is the part of ``net`` that is tax (not added).

**Totals.** ``subtotal`` = sum of line amounts; ``total = subtotal - total_discount +
exclusive tax``; ``tax`` is *all* tax, exclusive plus inclusive (Stripe's ``tax``).

**Customer balance** (Stripe's sign: negative = credit the customer holds, positive = a debit
they owe). It is applied whole to the invoice: ``net = total + starting_balance``;
``amount_due = max(0, net)``; ``ending_balance = min(0, net)``. So a credit reduces the amount
due and what is left of it stays on the balance; a debit is added to the amount due; a negative
total (more credits than charges) adds to the customer's credit. Always::

    amount_due + ending_balance == total + starting_balance,  amount_due >= 0 >= ending_balance

(at most one of them is non-zero: the invoice either leaves something to pay or leaves credit).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from paymux.billing.rules.proration import round_half_even_div

__all__ = [
    "CouponTerms",
    "LineInput",
    "LineTotals",
    "TaxTerms",
    "Totals",
    "discount_for",
    "invoice_totals",
    "split_proportionally",
]


@dataclass(frozen=True)
class LineInput:
    amount: int
    discountable: bool = True
    tax_rate_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CouponTerms:
    """Exactly one of ``percent_off`` (0 < p <= 100) and ``amount_off`` (minor units, in the
    invoice's currency: the caller checks the currency) is set."""

    id: str
    percent_off: Decimal | None = None
    amount_off: int | None = None


@dataclass(frozen=True)
class TaxTerms:
    id: str
    percentage: Decimal
    inclusive: bool


@dataclass(frozen=True)
class LineTotals:
    amount: int
    discount_amount: int
    tax_amounts: tuple[tuple[str, int, bool], ...]  # (tax_rate_id, amount, inclusive)


@dataclass(frozen=True)
class Totals:
    """``tax`` is all tax (exclusive added + inclusive contained), as Stripe's ``tax``;
    ``exclusive_tax``/``inclusive_tax`` split it. ``tax_amounts`` is per rate, summed over the
    lines, in order of first appearance."""

    lines: tuple[LineTotals, ...]
    subtotal: int
    total_discount: int
    tax: int
    total: int
    amount_due: int
    starting_balance: int
    ending_balance: int
    tax_amounts: tuple[tuple[str, int, bool], ...]
    exclusive_tax: int = 0
    inclusive_tax: int = 0


def split_proportionally(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` into integers that sum to ``total`` exactly.

    Largest remainder: each share is first floored, then the units left over go one each to
    the shares with the largest fractional parts (ties to the earlier index). Weights may be
    negative as long as their sum is not zero; all-zero weights split a zero total into zeros.
    """
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total == 0:
            return [0] * len(weights)
        raise ValueError("cannot split a non-zero total over weights that sum to zero")
    # weight_sum is not 0 here, so "< 0", "<= 0" and "< 1" are the same test.
    if weight_sum < 0:  # pragma: no mutate
        weights = [-w for w in weights]
        weight_sum = -weight_sum
    floors: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        share, remainder = divmod(total * weight, weight_sum)
        floors.append(share)
        remainders.append(remainder)
    left = total - sum(floors)  # 0 <= left < len(weights)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _fraction(value: Decimal) -> Fraction:
    if not value.is_finite():
        raise ValueError("a rate must be a finite number")
    return Fraction(value)


def discount_for(coupon: CouponTerms | None, base: int) -> int:
    """The invoice discount of ``coupon`` on a discountable ``base`` (clamped at 0)."""
    base = max(0, base)
    if coupon is None:
        return 0
    if (coupon.percent_off is None) == (coupon.amount_off is None):
        raise ValueError(f"coupon {coupon.id!r} needs exactly one of percent_off and amount_off")
    if coupon.percent_off is not None:
        pct = _fraction(coupon.percent_off)
        if not 0 <= pct <= 100:
            raise ValueError("percent_off must be between 0 and 100")
        return round_half_even_div(base * pct.numerator, 100 * pct.denominator)
    assert coupon.amount_off is not None
    if coupon.amount_off < 0:
        raise ValueError("amount_off must not be negative")
    return min(coupon.amount_off, base)


def _line_taxes(
    net: int, rate_ids: tuple[str, ...], tax_rates: dict[str, TaxTerms]
) -> tuple[tuple[str, int, bool], ...]:
    out: list[tuple[str, int, bool]] = []
    for rate_id in rate_ids:
        rate = tax_rates.get(rate_id)
        if rate is None:
            raise ValueError(f"unknown tax rate {rate_id!r}")
        pct = _fraction(rate.percentage)
        if pct < 0:
            raise ValueError("a tax percentage must not be negative")
        if rate.inclusive:
            # net * 100 / (100 + pct) with pct = p/q:  net * 100 q / (100 q + p)
            excl = round_half_even_div(
                net * 100 * pct.denominator, 100 * pct.denominator + pct.numerator
            )
            out.append((rate_id, net - excl, True))
        else:
            out.append(
                (rate_id, round_half_even_div(net * pct.numerator, 100 * pct.denominator), False)
            )
    return tuple(out)


def invoice_totals(
    lines: list[LineInput],
    coupon: CouponTerms | None,
    tax_rates: dict[str, TaxTerms],
    starting_balance: int,
) -> Totals:
    """Every total of an invoice; see the module docstring for each rule."""
    subtotal = sum(line.amount for line in lines)
    discountable = [i for i, line in enumerate(lines) if line.discountable]
    base = sum(lines[i].amount for i in discountable)
    total_discount = discount_for(coupon, base)
    discounts = [0] * len(lines)
    if total_discount:
        shares = split_proportionally(total_discount, [lines[i].amount for i in discountable])
        for k, i in enumerate(discountable):
            discounts[i] = shares[k]  # one share per discountable line

    line_totals: list[LineTotals] = []
    per_rate: dict[str, list[int]] = {}
    inclusive_of: dict[str, bool] = {}
    exclusive_tax = inclusive_tax = 0
    for i, line in enumerate(lines):
        discount = discounts[i]
        taxes = _line_taxes(line.amount - discount, line.tax_rate_ids, tax_rates)
        for rate_id, amount, inclusive in taxes:
            per_rate.setdefault(rate_id, []).append(amount)
            inclusive_of[rate_id] = inclusive
            if inclusive:
                inclusive_tax += amount
            else:
                exclusive_tax += amount
        line_totals.append(LineTotals(line.amount, discount, taxes))

    total = subtotal - total_discount + exclusive_tax
    net = total + starting_balance
    return Totals(
        lines=tuple(line_totals),
        subtotal=subtotal,
        total_discount=total_discount,
        tax=exclusive_tax + inclusive_tax,
        total=total,
        amount_due=max(0, net),
        starting_balance=starting_balance,
        ending_balance=min(0, net),
        tax_amounts=tuple((rid, sum(amts), inclusive_of[rid]) for rid, amts in per_rate.items()),
        exclusive_tax=exclusive_tax,
        inclusive_tax=inclusive_tax,
    )
