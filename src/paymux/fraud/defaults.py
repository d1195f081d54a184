"""Built-in rules, on unless the operator turns them off (``PAYMUX_FRAUD_DEFAULTS=false``
or per rule with ``PAYMUX_FRAUD_DISABLED_DEFAULTS``).

Card-testing defence: a card tester runs many small authorizations, most declined, from one
IP or over many cards. The thresholds (stated in docs/fraud.md):

- ``card_testing_ip``: 5 or more declines from one IP in the last 10 minutes blocks every
  further payment from that IP. Declines are the issuers' (an attempt still waiting for its
  answer counts as one meanwhile: velocity.py); a block is not a decline, so the block ends
  10 minutes after the fifth decline however often the address keeps trying (an address
  shared by many payers is not locked out for good).
- ``card_testing_cards``: 3 or more declines and 5 or more distinct cards from one IP in the
  last hour blocks it (a slower attack spread over cards).
- ``card_testing_card``: 10 or more declines on one card in the last day blocks that card.

Known-bad lists: a card fingerprint, email, IP address, card country or card BIN on the
account's block list of that alias (``@blocked_card_fingerprints`` ...: create a value list
with the alias to use one; until then it is empty) blocks. The BIN is known where the
gateway says it (the sandbox, Square, PayPal; never Stripe): a payment with no BIN is never
blocked by ``@blocked_bins``.

Default rules run after the account's own rules of the same action, so an account's
``allow`` rule still wins over them (Radar's order: allow before block).
"""

from __future__ import annotations

from typing import Final

from paymux.fraud.evaluate import CompiledRule, compile_rule
from paymux.fraud.language import parse_rule

__all__ = ["BLOCK_LISTS", "DEFAULT_RULES", "default_rules"]

# The built-in block lists: alias -> Stripe's value list item type.
BLOCK_LISTS: Final = {
    "blocked_card_fingerprints": "card_fingerprint",
    "blocked_emails": "email",
    "blocked_ips": "ip_address",
    "blocked_countries": "country",
    "blocked_bins": "card_bin",
}

DEFAULT_RULES: Final = {
    "card_testing_ip": "block if :declines_per_ip_10m: >= 5",
    "card_testing_cards": (
        "block if :declines_per_ip_hourly: >= 3 and :distinct_cards_per_ip_hourly: >= 5"
    ),
    "card_testing_card": "block if :declines_per_card_fingerprint_daily: >= 10",
    "blocked_card_fingerprints": "block if :card_fingerprint: in @blocked_card_fingerprints",
    "blocked_emails": "block if :email: in @blocked_emails",
    "blocked_ips": "block if :ip_address: in @blocked_ips",
    "blocked_countries": "block if :card_country: in @blocked_countries",
    "blocked_bins": "block if :card_bin: in @blocked_bins",
}
# After any account rule (priorities of account rules are 0..1_000_000).
_DEFAULT_PRIORITY: Final = 10_000_000

_COMPILED: Final = {
    name: compile_rule(parse_rule(text), id=f"default:{name}", priority=_DEFAULT_PRIORITY + i)
    for i, (name, text) in enumerate(DEFAULT_RULES.items())
}


def default_rules(
    *, enabled: bool = True, disabled: frozenset[str] = frozenset()
) -> list[CompiledRule]:
    if not enabled:
        return []
    return [rule for name, rule in _COMPILED.items() if name not in disabled]
