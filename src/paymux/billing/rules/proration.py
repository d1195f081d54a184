"""Proration: the share of a period's amount that a part of the period is worth.

Computed to the second, like Stripe: times (int microseconds) are floored to whole seconds
first. The share is defined by *cumulative* rounding so parts never lose or gain a cent::

    cum(t)   = round_half_even(amount * (t - start) / (end - start))   (exact, integers only)
    prorate  = cum(to) - cum(from)

Consecutive parts telescope: prorate(a, b) + prorate(b, c) == prorate(a, c), and the parts of
any partition of the period sum to exactly ``amount``. No float anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ProrationItem",
    "ProrationLine",
    "cancel_credit",
    "change_prorations",
    "prorate",
    "round_half_even_div",
]

_US_PER_SECOND = 1_000_000


def round_half_even_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to even. Exact."""
    if denominator == 0:
        raise ZeroDivisionError("round_half_even_div by zero")
    # denominator is not 0 here, so "< 0", "<= 0" and "< 1" are the same test.
    if denominator < 0:  # pragma: no mutate
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)  # 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def _cumulative(amount: int, start_s: int, end_s: int, at_s: int) -> int:
    return round_half_even_div(amount * (at_s - start_s), end_s - start_s)


def prorate(amount: int, period_start_us: int, period_end_us: int, from_us: int, to_us: int) -> int:
    """The part of ``amount`` (may be negative) worth the span [from, to] of the period.

    All four times are floored to whole seconds; ``from``/``to`` are then clamped into the
    period. If ``to`` comes before ``from`` the result is the negated forward share (the
    telescoping identity still holds). Raises ValueError on a period shorter than a second.
    """
    start = period_start_us // _US_PER_SECOND
    end = period_end_us // _US_PER_SECOND
    if end <= start:
        raise ValueError("a proration period must be at least one second long")
    lo = min(max(from_us // _US_PER_SECOND, start), end)
    hi = min(max(to_us // _US_PER_SECOND, start), end)
    return _cumulative(amount, start, end, hi) - _cumulative(amount, start, end, lo)


def cancel_credit(amount: int, period_start_us: int, period_end_us: int, at_us: int) -> int:
    """The credit (negative, or 0) for the unused rest [at, end] of a period paid in full."""
    return -prorate(amount, period_start_us, period_end_us, at_us, period_end_us)


@dataclass(frozen=True)
class ProrationItem:
    """One subscription item before or after a change: ``amount`` is its full-period amount
    for its quantity (already priced, e.g. by ``pricing.amount_for``)."""

    key: str
    amount: int
    description: str | None = None


@dataclass(frozen=True)
class ProrationLine:
    """A proration invoice line: negative ``amount`` is a credit for unused time."""

    key: str
    amount: int
    from_us: int
    to_us: int
    description: str | None


def _by_key(items: list[ProrationItem], side: str) -> dict[str, ProrationItem]:
    found: dict[str, ProrationItem] = {}
    for item in items:
        if item.key in found:
            raise ValueError(f"duplicate subscription item key {item.key!r} in the {side} items")
        found[item.key] = item
    return found


def change_prorations(
    old: list[ProrationItem],
    new: list[ProrationItem],
    period_start_us: int,
    period_end_us: int,
    at_us: int,
) -> list[ProrationLine]:
    """Stripe's prorations for a change at ``at_us`` in the middle of a period.

    - a credit line ``-prorate(old.amount, at, end)`` for each old item that was removed or
      whose amount changed;
    - a debit line ``+prorate(new.amount, at, end)`` for each new item that was added or whose
      amount changed;
    - an item with the same key and amount on both sides yields no line (a description-only
      change does not bill).

    Order is stable: credits first in ``old`` order, then debits in ``new`` order. Lines are
    kept even when their prorated amount is 0 (e.g. a change exactly at the period end), so the
    caller sees every change; ``from_us``/``to_us`` are the clamped span in microseconds.
    Keys must be unique on each side (ValueError otherwise).
    """
    old_by_key = _by_key(old, "old")
    new_by_key = _by_key(new, "new")
    span_from = min(max(at_us, period_start_us), period_end_us)
    lines: list[ProrationLine] = []
    for item in old:
        after = new_by_key.get(item.key)
        if after is not None and after.amount == item.amount:
            continue
        lines.append(
            ProrationLine(
                key=item.key,
                amount=cancel_credit(item.amount, period_start_us, period_end_us, at_us),
                from_us=span_from,
                to_us=period_end_us,
                description=item.description,
            )
        )
    for item in new:
        before = old_by_key.get(item.key)
        if before is not None and before.amount == item.amount:
            continue
        lines.append(
            ProrationLine(
                key=item.key,
                amount=prorate(item.amount, period_start_us, period_end_us, at_us, period_end_us),
                from_us=span_from,
                to_us=period_end_us,
                description=item.description,
            )
        )
    return lines
