"""stripe-python drives SetupIntents on paymux's sandbox gateway (SQLite and PostgreSQL):
create, confirm, retrieve, update, list, cancel, 3-D Secure, a decline as ``CardError``, the
customer's ``invoice_settings.default_payment_method``, then an off-session payment with the
saved card. Expectations are Stripe's documented behaviour, stated literally."""

from __future__ import annotations

import uuid

import pytest
import stripe

from conftest import RunningServer
from support.sandbox_pages import answer_challenge


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0
    )


def test_a_card_is_saved_then_made_the_default_and_charged_off_session(
    sdk: stripe.StripeClient,
) -> None:
    customer = sdk.v1.customers.create(params={"email": "sdk-saver@example.com"})
    seti = sdk.v1.setup_intents.create(
        params={"customer": customer.id, "metadata": {"plan": "pro"}, "usage": "off_session"},
        options={"idempotency_key": f"py-{uuid.uuid4()}"},
    )
    assert isinstance(seti, stripe.SetupIntent)
    assert seti.id.startswith("seti_")
    assert (seti.object, seti.status, seti.usage) == (
        "setup_intent", "requires_payment_method", "off_session")
    assert seti.client_secret is not None and seti.client_secret.startswith(seti.id + "_secret_")
    assert seti.metadata.to_dict() == {"plan": "pro"}

    confirmed = sdk.v1.setup_intents.confirm(seti.id, params={"payment_method": "pm_card_visa"})
    assert confirmed.status == "succeeded"
    assert confirmed.payment_method is not None
    pm = sdk.v1.payment_methods.retrieve(str(confirmed.payment_method))
    assert pm.customer == customer.id
    assert pm.card is not None and pm.card.last4 == "4242"

    updated = sdk.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": pm.id}})
    assert updated.invoice_settings is not None
    assert updated.invoice_settings.default_payment_method == pm.id

    found = sdk.v1.setup_intents.retrieve(seti.id)
    assert found.status == "succeeded"
    listed = sdk.v1.setup_intents.list(params={"customer": customer.id})
    assert [s.id for s in listed.data] == [seti.id]

    intent = sdk.v1.payment_intents.create(params={
        "amount": 990, "currency": "usd", "customer": customer.id, "payment_method": pm.id,
        "off_session": True, "confirm": True})
    assert intent.status == "succeeded"
    assert intent.amount_received == 990


def test_created_and_confirmed_in_one_call_and_updated(sdk: stripe.StripeClient) -> None:
    customer = sdk.v1.customers.create()
    seti = sdk.v1.setup_intents.create(params={
        "customer": customer.id, "payment_method": "pm_card_mastercard", "confirm": True})
    assert seti.status == "succeeded"
    updated = sdk.v1.setup_intents.update(seti.id, params={"metadata": {"note": "kept"}})
    assert updated.metadata.to_dict() == {"note": "kept"}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.setup_intents.cancel(seti.id)
    assert caught.value.code == "setup_intent_unexpected_state"


def test_a_decline_is_a_card_error_and_the_intent_waits_for_another_card(
    sdk: stripe.StripeClient,
) -> None:
    customer = sdk.v1.customers.create()
    seti = sdk.v1.setup_intents.create(params={"customer": customer.id})
    with pytest.raises(stripe.CardError) as caught:
        sdk.v1.setup_intents.confirm(seti.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    again = sdk.v1.setup_intents.retrieve(seti.id)
    assert again.status == "requires_payment_method"
    assert again.last_setup_error is not None
    assert again.last_setup_error.code == "card_declined"
    canceled = sdk.v1.setup_intents.cancel(seti.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")


def test_three_d_secure_through_the_redirect(sdk: stripe.StripeClient) -> None:
    customer = sdk.v1.customers.create()
    seti = sdk.v1.setup_intents.create(params={
        "customer": customer.id, "payment_method": "pm_card_threeDSecure2Required",
        "confirm": True, "return_url": "https://shop.example/back"})
    assert seti.status == "requires_action"
    assert seti.next_action is not None and seti.next_action.type == "redirect_to_url"
    url = seti.next_action.redirect_to_url.url  # type: ignore[union-attr]
    assert url is not None
    answer_challenge(url, "complete")
    assert sdk.v1.setup_intents.retrieve(seti.id).status == "succeeded"
