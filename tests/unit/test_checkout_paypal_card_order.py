"""The PayPal card fields' order of the hosted checkout page: the request paymux opens it with
(transformers.card_order_request: ours by ``custom_id``, 3-D Secure as the payment asks,
SCA_WHEN_REQUIRED by default) and the connector's calls for it against the fake PayPal API on
loopback (keyed: the same key answers the same order; ``order_opened_for`` reads
``custom_id`` at PayPal)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from paymux.gateways.paypal import PayPalGateway
from paymux.gateways.paypal import transformers as paypal
from paymux.money import Money
from support.keys import random_token
from support.paypal_fake import FakePayPal

EUR_12_50 = Money(1250, "EUR")


@pytest.mark.parametrize(
    ("option", "method"),
    [
        (None, "SCA_WHEN_REQUIRED"),
        ("automatic", "SCA_WHEN_REQUIRED"),
        ("any", "SCA_ALWAYS"),
        ("challenge", "SCA_ALWAYS"),
    ],
)
def test_the_card_order_asks_3d_secure_as_the_payment_says(option: str | None, method: str) -> None:
    body = paypal.card_order_request(EUR_12_50, "pi_abc", True, option)
    assert body == {
        "intent": "CAPTURE",
        "purchase_units": [
            {"amount": {"currency_code": "EUR", "value": "12.50"}, "custom_id": "pi_abc"}
        ],
        "payment_source": {"card": {"attributes": {"verification": {"method": method}}}},
    }


def test_a_manual_capture_payments_card_order_is_authorized() -> None:
    assert paypal.card_order_request(EUR_12_50, "pi_abc", False, None)["intent"] == "AUTHORIZE"


@pytest.fixture
def fake() -> Iterator[FakePayPal]:
    server = FakePayPal("client", random_token("secret_"), "WH1").start()
    try:
        yield server
    finally:
        server.stop()


def test_the_connector_opens_one_card_order_per_key_and_reads_whose_it_is(
    fake: FakePayPal,
) -> None:
    async def go() -> tuple[str, str, str, str | None, str | None]:
        gateway = PayPalGateway("client", fake.client_secret, api_base=fake.url)
        try:
            first = await gateway.open_card_order(
                EUR_12_50, "pi_card", True, "any", idempotency_key="pi_card:open-card:0"
            )
            again = await gateway.open_card_order(
                EUR_12_50, "pi_card", True, "any", idempotency_key="pi_card:open-card:0"
            )
            later = await gateway.open_card_order(
                EUR_12_50, "pi_card", True, "any", idempotency_key="pi_card:open-card:1"
            )
            return (
                first,
                again,
                later,
                await gateway.order_opened_for(first),
                await gateway.order_opened_for("NOSUCHORDER"),
            )
        finally:
            await gateway.aclose()

    first, again, later, owner, nobody = asyncio.run(go())
    assert first == again != later  # the same key, the same order; the next try, a new one
    assert (owner, nobody) == ("pi_card", None)
    order = fake.orders[first]
    assert order["_verification"] == "SCA_ALWAYS" and order["intent"] == "CAPTURE"
    assert len(fake.orders) == 2
    sent = [h for m, p, h in fake.requests if (m, p) == ("POST", "/v2/checkout/orders")]
    assert [h["paypal-request-id"] for h in sent] == [
        "pi_card:open-card:0",
        "pi_card:open-card:0",
        "pi_card:open-card:1",
    ]
