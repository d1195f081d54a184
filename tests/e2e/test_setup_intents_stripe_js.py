"""Stripe's card setup confirmed by Stripe.js (the hosted page's and paymux.js's flow), at
the Stripe connector, against localstripe over HTTP on 127.0.0.1: ``setup`` without a card
makes Stripe's SetupIntent only and answers its secret; what Stripe.js then does is played
here as localstripe's fake Stripe.js sends it (its confirm with ``payment_method_data``, the
publishable key and the secret; its cancel for a failed challenge); ``retrieve_setup`` reads
the outcome from Stripe and attaches the one PaymentMethod Stripe.js made, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from paymux.gateways.base import GatewayStatus, SetupRequest, SetupResult
from paymux.gateways.stripe import StripeGateway
from support.keys import random_token
from support.sandboxes import LocalStripe

T = TypeVar("T")
SECRET = "sk_test_stripe_js_setup"


def run(localstripe: LocalStripe, call: Callable[[StripeGateway], Awaitable[T]]) -> T:
    async def go() -> T:
        gateway = StripeGateway(SECRET, api_base=localstripe.url)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def stripe_js(localstripe: LocalStripe, secret: str, step: str, number: str = "") -> int:
    """What localstripe's Stripe.js posts for confirmCardSetup: ``confirm`` with the card
    (``payment_method_data``), then ``confirm`` again (challenge passed) or ``cancel``
    (failed). Answers the HTTP status."""
    seti = secret.split("_secret_")[0]
    body: dict[str, Any] = {"key": "pk_test_x", "use_stripe_sdk": True, "client_secret": secret}
    if number:
        body["payment_method_data"] = {
            "type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "34", "cvc": "123"},
            "billing_details": {"address": {"postal_code": "10001"}},
        }
    r = httpx.post(f"{localstripe.url}/v1/setup_intents/{seti}/{step}",
                   content=json.dumps(body), timeout=10)
    return r.status_code


def cards_of(localstripe: LocalStripe, customer: str) -> list[str]:
    r = httpx.get(f"{localstripe.url}/v1/payment_methods",
                  params={"customer": customer, "type": "card"},
                  headers={"authorization": f"Bearer {SECRET}"}, timeout=10)
    assert r.status_code == 200, r.text
    return [str(pm["id"]) for pm in r.json()["data"]]


def opened(localstripe: LocalStripe) -> tuple[str, str, SetupResult]:
    """A customer at Stripe and a setup made without a card: (customer, our id, result)."""
    ours = random_token("seti_", 14)

    async def flow(g: StripeGateway) -> tuple[str, SetupResult]:
        customer = await g.create_customer(ours, "js@example.com",
                                           idempotency_key=f"{ours}:customer")
        result = await g.setup(
            SetupRequest(payment_method_token="", customer_token=customer, reference=ours),
            idempotency_key=f"{ours}:setup:1")
        return customer, result

    customer, result = run(localstripe, flow)
    return customer, ours, result


def read(localstripe: LocalStripe, reference: str, key: str) -> SetupResult:
    return run(localstripe, lambda g: g.retrieve_setup(reference, idempotency_key=key))


def test_a_setup_without_a_card_hands_stripe_js_the_secret(localstripe: LocalStripe) -> None:
    customer, ours, result = opened(localstripe)
    assert result.status is GatewayStatus.REQUIRES_ACTION
    assert result.reference is not None and result.reference.startswith("seti_")
    action = result.next_action or {}
    assert action["type"] == "use_stripe_sdk"
    assert action["client_secret"].startswith(f"{result.reference}_secret_")
    # Nothing confirmed at Stripe yet: the payer has not entered a card.
    waiting = read(localstripe, result.reference, f"{ours}:attach:1")
    assert waiting.status is GatewayStatus.OPEN and waiting.card is None
    assert cards_of(localstripe, customer) == []


def test_stripe_js_saves_the_card_and_the_read_attaches_that_one_only(
    localstripe: LocalStripe,
) -> None:
    customer, ours, result = opened(localstripe)
    assert result.reference is not None
    assert stripe_js(localstripe, (result.next_action or {})["client_secret"], "confirm",
                     "4242424242424242") == 200
    first = read(localstripe, result.reference, f"{ours}:attach:1")
    assert first.status is GatewayStatus.SUCCEEDED
    assert first.card is not None and first.card.last4 == "4242"
    assert first.card.token.startswith("pm_")
    # Read again (the webhook's job after the payer's return): the same PaymentMethod, and
    # still the only one at Stripe for the customer.
    again = read(localstripe, result.reference, f"{ours}:attach:1")
    assert again.card is not None and again.card.token == first.card.token
    assert cards_of(localstripe, customer) == [first.card.token]


def test_a_challenge_waits_then_passes(localstripe: LocalStripe) -> None:
    customer, ours, result = opened(localstripe)
    assert result.reference is not None
    secret = (result.next_action or {})["client_secret"]
    assert stripe_js(localstripe, secret, "confirm", "4000002760003184") == 200
    waiting = read(localstripe, result.reference, f"{ours}:attach:1")
    assert waiting.status is GatewayStatus.REQUIRES_ACTION and waiting.card is None
    assert stripe_js(localstripe, secret, "confirm") == 200  # "Complete authentication"
    done = read(localstripe, result.reference, f"{ours}:attach:1")
    assert done.status is GatewayStatus.SUCCEEDED and done.card is not None
    assert done.card.last4 == "3184"
    assert cards_of(localstripe, customer) == [done.card.token]


def test_a_failed_challenge_is_a_failed_attempt_not_a_canceled_intent(
    localstripe: LocalStripe,
) -> None:
    """localstripe cancels the SetupIntent of a failed challenge (Stripe answers
    requires_payment_method): paymux never cancels one at Stripe, so it is read as the
    attempt's failure, and the payer may try another card."""
    customer, ours, result = opened(localstripe)
    assert result.reference is not None
    secret = (result.next_action or {})["client_secret"]
    assert stripe_js(localstripe, secret, "confirm", "4000002760003184") == 200
    assert stripe_js(localstripe, secret, "cancel") == 200  # "Fail authentication"
    failed = read(localstripe, result.reference, f"{ours}:attach:1")
    assert failed.status is GatewayStatus.FAILED
    assert failed.decline is not None and failed.decline.gateway_code == "generic_decline"
    assert failed.card is None
    assert cards_of(localstripe, customer) == []


def test_a_declined_card_is_a_failed_attempt_and_nothing_is_attached(
    localstripe: LocalStripe,
) -> None:
    customer, ours, result = opened(localstripe)
    assert result.reference is not None
    secret = (result.next_action or {})["client_secret"]
    assert stripe_js(localstripe, secret, "confirm", "4000000000000002") == 402
    failed = read(localstripe, result.reference, f"{ours}:attach:1")
    assert failed.status is GatewayStatus.FAILED and failed.decline is not None
    assert cards_of(localstripe, customer) == []
