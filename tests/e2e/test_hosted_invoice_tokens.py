"""The hosted invoice page (``POST /invoices/{token}/pay``, no API key: the URL is the
secret) pays with a fresh single-use token from the gateway's card form only: never a
stored payment method of the account, by its id, its vaulted token or a token that already
paid (review r6, H1). A fresh token still pays."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import Api
from support.billing import attach


def card_token(api: Api, number: str = "4242424242424242") -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def open_invoice(api: Api, cus: str, amount: int = 1200) -> dict[str, Any]:
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd"})
    return api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")


def page_pay(api: Api, invoice: dict[str, Any], ref: str) -> httpx.Response:
    return httpx.post(invoice["hosted_invoice_url"] + "/pay", json={"payment_method": ref},
                      headers={"origin": api.server.url}, timeout=30)


def charged(api: Api, invoice_id: str) -> int:
    return int(api.server.sql(
        "select count(*) from gateway_attempts a join payment_intents p on p.id = a.object_id "
        "where p.invoice_id = :i and a.operation = 'authorize'", i=invoice_id)[0][0])


def test_the_invoice_page_refuses_the_customers_saved_card(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"]
    saved = attach(api, cus, "pm_card_visa")
    vaulted = api.server.sql("select token from payment_methods where id = :p", p=saved)[0][0]
    invoice = open_invoice(api, cus)
    for ref in (saved, vaulted):
        r = page_pay(api, invoice, ref)
        assert r.status_code in (400, 404), (ref, r.text)
    assert charged(api, invoice["id"]) == 0
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"
    r = page_pay(api, invoice, card_token(api))
    assert r.status_code == 200, r.text
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "paid"


def test_the_invoice_page_refuses_another_payers_payment_method_and_a_used_token(
    api: Api,
) -> None:
    tok = card_token(api)
    first_cus = api.ok("POST", "/v1/customers", {"email": "a@example.com"})["id"]
    first = open_invoice(api, first_cus)
    assert page_pay(api, first, tok).status_code == 200
    paid = api.ok("GET", f"/v1/invoices/{first['id']}")
    assert paid["status"] == "paid"
    pm_id = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")["payment_method"]
    second_cus = api.ok("POST", "/v1/customers", {"email": "b@example.com"})["id"]
    second = open_invoice(api, second_cus)
    for ref in (pm_id, tok):
        r = page_pay(api, second, ref)
        assert r.status_code in (400, 404), (ref, r.text)
    assert charged(api, second["id"]) == 0
    assert api.ok("GET", f"/v1/invoices/{second['id']}")["status"] == "open"


def test_a_pay_from_a_form_of_another_gateway_than_the_payments_is_refused_uncounted(
    api: Api,
) -> None:
    """The page posts the gateway whose form it mounted (the sandbox's here, in its pay URL):
    a payment routed elsewhere since (a dunning try waiting on another gateway) refuses the
    token with "reload the page", before any try is counted or any gateway is called."""
    cus = api.ok("POST", "/v1/customers", {"email": "moved@example.com"})["id"]
    invoice = open_invoice(api, cus)
    page = httpx.get(invoice["hosted_invoice_url"], timeout=10)
    assert 'data-pay-url="/invoices/' in page.text and "/pay?gateway=sandbox" in page.text
    url = invoice["hosted_invoice_url"] + "/pay?gateway=stripe"  # the form was Stripe's
    for _ in range(12):  # more than the page's tries per hour: none of these counts as one
        r = httpx.post(url, json={"payment_method": card_token(api)},
                       headers={"origin": api.server.url}, timeout=30)
        assert r.status_code == 400, r.text
        assert (r.json()["code"], r.json()["message"]) == (
            "invoice_unexpected_state",
            "This invoice's payment has moved to another payment form: reload the page.")
    assert charged(api, invoice["id"]) == 0
    r = httpx.post(invoice["hosted_invoice_url"] + "/pay?gateway=sandbox",
                   json={"payment_method": card_token(api)},
                   headers={"origin": api.server.url}, timeout=30)
    assert r.status_code == 200, r.text
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "paid"
