"""The pure parts of Stripe's card setup confirmed by Stripe.js: the SetupResult of a
SetupIntent made without a card, of one canceled at Stripe, and which SetupIntents are
handed to Stripe.js."""

from __future__ import annotations

from paymux.gateways.base import GatewayStatus
from paymux.gateways.stripe import transformers
from paymux.services.setup_intents import _browser_confirms
from paymux.storage.models import SetupIntent


def test_a_setup_made_without_a_card_waits_for_stripe_js_with_its_secret() -> None:
    got = transformers.browser_setup_result(
        {"id": "seti_A", "status": "requires_payment_method", "client_secret": "seti_A_secret_b"}
    )
    assert got.status is GatewayStatus.REQUIRES_ACTION
    assert got.reference == "seti_A"
    assert got.next_action == {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "confirm_card_setup"},
        "client_secret": "seti_A_secret_b",
    }
    assert got.card is None and got.decline is None
    assert got.raw == {"id": "seti_A", "status": "requires_payment_method"}


def test_a_setup_canceled_at_stripe_is_a_failed_attempt() -> None:
    got = transformers.canceled_setup_result({"id": "seti_B", "status": "canceled"})
    assert got.status is GatewayStatus.FAILED
    assert got.reference == "seti_B"
    assert got.decline is not None
    assert got.decline.gateway_code == "generic_decline"
    assert got.decline.message == "The card could not be set up: Stripe canceled it."
    assert got.raw == {"id": "seti_B", "status": "canceled"}


def test_a_canceled_setup_keeps_stripe_s_own_error_when_it_gives_one() -> None:
    got = transformers.canceled_setup_result(
        {
            "id": "seti_C",
            "status": "canceled",
            "last_setup_error": {
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
        }
    )
    assert got.decline is not None
    assert (got.decline.gateway_code, got.decline.message) == (
        "insufficient_funds",
        "Your card has insufficient funds.",
    )


def test_only_a_stripe_card_setup_is_handed_to_stripe_js() -> None:
    assert _browser_confirms(SetupIntent(gateway="stripe", payment_method_types=None))
    assert _browser_confirms(SetupIntent(gateway="stripe", payment_method_types=["card"]))
    assert not _browser_confirms(SetupIntent(gateway="stripe", payment_method_types=["paypal"]))
    assert not _browser_confirms(SetupIntent(gateway="sandbox", payment_method_types=["card"]))
    assert not _browser_confirms(SetupIntent(gateway="paypal", payment_method_types=None))
