"""The hosted invoice page paid through PayPal over HTTP, PayPal replaced at the HTTP seam by
the stateful fake (support/paypal_fake.py): a server routing GBP to PayPal on a fresh database
(``paypal_invoice_fixtures``: SQLite and PostgreSQL), and the page's own
calls and what PayPal holds after them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import BACKENDS, Api, RunningServer
from support.paypal_fake import FakePayPal
from support.pgcluster import PgCluster
from support.served import account_api, served

__all__ = [
    "ORDERS",
    "TRIES",
    "Env",
    "ask_order",
    "capture_keys",
    "captures_of",
    "check_paid_once",
    "invoice_intents",
    "order_posts",
    "orders_for",
    "pay",
    "paypal_invoice_fixtures",
]

CLIENT_ID = "AYinvoicefailures"
CLIENT_SECRET = "EPinvoice-failures-secret-0000"
ORDERS = "/v2/checkout/orders"
# Tries of one gateway call (settings.gateway_retries = 3, the default, plus the first).
TRIES = 4


@dataclass
class Env:
    paypal: FakePayPal
    server: RunningServer


def paypal_invoice_fixtures(name: str) -> tuple[Any, Any]:
    """A test module's ``env`` (module scope, once on SQLite and once on PostgreSQL: the fake
    PayPal and a server on a fresh database called ``name`` that routes GBP to it) and its
    tests' ``api`` (a fresh account's client)::

        env, api = paypal_invoice_fixtures("inv_paypal")
    """

    @pytest.fixture(scope="module", params=BACKENDS)
    def env(
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        pg_cluster: PgCluster | None,
    ) -> Iterator[Env]:
        paypal = FakePayPal(CLIENT_ID, CLIENT_SECRET, "WHinvoicefailures").start()
        with served(
            tmp_path_factory,
            f"{name}_{request.param}",
            backend=request.param,
            pg_cluster=pg_cluster,
            also_stop=[paypal],
            routes="GBP=paypal",
            paypal_client_id=CLIENT_ID,
            paypal_client_secret=CLIENT_SECRET,
            paypal_webhook_id="WHinvoicefailures",
            paypal_api_base=paypal.url,
        ) as server:
            yield Env(paypal, server)

    @pytest.fixture
    def api(env: Env) -> Iterator[Api]:
        yield from account_api(env.server)

    return env, api


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
