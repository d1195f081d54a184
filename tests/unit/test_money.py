"""Money: construction, exact parsing, formatting, arithmetic (paymux.money.money)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.money import (
    CURRENCIES,
    AmountPrecisionError,
    CurrencyMismatchError,
    InvalidAmountError,
    Money,
    MoneyError,
    UnknownCurrencyError,
    get_currency,
)
from paymux.money.money import MAX_DECIMAL_STRING_LENGTH

ALL_CODES = sorted(CURRENCIES)
codes = st.sampled_from(ALL_CODES)
# Any amount whose decimal string fits Money.parse's length limit (256 characters).
amounts = st.integers(min_value=-(10**200), max_value=10**200)


@st.composite
def money(draw: st.DrawFn, currency: str | None = None) -> Money:
    return Money(draw(amounts), currency or draw(codes))


@st.composite
def same_currency_pair(draw: st.DrawFn) -> tuple[Money, Money]:
    code = draw(codes)
    return draw(money(code)), draw(money(code))


@st.composite
def different_currency_pair(draw: st.DrawFn) -> tuple[Money, Money]:
    first, second = draw(st.lists(codes, min_size=2, max_size=2, unique=True))
    return draw(money(first)), draw(money(second))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MoneyError, "parameter_invalid"),
        (UnknownCurrencyError, "currency_unknown"),
        (InvalidAmountError, "amount_invalid"),
        (AmountPrecisionError, "amount_too_precise"),
        (CurrencyMismatchError, "currency_mismatch"),
    ],
)
def test_every_money_error_is_a_value_error_with_a_stable_code(
    error: type[MoneyError], code: str
) -> None:
    assert issubclass(error, MoneyError)
    assert issubclass(error, ValueError)
    assert error.code == code
    raised = error("message", param="amount")
    assert raised.param == "amount"
    assert str(raised) == raised.message == "message"
    assert error("message").param is None


def test_every_money_error_code_is_a_code_of_the_api_error_table() -> None:
    from paymux.domain.errors import ERRORS

    for error in [
        MoneyError, UnknownCurrencyError, InvalidAmountError, AmountPrecisionError,
        CurrencyMismatchError,
    ]:  # fmt: skip
        assert error.code in ERRORS, error.code


# --- construction ---------------------------------------------------------------------------


def test_the_currency_is_normalised_to_upper_case() -> None:
    assert Money(1050, "usd") == Money(1050, "USD")
    assert Money(1050, "usd").currency == "USD"


def test_amounts_are_minor_units_and_may_be_negative() -> None:
    assert Money(-5, "USD").amount == -5


def test_from_minor_is_the_constructor() -> None:
    assert Money.from_minor(1050, "eur") == Money(1050, "EUR")


def test_zero_is_zero_in_the_currency() -> None:
    assert Money.zero("jpy") == Money(0, "JPY")
    assert Money.zero("JPY").is_zero()


@pytest.mark.parametrize(
    "amount", [10.5, 10.0, float("nan"), True, False, Decimal("10.50"), "1050", None, [1050]]
)
def test_an_amount_that_is_not_an_int_is_rejected(amount: object) -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money(amount, "USD")  # type: ignore[arg-type]
    assert info.value.code == "amount_invalid"
    assert info.value.param == "amount"
    assert type(amount).__name__ in str(info.value)


def test_a_float_amount_is_rejected() -> None:
    with pytest.raises(InvalidAmountError, match=r"not float; use Money\.parse"):
        Money(10.5, "USD")  # type: ignore[arg-type]


def test_a_bool_amount_is_rejected() -> None:
    with pytest.raises(InvalidAmountError, match="not bool"):
        Money(True, "USD")


def test_an_amount_error_message_suggests_parse_only_for_decimal_like_values() -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money(10.5, "USD")  # type: ignore[arg-type]
    assert str(info.value) == (
        "amount must be an int number of minor units, not float; "
        "use Money.parse() for a decimal string"
    )
    with pytest.raises(InvalidAmountError) as info:
        Money(None, "USD")  # type: ignore[arg-type]
    assert str(info.value) == "amount must be an int number of minor units, not NoneType"


def test_an_int_subclass_amount_becomes_a_plain_int() -> None:
    class Cents(enum.IntEnum):
        FIFTY = 50

    assert type(Money(Cents.FIFTY, "USD").amount) is int


def test_an_unknown_currency_is_rejected() -> None:
    with pytest.raises(UnknownCurrencyError):
        Money(100, "XXX")
    with pytest.raises(UnknownCurrencyError):
        Money(100, "dollars")


def test_money_is_immutable_and_hashable() -> None:
    price = Money(1050, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        price.amount = 1  # type: ignore[misc]
    assert {price, Money(1050, "usd")} == {price}


def test_equality_is_value_equality_and_different_currencies_are_unequal() -> None:
    assert Money(0, "USD") != Money(0, "EUR")
    assert Money(100, "USD") != 100  # type: ignore[comparison-overlap]
    assert Money(100, "USD") == Money(100, "USD")


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "amount"),
    [
        ("10.50", "USD", 1050),
        ("10.5", "USD", 1050),
        ("10", "USD", 1000),
        ("-3", "USD", -300),
        ("+3", "USD", 300),
        ("-0.05", "USD", -5),
        ("0.01", "EUR", 1),
        ("007.50", "EUR", 750),
        ("-0", "USD", 0),
        ("1050", "JPY", 1050),
        ("1050", "KRW", 1050),
        ("0.125", "KWD", 125),
        ("1.25", "BHD", 1250),
        ("1.2345", "CLF", 12345),
        ("12345678901234567890.99", "USD", 1234567890123456789099),
    ],
)
def test_parsing_a_decimal_string_gives_exact_minor_units(
    value: str, currency: str, amount: int
) -> None:
    assert Money.parse(value, currency) == Money(amount, currency)


def test_parsing_more_decimals_than_the_currency_allows_is_an_error() -> None:
    with pytest.raises(AmountPrecisionError) as info:
        Money.parse("10.505", "USD")
    assert info.value.code == "amount_too_precise"
    assert info.value.param == "amount"
    assert str(info.value) == "USD allows at most 2 decimal places; '10.505' has 3"


def test_parsing_decimals_for_a_currency_without_minor_unit_is_an_error() -> None:
    with pytest.raises(AmountPrecisionError) as info:
        Money.parse("10.5", "JPY")
    assert str(info.value) == "JPY has no minor unit; '10.5' has 1 decimal place"


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        (
            "10.500",
            "USD",
            "USD allows at most 2 decimal places; '10.500' has 3 "
            "(trailing zeros count: amounts are never rounded or trimmed)",
        ),
        (
            "100.0",
            "JPY",
            "JPY has no minor unit; '100.0' has 1 decimal place "
            "(trailing zeros count: amounts are never rounded or trimmed)",
        ),
        (
            "1.2500000",
            "KWD",
            "KWD allows at most 3 decimal places; '1.2500000' has 7 "
            "(trailing zeros count: amounts are never rounded or trimmed)",
        ),
        # A non-zero digit anywhere past the exponent: no note about trailing zeros.
        ("1.2500001", "KWD", "KWD allows at most 3 decimal places; '1.2500001' has 7"),
        ("1.2501000", "KWD", "KWD allows at most 3 decimal places; '1.2501000' has 7"),
    ],
)
def test_trailing_zeros_beyond_the_exponent_are_an_error_too(
    value: str, currency: str, message: str
) -> None:
    with pytest.raises(AmountPrecisionError) as info:
        Money.parse(value, currency)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value",
    [
        "", "-", "+", ".", "10.", ".5", "-.5", "1,000.00", "10,50", "1 000", "1_000", "1e3",
        "1E3", "1.5e2", " 10", "10 ", "10\n", "10.5.0", "--1", "+-1", "NaN", "nan", "Infinity",
        "-inf", "0x10", "$10", "10USD",
        "\u0661\u0660",  # ARABIC-INDIC "10"
        "\uff11\uff10",  # FULLWIDTH "10"
        "\u00bd",  # VULGAR FRACTION ONE HALF
    ],
)  # fmt: skip
def test_parsing_rejects_anything_but_sign_digits_and_one_dot(value: str) -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse(value, "USD")
    assert info.value.param == "amount"


@pytest.mark.parametrize("value", [10.5, 10, Decimal("10.50"), None, b"10.50"])
def test_parsing_something_other_than_a_string_is_an_error(value: object) -> None:
    with pytest.raises(InvalidAmountError, match="must be a decimal string"):
        Money.parse(value, "USD")  # type: ignore[arg-type]


def test_parsing_a_non_string_names_its_type_and_the_amount_parameter() -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse(10.5, "USD")  # type: ignore[arg-type]
    assert str(info.value) == "amount must be a decimal string such as '10.50', not float"
    assert info.value.param == "amount"


def test_a_malformed_string_error_says_what_is_expected() -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse("10,50", "USD")
    assert str(info.value) == (
        "amount '10,50' is not a decimal number: expected an optional sign, digits and "
        "optionally '.' and more digits, such as '10.50' or '-3' "
        "(no spaces, thousands separators or exponents)"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x" * 32, "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'"),  # 32 characters: quoted whole
        ("x" * 33, "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"),  # 33: cut to 32 and "..."
    ],
)
def test_a_rejected_string_is_quoted_whole_up_to_32_characters(value: str, shown: str) -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse(value, "USD")
    assert str(info.value).startswith(f"amount {shown} is not a decimal number: ")


def test_a_string_of_exactly_the_maximum_length_is_parsed() -> None:
    assert MAX_DECIMAL_STRING_LENGTH == 256
    assert Money.parse("1" * 256, "USD") == Money(int("1" * 256 + "00"), "USD")


def test_an_overlong_string_error_names_the_limit_and_the_amount_parameter() -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse("1" * 257, "USD")
    assert str(info.value) == (
        "amount '11111111111111111111111111111111...' is too long: at most 256 characters"
    )
    assert info.value.param == "amount"


def test_parsing_an_overlong_string_is_an_error() -> None:
    with pytest.raises(InvalidAmountError, match="too long"):
        Money.parse("1" * (MAX_DECIMAL_STRING_LENGTH + 1), "USD")
    with pytest.raises(InvalidAmountError, match="too long"):
        Money.parse("1" * 100_000, "USD")  # past Python's int-from-str limit


def test_parsing_checks_the_currency() -> None:
    with pytest.raises(UnknownCurrencyError):
        Money.parse("10.00", "XAU")
    assert Money.parse("10.00", "usd").currency == "USD"


@given(m=money())
def test_parsing_the_decimal_string_gives_back_the_same_money(m: Money) -> None:
    assert Money.parse(m.to_decimal_string(), m.currency) == m
    assert Money.parse(m.to_decimal_string(), m.currency.lower()) == m


@given(m=money())
def test_the_decimal_string_has_exactly_the_currency_exponent_of_decimals(m: Money) -> None:
    exponent = get_currency(m.currency).exponent
    text = m.to_decimal_string()
    if exponent == 0:
        assert "." not in text
    else:
        assert len(text.split(".")[1]) == exponent
    assert Fraction(text) == Fraction(m.amount, 10**exponent)


@given(data=st.data(), code=codes)
def test_parsing_loses_no_precision(data: st.DataObject, code: str) -> None:
    exponent = get_currency(code).exponent
    sign = data.draw(st.sampled_from(["", "+", "-"]))
    whole = data.draw(st.integers(min_value=0, max_value=10**40))
    frac = data.draw(st.text(alphabet="0123456789", max_size=exponent))
    value = f"{sign}{whole}" + (f".{frac}" if frac else "")
    parsed = Money.parse(value, code)
    assert Fraction(parsed.amount, 10**exponent) == Fraction(value)


@given(data=st.data(), code=codes)
def test_a_string_with_one_decimal_more_than_the_exponent_always_fails(
    data: st.DataObject, code: str
) -> None:
    exponent = get_currency(code).exponent
    whole = data.draw(st.integers(min_value=0, max_value=10**12))
    frac = data.draw(st.text(alphabet="0123456789", min_size=exponent + 1, max_size=exponent + 1))
    with pytest.raises(AmountPrecisionError) as info:
        Money.parse(f"{whole}.{frac}", code)
    assert code in str(info.value)


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_currency_accepts_exactly_its_exponent_of_decimals(code: str) -> None:
    exponent = get_currency(code).exponent
    exact = "12." + "3" * exponent if exponent else "12"
    assert Money.parse(exact, code).amount == int("12" + "3" * exponent)
    with pytest.raises(AmountPrecisionError) as info:
        Money.parse("12." + "3" * (exponent + 1), code)
    message = str(info.value)
    assert code in message
    assert (f"at most {exponent} decimal place" in message) or "no minor unit" in message


@pytest.mark.parametrize("code", ["JPY", "KRW"])
def test_zero_decimal_currencies_count_whole_units(code: str) -> None:
    m = Money.parse("1050", code)
    assert m.amount == 1050
    assert m.to_decimal_string() == "1050"
    assert str(m) == f"1050 {code}"
    with pytest.raises(AmountPrecisionError):
        Money.parse("1050.5", code)


@pytest.mark.parametrize("code", ["KWD", "BHD", "JOD", "OMR", "TND"])
def test_three_decimal_currencies_count_thousandths(code: str) -> None:
    m = Money.parse("1.25", code)
    assert m.amount == 1250
    assert m.to_decimal_string() == "1.250"
    assert Money.parse("0.001", code).amount == 1
    with pytest.raises(AmountPrecisionError, match="at most 3 decimal places"):
        Money.parse("1.2345", code)


@pytest.mark.parametrize("code", ["EUR", "USD"])
def test_euro_and_dollar_count_hundredths(code: str) -> None:
    assert Money.parse("10.50", code).amount == 1050
    assert Money.parse("0.01", code).amount == 1
    with pytest.raises(AmountPrecisionError, match="at most 2 decimal places"):
        Money.parse("10.505", code)


# --- output ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1050, "USD", "10.50"),
        (5, "USD", "0.05"),
        (-5, "USD", "-0.05"),
        (-1050, "EUR", "-10.50"),
        (0, "USD", "0.00"),
        (1000, "JPY", "1000"),
        (-1000, "JPY", "-1000"),
        (1250, "KWD", "1.250"),
        (1, "KWD", "0.001"),
        (12345, "CLF", "1.2345"),
    ],
)
def test_the_decimal_string_shows_major_units_with_the_iso_decimals(
    amount: int, currency: str, text: str
) -> None:
    assert Money(amount, currency).to_decimal_string() == text
    assert Money(amount, currency).to_decimal() == Decimal(text)


def test_str_is_the_decimal_string_and_the_code() -> None:
    assert str(Money(1050, "usd")) == "10.50 USD"
    assert str(Money(-1, "KWD")) == "-0.001 KWD"


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "text"),
    [
        (1050, "USD", "en_US", "$10.50"),
        (-5, "USD", "en_US", "-$0.05"),
        (123456789, "USD", "en_US", "$1,234,567.89"),
        (1050, "EUR", "de_DE", "10,50\xa0€"),
        (1050, "JPY", "ja_JP", "\uffe51,050"),  # FULLWIDTH YEN SIGN
        (1050, "JPY", "en_US", "¥1,050"),
        (1050, "KRW", "ko_KR", "₩1,050"),
        (1250, "KWD", "en_US", "KWD1.250"),
        (1050, "USD", "en-GB", "US$10.50"),
        (12345, "CLF", "en_US", "CLF1.2345"),
    ],
)
def test_formatting_uses_babel_with_the_iso_number_of_decimals(
    amount: int, currency: str, locale: str, text: str
) -> None:
    assert Money(amount, currency).format(locale) == text


def test_formatting_defaults_to_en_us() -> None:
    assert Money(1050, "USD").format() == "$10.50"


def test_formatting_shows_iso_decimals_even_where_cldr_shows_none() -> None:
    # CLDR formats HUF and IDR without decimals; ISO 4217 (and paymux) keeps two.
    assert Money(17550, "HUF").format("en_US") == "HUF175.50"
    assert Money(1, "IDR").format("en_US") == "IDR0.01"


def test_formatting_never_rounds_a_huge_amount() -> None:
    huge = 10**40 + 1
    assert Money(huge, "USD").format("en_US").replace(",", "") == f"${huge // 100}.01"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        # 41 digits, far past decimal's default 28-digit context: none may be rounded away.
        (10**40 + 1, "JPY", "¥10,000,000,000,000,000,000,000,000,000,000,000,000,001"),
        (10**40 + 1, "KWD", "KWD10,000,000,000,000,000,000,000,000,000,000,000,000.001"),
        (10**40 + 1, "CLF", "CLF1,000,000,000,000,000,000,000,000,000,000,000,000.0001"),
        (-(10**40) - 1, "JPY", "-¥10,000,000,000,000,000,000,000,000,000,000,000,000,001"),
    ],
)
def test_formatting_shows_every_digit_whatever_the_exponent(
    amount: int, currency: str, text: str
) -> None:
    assert Money(amount, currency).format("en_US") == text


@settings(deadline=None)  # the first call loads Babel's locale data
@given(m=money())
def test_formatting_shows_every_digit_of_the_amount(m: Money) -> None:
    shown = m.format("en_US").replace(",", "")
    assert m.to_decimal_string().lstrip("-") in shown
    assert shown.startswith("-") == (m.amount < 0)


@pytest.mark.parametrize("locale", ["xx_XX", "", "en_US_POSIX_what_"])
def test_formatting_with_an_unknown_locale_is_an_error(locale: str) -> None:
    with pytest.raises(ValueError, match="locale"):
        Money(1050, "USD").format(locale)


# --- arithmetic and ordering ----------------------------------------------------------------


def test_adding_and_subtracting_same_currency_amounts() -> None:
    assert Money(1050, "USD") + Money(50, "USD") == Money(1100, "USD")
    assert Money(1050, "USD") - Money(2000, "USD") == Money(-950, "USD")
    assert -Money(1050, "USD") == Money(-1050, "USD")


@given(pair=same_currency_pair())
def test_addition_and_subtraction_are_exact_integer_arithmetic(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a + b).amount == a.amount + b.amount
    assert (a + b).currency == a.currency
    assert a + b == b + a
    assert (a + b) - b == a
    assert (a - b) == a + (-b)
    assert (a + -a).is_zero()
    negated = -a
    assert -negated == a


@given(pair=same_currency_pair())
def test_ordering_follows_the_amounts(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a > b) == (a.amount > b.amount)
    assert (a >= b) == (a.amount >= b.amount)


def test_sorting_same_currency_amounts() -> None:
    prices = [Money(300, "EUR"), Money(-1, "EUR"), Money(20, "EUR")]
    assert sorted(prices) == [Money(-1, "EUR"), Money(20, "EUR"), Money(300, "EUR")]
    assert max(prices) == Money(300, "EUR")


@given(pair=different_currency_pair())
def test_mixing_currencies_in_arithmetic_or_ordering_is_an_error(
    pair: tuple[Money, Money],
) -> None:
    a, b = pair
    operations: list[Callable[[], object]] = [
        lambda: a + b, lambda: a - b, lambda: a < b, lambda: a <= b, lambda: a > b,
        lambda: a >= b,
    ]  # fmt: skip
    for operation in operations:
        with pytest.raises(CurrencyMismatchError) as info:
            operation()
        assert info.value.code == "currency_mismatch"
        assert a.currency in str(info.value)
        assert b.currency in str(info.value)
    assert a != b


def test_a_currency_mismatch_message_names_both_amounts() -> None:
    with pytest.raises(CurrencyMismatchError) as info:
        Money(1050, "USD") + Money(100, "EUR")
    assert str(info.value) == (
        "cannot add USD and EUR amounts (10.50 USD and 1.00 EUR): convert to one currency first"
    )


_MISMATCH_COMPARE = (
    "cannot compare USD and EUR amounts (10.50 USD and 1.00 EUR): convert to one currency first"
)


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (
            lambda a, b: a - b,
            "cannot subtract USD and EUR amounts (10.50 USD minus 1.00 EUR): "
            "convert to one currency first",
        ),
        (lambda a, b: a < b, _MISMATCH_COMPARE),
        (lambda a, b: a <= b, _MISMATCH_COMPARE),
        (lambda a, b: a > b, _MISMATCH_COMPARE),
        (lambda a, b: a >= b, _MISMATCH_COMPARE),
    ],
    ids=["-", "<", "<=", ">", ">="],
)
def test_a_currency_mismatch_names_the_operation_and_the_currency_parameter(
    operation: Callable[[Money, Money], object], message: str
) -> None:
    with pytest.raises(CurrencyMismatchError) as info:
        operation(Money(1050, "USD"), Money(100, "EUR"))
    assert str(info.value) == message
    assert info.value.param == "currency"


def test_money_and_plain_numbers_do_not_mix() -> None:
    price = Money(1050, "USD")
    with pytest.raises(TypeError):
        price + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        1 + price  # type: ignore[operator]
    with pytest.raises(TypeError):
        price - 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        price < 2000  # type: ignore[operator]  # noqa: B015
    with pytest.raises(TypeError):
        price <= 2000  # type: ignore[operator]  # noqa: B015
    with pytest.raises(TypeError):
        price > 0  # type: ignore[operator]  # noqa: B015
    with pytest.raises(TypeError):
        price >= 0  # type: ignore[operator]  # noqa: B015


@pytest.mark.parametrize(
    ("amount", "zero", "positive", "negative"),
    [(0, True, False, False), (1, False, True, False), (-1, False, False, True)],
)
def test_sign_predicates(amount: int, zero: bool, positive: bool, negative: bool) -> None:
    m = Money(amount, "USD")
    assert (m.is_zero(), m.is_positive(), m.is_negative()) == (zero, positive, negative)
