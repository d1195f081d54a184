"""Per-unit and tiered prices (graduated and volume), worked by hand at every tier edge."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.billing.rules.pricing import PriceTerms, Tier, amount_for, check_tiers

# 1-5 units at 5.00, 6-10 at 4.00, 11+ at 3.00 (minor units).
STEPS = (Tier(5, unit_amount=500), Tier(10, unit_amount=400), Tier(None, unit_amount=300))
GRADUATED = PriceTerms("tiered", tiers_mode="graduated", tiers=STEPS)
VOLUME = PriceTerms("tiered", tiers_mode="volume", tiers=STEPS)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (0, 0),
        (1, 500),
        (4, 2000),
        (5, 2500),  # exactly the first limit: all in tier 1
        (6, 2900),  # 5*500 + 1*400
        (10, 4500),  # 5*500 + 5*400
        (11, 4800),  # 5*500 + 5*400 + 1*300
        (12, 5100),  # 5*500 + 5*400 + 2*300
        (100, 31500),  # 2500 + 2000 + 90*300
    ],
)
def test_graduated(quantity: int, expected: int) -> None:
    assert amount_for(GRADUATED, quantity) == expected


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (0, 0),
        (1, 500),
        (5, 2500),  # 5 is still in tier 1
        (6, 2400),  # all 6 at 400
        (10, 4000),  # 10 is in tier 2
        (11, 3300),  # all 11 at 300
        (12, 3600),
    ],
)
def test_volume(quantity: int, expected: int) -> None:
    assert amount_for(VOLUME, quantity) == expected


# Stripe's "flat fee and overages": 200.00 covers the first 100 units, then 0.10 each.
FLAT_THEN_OVERAGE = (Tier(100, flat_amount=20000), Tier(None, unit_amount=10))


def test_graduated_flat_fee_and_overage_bills_the_fee_with_no_usage() -> None:
    terms = PriceTerms("tiered", tiers_mode="graduated", tiers=FLAT_THEN_OVERAGE)
    assert amount_for(terms, 0) == 20000
    assert amount_for(terms, 0, zero_quantity_flat=False) == 0
    assert amount_for(terms, 1) == 20000
    assert amount_for(terms, 100) == 20000
    assert amount_for(terms, 101) == 20010
    assert amount_for(terms, 150) == 20500


def test_graduated_flat_amount_per_tier_touched() -> None:
    tiers = (
        Tier(2, unit_amount=100, flat_amount=50),
        Tier(4, unit_amount=90, flat_amount=30),
        Tier(None, unit_amount=80, flat_amount=10),
    )
    terms = PriceTerms("tiered", tiers_mode="graduated", tiers=tiers)
    assert amount_for(terms, 1) == 150
    assert amount_for(terms, 2) == 250
    assert amount_for(terms, 3) == 250 + 90 + 30
    assert amount_for(terms, 4) == 250 + 180 + 30
    assert amount_for(terms, 5) == 250 + 210 + 80 + 10
    assert amount_for(terms, 0) == 50


def test_volume_flat_amount_of_the_tier_reached() -> None:
    tiers = (
        Tier(10, unit_amount=100, flat_amount=1000),
        Tier(None, unit_amount=80, flat_amount=500),
    )
    terms = PriceTerms("tiered", tiers_mode="volume", tiers=tiers)
    assert amount_for(terms, 10) == 2000
    assert amount_for(terms, 11) == 1380
    assert amount_for(terms, 0) == 1000
    assert amount_for(terms, 0, zero_quantity_flat=False) == 0


def test_a_single_unbounded_tier() -> None:
    terms = PriceTerms("tiered", tiers_mode="volume", tiers=(Tier(None, unit_amount=7),))
    assert amount_for(terms, 3) == 21
    grad = PriceTerms("tiered", tiers_mode="graduated", tiers=(Tier(None, unit_amount=7),))
    assert amount_for(grad, 3) == 21


def test_per_unit() -> None:
    terms = PriceTerms("per_unit", unit_amount=1999)
    assert amount_for(terms, 3) == 5997
    assert amount_for(terms, 1) == 1999
    assert amount_for(terms, 0) == 0
    assert amount_for(PriceTerms("per_unit", unit_amount=0), 5) == 0


@pytest.mark.parametrize(
    "terms",
    [
        PriceTerms("per_unit"),
        PriceTerms("tiered", tiers=STEPS),  # no tiers_mode
        PriceTerms("tiered", tiers_mode="volume"),  # no tiers
        PriceTerms("tiered", tiers_mode="volume", tiers=(Tier(5, unit_amount=1),)),
        PriceTerms("metered", unit_amount=1),  # type: ignore[arg-type]
    ],
)
def test_unusable_terms_are_refused(terms: PriceTerms) -> None:
    with pytest.raises(ValueError):
        amount_for(terms, 3)


@pytest.mark.parametrize("quantity", [-1, True, 1.5])
def test_bad_quantities_are_refused(quantity: object) -> None:
    with pytest.raises(ValueError):
        amount_for(PriceTerms("per_unit", unit_amount=1), quantity)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tiers",
    [
        [],
        [Tier(5, unit_amount=1)],  # the last must be unbounded
        [Tier(None, unit_amount=1), Tier(None, unit_amount=1)],
        [Tier(None, unit_amount=1), Tier(5, unit_amount=1)],
        [Tier(5, unit_amount=1), Tier(5, unit_amount=1), Tier(None, unit_amount=1)],
        [Tier(5, unit_amount=1), Tier(4, unit_amount=1), Tier(None, unit_amount=1)],
        [Tier(0, unit_amount=1), Tier(None, unit_amount=1)],
        [Tier(-3, unit_amount=1), Tier(None, unit_amount=1)],
        [Tier(5), Tier(None, unit_amount=1)],  # neither amount
        [Tier(5, unit_amount=1), Tier(None)],
        [Tier(5, unit_amount=-1), Tier(None, unit_amount=1)],
        [Tier(5, unit_amount=1), Tier(None, flat_amount=-1)],
    ],
)
def test_check_tiers_refuses(tiers: list[Tier]) -> None:
    message = check_tiers(tiers)
    assert isinstance(message, str) and message


@pytest.mark.parametrize(
    "tiers",
    [
        [Tier(None, unit_amount=0)],
        [Tier(None, flat_amount=100)],
        [Tier(1, unit_amount=5), Tier(None, unit_amount=4)],
        list(STEPS),
        list(FLAT_THEN_OVERAGE),
    ],
)
def test_check_tiers_accepts(tiers: list[Tier]) -> None:
    assert check_tiers(tiers) is None


# -- properties: against a unit-by-unit reference --------------------------------------------


@st.composite
def _tiers(draw: st.DrawFn) -> tuple[Tier, ...]:
    limits = sorted(draw(st.sets(st.integers(1, 60), max_size=4)))
    bounds: list[int | None] = [*limits, None]
    tiers = []
    for up_to in bounds:
        unit = draw(st.none() | st.integers(0, 1000))
        flat = draw(st.integers(0, 1000)) if unit is None else draw(st.none() | st.integers(0, 1000))
        tiers.append(Tier(up_to, unit_amount=unit, flat_amount=flat))
    return tuple(tiers)


def _tier_of(tiers: tuple[Tier, ...], unit: int) -> int:
    return next(i for i, t in enumerate(tiers) if t.up_to is None or unit <= t.up_to)


@settings(max_examples=80, deadline=None)
@given(_tiers(), st.integers(1, 120))
def test_graduated_equals_unit_by_unit(tiers: tuple[Tier, ...], quantity: int) -> None:
    touched = {_tier_of(tiers, u) for u in range(1, quantity + 1)}
    expected = sum(tiers[_tier_of(tiers, u)].unit_amount or 0 for u in range(1, quantity + 1))
    expected += sum(tiers[i].flat_amount or 0 for i in touched)
    terms = PriceTerms("tiered", tiers_mode="graduated", tiers=tiers)
    assert amount_for(terms, quantity) == expected


@settings(max_examples=80, deadline=None)
@given(_tiers(), st.integers(1, 120))
def test_volume_prices_all_units_at_the_tier_reached(
    tiers: tuple[Tier, ...], quantity: int
) -> None:
    tier = tiers[_tier_of(tiers, quantity)]
    expected = quantity * (tier.unit_amount or 0) + (tier.flat_amount or 0)
    terms = PriceTerms("tiered", tiers_mode="volume", tiers=tiers)
    assert amount_for(terms, quantity) == expected
