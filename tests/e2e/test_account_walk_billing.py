"""Two accounts on one server, the objects test_account_walk.py leaves out: subscriptions and
their items, coupons, promotion codes, tax rates, products, prices, invoices (their lines and
hosted page) and invoice items, credit notes, setup intents, test clocks, meters (and their
events), charges, customer balance transactions. Every one of account A's, through every read,
update, delete and action route of the API, and named in B's own creates, is a 404
``resource_missing`` for B; B's lists never show it; A's objects are as A left them.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer
from support.billing import customer_with_card, wait_ready

HOUR = 3600


class _Patient(httpx.BaseTransport):
    """Waits ``Retry-After`` on a 429 ``rate_limited`` and sends again (at most 5 times), as
    Stripe's SDKs do: the walk sends well over the key's 100 requests a second on a quiet
    machine, and what it checks is who sees what, not the rate limit (test_rate_limits.py)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(5):
            response = self.inner.handle_request(request)
            if response.status_code != 429:
                return response
            response.read()
            if b"rate_limited" not in response.content:
                return response
            response.close()
            time.sleep(float(response.headers.get("retry-after") or 1))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _patient(client: Api) -> Api:
    old = client.http
    client.http = httpx.Client(
        base_url=old.base_url, headers=old.headers, timeout=old.timeout, transport=_Patient()
    )
    old.close()
    return client


@pytest.fixture
def other(server: RunningServer) -> Iterator[Api]:
    client = _patient(Api(server))
    try:
        yield client
    finally:
        client.close()


def a_world(api: Api) -> dict[str, Any]:
    """Account A's billing objects of every kind."""
    now = int(time.time())
    clock = api.ok("POST", "/v1/test_helpers/test_clocks", {"frozen_time": now, "name": "A"})
    customer, pm = customer_with_card(api, clock["id"])
    product = api.ok("POST", "/v1/products", {"name": "A plan"})
    price = api.ok("POST", "/v1/prices", {
        "product": product["id"], "unit_amount": 2000, "currency": "usd",
        "recurring": {"interval": "month"}, "lookup_key": "walk_plan"})
    one_off = api.ok("POST", "/v1/prices", {
        "product": product["id"], "unit_amount": 700, "currency": "usd"})
    tax_rate = api.ok("POST", "/v1/tax_rates", {
        "display_name": "VAT", "percentage": 19, "inclusive": False})
    coupon = api.ok("POST", "/v1/coupons", {
        "id": "WALK25", "percent_off": 25, "duration": "once"})
    promo = api.ok("POST", "/v1/promotion_codes", {"coupon": "WALK25", "code": "WALKCODE"})
    sub = api.ok("POST", "/v1/subscriptions", {
        "customer": customer, "items": [{"price": price["id"]}]})
    assert sub["status"] == "active", sub
    paid = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert paid["status"] == "paid", paid
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    draft = api.ok("POST", "/v1/invoices", {"customer": customer, "currency": "usd"})
    item = api.ok("POST", "/v1/invoiceitems", {
        "customer": customer, "invoice": draft["id"], "amount": 1500, "currency": "usd"})
    note = api.ok("POST", "/v1/credit_notes", {
        "invoice": paid["id"], "amount": 500, "out_of_band_amount": 500})
    seti = api.ok("POST", "/v1/setup_intents", {"customer": customer})
    meter = api.ok("POST", "/v1/billing/meters", {
        "display_name": "A calls", "event_name": f"walk_{uuid.uuid4().hex[:10]}",
        "default_aggregation": {"formula": "sum"}})
    txn = api.ok("POST", f"/v1/customers/{customer}/balance_transactions", {
        "amount": -300, "currency": "usd"})
    return {
        "clock": clock, "customer": customer, "pm": pm, "product": product, "price": price,
        "one_off": one_off, "tax_rate": tax_rate, "coupon": coupon, "promo": promo, "sub": sub,
        "sub_item": sub["items"]["data"][0], "paid": paid, "charge": pi["latest_charge"],
        "draft": draft, "item": item, "note": note, "seti": seti, "meter": meter, "txn": txn,
    }


def missing(r: httpx.Response, what: Any) -> None:
    assert r.status_code == 404, (what, r.status_code, r.text)
    assert r.json()["error"]["code"] == "resource_missing", (what, r.text)


def test_no_billing_object_of_one_account_is_visible_or_usable_from_another(
    api: Api, other: Api
) -> None:
    _patient(api)
    a = a_world(api)
    cus, sub_id, paid_id, draft_id = a["customer"], a["sub"]["id"], a["paid"]["id"], a["draft"]["id"]
    b_cus = other.ok("POST", "/v1/customers", {"email": "b@example.com"})["id"]
    b_product = other.ok("POST", "/v1/products", {"name": "B plan"})["id"]
    meters = "/v1/billing/meters"
    now = int(time.time())

    reads = [
        f"/v1/test_helpers/test_clocks/{a['clock']['id']}",
        f"/v1/products/{a['product']['id']}",
        f"/v1/prices/{a['price']['id']}",
        f"/v1/prices/{a['one_off']['id']}",
        f"/v1/tax_rates/{a['tax_rate']['id']}",
        "/v1/coupons/WALK25",
        f"/v1/promotion_codes/{a['promo']['id']}",
        f"/v1/subscriptions/{sub_id}",
        f"/v1/subscription_items/{a['sub_item']['id']}",
        f"/v1/invoices/{paid_id}",
        f"/v1/invoices/{paid_id}/lines",
        f"/v1/invoices/{draft_id}",
        f"/v1/invoiceitems/{a['item']['id']}",
        f"/v1/credit_notes/{a['note']['id']}",
        f"/v1/credit_notes/{a['note']['id']}/lines",
        f"/v1/setup_intents/{a['seti']['id']}",
        f"{meters}/{a['meter']['id']}",
        f"/v1/charges/{a['charge']}",
        f"/v1/customers/{cus}/balance_transactions",
        f"/v1/customers/{cus}/balance_transactions/{a['txn']['id']}",
    ]
    for path in reads:
        missing(other.get(path), path)
    missing(other.get(f"{meters}/{a['meter']['id']}/event_summaries", params={
        "customer": cus, "start_time": (now // HOUR - 1) * HOUR,
        "end_time": (now // HOUR + 1) * HOUR}), "summaries")
    missing(other.get("/v1/credit_notes/preview", params={"invoice": paid_id, "amount": 100}),
            "credit note preview")

    updates = [
        f"/v1/products/{a['product']['id']}",
        f"/v1/prices/{a['price']['id']}",
        f"/v1/tax_rates/{a['tax_rate']['id']}",
        "/v1/coupons/WALK25",
        f"/v1/promotion_codes/{a['promo']['id']}",
        f"/v1/subscriptions/{sub_id}",
        f"/v1/subscription_items/{a['sub_item']['id']}",
        f"/v1/invoices/{draft_id}",
        f"/v1/invoiceitems/{a['item']['id']}",
        f"/v1/credit_notes/{a['note']['id']}",
        f"/v1/setup_intents/{a['seti']['id']}",
    ]
    for path in updates:
        missing(other.post(path, {"metadata": {"taken": "over"}}), path)
    actions: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/subscriptions/{sub_id}", {"cancel_at_period_end": True}),
        (f"/v1/subscriptions/{sub_id}/resume", {}),
        (f"/v1/subscription_items/{a['sub_item']['id']}", {"quantity": 5}),
        (f"/v1/invoices/{draft_id}/finalize", {}),
        (f"/v1/invoices/{draft_id}/pay", {}),
        (f"/v1/invoices/{draft_id}/void", {}),
        (f"/v1/invoices/{draft_id}/mark_uncollectible", {}),
        (f"/v1/invoices/{paid_id}/void", {}),
        (f"/v1/credit_notes/{a['note']['id']}/void", {}),
        (f"/v1/setup_intents/{a['seti']['id']}/confirm", {"payment_method": "pm_card_visa"}),
        (f"/v1/setup_intents/{a['seti']['id']}/cancel", {}),
        (f"/v1/test_helpers/test_clocks/{a['clock']['id']}/advance",
         {"frozen_time": now + 40 * 86400}),
        (f"{meters}/{a['meter']['id']}", {"display_name": "taken over"}),
        (f"{meters}/{a['meter']['id']}/deactivate", {}),
        (f"{meters}/{a['meter']['id']}/reactivate", {}),
        (f"/v1/customers/{cus}/balance_transactions", {"amount": -100, "currency": "usd"}),
        # B's own creates that name one of A's objects.
        ("/v1/prices", {"product": a["product"]["id"], "unit_amount": 100, "currency": "usd"}),
        ("/v1/promotion_codes", {"coupon": "WALK25", "code": "BTAKES"}),
        ("/v1/subscriptions", {"customer": cus, "items": [{"price": a["price"]["id"]}]}),
        ("/v1/subscriptions", {"customer": b_cus, "items": [{"price": a["price"]["id"]}]}),
        ("/v1/subscription_items", {"subscription": sub_id, "price": a["one_off"]["id"]}),
        ("/v1/invoices", {"customer": cus}),
        ("/v1/invoices", {"customer": b_cus, "currency": "usd",
                          "default_tax_rates": [a["tax_rate"]["id"]]}),
        ("/v1/invoiceitems", {"customer": cus, "amount": 100, "currency": "usd"}),
        ("/v1/invoiceitems", {"customer": b_cus, "invoice": draft_id, "amount": 100,
                              "currency": "usd"}),
        ("/v1/invoiceitems", {"customer": b_cus, "price": a["one_off"]["id"]}),
        ("/v1/credit_notes", {"invoice": paid_id, "amount": 100, "out_of_band_amount": 100}),
        ("/v1/setup_intents", {"customer": cus}),
        ("/v1/customers", {"email": "b2@example.com", "test_clock": a["clock"]["id"]}),
    ]
    for path, body in actions:
        missing(other.post(path, body), (path, body))
    deletes = [
        f"/v1/subscriptions/{sub_id}",
        f"/v1/subscription_items/{a['sub_item']['id']}",
        "/v1/coupons/WALK25",
        f"/v1/products/{a['product']['id']}",
        f"/v1/invoices/{draft_id}",
        f"/v1/invoiceitems/{a['item']['id']}",
        f"/v1/test_helpers/test_clocks/{a['clock']['id']}",
    ]
    for path in deletes:
        missing(other.http.delete(path), ("DELETE", path))

    # B's lists hold nothing of A's, filtered by one of A's objects or not.
    mine_of_a = {
        a["clock"]["id"], a["product"]["id"], a["price"]["id"], a["one_off"]["id"],
        a["tax_rate"]["id"], "WALK25", a["promo"]["id"], sub_id, a["sub_item"]["id"], paid_id,
        draft_id, a["item"]["id"], a["note"]["id"], a["seti"]["id"], a["meter"]["id"],
        a["charge"], a["txn"]["id"],
    }
    for path in ("/v1/test_helpers/test_clocks", "/v1/products", "/v1/prices", "/v1/tax_rates",
                 "/v1/coupons", "/v1/promotion_codes", "/v1/subscriptions", "/v1/invoices",
                 "/v1/invoiceitems", "/v1/credit_notes", "/v1/setup_intents", meters,
                 "/v1/charges", "/v1/events"):
        listed = other.ok("GET", path, params={"limit": 100})["data"]
        assert not mine_of_a & {item["id"] for item in listed}, path
        seen = {str((item.get("data") or {}).get("object", {}).get("id")) for item in listed}
        assert not mine_of_a & seen, path
    for path, params in (
        ("/v1/prices", {"product": a["product"]["id"]}),
        ("/v1/prices", {"lookup_keys[]": "walk_plan"}),
        ("/v1/promotion_codes", {"coupon": "WALK25"}),
        ("/v1/promotion_codes", {"code": "WALKCODE"}),
        ("/v1/subscriptions", {"customer": cus}),
        ("/v1/subscription_items", {"subscription": sub_id}),
        ("/v1/invoices", {"customer": cus}),
        ("/v1/invoices", {"subscription": sub_id}),
        ("/v1/invoiceitems", {"customer": cus}),
        ("/v1/invoiceitems", {"invoice": draft_id}),
        ("/v1/credit_notes", {"invoice": paid_id}),
        ("/v1/setup_intents", {"customer": cus}),
        ("/v1/charges", {"payment_intent": a["paid"]["payment_intent"]}),
    ):
        r = other.get(path, params=params)
        if r.status_code == 404:  # a filter naming another account's object is missing
            missing(r, (path, params))
        else:
            assert r.status_code == 200, (path, params, r.text)
            assert r.json()["data"] == [], (path, params)

    # Names B picks for itself live apart from A's: B's own WALK25 and WALKCODE are new.
    b_coupon = other.ok("POST", "/v1/coupons", {"id": "WALK25", "amount_off": 100,
                                                 "currency": "usd", "duration": "forever"})
    assert b_coupon["amount_off"] == 100
    other.ok("POST", "/v1/promotion_codes", {"coupon": "WALK25", "code": "WALKCODE"})
    other.ok("POST", "/v1/prices", {"product": b_product, "unit_amount": 100,
                                    "currency": "usd", "lookup_key": "walk_plan"})
    # B's meter events under A's event name count nowhere in A's meter.
    r = other.post("/v1/billing/meter_events", {
        "event_name": a["meter"]["event_name"],
        "payload": {"stripe_customer_id": cus, "value": "7"}, "timestamp": now - 60})
    assert r.status_code in (400, 404), r.text

    # A's objects are as A left them.
    assert api.ok("GET", "/v1/coupons/WALK25")["percent_off"] == 25
    assert api.ok("GET", f"/v1/promotion_codes/{a['promo']['id']}")["code"] == "WALKCODE"
    assert api.ok("GET", "/v1/prices", params={"lookup_keys[]": "walk_plan"})["data"][0][
        "id"] == a["price"]["id"]
    sub = api.ok("GET", f"/v1/subscriptions/{sub_id}")
    assert (sub["status"], sub["cancel_at_period_end"], sub["metadata"]) == ("active", False, {})
    assert api.ok("GET", f"/v1/invoices/{draft_id}")["status"] == "draft"
    assert api.ok("GET", f"/v1/invoices/{paid_id}")["status"] == "paid"
    assert api.ok("GET", f"/v1/credit_notes/{a['note']['id']}")["status"] == "issued"
    assert api.ok("GET", f"/v1/setup_intents/{a['seti']['id']}")["status"] == (
        "requires_payment_method")
    assert api.ok("GET", f"{meters}/{a['meter']['id']}")["status"] == "active"
    clock = wait_ready(api, a["clock"]["id"], a["clock"]["frozen_time"])
    assert clock["frozen_time"] == a["clock"]["frozen_time"]
    assert api.ok("GET", f"/v1/products/{a['product']['id']}")["metadata"] == {}
    txns = api.ok("GET", f"/v1/customers/{cus}/balance_transactions")["data"]
    assert [(t["id"], t["ending_balance"]) for t in txns] == [(a["txn"]["id"], -300)]
    summaries = api.ok("GET", f"{meters}/{a['meter']['id']}/event_summaries", params={
        "customer": cus, "start_time": (now // HOUR - 1) * HOUR,
        "end_time": (now // HOUR + 1) * HOUR})["data"]
    assert sum(float(s["aggregated_value"]) for s in summaries) == 0
