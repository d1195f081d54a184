"""Money and ISO 4217 currencies. Pure: imports only the standard library and Babel.

- :class:`Money`: an ``int`` of minor units in one currency; parse decimal strings with
  :meth:`Money.parse` (never rounds), show them with :meth:`Money.to_decimal_string` or
  :meth:`Money.format` (Babel, locale-aware).
- :class:`Currency`, :data:`CURRENCIES`, :func:`get_currency`: every active ISO 4217 currency
  with a minor unit, looked up case-insensitively.
- :func:`min_charge_amount`, :func:`max_charge_amount`: charge limits in minor units.

Exceptions: one root, :class:`MoneyError` (a ``ValueError``), each class with a stable
``code`` naming a row of ``paymux.domain.errors.ERRORS`` and an optional ``param``::

    MoneyError                 "parameter_invalid"
    ├── UnknownCurrencyError   "currency_unknown"    not an active ISO 4217 code
    ├── InvalidAmountError     "amount_invalid"      bool/float/Decimal/str amount, bad string
    ├── AmountPrecisionError   "amount_too_precise"  more decimals than the currency allows
    └── CurrencyMismatchError  "currency_mismatch"   + - < <= > >= across currencies
"""

from paymux.money.currencies import (
    CURRENCIES,
    Currency,
    get_currency,
    max_charge_amount,
    min_charge_amount,
)
from paymux.money.errors import (
    AmountPrecisionError,
    CurrencyMismatchError,
    InvalidAmountError,
    MoneyError,
    UnknownCurrencyError,
)
from paymux.money.money import Money

__all__ = [
    "CURRENCIES",
    "AmountPrecisionError",
    "Currency",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "MoneyError",
    "UnknownCurrencyError",
    "get_currency",
    "max_charge_amount",
    "min_charge_amount",
]
