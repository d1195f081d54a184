"""The official stripe-python client, pointed at paymux by its base address and nothing
else: what it sends (form bodies, its headers) is understood, and paymux's errors become
the SDK's own exceptions. Transport only; SQLite and PostgreSQL (``api``)."""

from __future__ import annotations

import pytest
import stripe

from conftest import Api


def client(api: Api, key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=key or api.key,
        base_addresses={"api": api.server.url},
        max_network_retries=0,
    )


def test_create_confirm_and_update_through_stripe_python(api: Api) -> None:
    sdk = client(api)
    intent = sdk.v1.payment_intents.create(
        params={"amount": 2000, "currency": "usd", "metadata": {"order_id": "1001"}}
    )
    assert intent.object == "payment_intent"
    assert intent.amount == 2000
    assert intent.metadata["order_id"] == "1001"
    confirmed = sdk.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert confirmed.status == "succeeded"
    assert confirmed.last_response.request_id.startswith("req_")

    customer = sdk.v1.customers.create(params={"name": "Jo", "metadata": {"a": "1", "b": "2"}})
    updated = sdk.v1.customers.update(customer.id, params={"metadata": {"a": ""}})
    assert updated.to_dict()["metadata"] == {"b": "2"}


def test_a_decline_raises_card_error_with_its_decline_code(api: Api) -> None:
    sdk = client(api)
    intent = sdk.v1.payment_intents.create(params={"amount": 2000, "currency": "usd"})
    with pytest.raises(stripe.CardError) as caught:
        sdk.v1.payment_intents.confirm(
            intent.id, params={"payment_method": "pm_card_chargeDeclinedInsufficientFunds"}
        )
    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    assert caught.value.error is not None
    assert caught.value.error.decline_code == "insufficient_funds"
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


def test_invalid_requests_raise_invalid_request_error_with_the_param(api: Api) -> None:
    sdk = client(api)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.payment_intents.create(params={"amount": 2000})
    assert caught.value.param == "currency"
    assert caught.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd", "metadata": {"x": {"y": "z"}}}
        )
    assert caught.value.param == "metadata[x]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sdk.v1.payment_intents.retrieve("pi_doesnotexist")
    assert caught.value.http_status == 404


def test_auth_permission_and_idempotency_errors_raise_their_sdk_exceptions(api: Api) -> None:
    with pytest.raises(stripe.AuthenticationError):
        client(api, "sk_test_notakey").v1.customers.list()
    with pytest.raises(stripe.PermissionError):
        client(api).v1.customers.list(options={"stripe_account": "acct_someoneelse"})
    sdk = client(api)
    sdk.v1.customers.create(params={"name": "Jo"}, options={"idempotency_key": "sdk-1"})
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.customers.create(params={"name": "Al"}, options={"idempotency_key": "sdk-1"})
