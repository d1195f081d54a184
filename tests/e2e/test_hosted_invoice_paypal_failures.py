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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from support.invoices import open_invoice
from support.paypal_fake import FakePayPal
from support.pgcluster import PgCluster

CLIENT_ID = "AYinvoicefailures"
CLIENT_SECRET = "EPinvoice-failures-secret-0000"
ORDERS = "/v2/checkout/orders"
# Tries of one gateway call (settings.gateway_retries = 3, the default, plus the first).
TRIES = 4


@dataclass
class Env:
    paypal: FakePayPal
    server: RunningServer


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp(f"invoice-paypal-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"inv_paypal_{request.param}")
    paypal = FakePayPal(CLIENT_ID, CLIENT_SECRET, "WHinvoicefailures").start()
    settings = make_settings(
        url,
        tmp,
        free_port(),
        routes="GBP=paypal",
        paypal_client_id=CLIENT_ID,
        paypal_client_secret=CLIENT_SECRET,
        paypal_webhook_id="WHinvoicefailures",
        paypal_api_base=paypal.url,
    )
    server = RunningServer(settings).start()
    try:
        yield Env(paypal, server)
    finally:
        server.stop()
        paypal.stop()


@pytest.fixture
def api(env: Env) -> Iterator[Api]:
    client = Api(env.server)
    try:
        yield client
    finally:
        client.close()


def ask_order(invoice: dict[str, Any]) -> httpx.Response:
    """The buttons' ``createOrder``: the page asks for its order."""
    return httpx.post(invoice["hosted_invoice_url"] + "/paypal-order", json={}, timeout=30)


def pay(invoice: dict[str, Any], order_id: str) -> httpx.Response:
    """The buttons' ``onApprove``: the page pays with the approved order."""
    return httpx.post(
        invoice["hosted_invoice_url"] + "/pay", json={"payment_method": order_id}, timeout=30
    )


def order_posts(env: Env) -> list[dict[str, str]]:
    """The headers of each create-order POST paymux sent PayPal (all of them, answered or
    not)."""
    return [h for m, p, h in env.paypal.requests if m == "POST" and p == ORDERS]


def orders_for(env: Env, pi_id: str) -> list[str]:
    """The orders PayPal holds that were opened for the intent ``pi_id``."""
    return [
        order_id
        for order_id, order in list(env.paypal.orders.items())
        if order["purchase_units"][0]["custom_id"] == pi_id
    ]


def captures_of(env: Env, order_id: str) -> int:
    """The captures PayPal made of ``order_id`` (money taken from the payer)."""
    return sum(
        1
        for capture in list(env.paypal.captures.values())
        if capture["supplementary_data"]["related_ids"]["order_id"] == order_id
    )


def capture_keys(env: Env, order_id: str) -> list[str]:
    """The PayPal-Request-Id of each capture POST paymux sent for ``order_id``."""
    path = f"{ORDERS}/{order_id}/capture"
    return [h["paypal-request-id"] for m, p, h in env.paypal.requests if m == "POST" and p == path]


def invoice_intents(api: Api, invoice_id: str) -> list[Any]:
    return api.server.sql(
        "select id, status, amount from payment_intents where invoice_id = :i", i=invoice_id
    )


def authorize_attempts(api: Api, invoice_id: str) -> int:
    """The gateway tries the page's limit counts (hosted_payments._check_page_tries)."""
    rows = api.server.sql(
        "select count(*) from gateway_attempts a join payment_intents p on p.id = a.object_id "
        "where p.invoice_id = :i and a.operation = 'authorize'",
        i=invoice_id,
    )
    return int(rows[0][0])


def check_paid_once(api: Api, env: Env, invoice: dict[str, Any], order_id: str) -> None:
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == (
        "paid",
        invoice["amount_due"],
        0,
    )
    [(pi_id, status, amount)] = invoice_intents(api, invoice["id"])
    assert (pi_id, status, amount) == (paid["payment_intent"], "succeeded", invoice["amount_due"])
    assert env.paypal.orders[order_id]["status"] == "COMPLETED"
    assert captures_of(env, order_id) == 1


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
    [(_, status, _)] = invoice_intents(api, invoice["id"])
    assert status == "processing"
    assert captures_of(env, order_id) == 1  # PayPal did capture, once
    again = pay(invoice, order_id)
    assert (again.status_code, again.json()["code"]) == (400, "invoice_unexpected_state")
    api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    check_paid_once(api, env, invoice, order_id)
    keys = capture_keys(env, order_id)
    assert len(keys) >= TRIES and len(set(keys)) == 1  # every send, one request id
