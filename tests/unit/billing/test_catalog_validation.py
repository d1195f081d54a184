"""The catalog's input checks (billing/catalog_checks.py) and its decimal display
(catalog_views.decimal_number), without a server: each refusal names the exact parameter."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paymux.billing.catalog_checks import (
    currency_code,
    decimal_rate,
    recurring_fields,
    tier_rows,
    whole_amount,
)
from paymux.billing.catalog_views import decimal_number
from paymux.domain.errors import PaymuxError


def refusal(call: object) -> tuple[str, str | None]:
    assert callable(call)
    with pytest.raises(PaymuxError) as raised:
        call()
    return raised.value.code, raised.value.param


def percent(value: str) -> str:
    return decimal_rate(Decimal(value), "percent_off", places=2, low=Decimal(0),
                        high=Decimal(100), low_open=True)


def test_a_percentage_is_kept_as_exact_text_within_its_range_and_places() -> None:
    assert percent("25.50") == "25.5"
    assert percent("100") == "100"
    assert percent("0.01") == "0.01"
    assert percent("1E+1") == "10"
    for bad in ("0", "-1", "100.01", "12.345", "NaN"):
        assert refusal(lambda bad=bad: percent(bad)) == ("parameter_invalid", "percent_off")
    assert decimal_rate(Decimal("0"), "percentage", places=4, low=Decimal(0),
                        high=Decimal(100), low_open=False) == "0"


def test_decimal_text_is_shown_as_the_json_number_it_reads_as() -> None:
    assert decimal_number("19") == 19 and isinstance(decimal_number("19"), int)
    assert decimal_number("8.875") == 8.875
    assert decimal_number("12.5") == 12.5
    assert decimal_number("100") == 100
    assert decimal_number(None) is None


def test_whole_amounts_take_a_decimal_only_without_a_fraction() -> None:
    assert whole_amount(1500, None, "unit_amount") == 1500
    assert whole_amount(None, "1500", "unit_amount") == 1500
    assert whole_amount(None, "1500.000", "unit_amount") == 1500
    assert whole_amount(None, None, "unit_amount") is None
    assert refusal(lambda: whole_amount(None, "12.5", "unit_amount")) == (
        "parameter_invalid", "unit_amount_decimal")
    assert refusal(lambda: whole_amount(1, "1", "unit_amount")) == (
        "parameters_exclusive", "unit_amount_decimal")
    assert refusal(lambda: whole_amount(10**13, None, "tiers[0][unit_amount]")) == (
        "amount_invalid", "tiers[0][unit_amount]")


def test_tiers_are_checked_one_by_one_with_their_index() -> None:
    rows = tier_rows([{"up_to": 5, "unit_amount": 500},
                      {"up_to": None, "flat_amount_decimal": "100"}])
    assert rows == [{"up_to": 5, "unit_amount": 500, "flat_amount": None},
                    {"up_to": None, "unit_amount": None, "flat_amount": 100}]
    assert refusal(lambda: tier_rows([])) == ("parameter_missing", "tiers")
    assert refusal(lambda: tier_rows([{"up_to": 5, "unit_amount": 1},
                                      {"up_to": 5, "unit_amount": 1},
                                      {"up_to": None, "unit_amount": 1}])) == (
        "parameter_invalid", "tiers[1][up_to]")
    assert refusal(lambda: tier_rows([{"up_to": None, "unit_amount": 1},
                                      {"up_to": None, "unit_amount": 1}])) == (
        "parameter_invalid", "tiers[0][up_to]")
    assert refusal(lambda: tier_rows([{"up_to": 3, "unit_amount": 1}])) == (
        "parameter_invalid", "tiers[0][up_to]")
    assert refusal(lambda: tier_rows([{"up_to": None}])) == (
        "parameter_missing", "tiers[0][unit_amount]")


def test_recurring_is_checked_against_the_three_year_limit_with_its_prefix() -> None:
    assert recurring_fields({"interval": "week", "interval_count": 156}) == {
        "recurring_interval": "week", "recurring_interval_count": 156,
        "recurring_usage_type": "licensed", "recurring_meter_id": None}
    assert refusal(lambda: recurring_fields({"interval": "fortnight"})) == (
        "parameter_invalid", "recurring[interval]")
    assert refusal(lambda: recurring_fields({"interval": "year", "interval_count": 4},
                                            "default_price_data[recurring]")) == (
        "parameter_invalid", "default_price_data[recurring][interval_count]")
    assert refusal(lambda: recurring_fields({"interval": "month", "usage_type": "metered"})) == (
        "parameter_missing", "recurring[meter]")


def test_currencies_are_iso_codes_lowercased() -> None:
    assert currency_code("EUR") == "eur"
    assert refusal(lambda: currency_code("ZZZ", "restrictions[minimum_amount_currency]")) == (
        "currency_unknown", "restrictions[minimum_amount_currency]")
