"""The payments page's filters, read from its query string (pure: no I/O).

Every field is optional. ``status`` is a payment intent status, or ``failed``: waiting for a
payment method after a decline (``requires_payment_method`` with a ``last_payment_error``).
Amounts are decimal major units of ``currency`` (``"10.50"``), so an amount filter needs a
currency. Dates are ``YYYY-MM-DD`` (UTC, both ends included). ``metadata`` is
``key=value``. A bad value is reported in ``errors`` (field -> message) and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from paymux.domain.states import PaymentIntentStatus
from paymux.gateways.connectors import connectors
from paymux.money import Money
from paymux.money.errors import MoneyError
from paymux.services.payment_reads import FAILED, PaymentSearch

__all__ = ["FAILED", "STATUSES", "PaymentFilters", "gateways", "parse_filters"]

STATUSES = (FAILED, *(s.value for s in PaymentIntentStatus))
MAX_AMOUNT = 999_999_999_999  # minor units (as billing's); far inside a database bigint
_ID = re.compile(r"[A-Za-z0-9_]{1,40}")
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
FIELDS = (
    "status",
    "currency",
    "gateway",
    "customer",
    "amount_min",
    "amount_max",
    "created_from",
    "created_to",
    "metadata",
)


@dataclass(frozen=True)
class PaymentFilters(PaymentSearch):
    """The search (``PaymentSearch``: currency upper case, as stored; amounts minor units;
    dates epoch seconds), and the form's own state."""

    # What the form shows back (the raw values) and what was wrong with them.
    raw: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, **extra: str) -> str:
        """The query string of these filters (for the pager's links), plus ``extra``."""
        values = {k: v for k, v in self.raw.items() if v}
        values.update(extra)
        return urlencode(values)


def gateways() -> tuple[str, ...]:
    """The gateways a payment can be filtered by: every connector this build has (a plugin's
    too: adding a gateway touches no dashboard file), by name."""
    return tuple(sorted(connectors()))


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def parse_filters(query: Mapping[str, str]) -> PaymentFilters:
    raw = {k: str(query.get(k) or "").strip()[:200] for k in FIELDS}
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    status = raw["status"]
    if status:
        if status in STATUSES:
            values["status"] = status
        else:
            errors["status"] = "Pick a status from the list."
    currency = raw["currency"].lower()
    if currency:
        try:
            values["currency"] = Money(0, currency).currency
        except MoneyError:
            errors["currency"] = "Unknown currency code (ISO 4217, such as EUR)."
    gateway = raw["gateway"]
    if gateway:
        if gateway in gateways():
            values["gateway"] = gateway
        else:
            errors["gateway"] = "Pick a gateway from the list."
    customer = raw["customer"]
    if customer:
        if _ID.fullmatch(customer):
            values["customer"] = customer
        else:
            errors["customer"] = "A customer id looks like cus_..."
    for name in ("amount_min", "amount_max"):
        amount = raw[name]
        if not amount:
            continue
        if "currency" not in values:
            errors[name] = "Choose a currency to filter by amount."
            continue
        try:
            minor = Money.parse(amount, str(values["currency"])).amount
        except MoneyError:
            errors[name] = "An amount such as 10.50."
            continue
        if not 0 <= minor <= MAX_AMOUNT:
            errors[name] = f"An amount from 0 to {MAX_AMOUNT:,} minor units."
        else:
            values[name] = minor
    dates = (("created_from", "created_gte", False), ("created_to", "created_lte", True))
    for name, key, last in dates:
        if not raw[name]:
            continue
        day = _day(raw[name])
        if day is None:
            errors[name] = "A date such as 2026-12-01."
        else:
            values[key] = _epoch(day) + (86_399 if last else 0)
    metadata = raw["metadata"]
    if metadata:
        key, sep, value = metadata.partition("=")
        if sep and _KEY.fullmatch(key.strip()):
            values["metadata_key"], values["metadata_value"] = key.strip(), value.strip()
        else:
            errors["metadata"] = "Write key=value, such as order_id=1234."
    return PaymentFilters(raw=raw, errors=errors, **values)  # type: ignore[arg-type]
