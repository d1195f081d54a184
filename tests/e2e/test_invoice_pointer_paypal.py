"""The invoice never names a payment intent that does not exist: the hosted page notes the
intent of its PayPal order on the invoice before the payment service makes it (under the
invoice's lock, so two paths never charge side by side); when the order cannot be opened
(PayPal down: 503) the intent is never made and the invoice names none again, and a later
click pays once. Two clicks at once derive the same intent id: one intent and one order in
the end, even when one of them fails while the other opens it (the failing one takes the
pointer off, the one that made the intent puts it back).

Through HTTP (the page's ``POST /invoices/{token}/paypal-order`` and ``/pay``, the API's
``GET /v1/invoices/{id}``), PayPal the stateful fake at the HTTP seam, its order create held
at the fake (``hold_next``) to force the interleaving. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from conftest import Api
from support import invoice_paypal as page
from support.invoices import open_invoice

env, api = page.paypal_invoice_fixtures("inv_pointer")


def named_intent(api: Api, invoice_id: str) -> Any:
    """The intent ``GET /v1/invoices/{id}`` names, checked against its expansion: none, or
    one that exists (``expand[]=payment_intent`` answers it, never a 404)."""
    shown = api.ok("GET", f"/v1/invoices/{invoice_id}")
    expanded = api.get(f"/v1/invoices/{invoice_id}", params={"expand[]": "payment_intent"})
    assert expanded.status_code == 200, expanded.text
    pi = expanded.json()["payment_intent"]
    if shown["payment_intent"] is None:
        assert pi is None
    else:
        assert pi["id"] == shown["payment_intent"]
        assert api.get(f"/v1/payment_intents/{pi['id']}").status_code == 200
    return shown["payment_intent"]


@contextmanager
def first_click_held(env: page.Env, invoice: dict[str, Any]) -> Iterator[Future[httpx.Response]]:
    """The page's first click (in a thread of its own), its order create held at PayPal
    while the block runs (the click is in flight: its intent noted on the invoice, not made);
    let go after. Its answer: the future's, once the block ended."""
    held = env.paypal.hold_next("POST", page.ORDERS)
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            first = pool.submit(page.ask_order, invoice)
            held.wait_arrived()
            yield first
        finally:
            held.release()


def approve_and_pay(api: Api, env: page.Env, invoice: dict[str, Any], order_id: str) -> None:
    env.paypal.approve(order_id)
    done = page.pay(invoice, order_id)
    assert (done.status_code, done.json()) == (200, {"status": "paid"})
    page.check_paid_once(api, env, invoice, order_id)


def test_paypal_down_at_opening_leaves_no_intent_named_and_a_retry_pays_once(
    api: Api, env: page.Env
) -> None:
    invoice = open_invoice(api, "gbp", 2100)
    env.paypal.fail_next("POST", page.ORDERS, "unavailable", times=page.TRIES)
    refused = page.ask_order(invoice)
    assert refused.status_code == 503, refused.text
    assert page.invoice_intents(api, invoice["id"]) == []  # never made
    assert named_intent(api, invoice["id"]) is None
    [(pointer,)] = api.server.sql(
        "select payment_intent_id from invoices where id = :i", i=invoice["id"]
    )
    assert pointer is None
    # PayPal is back: the next click opens the order, the invoice names its intent.
    opened = page.ask_order(invoice)
    assert opened.status_code == 200, opened.text
    order_id = opened.json()["order_id"]
    [(pi_id, status, _)] = page.invoice_intents(api, invoice["id"])
    assert status == "requires_payment_method"
    assert named_intent(api, invoice["id"]) == pi_id
    assert page.orders_for(env, pi_id) == [order_id]
    approve_and_pay(api, env, invoice, order_id)


def test_two_opens_at_once_make_one_intent_and_one_order(api: Api, env: page.Env) -> None:
    invoice = open_invoice(api, "gbp", 2200)
    orders_before = set(env.paypal.orders)
    with first_click_held(env, invoice) as first:
        second = page.ask_order(invoice)  # the second click, meanwhile, opens it
    answered = first.result(timeout=60)
    assert (answered.status_code, second.status_code) == (200, 200), (answered.text, second.text)
    order_id = second.json()["order_id"]
    assert answered.json()["order_id"] == order_id
    [(pi_id, _, _)] = page.invoice_intents(api, invoice["id"])
    assert sorted(set(env.paypal.orders) - orders_before) == [order_id]
    assert page.orders_for(env, pi_id) == [order_id]
    assert named_intent(api, invoice["id"]) == pi_id
    approve_and_pay(api, env, invoice, order_id)


def test_a_click_failing_while_its_twin_opens_the_order_leaves_the_made_intent_named(
    api: Api, env: page.Env
) -> None:
    """The first click's order create is held at PayPal; the second click (the same intent
    id) finds PayPal down on every try and answers 503: the invoice then names no intent
    (it is not made yet). The first click's create then goes through: the invoice names the
    intent it made, and that order pays once."""
    invoice = open_invoice(api, "gbp", 2300)
    orders_before = set(env.paypal.orders)
    with first_click_held(env, invoice) as first:
        env.paypal.fail_next("POST", page.ORDERS, "unavailable", times=page.TRIES)
        refused = page.ask_order(invoice)
        assert refused.status_code == 503, refused.text
        assert page.invoice_intents(api, invoice["id"]) == []
        assert named_intent(api, invoice["id"]) is None
    opened = first.result(timeout=60)
    assert opened.status_code == 200, opened.text
    order_id = opened.json()["order_id"]
    [(pi_id, status, _)] = page.invoice_intents(api, invoice["id"])
    assert status == "requires_payment_method"
    assert named_intent(api, invoice["id"]) == pi_id
    assert sorted(set(env.paypal.orders) - orders_before) == [order_id]
    assert page.orders_for(env, pi_id) == [order_id]
    approve_and_pay(api, env, invoice, order_id)
