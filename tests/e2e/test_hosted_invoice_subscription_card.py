"""Paying a subscription's invoice on its hosted page (sandbox) saves the payer's card to the
customer (``setup_future_usage=off_session``), and leaves the defaults alone: the customer's
and the subscription's default payment method stay what they were, so renewals keep charging
the default (as Stripe's hosted invoice page does unless ``save_default_payment_method``)."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import Api
from support.billing import customer_with_card, price


def card_token(api: Api, number: str) -> str:
    r = httpx.post(
        f"{api.server.url}/sandbox/v1/tokens",
        timeout=10,
        json={"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def pay_on_page(api: Api, invoice: dict[str, Any]) -> None:
    """The page's pay request with a fresh card (a Mastercard ending 4444), which pays."""
    r = httpx.post(
        invoice["hosted_invoice_url"] + "/pay",
        json={"payment_method": card_token(api, "5555555555554444")},
        headers={"origin": api.server.url},
        timeout=30,
    )
    assert (r.status_code, r.json()["status"]) == (200, "paid"), r.text


def unpaid_subscription(api: Api, customer: str, **extra: Any) -> dict[str, Any]:
    """A subscription whose first invoice is open and charged by nobody (send_invoice)."""
    return api.ok(
        "POST",
        "/v1/subscriptions",
        {
            "customer": customer,
            "items": [{"price": price(api, 1500)}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            **extra,
        },
    )


def test_a_subscriptions_invoice_paid_on_the_page_saves_the_card_not_as_default(
    api: Api,
) -> None:
    customer, default_pm = customer_with_card(api, None)
    sub = unpaid_subscription(api, customer, default_payment_method=default_pm)
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["payment_intent"]) == ("open", None)
    pay_on_page(api, invoice)
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 1500)
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["status"], pi["setup_future_usage"]) == ("succeeded", "off_session")
    # The page's card is the customer's now, beside the default one.
    saved = api.ok("GET", f"/v1/customers/{customer}/payment_methods")["data"]
    by_id = {m["id"]: m for m in saved}
    assert set(by_id) == {default_pm, pi["payment_method"]}
    assert by_id[pi["payment_method"]]["card"]["last4"] == "4444"
    assert by_id[pi["payment_method"]]["customer"] == customer
    # Neither default moved: renewals keep charging the default payment method.
    who = api.ok("GET", f"/v1/customers/{customer}")
    assert who["invoice_settings"]["default_payment_method"] == default_pm
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["default_payment_method"] == default_pm


def test_a_one_off_invoice_paid_on_the_page_saves_no_card(api: Api) -> None:
    """The contrast: an invoice of no subscription is paid once, nothing saved."""
    customer, default_pm = customer_with_card(api, None)
    invoice = api.ok("POST", "/v1/invoices", {"customer": customer, "currency": "usd"})
    api.ok(
        "POST",
        "/v1/invoiceitems",
        {"customer": customer, "invoice": invoice["id"], "amount": 800, "currency": "usd"},
    )
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    pay_on_page(api, opened)
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["status"], pi["setup_future_usage"]) == ("succeeded", None)
    saved = api.ok("GET", f"/v1/customers/{customer}/payment_methods")["data"]
    assert [m["id"] for m in saved] == [default_pm]
