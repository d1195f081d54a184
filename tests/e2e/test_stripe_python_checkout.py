"""stripe-python drives Checkout Sessions (SQLite and PostgreSQL): create, retrieve, list,
list_line_items and expire, the objects typed as the SDK types them; an error as the SDK's
InvalidRequestError with its code and param."""

from __future__ import annotations

import uuid

import pytest
import stripe

from conftest import RunningServer


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0
    )


def test_create_retrieve_list_line_items_and_expire(
    sdk: stripe.StripeClient, server: RunningServer
) -> None:
    made = sdk.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": "https://shop.example/ok?cs={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.example/cart",
            "line_items": [
                {"price_data": {"currency": "eur", "unit_amount": 1250,
                                "product_data": {"name": "Book"}}, "quantity": 2},
            ],
            "metadata": {"order": "42"},
        },
        options={"idempotency_key": f"py-{uuid.uuid4()}"},
    )
    assert isinstance(made, stripe.checkout.Session)
    assert (made.object, made.mode, made.status, made.payment_status) == (
        "checkout.session", "payment", "open", "unpaid")
    assert (made.amount_total, made.currency) == (2500, "eur")
    assert made.url == f"{server.url}/c/pay/{made.id}"
    assert made.metadata is not None and made.metadata.to_dict() == {"order": "42"}

    got = sdk.v1.checkout.sessions.retrieve(made.id)
    assert got.id == made.id and got.payment_intent == made.payment_intent

    items = sdk.v1.checkout.sessions.line_items.list(made.id)
    [item] = items.data
    assert isinstance(item, stripe.LineItem)
    assert (item.description, item.quantity, item.amount_total) == ("Book", 2, 2500)

    listed = sdk.v1.checkout.sessions.list(params={"status": "open", "limit": 5})
    assert [s.id for s in listed.data] == [made.id]

    expired = sdk.v1.checkout.sessions.expire(made.id)
    assert (expired.status, expired.url) == ("expired", None)
    pi = sdk.v1.payment_intents.retrieve(str(made.payment_intent))
    assert pi.status == "canceled"


def test_a_bad_request_is_the_sdks_invalid_request_error(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.checkout.sessions.create(params={
            "mode": "payment",
            "success_url": "https://shop.example/ok",
            "line_items": [{"price": "price_missing", "quantity": 1}],
        })
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "line_items[0][price]"
    assert caught.value.http_status == 404
