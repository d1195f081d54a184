"""Stripe's risk outputs as the Stripe connector reads them (issue 13): the expanded charge's
``outcome.risk_level`` and ``outcome.risk_score`` (Radar's numeric score, 0-100) on the
gateway result. The PaymentIntent below is written out in Stripe's documented shape (a
PaymentIntent with ``latest_charge`` expanded, its Charge's ``outcome`` as the API reference
shows it), not built with the code under test."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from paymux.gateways.base import GatewayStatus
from paymux.gateways.stripe.transformers import payment_result, risk_of_charge

PAYMENT_INTENT: dict[str, Any] = {
    "id": "pi_3QRiskScoreLkdIwH0x1a2b3c",
    "object": "payment_intent",
    "amount": 2000,
    "amount_capturable": 0,
    "amount_received": 2000,
    "capture_method": "automatic",
    "client_secret": "pi_3QRiskScoreLkdIwH0x1a2b3c_secret_abc",
    "currency": "usd",
    "last_payment_error": None,
    "livemode": False,
    "metadata": {"paymux_id": "pi_ours"},
    "next_action": None,
    "status": "succeeded",
    "latest_charge": {
        "id": "ch_3QRiskScoreLkdIwH0x9y8z7w",
        "object": "charge",
        "amount": 2000,
        "amount_captured": 2000,
        "captured": True,
        "currency": "usd",
        "paid": True,
        "status": "succeeded",
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "elevated",
            "risk_score": 67,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": "visa",
                "country": "US",
                "fingerprint": "Xt5EWLLDS7FJjR1c",
                "funding": "credit",
                "last4": "4242",
                "network_transaction_id": "123456789012345",
                "three_d_secure": None,
            },
        },
    },
}


def _with_outcome(**outcome: Any) -> dict[str, Any]:
    pi = copy.deepcopy(PAYMENT_INTENT)
    pi["latest_charge"]["outcome"].update(outcome)
    return pi


def test_the_charges_risk_level_and_score_are_on_the_result() -> None:
    result = payment_result(PAYMENT_INTENT)
    assert (result.status, result.reference) == (
        GatewayStatus.SUCCEEDED,
        "pi_3QRiskScoreLkdIwH0x1a2b3c",
    )
    assert (result.risk_level, result.risk_score) == ("elevated", 67)


def test_a_declined_charge_keeps_its_risk() -> None:
    """A charge the issuer declined carries Radar's assessment too (the next payments with
    the card are decided on it)."""
    pi = _with_outcome(
        network_status="declined_by_network",
        reason="generic_decline",
        risk_level="highest",
        risk_score=91,
        type="issuer_declined",
    )
    pi.update(
        status="requires_payment_method",
        amount_received=0,
        last_payment_error={"type": "card_error", "code": "card_declined"},
    )
    result = payment_result(pi)
    assert result.status is GatewayStatus.FAILED
    assert (result.risk_level, result.risk_score) == ("highest", 91)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ({"risk_level": "normal", "risk_score": 0}, ("normal", 0)),  # 0 is a score
        ({"risk_level": "highest", "risk_score": 100}, ("highest", 100)),
        ({"risk_level": "not_assessed", "risk_score": None}, (None, None)),
        ({"risk_level": "unknown"}, (None, 67)),
        ({"risk_score": 101}, ("elevated", None)),
        ({"risk_score": -1}, ("elevated", None)),
        ({"risk_score": "67"}, ("elevated", None)),
        ({"risk_score": 67.0}, ("elevated", None)),
        ({"risk_score": True}, ("elevated", None)),
    ],
)
def test_what_is_not_a_level_or_a_whole_score_from_0_to_100_is_none(
    outcome: dict[str, Any], expected: tuple[str | None, int | None]
) -> None:
    assert risk_of_charge(_with_outcome(**outcome)) == expected


def test_a_charge_named_by_id_or_without_an_outcome_says_nothing() -> None:
    by_id = copy.deepcopy(PAYMENT_INTENT)
    by_id["latest_charge"] = "ch_3QRiskScoreLkdIwH0x9y8z7w"  # Search, List and webhooks
    no_outcome = copy.deepcopy(PAYMENT_INTENT)
    del no_outcome["latest_charge"]["outcome"]  # localstripe's charges
    opened = {**copy.deepcopy(PAYMENT_INTENT), "latest_charge": None}
    for pi in (by_id, no_outcome, opened):
        result = payment_result(pi)
        assert (result.risk_level, result.risk_score) == (None, None)
