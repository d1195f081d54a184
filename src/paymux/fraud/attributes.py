"""The attributes a rule can name (``:amount_in_usd:``), each with its kind.

The parser checks every ``:name:`` against this table, so a misspelt attribute is a 400 when
the rule is saved, not a rule that silently never matches. ``signals.py`` fills in the facts
under these same names; a fact the payment doesn't have is absent (``is_missing`` is true and
every comparison with it is false).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["ATTRIBUTES", "VELOCITY_WINDOWS", "Kind"]


class Kind(StrEnum):
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"


# Velocity: ``:<what>_per_<key>_<window>:``, e.g. ``:declines_per_ip_hourly:``.
VELOCITY_WINDOWS: Final = {"10m": 600, "hourly": 3600, "daily": 86400}
_VELOCITY_KEYS: Final = ("card_fingerprint", "ip", "email", "customer")
_VELOCITY_WHAT: Final = ("payments", "declines", "distinct_cards")

ATTRIBUTES: Final[dict[str, Kind]] = {
    # the payment
    "amount": Kind.NUMBER,  # minor units of the payment's currency
    "amount_in_usd": Kind.NUMBER,  # US dollars (a decimal), from the operator's rate table
    "currency": Kind.STRING,
    "is_off_session": Kind.BOOLEAN,
    "livemode": Kind.BOOLEAN,
    # the card
    "card_brand": Kind.STRING,
    "card_funding": Kind.STRING,
    "card_country": Kind.STRING,
    "card_fingerprint": Kind.STRING,
    "card_bin": Kind.STRING,
    "cvc_check": Kind.STRING,
    "address_line1_check": Kind.STRING,
    "address_zip_check": Kind.STRING,
    # the request
    "ip_address": Kind.STRING,
    "ip_country": Kind.STRING,
    "user_agent": Kind.STRING,
    "email": Kind.STRING,
    "email_domain": Kind.STRING,
    "is_disposable_email": Kind.BOOLEAN,
    "customer": Kind.STRING,
    "customer_age_days": Kind.NUMBER,
    "billing_address_country": Kind.STRING,
    "shipping_address_country": Kind.STRING,
    # paymux's risk score and level (score.py), computed before the rules
    "risk_level": Kind.STRING,
    "risk_score": Kind.NUMBER,
    # the highest risk level a gateway gave a payment with this card (fingerprint) in the
    # last day: normal, elevated, highest (velocity.py; missing if none did)
    "gateway_risk_level": Kind.STRING,
    # the highest numeric risk score (0-100) a gateway gave a payment with this card in the
    # last day (Stripe's ``outcome.risk_score``, Radar's ``:risk_score:``; missing if none did)
    "gateway_risk_score": Kind.NUMBER,
}
for _what in _VELOCITY_WHAT:
    for _key in _VELOCITY_KEYS:
        if (_what, _key) == ("distinct_cards", "card_fingerprint"):
            continue  # always 1
        for _window in VELOCITY_WINDOWS:
            ATTRIBUTES[f"{_what}_per_{_key}_{_window}"] = Kind.NUMBER
