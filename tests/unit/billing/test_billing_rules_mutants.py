"""Edge cases of paymux.billing.rules found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
the exact wording of each refusal (callers and API errors show it), the ``param`` of the
state errors, zero and fractional tax rates, and how a float retry offset is read.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from paymux.billing.rules.periods import boundary, check_interval, period_containing
from paymux.billing.rules.pricing import PriceTerms, Tier, _volume, amount_for, check_tiers
from paymux.billing.rules.proration import (
    ProrationItem,
    change_prorations,
    prorate,
    round_half_even_div,
)
from paymux.billing.rules.retries import (
    check_schedule,
    exhausted_trigger,
    next_retry_us,
    retry_window_end_us,
    status_after_exhausted,
)
from paymux.billing.rules.states import next_invoice_status, next_subscription_status
from paymux.billing.rules.totals import (
    CouponTerms,
    LineInput,
    TaxTerms,
    discount_for,
    invoice_totals,
    split_proportionally,
)
from paymux.domain.errors import PaymuxError

T0 = 1_700_000_000_000_000
DAY = 86_400_000_000


def _raises(message: str) -> pytest.RaisesExc[ValueError]:
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


# --- periods / pricing / proration ---------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, True, 1.5])
def test_a_bad_interval_count_is_named(count: int) -> None:
    assert check_interval("month", count) == "interval_count must be a positive integer."


YEAR_1_JAN_15 = -62_134_387_200_000_000  # 0001-01-15T00:00:00Z
YEAR_1_FEB_15 = -62_131_708_800_000_000  # 0001-02-15T00:00:00Z
YEAR_9999_DEC_1 = 253_399_622_400_000_000  # 9999-12-01T00:00:00Z


def test_boundaries_reach_year_1_and_stop_after_year_9999() -> None:
    assert boundary(YEAR_1_FEB_15, "month", 1, -1) == YEAR_1_JAN_15
    message = "billing period boundary out of the supported range (years 1-9999)"
    with _raises(message):
        boundary(YEAR_9999_DEC_1, "month", 1, 1)
    with _raises(message):
        boundary(YEAR_1_JAN_15, "month", 1, -1)


@pytest.mark.parametrize("count", [0, True, 1.5])
def test_a_bad_count_is_refused_with_its_reason(count: int) -> None:
    with _raises("interval count must be a positive integer"):
        boundary(0, "day", count, 1)
    with _raises("interval count must be a positive integer"):
        period_containing(0, "month", count, 5)


def test_an_unknown_interval_is_named() -> None:
    with _raises("unknown interval 'hour'"):
        boundary(0, "hour", 1, 1)  # type: ignore[arg-type]


def test_volume_pricing_refuses_tiers_that_stop_short() -> None:
    with _raises("the tiers do not cover this quantity (the last tier must be unbounded)"):
        _volume((Tier(5, unit_amount=1),), 6)


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], "At least one tier is required."),
        ([Tier(5), Tier(None, unit_amount=1)], "Tier 0 needs a unit_amount or a flat_amount."),
        (
            [Tier(5, unit_amount=1), Tier(None, flat_amount=-1)],
            "Tier 1 flat_amount must not be negative.",
        ),
        (
            [Tier(5, unit_amount=-1), Tier(None, unit_amount=1)],
            "Tier 0 unit_amount must not be negative.",
        ),
        (
            [Tier(None, unit_amount=1), Tier(None, unit_amount=1)],
            "Only the last tier may have up_to 'inf' (tier 0 has it).",
        ),
        ([Tier(5, unit_amount=1)], "The last tier must have up_to 'inf'."),
        (
            [Tier(5, unit_amount=1), Tier(5, unit_amount=1), Tier(None, unit_amount=1)],
            "Tier up_to values must be positive and strictly ascending (tier 1: 5 after 5).",
        ),
        (
            [Tier(0, unit_amount=1), Tier(None, unit_amount=1)],
            "Tier up_to values must be positive and strictly ascending (tier 0: 0 after 0).",
        ),
    ],
)
def test_unusable_tiers_are_refused_with_their_reason(tiers: list[Tier], message: str) -> None:
    assert check_tiers(tiers) == message
    with _raises(message):
        amount_for(PriceTerms("tiered", tiers_mode="volume", tiers=tuple(tiers)), 1)


@pytest.mark.parametrize(
    ("terms", "quantity", "message"),
    [
        (PriceTerms("per_unit", unit_amount=1), -1, "quantity must be a non-negative integer"),
        (PriceTerms("per_unit", unit_amount=1), True, "quantity must be a non-negative integer"),
        (PriceTerms("per_unit"), 1, "a per_unit price needs a unit_amount"),
        (PriceTerms("metered", unit_amount=1), 1, "unknown billing_scheme 'metered'"),  # type: ignore[arg-type]
        (
            PriceTerms("tiered", tiers=(Tier(None, unit_amount=1),)),
            1,
            "a tiered price needs tiers_mode graduated or volume",
        ),
    ],
)
def test_unusable_price_terms_are_refused_with_their_reason(
    terms: PriceTerms, quantity: int, message: str
) -> None:
    with _raises(message):
        amount_for(terms, quantity)


def test_dividing_by_zero_is_named() -> None:
    with pytest.raises(ZeroDivisionError, match=r"^round_half_even_div by zero$"):
        round_half_even_div(1, 0)


@pytest.mark.parametrize("end_us", [0, 999_999, -1_000_000])
def test_a_period_shorter_than_a_second_cannot_be_prorated(end_us: int) -> None:
    with _raises("a proration period must be at least one second long"):
        prorate(1000, 0, end_us, 0, end_us)


def test_a_duplicate_key_names_the_key_and_the_side() -> None:
    a = ProrationItem("si_a", 1000)
    with _raises("duplicate subscription item key 'si_a' in the old items"):
        change_prorations([a, a], [], 0, DAY, DAY // 2)
    with _raises("duplicate subscription item key 'si_a' in the new items"):
        change_prorations([], [a, a], 0, DAY, DAY // 2)


# --- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (("1",), "retry offsets must be numbers of days"),
        ((True,), "retry offsets must be numbers of days"),
        ((float("inf"),), "retry offsets must be finite"),
        ((float("nan"),), "retry offsets must be finite"),
        ((0,), "retry offsets must be positive and strictly increasing"),
        ((2, 2), "retry offsets must be positive and strictly increasing"),
        ((1, 0.5), "retry offsets must be positive and strictly increasing"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_reason(
    schedule: tuple[int | float, ...], message: str
) -> None:
    assert check_schedule(schedule) == message
    with _raises(message):
        next_retry_us(1, T0, schedule)
    with _raises(message):
        retry_window_end_us(T0, schedule)


def test_offsets_a_microsecond_apart_are_increasing() -> None:
    # 1 day and 1 day + 1 us (1 / 86_400_000_000 day = 1.1574074074074074e-11).
    assert check_schedule((1, 1.0000000000115741)) is None


@pytest.mark.parametrize("failures", [0, -1, True])
def test_failures_start_at_one(failures: int) -> None:
    with _raises("failures counts failed tries and starts at 1"):
        next_retry_us(failures, T0)


def test_a_float_offset_is_read_as_the_decimal_it_prints_as() -> None:
    # 7.8125e-10 days is exactly 67.5 us as a decimal (ties to even: 68); the binary float
    # nearest to it is a little under, which would round to 67.
    assert next_retry_us(1, T0, (7.8125e-10,)) == T0 + 68
    assert retry_window_end_us(T0, (7.8125e-10,)) == T0 + 68


@pytest.mark.parametrize("policy", ["void", "", "CANCEL"])
def test_an_unknown_end_policy_is_named(policy: str) -> None:
    message = f"unknown end policy {policy!r}: cancel, unpaid or past_due"
    with _raises(message):
        status_after_exhausted(policy)  # type: ignore[arg-type]
    with _raises(message):
        exhausted_trigger(policy)  # type: ignore[arg-type]


# --- states --------------------------------------------------------------------------------


def test_a_refused_subscription_move_names_the_status_param() -> None:
    with pytest.raises(PaymuxError) as info:
        next_subscription_status("canceled", "trial_ended")
    assert info.value.code == "subscription_unexpected_state"
    assert info.value.param == "status"
    assert info.value.message == "A subscription in status 'canceled' cannot take 'trial_ended'."


@pytest.mark.parametrize(("status", "action"), [("paid", "void"), ("draft", "refund")])
def test_a_refused_invoice_move_names_the_lifecycle_and_the_status_param(
    status: str, action: str
) -> None:
    with pytest.raises(PaymuxError) as info:
        next_invoice_status(status, action)
    assert info.value.code == "invoice_unexpected_state"
    assert info.value.param == "status"
    assert info.value.message == (
        f"An invoice in status {status!r} does not allow {action!r} "
        "(draft -> open -> paid | void | uncollectible)."
    )


# --- totals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inclusive", [False, True])
def test_a_zero_tax_rate_adds_no_tax(inclusive: bool) -> None:
    rates = {"txr_0": TaxTerms("txr_0", Decimal("0"), inclusive)}
    totals = invoice_totals([LineInput(1000, tax_rate_ids=("txr_0",))], None, rates, 0)
    assert totals.tax == 0
    assert totals.total == 1000
    assert totals.tax_amounts == (("txr_0", 0, inclusive),)


def test_a_tax_rate_under_one_percent_is_allowed() -> None:
    rates = {"txr_half": TaxTerms("txr_half", Decimal("0.5"), False)}
    totals = invoice_totals([LineInput(10_000, tax_rate_ids=("txr_half",))], None, rates, 0)
    assert totals.tax == 50
    assert totals.total == 10_050


def test_a_fractional_inclusive_rate_is_exact() -> None:
    # 10825 including 8.25 % tax: 10825 * 100 / 108.25 = 10000 exactly, so the tax is 825.
    rates = {"txr_ca": TaxTerms("txr_ca", Decimal("8.25"), True)}
    totals = invoice_totals([LineInput(10_825, tax_rate_ids=("txr_ca",))], None, rates, 0)
    assert totals.tax_amounts == (("txr_ca", 825, True),)
    assert totals.total == 10_825


def test_a_fractional_exclusive_rate_is_exact() -> None:
    rates = {"txr_ca": TaxTerms("txr_ca", Decimal("8.25"), False)}
    totals = invoice_totals([LineInput(10_000, tax_rate_ids=("txr_ca",))], None, rates, 0)
    assert totals.tax_amounts == (("txr_ca", 825, False),)
    assert totals.total == 10_825


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({}, "unknown tax rate 'txr_x'"),
        ({"txr_x": TaxTerms("txr_x", Decimal("-1"), False)}, "a tax percentage must not be negative"),
        ({"txr_x": TaxTerms("txr_x", Decimal("-0.5"), True)}, "a tax percentage must not be negative"),
        ({"txr_x": TaxTerms("txr_x", Decimal("NaN"), False)}, "a rate must be a finite number"),
        ({"txr_x": TaxTerms("txr_x", Decimal("Infinity"), False)}, "a rate must be a finite number"),
    ],
)
def test_an_unusable_tax_rate_is_refused_with_its_reason(
    rates: dict[str, TaxTerms], message: str
) -> None:
    with _raises(message):
        invoice_totals([LineInput(1000, tax_rate_ids=("txr_x",))], None, rates, 0)


def test_a_non_zero_total_cannot_be_split_over_weights_summing_to_zero() -> None:
    with _raises("cannot split a non-zero total over weights that sum to zero"):
        split_proportionally(1, [1, -1])


@pytest.mark.parametrize(
    ("coupon", "message"),
    [
        (CouponTerms("co_x"), "coupon 'co_x' needs exactly one of percent_off and amount_off"),
        (
            CouponTerms("co_x", percent_off=Decimal("10"), amount_off=100),
            "coupon 'co_x' needs exactly one of percent_off and amount_off",
        ),
        (CouponTerms("co_x", percent_off=Decimal("100.01")), "percent_off must be between 0 and 100"),
        (CouponTerms("co_x", percent_off=Decimal("-1")), "percent_off must be between 0 and 100"),
        (CouponTerms("co_x", amount_off=-1), "amount_off must not be negative"),
    ],
)
def test_an_unusable_coupon_is_refused_with_its_reason(coupon: CouponTerms, message: str) -> None:
    with _raises(message):
        discount_for(coupon, 1000)


def test_an_offset_of_one_microsecond_is_positive_and_one_rounding_to_zero_is_not() -> None:
    # 1.1574074074074074e-11 days rounds to 1 us; 1e-12 days (0.0864 us) rounds to 0.
    assert check_schedule((1.1574074074074074e-11,)) is None
    assert check_schedule((1e-12,)) == "retry offsets must be positive and strictly increasing"


def test_proration_rounds_from_the_period_start_not_from_the_epoch() -> None:
    # A 3-second period starting at 1 s: the first 2 seconds are worth 2/3 of 1 -> 1, the
    # last second 1/3 -> 0 (cumulative rounding from the period start).
    assert prorate(1, 1_000_000, 4_000_000, 1_000_000, 3_000_000) == 1
    assert prorate(1, 1_000_000, 4_000_000, 3_000_000, 4_000_000) == 0
