"""The risk score (0-100) and level of a payment: a small additive model, documented in
docs/fraud.md, so an operator can predict it and write rules against it.

Points, each counted once, summed and capped at 100:

- card country differs from IP country (both known): 20
- disposable email domain: 25
- CVC check failed: 30; postal code check failed: 10
- declines from this IP in the last hour: 5 each, at most 25
- distinct cards from this IP in the last hour beyond the first two: 5 each, at most 20
- declines on this card in the last day: 5 each, at most 15
- amount above 1,000 US dollars: 10
- a customer made less than a day ago, or none: 5

A gateway's own risk output for this payment comes after the decision, so it is not in the
score; a rule can name the card's earlier one (``:gateway_risk_level:``). Levels as
Stripe's: ``highest`` from 75, ``elevated`` from 65, else ``normal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = ["ELEVATED_FROM", "HIGHEST_FROM", "risk_level", "risk_score"]

ELEVATED_FROM: Final = 65
HIGHEST_FROM: Final = 75


def _count(facts: Mapping[str, Any], name: str) -> int:
    value = facts.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def risk_score(facts: Mapping[str, Any]) -> int:
    points = 0
    card_country, ip_country = facts.get("card_country"), facts.get("ip_country")
    if card_country and ip_country and str(card_country).upper() != str(ip_country).upper():
        points += 20
    if facts.get("is_disposable_email") is True:
        points += 25
    if facts.get("cvc_check") == "fail":
        points += 30
    if facts.get("address_zip_check") == "fail":
        points += 10
    points += min(25, 5 * _count(facts, "declines_per_ip_hourly"))
    points += min(20, 5 * max(0, _count(facts, "distinct_cards_per_ip_hourly") - 2))
    points += min(15, 5 * _count(facts, "declines_per_card_fingerprint_daily"))
    usd = facts.get("amount_in_usd")
    if isinstance(usd, (int, Decimal)) and not isinstance(usd, bool) and usd > 1000:
        points += 10
    age = facts.get("customer_age_days")
    if not isinstance(age, int) or age < 1:
        points += 5
    return min(100, points)


def risk_level(score: int) -> str:
    if score >= HIGHEST_FROM:
        return "highest"
    return "elevated" if score >= ELEVATED_FROM else "normal"
