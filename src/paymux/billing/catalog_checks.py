"""The catalog's checks of what a request asks for, beyond its types (the request models in
api/billing_schemas.py check those): each failure is a 400 with a stable code and the exact
parameter in Stripe's bracket form (``recurring[interval]``, ``tiers[1][up_to]``), so a bad
catalog never reaches the billing rules. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from paymux.billing.rules.periods import check_interval
from paymux.billing.rules.pricing import Tier, check_tiers
from paymux.domain.errors import PaymuxError
from paymux.money.currencies import get_currency
from paymux.money.errors import UnknownCurrencyError

__all__ = [
    "MAX_AMOUNT",
    "currency_code",
    "decimal_rate",
    "future_seconds",
    "invalid",
    "recurring_fields",
    "tier_rows",
    "whole_amount",
]

#: The largest unit or flat amount of a price, in minor units (Stripe's: 12 digits).
MAX_AMOUNT = 999_999_999_999


def invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


def currency_code(value: str, param: str = "currency") -> str:
    """An ISO 4217 code, lowercased as Stripe shows it."""
    try:
        return get_currency(value).code.lower()
    except UnknownCurrencyError as exc:
        raise PaymuxError.of("currency_unknown", str(exc), param=param) from None


def whole_amount(amount: int | None, decimal: str | None, param: str) -> int | None:
    """``unit_amount`` or ``unit_amount_decimal`` (Stripe's sub-cent amounts): paymux keeps
    whole minor units only, so a decimal with a fraction is refused, not rounded."""
    if amount is not None and decimal is not None:
        raise PaymuxError.of(
            "parameters_exclusive",
            f"Use {param} or {param}_decimal, not both.",
            param=f"{param}_decimal",
        )
    if decimal is not None:
        try:
            value = Decimal(decimal)
        except InvalidOperation:
            message = f"{param}_decimal must be a decimal number."
            raise invalid(message, f"{param}_decimal") from None
        if not value.is_finite() or value != value.to_integral_value():
            raise invalid(
                f"{param}_decimal must be a whole number of minor units: paymux does not bill "
                "fractions of the currency's smallest unit.",
                f"{param}_decimal",
            )
        amount, param = int(value), f"{param}_decimal"
    if amount is not None and not 0 <= amount <= MAX_AMOUNT:
        raise PaymuxError.of(
            "amount_invalid",
            f"{param} must be a whole number of minor units from 0 to {MAX_AMOUNT}.",
            param=param,
        )
    return amount


def decimal_rate(
    value: Decimal, param: str, *, places: int, low: Decimal, high: Decimal, low_open: bool
) -> str:
    """A percentage as exact decimal text (``"12.5"``): within [low, high] (low excluded
    when ``low_open``), at most ``places`` decimal places."""
    if not value.is_finite():
        raise invalid(f"{param} must be a number.", param)
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bound = f"more than {low}" if low_open else f"at least {low}"
        raise invalid(f"{param} must be {bound} and at most {high}.", param)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise invalid(f"{param} may have at most {places} decimal places.", param)
    text = format(value.normalize(), "f")
    return text


def future_seconds(value: int, now_us: int, param: str) -> int:
    """A unix time in seconds that must be in the future: as microseconds."""
    if value <= now_us // 1_000_000:
        raise invalid(f"{param} must be in the future.", param)
    if value > 253_402_300_799:  # 9999-12-31
        raise invalid(f"{param} is too far in the future.", param)
    return value * 1_000_000


def recurring_fields(recurring: Mapping[str, Any], prefix: str = "recurring") -> dict[str, Any]:
    """A price's ``recurring`` hash as its columns; the interval checked against Stripe's
    three-year limit."""
    interval = str(recurring.get("interval"))
    count = recurring.get("interval_count")
    count = 1 if count is None else count
    problem = check_interval(interval, count)
    if problem is not None:
        bad = "interval" if "interval must" in problem else "interval_count"
        raise invalid(problem, f"{prefix}[{bad}]")
    usage = recurring.get("usage_type") or "licensed"
    meter = recurring.get("meter")
    if usage == "metered" and not meter:
        raise PaymuxError.of(
            "parameter_missing",
            "A metered price needs recurring[meter]: the meter whose events it bills.",
            param=f"{prefix}[meter]",
        )
    if usage != "metered" and meter:
        raise invalid(
            "recurring[meter] goes with recurring[usage_type]=metered only.", f"{prefix}[meter]"
        )
    return {
        "recurring_interval": interval,
        "recurring_interval_count": count,
        "recurring_usage_type": usage,
        "recurring_meter_id": meter,
    }


def tier_rows(tiers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stripe's ``tiers`` as stored: [{up_to (None: "inf"), unit_amount, flat_amount}], each
    tier checked (ascending ``up_to``, only the last one "inf", an amount in each)."""
    if not tiers:
        raise PaymuxError.of("parameter_missing", "A tiered price needs tiers.", param="tiers")
    rows: list[dict[str, Any]] = []
    previous = 0
    for i, tier in enumerate(tiers):
        where = f"tiers[{i}]"
        unit = whole_amount(
            tier.get("unit_amount"), tier.get("unit_amount_decimal"), f"{where}[unit_amount]"
        )
        flat = whole_amount(
            tier.get("flat_amount"), tier.get("flat_amount_decimal"), f"{where}[flat_amount]"
        )
        if unit is None and flat is None:
            raise PaymuxError.of(
                "parameter_missing",
                f"Tier {i} needs a unit_amount or a flat_amount.",
                param=f"{where}[unit_amount]",
            )
        up_to = tier.get("up_to")
        last = i == len(tiers) - 1
        if up_to is None and not last:
            raise invalid(
                f"Only the last tier may have up_to 'inf' (tier {i} has it).", f"{where}[up_to]"
            )
        if up_to is not None and last:
            raise invalid("The last tier must have up_to 'inf'.", f"{where}[up_to]")
        if up_to is not None:
            if up_to <= previous:
                raise invalid(
                    f"Tiers must be in ascending order of up_to, each above 0 (tier {i}: "
                    f"{up_to} after {previous}).",
                    f"{where}[up_to]",
                )
            previous = up_to
        rows.append({"up_to": up_to, "unit_amount": unit, "flat_amount": flat})
    problem = check_tiers([Tier(**row) for row in rows])
    if problem is not None:  # the pricing rule's own check, should ours have missed a case
        raise invalid(problem, "tiers")
    return rows
