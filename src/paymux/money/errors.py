"""Exceptions raised by :mod:`paymux.money`.

There is one root, :class:`MoneyError`, a :class:`ValueError`::

    ValueError
    └── MoneyError                 code "parameter_invalid"
        ├── UnknownCurrencyError   code "currency_unknown"
        ├── InvalidAmountError     code "amount_invalid"
        ├── AmountPrecisionError   code "amount_too_precise"
        └── CurrencyMismatchError  code "currency_mismatch"

Every class has a stable machine ``code`` (a class attribute) that names a row of
``paymux.domain.errors.ERRORS``, so the API layer can turn any ``MoneyError`` into an error
response without knowing the subclass. Each instance may also carry ``param``: the name of
the request parameter at fault (``"amount"`` or ``"currency"``), or ``None`` where no single
parameter is to blame. The message (``str(error)``) is for developers: it names the currency
and its minor unit where they matter, e.g. ``"JPY has no minor unit; '10.5' has 1 decimal
place"``.

This module is pure: it imports nothing outside the standard library.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AmountPrecisionError",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "MoneyError",
    "UnknownCurrencyError",
]


class MoneyError(ValueError):
    """Root of every error raised by :mod:`paymux.money`.

    ``code`` is a stable machine code (one of ``paymux.domain.errors.ERRORS``); ``param`` names
    the offending request parameter, if any.
    """

    code: ClassVar[str] = "parameter_invalid"
    param: str | None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    @property
    def message(self) -> str:
        """The developer-facing message (the same as ``str(error)``)."""
        return str(self.args[0]) if self.args else ""


class UnknownCurrencyError(MoneyError):
    """The currency is not an active ISO 4217 currency with a minor unit (or not a str)."""

    code: ClassVar[str] = "currency_unknown"


class InvalidAmountError(MoneyError):
    """The amount is not acceptable: a bool, a float, a Decimal, a malformed string...

    ``Money`` amounts are ``int`` minor units; decimal strings go through ``Money.parse``.
    """

    code: ClassVar[str] = "amount_invalid"


class AmountPrecisionError(MoneyError):
    """A decimal string has more fractional digits than the currency's minor unit allows.

    Amounts are never rounded, and trailing zeros count: ``"10.500"`` is an error for USD.
    """

    code: ClassVar[str] = "amount_too_precise"


class CurrencyMismatchError(MoneyError):
    """Two amounts in different currencies were added, subtracted or compared."""

    code: ClassVar[str] = "currency_mismatch"
