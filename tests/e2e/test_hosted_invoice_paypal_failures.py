"""The hosted invoice page's PayPal order when PayPal fails: through HTTP (the page's own
``POST /invoices/{token}/paypal-order`` and ``/pay``), PayPal replaced at the HTTP seam by the
stateful fake (tests/support/paypal_fake.py), told to fail the next calls to a path
(``fail_next``). SQLite and PostgreSQL.

- PayPal answers 503 to every try of the create: the page gets a clear, retryable error;
  nothing is half written (no intent, no order, no try counted against the page's limit); a
  later click opens the order and the invoice is paid once.
- PayPal made the order but its answers were lost: the next click sends the create again
  under the same ``PayPal-Request-Id`` (the intent's ``<pi>:open`` key), PayPal replays the
  first order, no second order is opened; one capture in the end.
- PayPal unreachable when the approved order is read, or the capture's answers lost: a
  clear error or a payment in flight, never a second capture.

An approval sent twice at once is tested in tests/browser/test_hosted_invoice_browser.py
(``test_a_double_approval_of_the_invoices_order_pays_it_once``).
"""

from __future__ import annotations

from conftest import Api
from support.invoice_paypal import (
    ORDERS,
    TRIES,
    Env,
    ask_order,
    capture_keys,
    captures_of,
    check_paid_once,
    invoice_intents,
    order_posts,
    orders_for,
    pay,
    paypal_invoice_fixtures,
)
from support.invoices import open_invoice

env, api = paypal_invoice_fixtures("inv_paypal")


def authorize_attempts(api: Api, invoice_id: str) -> int:
    """The gateway tries the page's limit counts (hosted_payments._check_page_tries)."""
    rows = api.server.sql(
        "select count(*) from gateway_attempts a join payment_intents p on p.id = a.object_id "
        "where p.invoice_id = :i and a.operation = 'authorize'",
        i=invoice_id,
    )
    return int(rows[0][0])


def test_paypal_unavailable_gives_a_clear_error_and_a_later_click_pays_once(
    api: Api, env: Env
) -> None:
    invoice = open_invoice(api, "gbp", 2500)
    sent_before = len(order_posts(env))
    orders_before = len(env.paypal.orders)
    env.paypal.fail_next("POST", ORDERS, "unavailable", times=TRIES)
    refused = ask_order(invoice)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "gateway_unavailable"
    assert refused.headers["cache-control"] == "no-store"
    assert len(order_posts(env)) == sent_before + TRIES  # every try, then the page's error
    # Nothing half written: no intent, no order at PayPal, no try counted, the invoice open.
    assert invoice_intents(api, invoice["id"]) == []
    assert len(env.paypal.orders) == orders_before
    assert authorize_attempts(api, invoice["id"]) == 0
    waiting = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (waiting["status"], waiting["amount_paid"]) == ("open", 0)
    # PayPal is back: the next click opens the order, the payer approves it, it is paid once.
    opened = ask_order(invoice)
    assert opened.status_code == 200, opened.text
    order_id = opened.json()["order_id"]
    [(pi_id, status, amount)] = invoice_intents(api, invoice["id"])
    assert (status, amount) == ("requires_payment_method", 2500)
    assert orders_for(env, pi_id) == [order_id]
    unit = env.paypal.orders[order_id]["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "GBP", "value": "25.00"}
    env.paypal.approve(order_id)
    done = pay(invoice, order_id)
    assert (done.status_code, done.json()) == (200, {"status": "paid"})
    check_paid_once(api, env, invoice, order_id)
    assert authorize_attempts(api, invoice["id"]) == 1


def test_a_lost_create_answer_is_replayed_under_the_same_request_id(api: Api, env: Env) -> None:
    invoice = open_invoice(api, "gbp", 1800)
    sent_before = len(order_posts(env))
    orders_before = set(env.paypal.orders)
    # PayPal makes the order, then every answer to it is lost (each retry replayed, lost too).
    env.paypal.fail_next("POST", ORDERS, "lost", times=TRIES)
    refused = ask_order(invoice)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "gateway_unavailable"
    lost = order_posts(env)[sent_before:]
    assert len(lost) == TRIES
    first_key = lost[0]["paypal-request-id"]
    assert {h["paypal-request-id"] for h in lost} == {first_key}
    assert invoice_intents(api, invoice["id"]) == []  # paymux never heard of an order
    made = sorted(set(env.paypal.orders) - orders_before)
    assert len(made) == 1  # PayPal opened one order, and kept it for the request id
    assert env.paypal.orders[made[0]]["purchase_units"][0]["amount"]["value"] == "18.00"
    # The payer clicks again: the same create under the same PayPal-Request-Id, answered with
    # the order PayPal made the first time; no second order.
    opened = ask_order(invoice)
    assert opened.status_code == 200, opened.text
    order_id = opened.json()["order_id"]
    assert [order_id] == made
    assert order_posts(env)[-1]["paypal-request-id"] == first_key
    [(pi_id, status, _)] = invoice_intents(api, invoice["id"])
    assert status == "requires_payment_method"
    assert orders_for(env, pi_id) == [order_id]
    # Asked once more (another click): the same order, PayPal not asked.
    sent = len(order_posts(env))
    again = ask_order(invoice)
    assert (again.status_code, again.json()) == (200, {"order_id": order_id})
    assert len(order_posts(env)) == sent
    env.paypal.approve(order_id)
    done = pay(invoice, order_id)
    assert (done.status_code, done.json()) == (200, {"status": "paid"})
    check_paid_once(api, env, invoice, order_id)


def test_one_lost_answer_is_retried_inside_the_click(api: Api, env: Env) -> None:
    """The retry policy's own retry (services/gateway_calls) sends the same request id: the
    click gets the order PayPal made, one order."""
    invoice = open_invoice(api, "gbp", 1300)
    sent_before = len(order_posts(env))
    env.paypal.fail_next("POST", ORDERS, "lost")
    opened = ask_order(invoice)
    assert opened.status_code == 200, opened.text
    order_id = opened.json()["order_id"]
    first, second = order_posts(env)[sent_before:]
    assert first["paypal-request-id"] == second["paypal-request-id"]
    [(pi_id, _, _)] = invoice_intents(api, invoice["id"])
    assert orders_for(env, pi_id) == [order_id]


def test_paypal_unavailable_at_approval_gives_a_clear_error_and_a_retry_pays_once(
    api: Api, env: Env
) -> None:
    invoice = open_invoice(api, "gbp", 2700)
    order_id = ask_order(invoice).json()["order_id"]
    env.paypal.approve(order_id)
    # Reading the approved order (the payment method it is) fails on every try.
    env.paypal.fail_next("GET", f"{ORDERS}/{order_id}", "unavailable", times=TRIES)
    refused = pay(invoice, order_id)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "gateway_unavailable"
    assert env.paypal.orders[order_id]["status"] == "APPROVED"  # not captured
    assert captures_of(env, order_id) == 0
    assert authorize_attempts(api, invoice["id"]) == 0  # no try counted
    waiting = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (waiting["status"], waiting["amount_paid"]) == ("open", 0)
    assert env.paypal.faults == []  # every try was refused
    done = pay(invoice, order_id)
    assert (done.status_code, done.json()) == (200, {"status": "paid"})
    check_paid_once(api, env, invoice, order_id)


def test_a_lost_capture_answer_settles_to_one_capture(api: Api, env: Env) -> None:
    """PayPal captured the approved order, every answer lost: the payment is in flight
    (never "paid" nor a second card asked of PayPal), a second approval is refused, and the
    settlement (the same capture under the same PayPal-Request-Id, replayed) pays it once."""
    invoice = open_invoice(api, "gbp", 2900)
    order_id = ask_order(invoice).json()["order_id"]
    env.paypal.approve(order_id)
    env.paypal.fail_next("POST", f"{ORDERS}/{order_id}/capture", "lost", times=TRIES)
    first = pay(invoice, order_id)
    assert first.status_code == 200, first.text
    # Not known paid yet, and never "try another card": the page says it is processing.
    assert first.json()["status"] == "processing", first.text
    assert "do not pay again" in first.json()["message"]
    # In flight, never failed (no other card asked for); the settle job (0.3 s after, under
    # load maybe before this read) may have asked PayPal already: then succeeded.
    [(_, status, _)] = invoice_intents(api, invoice["id"])
    assert status in ("processing", "succeeded")
    assert captures_of(env, order_id) == 1  # PayPal did capture, once
    again = pay(invoice, order_id)
    assert (again.status_code, again.json()["code"]) == (400, "invoice_unexpected_state")
    api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    check_paid_once(api, env, invoice, order_id)
    keys = capture_keys(env, order_id)
    assert len(keys) >= TRIES and len(set(keys)) == 1  # every send, one request id
