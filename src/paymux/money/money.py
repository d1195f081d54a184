"""``Money``: an integer number of minor units in one ISO 4217 currency.

Rules, all enforced at the boundary so the rest of paymux can rely on them:

- The amount is an ``int`` of minor units (cents for USD, yen for JPY, fils for KWD). It may
  be negative (refund arithmetic, balances). ``bool``, ``float``, ``Decimal`` and ``str``
  amounts are refused with :class:`InvalidAmountError`: no float ever comes near an amount,
  and decimal strings are converted only by :meth:`Money.parse`.
- The currency is normalised to its upper-case code and must be in
  :data:`~paymux.money.currencies.CURRENCIES` (:class:`UnknownCurrencyError` otherwise).
- :meth:`Money.parse` reads a plain decimal string (optional sign, digits, optionally a dot
  and more digits) and never rounds: more fractional digits than the currency's ISO 4217
  exponent raise :class:`AmountPrecisionError`. Trailing zeros count too (``"10.500"`` USD
  and ``"100.0"`` JPY are errors), so what a caller sent is exactly what gets charged, and
  a client that formats amounts with the wrong number of decimals is told so at once.
- ``+``, ``-`` and the orderings ``<``, ``<=``, ``>``, ``>=`` take two ``Money`` of the same
  currency (:class:`CurrencyMismatchError` otherwise); mixing ``Money`` with a plain number
  is a ``TypeError``. ``==`` is plain value equality: amounts in different currencies are
  simply unequal.

Exceptions (see :mod:`paymux.money.errors`) all derive from :class:`MoneyError`, a
``ValueError`` carrying a stable ``code`` and an optional ``param``.
"""

from __future__ import annotations

import copy
import decimal
import re
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency

from paymux.money.currencies import Currency, get_currency
from paymux.money.errors import (
    AmountPrecisionError,
    CurrencyMismatchError,
    InvalidAmountError,
    MoneyError,
    UnknownCurrencyError,
)

__all__ = [
    "MAX_DECIMAL_STRING_LENGTH",
    "AmountPrecisionError",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "MoneyError",
    "UnknownCurrencyError",
]

MAX_DECIMAL_STRING_LENGTH = 256
"""Longest string :meth:`Money.parse` reads (far past any real amount; bounds the work)."""

# ASCII digits only: a bare \d would also accept other scripts' digits (U+0660..U+0669...).
_DECIMAL = re.compile(r"(?P<sign>[+-]?)(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?", re.ASCII)
_MAX_SHOWN = 32  # characters of a rejected value quoted back in an error message

_DEFAULT_LOCALE = "en_US"
"""The CLDR locale :meth:`Money.format` uses when none is given."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "...")


def _places(n: int) -> str:
    return f"{n} decimal place" if n == 1 else f"{n} decimal places"


def _check_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        hint = (
            "; use Money.parse() for a decimal string"
            if isinstance(amount, str | float | Decimal)
            else ""
        )
        raise InvalidAmountError(
            f"amount must be an int number of minor units, not {type(amount).__name__}{hint}",
            param="amount",
        )
    return int(amount)  # an int subclass (IntEnum...) becomes a plain int


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of money: ``amount`` minor units of ``currency``.

    >>> Money(1050, "usd")
    Money(amount=1050, currency='USD')
    >>> str(Money.parse("10.5", "USD"))
    '10.50 USD'
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        amount = _check_amount(self.amount)
        code = get_currency(self.currency).code
        # frozen dataclass: assign through object.__setattr__ to normalise the fields.
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "currency", code)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_minor(cls, amount: int, currency: str) -> Money:
        """``amount`` minor units of ``currency``; the same as ``Money(amount, currency)``."""
        return cls(amount, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in ``currency``."""
        return cls(0, currency)

    @classmethod
    def parse(cls, value: str, currency: str) -> Money:
        """Read a decimal string of major units: ``Money.parse("10.50", "USD")`` is 1050 cents.

        Accepted: an optional ``+`` or ``-``, ASCII digits, and optionally a ``.`` followed by
        at least one digit, with at most as many fractional digits as the currency's ISO 4217
        exponent (fewer are padded: ``"10.5"`` USD is 1050). Nothing else: no whitespace, no
        thousands separators, no exponents (``"1e3"``), no ``"10."`` or ``".5"``, no
        ``"NaN"``. Never rounds; trailing zeros beyond the exponent are an error too.

        Raises :class:`UnknownCurrencyError` for the currency, :class:`InvalidAmountError`
        for a malformed (or longer than :data:`MAX_DECIMAL_STRING_LENGTH`) string and
        :class:`AmountPrecisionError` for too many fractional digits.
        """
        cur = get_currency(currency)
        if not isinstance(value, str):
            raise InvalidAmountError(
                f"amount must be a decimal string such as '10.50', not {type(value).__name__}",
                param="amount",
            )
        if len(value) > MAX_DECIMAL_STRING_LENGTH:
            raise InvalidAmountError(
                f"amount {_shown(value)} is too long: at most {MAX_DECIMAL_STRING_LENGTH} "
                f"characters",
                param="amount",
            )
        match = _DECIMAL.fullmatch(value)
        if match is None:
            raise InvalidAmountError(
                f"amount {_shown(value)} is not a decimal number: expected an optional sign, "
                f"digits and optionally '.' and more digits, such as '10.50' or '-3' "
                f"(no spaces, thousands separators or exponents)",
                param="amount",
            )
        frac = match["frac"] or ""
        if len(frac) > cur.exponent:
            raise AmountPrecisionError(_precision_message(cur, value, frac), param="amount")
        minor = int(match["int"] + frac.ljust(cur.exponent, "0"))
        return cls(-minor if match["sign"] == "-" else minor, cur.code)

    # --- views -----------------------------------------------------------------------------

    @property
    def currency_info(self) -> Currency:
        """The :class:`Currency` record (exponent, numeric code, name)."""
        return get_currency(self.currency)

    def to_decimal_string(self) -> str:
        """The amount in major units with exactly the currency's exponent of decimals.

        ``"10.50"`` (USD), ``"1000"`` (JPY), ``"1.250"`` (KWD), ``"-0.05"`` (USD). The result
        parses back to the same ``Money`` with :meth:`parse`.
        """
        exponent = self.currency_info.exponent
        if exponent == 0:
            return str(self.amount)
        major, minor = divmod(abs(self.amount), 10**exponent)
        sign = "-" if self.amount < 0 else ""
        return f"{sign}{major}.{minor:0{exponent}d}"

    def to_decimal(self) -> Decimal:
        """The amount in major units as an exact ``Decimal`` (``Decimal("10.50")``)."""
        return Decimal(self.to_decimal_string())  # exact: no context rounding

    def format(self, locale: str = _DEFAULT_LOCALE) -> str:
        """The amount for people, in ``locale``'s (default ``en_US``) currency format, via Babel.

        Always shows the currency's ISO 4217 number of decimals (JPY none, KWD three),
        whatever CLDR's own preference: ``Money(1050, "USD").format() == "$10.50"``. Babel's
        output may contain non-breaking spaces (``"10,50\\xa0€"`` for ``de_DE``).
        ``locale`` is a CLDR identifier, ``"de_DE"`` or ``"de-DE"``; an unknown or malformed one
        raises ``ValueError`` (not a :class:`MoneyError`: the amount is not at fault).
        """
        try:
            loc = Locale.parse(locale.replace("-", "_"))
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"unknown or malformed locale {locale!r}: {exc}") from exc
        pattern = copy.copy(loc.currency_formats["standard"])
        exponent = self.currency_info.exponent
        pattern.frac_prec = (exponent, exponent)
        value = self.to_decimal()
        with decimal.localcontext() as ctx:
            # Babel normalizes and quantizes in the current context, so a precision below the
            # amount's digit count would round or raise. ``value`` already has exactly
            # ``exponent`` decimals, so quantizing it needs no more digits than it has.
            ctx.prec = max(ctx.prec, len(value.as_tuple().digits))
            return format_currency(
                value,
                self.currency,
                format=pattern,
                locale=loc,
                # False, not CLDR's digits (HUF 0...): keep the ISO frac_prec set above. Babel
                # only tests it for truth, so a None here would be an equivalent mutant.
                currency_digits=False,  # pragma: no mutate
            )

    def __str__(self) -> str:
        return f"{self.to_decimal_string()} {self.currency}"

    # --- predicates ------------------------------------------------------------------------

    def is_zero(self) -> bool:
        return self.amount == 0

    def is_positive(self) -> bool:
        return self.amount > 0

    def is_negative(self) -> bool:
        return self.amount < 0

    # --- arithmetic and ordering -----------------------------------------------------------

    def _same_currency(self, other: Money, op: str) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatchError(
                f"cannot {op} {self.currency} and {other.currency} amounts "
                f"({self} {'and' if op != 'subtract' else 'minus'} {other}): "
                f"convert to one currency first",
                param="currency",
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount >= other.amount


def _precision_message(cur: Currency, value: str, frac: str) -> str:
    extra = len(frac)
    if cur.exponent == 0:
        head = f"{cur.code} has no minor unit; {_shown(value)} has {_places(extra)}"
    else:
        head = f"{cur.code} allows at most {_places(cur.exponent)}; {_shown(value)} has {extra}"
    if int(frac[cur.exponent :]) == 0:  # only zeros beyond the exponent
        head += " (trailing zeros count: amounts are never rounded or trimmed)"
    return head
