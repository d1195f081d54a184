"""Subscriptions charge the saved payment method on whichever gateway holds it: Square (a
card on file at the fake Square), PayPal (a vault token at the fake PayPal) and Stripe (a card
saved at localstripe), each replaced at the HTTP seam on 127.0.0.1; paymux runs unchanged,
with the sandbox as its default gateway, so a charge that went anywhere but the method's own
gateway shows. The first invoice and the renewal a month later on a test clock are both paid
off-session through the payment services, and the provider holds each charge.

Stripe: an invoice's payment carries ``description=Invoice <number>``, which real Stripe takes
and localstripe refuses (400 "Unexpected description": its PaymentIntent takes a fixed list of
arguments), so paymux talks to localstripe through a test-side proxy that drops the field on
the way and records what paymux sent (``support/localstripe_proxy.py``); the test checks the
description real Stripe would get.

One server on SQLite for all three (the claim is the routing, not the database: the billing paths
on PostgreSQL are the e2e billing tests')."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port
from support.billing import advance, clock, price, ts
from support.fake_square import FakeSquare
from support.localstripe_proxy import LocalStripeProxy
from support.paypal_fake import FakePayPal
from support.sandboxes import LocalStripe
from support.served import account_api, served

SQUARE_TOKEN = "EAAAl9fK2xQ7" + "bL4qR7sD2wX9" * 5
SQUARE_KEY = "sq-webhook-key-" + "YmlsbGluZw" * 3
PAYPAL_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK = "AYbillingclient", "EPbilling-secret-7r2", "WH-BILLING"


@dataclass
class Env:
    server: RunningServer
    square: FakeSquare
    paypal: FakePayPal
    stripe: LocalStripeProxy


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe) -> Iterator[Env]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    square = FakeSquare(
        access_token=SQUARE_TOKEN, signature_key=SQUARE_KEY, webhook_url=f"{base}/webhooks/square"
    ).start()
    paypal = FakePayPal(PAYPAL_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK).start()
    paypal.webhook_url = f"{base}/webhooks/paypal"
    stripe = LocalStripeProxy(localstripe.url).start()
    with served(
        tmp_path_factory,
        "billing-gateways",
        port=port,
        also_stop=[stripe, square, paypal],
        default_gateway="sandbox",
        square_access_token=SQUARE_TOKEN,
        square_location_id=square.location_id,
        square_webhook_signature_key=SQUARE_KEY,
        square_webhook_url=f"{base}/webhooks/square",
        square_api_base=square.url,
        paypal_client_id=PAYPAL_ID,
        paypal_client_secret=PAYPAL_SECRET,
        paypal_webhook_id=PAYPAL_WEBHOOK,
        paypal_api_base=paypal.url,
        stripe_secret_key="sk_test_billing",
        stripe_api_base=stripe.url,
    ) as server:
        yield Env(server, square, paypal, stripe)


@pytest.fixture
def api(env: Env) -> Iterator[Api]:
    yield from account_api(env.server)


def saved_token(env: Env, gateway: str) -> str:
    """What the gateway's browser component (or its published test token) hands paymux."""
    if gateway == "square":
        return "cnon:card-nonce-ok"
    if gateway == "stripe":
        return "pm_card_visa"
    return env.paypal.create_setup_token("card")


def held_by_provider(env: Env, gateway: str, pi: dict[str, Any]) -> bool:
    """The provider itself holds a captured charge for ``pi``."""
    if gateway == "square":
        made = [
            c
            for c in env.square.calls_to("POST", "/v2/payments")
            if c.body.get("reference_id") == pi["id"] and 200 <= c.status < 300
        ]
        return len(made) == 1
    if gateway == "stripe":
        return stripe_holds(env, pi)
    orders = [
        o for o in env.paypal.orders.values() if o["purchase_units"][0]["custom_id"] == pi["id"]
    ]
    return len(orders) == 1 and orders[0]["status"] == "COMPLETED"


def stripe_holds(env: Env, pi: dict[str, Any]) -> bool:
    """localstripe holds one succeeded PaymentIntent for ``pi``, and paymux asked for it with
    the invoice's description (which the proxy kept from localstripe)."""
    asked = [c for c in env.stripe.created if c.get("metadata[paymux_id]") == pi["id"]]
    found = httpx.get(
        f"{env.stripe.target}/v1/payment_intents",
        headers={"authorization": "Bearer sk_test_billing"},
        params={"limit": 100},
        timeout=10,
    ).json()["data"]
    held = [p for p in found if p["metadata"].get("paymux_id") == pi["id"]]
    return (
        len(asked) == 1
        and asked[0].get("description", "").startswith("Invoice ")
        and asked[0].get("off_session") == "true"
        and len(held) == 1
        and held[0]["status"] == "succeeded"
        and held[0]["amount"] == pi["amount"]
    )


@pytest.mark.parametrize("gateway", ["square", "paypal", "stripe"])
def test_the_first_invoice_and_the_renewal_are_charged_on_the_methods_gateway(
    api: Api, env: Env, gateway: str
) -> None:
    start = ts(2026, 1, 15)
    c = clock(api, start, name=gateway)
    customer = api.ok("POST", "/v1/customers", {"email": "sub@example.com", "test_clock": c["id"]})
    pm = api.ok(
        "POST",
        f"/v1/payment_methods/{saved_token(env, gateway)}/attach",
        {"customer": customer["id"], "gateway": gateway},
    )
    assert pm["gateway"] == gateway
    api.ok(
        "POST",
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": pm["id"]}},
    )
    sub = api.ok(
        "POST",
        "/v1/subscriptions",
        {"customer": customer["id"], "items": [{"price": price(api, 1500)}]},
    )
    assert sub["status"] == "active"
    advance(api, c["id"], ts(2026, 2, 15, 1))
    listed = api.ok("GET", "/v1/invoices", params={"subscription": sub["id"]})["data"]
    paid = sorted(listed, key=lambda i: i["period_start"])
    assert [(i["billing_reason"], i["status"], i["amount_paid"]) for i in paid] == [
        ("subscription_create", "paid", 1500),
        ("subscription_cycle", "paid", 1500),
    ]
    for invoice in paid:
        pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
        assert (pi["gateway"], pi["payment_method"], pi["status"]) == (
            gateway,
            pm["id"],
            "succeeded",
        )
        assert held_by_provider(env, gateway, pi), pi
