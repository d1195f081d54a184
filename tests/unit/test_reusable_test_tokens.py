"""Which gateway tokens every account may use (the providers' published test shortcuts) and
which belong to the account that first used them (services.customers refuses the rest)."""

from __future__ import annotations

import asyncio

import pytest

from paymux.gateways.sandbox import SandboxGateway, SandboxProcessor
from paymux.gateways.square import SquareGateway
from paymux.gateways.stripe import StripeGateway


@pytest.mark.parametrize(
    ("token", "shared"),
    [
        ("pm_card_visa", True),
        ("pm_card_chargeDeclined", True),
        ("tok_visa", True),
        ("tok_chargeDeclinedInsufficientFunds", True),
        ("pm_1OqQ2bLkdIwHu7ix0b9K1zQe", False),  # a real PaymentMethod id
        ("tok_1OqQ2bLkdIwHu7ix0b9K1zQe", False),
        ("card_1OqQ2bLkdIwHu7ix0b9K1zQe", False),
        ("pm_card_visa ", False),
    ],
)
def test_stripe_test_shortcuts_are_shared_in_test_mode_only(token: str, shared: bool) -> None:
    test = StripeGateway("sk_test_" + "x" * 24)
    live = StripeGateway("sk_live_" + "x" * 24)
    try:
        assert test.reusable_test_token(token) is shared
        assert live.reusable_test_token(token) is False
    finally:
        asyncio.run(test.aclose())
        asyncio.run(live.aclose())


def test_square_sandbox_nonces_are_shared_and_production_ones_are_not() -> None:
    sandbox = SquareGateway("EAAA-sandbox-token", location_id="L1")
    production = SquareGateway(
        "EAAA-production-token", location_id="L1", api_base="https://connect.squareup.com"
    )
    try:
        assert sandbox.reusable_test_token("cnon:card-nonce-ok") is True
        assert sandbox.reusable_test_token("cnon:card-nonce-declined") is True
        assert sandbox.reusable_test_token("cnon:CBASEGk3Rq8y4Eb7nUC4r5NrAhc") is False
        assert sandbox.reusable_test_token("ccof:customer-card-id-ok") is False
        assert production.reusable_test_token("cnon:card-nonce-ok") is False
    finally:
        asyncio.run(sandbox.aclose())
        asyncio.run(production.aclose())


def test_the_sandbox_shares_its_named_test_tokens_only() -> None:
    gateway = SandboxGateway(SandboxProcessor(":memory:"))
    assert gateway.reusable_test_token("pm_card_visa") is True
    assert gateway.reusable_test_token("pm_card_chargeDeclined") is True
    assert gateway.reusable_test_token("tok_sbx_0123456789abcdef") is False
    assert gateway.reusable_test_token("pm_card_unknown_name") is False
