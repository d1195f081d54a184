"""What a price costs for a quantity: per unit, or tiered (graduated or volume), as Stripe.

Tiers follow Stripe's ``tiers`` array: each tier covers the quantities from the previous tier's
``up_to`` + 1 up to and including its own ``up_to``; the last tier's ``up_to`` is None ("inf").

- **graduated**: each tier prices the units that fall in it (``unit_amount`` each), plus its
  ``flat_amount`` when at least one unit falls in it. 1..5 at 500, 6..10 at 400, 11+ at 300:
  quantity 12 costs 5*500 + 5*400 + 2*300 = 5100.
- **volume**: the tier containing ``quantity`` prices *all* units, plus its ``flat_amount``.
  Same tiers, quantity 12: 12*300 = 3600; quantity 10: 10*400 = 4000 (10 is in the 2nd tier).

Quantity 0: Stripe bills the *first* tier's ``flat_amount`` for zero units -- that is what
its "flat fee and overages" model (a first tier with only a flat amount, then per-unit
overage) relies on: the fee is due even in a month without usage. Unit amounts of zero units
are 0 either way. Pass ``zero_quantity_flat=False`` to bill nothing for zero units instead.
(Stripe's reference does not spell the zero-quantity case out; this follows its flat-fee
model, and OpenMeter/Kong, which mirror Stripe's tiers, document the same: "tiers start from 0,
so a flat fee in the first tier is always billed, regardless of usage". Pinned by tests.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PriceTerms", "Tier", "amount_for", "check_tiers"]


@dataclass(frozen=True)
class Tier:
    """``up_to`` is inclusive; None marks the last, unbounded tier."""

    up_to: int | None
    unit_amount: int | None = None
    flat_amount: int | None = None


@dataclass(frozen=True)
class PriceTerms:
    billing_scheme: Literal["per_unit", "tiered"]
    unit_amount: int | None = None
    tiers_mode: Literal["graduated", "volume"] | None = None
    tiers: tuple[Tier, ...] = ()


def check_tiers(tiers: list[Tier]) -> str | None:
    """A message when ``tiers`` cannot price every quantity unambiguously, else None.

    At least one tier; ``up_to`` positive and strictly ascending; only the last tier unbounded
    (``up_to`` None) and the last one must be; each tier has ``unit_amount`` or ``flat_amount``;
    amounts are not negative.
    """
    if not tiers:
        return "At least one tier is required."
    previous = 0
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.unit_amount is None and tier.flat_amount is None:
            return f"Tier {index} needs a unit_amount or a flat_amount."
        for name, value in (("unit_amount", tier.unit_amount), ("flat_amount", tier.flat_amount)):
            if value is not None and value < 0:
                return f"Tier {index} {name} must not be negative."
        if tier.up_to is None:
            if not last:
                return f"Only the last tier may have up_to 'inf' (tier {index} has it)."
            return None  # the last tier, unbounded: every tier is checked
        if last:
            return "The last tier must have up_to 'inf'."
        if tier.up_to <= previous:
            return (
                f"Tier up_to values must be positive and strictly ascending "
                f"(tier {index}: {tier.up_to} after {previous})."
            )
        previous = tier.up_to
    return None


def _graduated(tiers: tuple[Tier, ...], quantity: int) -> int:
    total = 0
    lower = 0  # units already priced by the previous tiers
    for tier in tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = upper - lower
        if units <= 0:
            break
        total += units * (tier.unit_amount or 0) + (tier.flat_amount or 0)
        lower = upper
    return total


def _volume(tiers: tuple[Tier, ...], quantity: int) -> int:
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return quantity * (tier.unit_amount or 0) + (tier.flat_amount or 0)
    raise ValueError("the tiers do not cover this quantity (the last tier must be unbounded)")


def amount_for(terms: PriceTerms, quantity: int, *, zero_quantity_flat: bool = True) -> int:
    """The amount, in minor units, of ``quantity`` (>= 0) units at ``terms``.

    See the module docstring for the tier rules and the zero-quantity choice.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError("quantity must be a non-negative integer")
    if terms.billing_scheme == "per_unit":
        if terms.unit_amount is None:
            raise ValueError("a per_unit price needs a unit_amount")
        return terms.unit_amount * quantity
    if terms.billing_scheme != "tiered":
        raise ValueError(f"unknown billing_scheme {terms.billing_scheme!r}")
    problem = check_tiers(list(terms.tiers))
    if problem is not None:
        raise ValueError(problem)
    if quantity == 0:
        return (terms.tiers[0].flat_amount or 0) if zero_quantity_flat else 0
    if terms.tiers_mode == "graduated":
        return _graduated(terms.tiers, quantity)
    if terms.tiers_mode == "volume":
        return _volume(terms.tiers, quantity)
    raise ValueError("a tiered price needs tiers_mode graduated or volume")
