"""The Stripe connector's SetupIntent operation against localstripe (the official SDK over
HTTP on 127.0.0.1): a card saved for a customer without a charge, a card that needs 3-D
Secure, a decline, and the saved card then charged off-session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from paymux.gateways.base import AuthorizeRequest, GatewayStatus, SetupRequest
from paymux.gateways.stripe import StripeGateway
from paymux.money import Money
from support.sandboxes import LocalStripe

T = TypeVar("T")


def run(localstripe: LocalStripe, call: Callable[[StripeGateway], Awaitable[T]]) -> T:
    async def go() -> T:
        gateway = StripeGateway("sk_test_setup", api_base=localstripe.url)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


async def _card(g: StripeGateway, number: str) -> str:
    """A PaymentMethod for a test number (localstripe knows few ``pm_card_*`` shortcuts)."""
    pm = await g._client.v1.payment_methods.create_async(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    return str(pm.id)


async def _customer(g: StripeGateway, ref: str) -> str:
    return await g.create_customer(ref, "saver@example.com", idempotency_key=f"{ref}:customer")


def test_a_card_is_saved_for_the_customer_then_charged_off_session(
    localstripe: LocalStripe,
) -> None:
    async def flow(g: StripeGateway) -> tuple[str, object, object]:
        customer = await _customer(g, "cus_setup1")
        pm = await g.describe_payment_method("pm_card_visa")
        assert pm is not None
        saved = await g.setup(
            SetupRequest(payment_method_token=pm.token, customer_token=customer,
                         reference="seti_stripe1"),
            idempotency_key="seti_stripe1:setup:1")
        assert saved.card is not None
        paid = await g.authorize(
            AuthorizeRequest(amount=Money(1200, "USD"), payment_method_token=saved.card.token,
                             capture=True, reference="pi_after_setup", customer_token=customer,
                             off_session=True),
            idempotency_key="pi_after_setup:authorize:1")
        attached = await g._client.v1.payment_methods.retrieve_async(saved.card.token)
        return customer, (saved, paid), attached.customer

    customer, (saved, paid), attached_to = run(localstripe, flow)  # type: ignore[misc]
    assert saved.status is GatewayStatus.SUCCEEDED
    assert saved.reference.startswith("seti_")
    assert saved.card.last4 == "4242"
    assert attached_to == customer
    assert paid.status is GatewayStatus.SUCCEEDED
    assert paid.amount_captured == 1200


def test_a_card_that_needs_3ds_answers_requires_action(localstripe: LocalStripe) -> None:
    async def flow(g: StripeGateway) -> object:
        customer = await _customer(g, "cus_setup2")
        return await g.setup(
            SetupRequest(payment_method_token=await _card(g, "4000000000003220"), customer_token=customer,
                         reference="seti_stripe2"),
            idempotency_key="seti_stripe2:setup:1")

    result = run(localstripe, flow)
    assert result.status is GatewayStatus.REQUIRES_ACTION  # type: ignore[attr-defined]
    assert result.next_action["type"] == "use_stripe_sdk"  # type: ignore[attr-defined]
    assert result.next_action["client_secret"].startswith(  # type: ignore[attr-defined]
        result.reference)  # type: ignore[attr-defined]
    assert result.card is None  # type: ignore[attr-defined]


def test_a_declined_card_is_a_decline_not_an_error(localstripe: LocalStripe) -> None:
    async def flow(g: StripeGateway) -> object:
        customer = await _customer(g, "cus_setup3")
        return await g.setup(
            SetupRequest(payment_method_token=await _card(g, "4000000000000002"), customer_token=customer,
                         reference="seti_stripe3"),
            idempotency_key="seti_stripe3:setup:1")

    result = run(localstripe, flow)
    assert result.status is GatewayStatus.FAILED  # type: ignore[attr-defined]
    assert result.decline.gateway_code == "generic_decline"  # type: ignore[attr-defined]
