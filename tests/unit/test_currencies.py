"""ISO 4217 currency table, lookups and charge limits (paymux.money.currencies)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.money import (
    CURRENCIES,
    Currency,
    MoneyError,
    UnknownCurrencyError,
    get_currency,
    max_charge_amount,
    min_charge_amount,
)

ALL_CODES = sorted(CURRENCIES)
codes = st.sampled_from(ALL_CODES)

ZERO_DECIMAL = [
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
]  # fmt: skip
THREE_DECIMAL = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
FOUR_DECIMAL = ["CLF", "UYW"]

# ISO 4217 codes with no minor unit ("N.A."), and codes ISO has withdrawn (list three).
NOT_A_CURRENCY_WITH_MINOR_UNIT = [
    "XAU", "XAG", "XPD", "XPT", "XTS", "XXX", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA",
]  # fmt: skip
WITHDRAWN = ["ANG", "CUC", "ZWL", "SLL", "HRK", "STD", "MRO", "VEF", "BYR", "LTL", "ZMK", "DEM"]

STRIPE_MINIMUMS = {
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500,
    "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50,
    "MXN": 1000, "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300,
    "SGD": 50, "THB": 1000,
}  # fmt: skip


# --- the table ------------------------------------------------------------------------------


def test_the_table_holds_every_active_iso_4217_currency_and_nothing_else() -> None:
    assert 155 <= len(CURRENCIES) <= 180
    for code in ["USD", "EUR", "GBP", "JPY", "CHF", "CNY", "INR", "BRL", "ZAR", "SVC", "XAD"]:
        assert code in CURRENCIES


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_currency_has_a_well_formed_code_numeric_code_exponent_and_name(code: str) -> None:
    currency = CURRENCIES[code]
    assert isinstance(currency, Currency)
    assert currency.code == code
    assert len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()
    assert len(currency.numeric) == 3 and currency.numeric.isdigit()
    assert currency.exponent in (0, 2, 3, 4)
    assert currency.name.strip() == currency.name != ""
    assert currency.minor_units_per_major == 10**currency.exponent


def test_numeric_codes_are_unique() -> None:
    numerics = [c.numeric for c in CURRENCIES.values()]
    assert len(numerics) == len(set(numerics))


def test_well_known_numeric_codes_are_right() -> None:
    assert get_currency("USD").numeric == "840"
    assert get_currency("EUR").numeric == "978"
    assert get_currency("ALL").numeric == "008"
    assert get_currency("XCG").numeric == "532"  # took over ANG's number


def test_most_currencies_have_two_decimals() -> None:
    exceptions = set(ZERO_DECIMAL) | set(THREE_DECIMAL) | set(FOUR_DECIMAL)
    for code, currency in CURRENCIES.items():
        if code not in exceptions:
            assert currency.exponent == 2, code


@pytest.mark.parametrize("code", ZERO_DECIMAL)
def test_zero_decimal_currencies_have_no_minor_unit(code: str) -> None:
    assert get_currency(code).exponent == 0


@pytest.mark.parametrize("code", THREE_DECIMAL)
def test_three_decimal_currencies_have_exponent_three(code: str) -> None:
    assert get_currency(code).exponent == 3


@pytest.mark.parametrize("code", FOUR_DECIMAL)
def test_unidad_de_fomento_and_unidad_previsional_have_exponent_four(code: str) -> None:
    assert get_currency(code).exponent == 4


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("BOV", 2), ("CLF", 4), ("COU", 2), ("MXV", 2), ("UYI", 0), ("UYW", 4), ("USN", 2),
     ("CHE", 2), ("CHW", 2)],
)  # fmt: skip
def test_funds_codes_are_included_with_their_iso_exponents(code: str, exponent: int) -> None:
    assert get_currency(code).exponent == exponent


@pytest.mark.parametrize("code", ["VES", "VED", "ZWG", "SLE", "XCG", "STN", "MRU"])
def test_recently_introduced_currencies_are_included(code: str) -> None:
    assert get_currency(code).exponent == 2


def test_iso_exponents_win_over_cldr_and_gateway_conventions() -> None:
    # CLDR shows these without decimals, Stripe treats MGA as zero-decimal; ISO says 2 / 3.
    assert get_currency("HUF").exponent == 2
    assert get_currency("MGA").exponent == 2
    assert get_currency("IDR").exponent == 2
    assert get_currency("IQD").exponent == 3
    assert get_currency("ISK").exponent == 0


@pytest.mark.parametrize("code", NOT_A_CURRENCY_WITH_MINOR_UNIT + WITHDRAWN)
def test_codes_without_a_minor_unit_and_withdrawn_codes_are_unknown(code: str) -> None:
    assert code not in CURRENCIES
    with pytest.raises(UnknownCurrencyError):
        get_currency(code)


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CURRENCIES["ABC"] = Currency("ABC", "001", 2, "Test")  # type: ignore[index]


def test_currency_records_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_currency("USD").exponent = 3  # type: ignore[misc]


# --- lookups --------------------------------------------------------------------------------


def test_lookup_is_case_insensitive() -> None:
    assert get_currency("usd") is get_currency("USD") is get_currency("uSd")


@given(code=codes, mask=st.lists(st.booleans(), min_size=3, max_size=3))
def test_lookup_finds_every_currency_in_any_letter_case(code: str, mask: list[bool]) -> None:
    mixed = "".join(ch.lower() if low else ch for ch, low in zip(code, mask, strict=True))
    assert get_currency(mixed) is CURRENCIES[code]


@pytest.mark.parametrize(
    "code",
    [
        *["", "US", "USDD", "usd ", " USD", "U SD", "ABC", "QQQ", "840", "U$D"],
        "\u017fek",  # LATIN SMALL LETTER LONG S: "\u017fek".upper() == "SEK"
        "\uff35\uff33\uff24",  # FULLWIDTH "USD"
    ],
)
def test_anything_but_a_known_three_letter_code_is_an_unknown_currency(code: str) -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        get_currency(code)
    assert info.value.code == "currency_unknown"
    assert info.value.param == "currency"
    assert repr(code[:16]) in str(info.value)


@pytest.mark.parametrize("value", [None, 840, 8.4, b"USD", ["USD"], True])
def test_a_non_string_currency_is_an_unknown_currency(value: object) -> None:
    with pytest.raises(UnknownCurrencyError, match="must be a str"):
        get_currency(value)  # type: ignore[arg-type]


@given(text=st.text(max_size=8))
def test_any_text_that_is_not_a_code_raises_unknown_currency(text: str) -> None:
    if text.isascii() and text.upper() in CURRENCIES:
        assert get_currency(text).code == text.upper()
    else:
        with pytest.raises(UnknownCurrencyError):
            get_currency(text)


def test_a_non_string_currency_error_names_its_type_and_the_currency_parameter() -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        get_currency(840)  # type: ignore[arg-type]
    assert str(info.value) == (
        "currency must be a str ISO 4217 alphabetic code such as 'USD', not int"
    )
    assert info.value.param == "currency"


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("A" * 16, "'AAAAAAAAAAAAAAAA'"),  # 16 characters: quoted whole
        ("A" * 17, "'AAAAAAAAAAAAAAAA...'"),  # 17: cut to 16 and "..."
    ],
)
def test_an_unknown_code_is_quoted_whole_up_to_16_characters(code: str, shown: str) -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        get_currency(code)
    assert str(info.value) == (
        f"unknown currency {shown}: expected an active ISO 4217 alphabetic code with a "
        "minor unit, such as 'USD' or 'eur'"
    )


def test_unknown_currency_is_a_money_error_and_a_value_error() -> None:
    with pytest.raises(MoneyError):
        get_currency("XYZ")
    with pytest.raises(ValueError, match="unknown currency"):
        get_currency("XYZ")


def test_a_very_long_code_is_cut_short_in_the_message() -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        get_currency("X" * 10_000)
    assert len(str(info.value)) < 200


# --- charge limits --------------------------------------------------------------------------


def test_minimum_charge_for_usd_is_fifty_cents() -> None:
    assert min_charge_amount("USD") == 50


def test_minimum_charge_for_jpy_is_fifty_yen() -> None:
    assert min_charge_amount("JPY") == 50


def test_minimum_charge_for_gbp_is_thirty_pence() -> None:
    assert min_charge_amount("GBP") == 30


@pytest.mark.parametrize(("code", "minimum"), sorted(STRIPE_MINIMUMS.items()))
def test_minimum_charges_follow_stripes_published_list(code: str, minimum: int) -> None:
    assert min_charge_amount(code) == minimum
    assert min_charge_amount(code.lower()) == minimum


@pytest.mark.parametrize("code", sorted(set(ALL_CODES) - set(STRIPE_MINIMUMS)))
def test_the_minimum_charge_is_one_minor_unit_for_every_other_currency(code: str) -> None:
    assert min_charge_amount(code) == 1


@pytest.mark.parametrize("code", ALL_CODES)
def test_the_maximum_charge_is_eight_digits_of_minor_units_for_every_currency(code: str) -> None:
    assert max_charge_amount(code) == 99_999_999
    assert 1 <= min_charge_amount(code) < max_charge_amount(code)


@pytest.mark.parametrize("limit", [min_charge_amount, max_charge_amount])
def test_charge_limits_of_an_unknown_currency_are_an_error(limit: object) -> None:
    assert callable(limit)
    with pytest.raises(UnknownCurrencyError):
        limit("XAU")
    with pytest.raises(UnknownCurrencyError):
        limit(None)
