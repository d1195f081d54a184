"""The facts of one payment, under the names rules use (``attributes.py``): pure functions
of the intent, its payment method, its customer, the payer's request and the velocity
counts. A fact the payment doesn't have is left out (``is_missing`` is true for it).

``amount_in_usd`` uses the operator's rate table (``PAYMUX_FRAUD_USD_RATES``: US dollars per
one unit of a currency); a currency without a rate has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from disposable_email_domains import blocklist as _DISPOSABLE

from paymux.fraud.request import PayerRequest
from paymux.money.currencies import CURRENCIES

__all__ = ["amount_in_usd", "email_domain", "facts_of", "parse_usd_rates"]

_DAY_US: Final = 86_400 * 1_000_000


@lru_cache(maxsize=8)
def parse_usd_rates(text: str) -> dict[str, Decimal]:
    """``'EUR=1.08,GBP=1.27'`` -> {EUR: 1.08, GBP: 1.27, USD: 1}; a malformed entry is a
    ValueError naming it (the settings are read at start, so it fails then)."""
    rates = {"USD": Decimal(1)}
    for item in text.split(","):
        if not item.strip():
            continue
        code, _, rate = item.partition("=")
        try:
            value = Decimal(rate.strip())
        except InvalidOperation:
            raise ValueError(f"PAYMUX_FRAUD_USD_RATES: {item.strip()!r} is not CODE=RATE") from None
        if not value.is_finite() or value <= 0 or code.strip().upper() not in CURRENCIES:
            raise ValueError(f"PAYMUX_FRAUD_USD_RATES: {item.strip()!r} is not CODE=RATE")
        rates[code.strip().upper()] = value
    return rates


def amount_in_usd(amount: int, currency: str, rates: Mapping[str, Decimal]) -> Decimal | None:
    """The amount in US dollars (exact decimal, to the cent, rounded half-even)."""
    rate = rates.get(currency.upper())
    found = CURRENCIES.get(currency.upper())
    if rate is None or found is None:
        return None
    major = Decimal(amount) / found.minor_units_per_major
    return (major * rate).quantize(Decimal("0.01"))


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def _put(facts: dict[str, Any], name: str, value: Any) -> None:
    if value is not None and value != "":
        facts[name] = value


def facts_of(
    *,
    amount: int,
    currency: str,
    livemode: bool,
    off_session: bool | None,
    card: Mapping[str, Any],
    billing_country: str | None,
    shipping_country: str | None,
    customer_id: str | None,
    customer_email: str | None,
    customer_created_us: int | None,
    payer: PayerRequest,
    ip_country: str | None,
    velocity: Mapping[str, int | str],
    rates: Mapping[str, Decimal],
    now_us: int,
) -> dict[str, Any]:
    """The facts for the rules; ``card`` holds brand, funding, country, fingerprint, bin,
    cvc_check, address_line1_check, address_zip_check (any may be missing)."""
    facts: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "livemode": livemode,
        "is_off_session": bool(off_session),
    }
    _put(facts, "amount_in_usd", amount_in_usd(amount, currency, rates))
    for name in ("brand", "funding", "country", "fingerprint", "bin"):
        _put(facts, f"card_{name}", card.get(name))
    for name in ("cvc_check", "address_line1_check", "address_zip_check"):
        _put(facts, name, card.get(name))
    _put(facts, "ip_address", payer.ip_address)
    _put(facts, "ip_country", ip_country or payer.ip_country)
    _put(facts, "user_agent", payer.user_agent)
    _put(facts, "email", customer_email.strip().lower() if customer_email else None)
    domain = email_domain(customer_email)
    _put(facts, "email_domain", domain)
    if domain is not None:
        facts["is_disposable_email"] = domain in _DISPOSABLE
    _put(facts, "customer", customer_id)
    if customer_created_us is not None:
        facts["customer_age_days"] = max(0, (now_us - customer_created_us) // _DAY_US)
    _put(facts, "billing_address_country", (billing_country or "").upper() or None)
    _put(facts, "shipping_address_country", (shipping_country or "").upper() or None)
    facts.update(velocity)
    return facts
