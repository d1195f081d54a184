"""Merchant-initiated charges flagged per gateway (issue 12 section 3): a subscription's
invoice charged off session is RECURRING (``AuthorizeRequest.recurring``); PayPal's
``stored_credential`` says so (else UNSCHEDULED), Stripe's ``off_session`` and Square's
``customer_initiated: false`` say merchant-initiated, and Square asks no buyer verification
of a merchant-initiated charge. The values PayPal takes are read from its published spec
(checkout_orders_v2, as start-sandboxes.sh prepares it under $SANDBOX_HOME/specs); expected
bodies are written out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import sandboxes_required
from paymux.gateways.base import AuthorizeRequest
from paymux.gateways.paypal import transformers as paypal
from paymux.gateways.square import transformers as square
from paymux.gateways.stripe import transformers as stripe
from paymux.money import Money
from paymux.services.attempts import authorize_request
from paymux.services.three_d_secure import is_recurring
from paymux.storage.models import PaymentIntent
from support.sandboxes import sandbox_home


def spec_schemas(name: str) -> dict[str, Any]:
    """The components of a prepared spec (paypal.json prefixes each with its source spec)."""
    path = sandbox_home() / "specs" / f"{name}.json"
    if not path.exists():
        if sandboxes_required():
            pytest.fail(f"{path} missing (start-sandboxes.sh install)")
        pytest.skip(f"{path} missing")
    spec = json.loads(path.read_text())
    schemas: dict[str, Any] = spec.get("definitions") or spec["components"]["schemas"]
    return schemas


def request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(1000, "USD"),
        "payment_method_token": "tok",
        "capture": True,
        "reference": "pi_123",
    }
    values.update(fields)
    return AuthorizeRequest(**values)


@pytest.mark.parametrize(
    ("off_session", "invoice_id", "expected"),
    [
        (True, "in_1", True),  # billing's renewal (or its retry): recurring
        (True, None, False),  # the merchant's own off-session charge: unscheduled
        (False, "in_1", False),  # the payer pays the invoice on its page: customer-initiated
        (False, None, False),
    ],
)
def test_an_invoice_charged_off_session_is_recurring(
    off_session: bool, invoice_id: str | None, expected: bool
) -> None:
    pi = PaymentIntent(id="pi_1", gateway="paypal", off_session=off_session, invoice_id=invoice_id)
    assert is_recurring(pi) is expected


def test_the_confirmations_gateway_request_carries_the_flag() -> None:
    """services/attempts.py builds every authorize request (first try and recovery) from the
    intent: a renewal's says recurring and off session, a payer's says neither."""
    renewal = PaymentIntent(id="pi_r", gateway="paypal", amount=1000, currency="usd",
                            off_session=True, invoice_id="in_1", capture_method="automatic")
    built = authorize_request(renewal, "card:v1", "cus_1", None, "120242545218431")
    assert (built.off_session, built.recurring) == (True, True)
    assert built.network_transaction_id == "120242545218431"
    payer = PaymentIntent(id="pi_p", gateway="paypal", amount=1000, currency="usd",
                          off_session=False, invoice_id="in_1", capture_method="automatic")
    built = authorize_request(payer, "card:v1", "cus_1", None, "120242545218431")
    assert (built.off_session, built.recurring, built.network_transaction_id) == (
        False, False, None)


def _stored(req: AuthorizeRequest) -> dict[str, Any]:
    body = paypal.vault_order_request(req, "card", "v1")
    stored: dict[str, Any] = body["payment_source"]["card"]["stored_credential"]
    return stored


def test_paypal_renewal_is_merchant_initiated_recurring_subsequent() -> None:
    renewal = request(off_session=True, recurring=True, network_transaction_id="120242545218431")
    assert _stored(renewal) == {
        "payment_initiator": "MERCHANT",
        "payment_type": "RECURRING",
        "usage": "SUBSEQUENT",
        "previous_network_transaction_reference": {"id": "120242545218431"},
    }
    unscheduled = request(off_session=True)
    assert _stored(unscheduled) == {
        "payment_initiator": "MERCHANT",
        "payment_type": "UNSCHEDULED",
        "usage": "SUBSEQUENT",
    }
    # Never RECURRING with the payer present (a stray flag on an on-session request).
    assert _stored(request(recurring=True))["payment_type"] == "UNSCHEDULED"
    assert _stored(request(recurring=True))["payment_initiator"] == "CUSTOMER"


def test_paypals_spec_takes_the_values_sent() -> None:
    schemas = spec_schemas("paypal")
    fields = schemas["checkout_orders_v2__card_stored_credential"]["properties"]
    assert set(fields) >= {"payment_initiator", "payment_type", "usage"}

    def enum(name: str) -> list[str]:
        ref = fields[name]["$ref"].rsplit("/", 1)[1]
        values: list[str] = schemas[ref]["enum"]
        return values

    for req in (request(off_session=True, recurring=True), request(off_session=True), request()):
        stored = _stored(req)
        for name in ("payment_initiator", "payment_type", "usage"):
            assert stored[name] in enum(name), (name, stored[name])


def test_stripe_renewal_is_off_session_without_3ds_options() -> None:
    renewal = request(off_session=True, recurring=True)
    assert stripe.confirm_params(renewal) == {"payment_method": "tok", "off_session": True}
    _, confirm = stripe.update_then_confirm_params(renewal)
    assert confirm == {"off_session": True}


def test_square_renewal_is_not_customer_initiated_and_needs_no_verification() -> None:
    renewal = request(off_session=True, recurring=True, customer_token="C1")
    params = square.create_payment_params(renewal, location_id="L1", idempotency_key="k")
    assert params["customer_details"] == {"customer_initiated": False}
    assert "verification_token" not in params
    # Even were 3-D Secure asked (the rules never ask off session), a merchant-initiated
    # charge is not refused for want of a verifyBuyer token: no buyer is there.
    asked = request(off_session=True, recurring=True, request_three_d_secure="any")
    assert square.verification_missing(asked) is None
    # On session the ask still needs the token.
    assert square.verification_missing(request(request_three_d_secure="any")) is not None
    # CreatePayment's customer_details takes customer_initiated (Square's spec).
    schemas = spec_schemas("square")
    assert "customer_initiated" in schemas["CustomerDetails"]["properties"]
    assert "customer_details" in schemas["CreatePaymentRequest"]["properties"]
