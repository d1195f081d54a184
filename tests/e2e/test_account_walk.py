"""Two accounts on one server: every object of A, named every way (our id, the gateway token,
the gateway reference), through every read and write route of the API, is invisible and
unusable from B; and B's lists never show A's objects. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer


def tokenize(server: RunningServer) -> str:
    r = httpx.post(f"{server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123",
        "postal_code": "94107"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@pytest.fixture
def other(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


def a_world(api: Api) -> dict[str, Any]:
    """Account A's objects of every kind, with every name each one has."""
    cus = api.ok("POST", "/v1/customers", {"email": "a@example.com"})
    pm = api.ok("POST", f"/v1/payment_methods/{tokenize(api.server)}/attach",
                {"customer": cus["id"]})
    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 3000, "currency": "usd", "customer": cus["id"], "payment_method": pm["id"],
        "confirm": True})
    held = api.ok("POST", "/v1/payment_intents", {
        "amount": 1500, "currency": "usd", "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True})
    open_ = api.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 500})
    event = api.ok("GET", "/v1/events", params={"limit": 1})["data"][0]
    assert paid["status"] == "succeeded" and held["status"] == "requires_capture"
    return {"customer": cus, "pm": pm, "paid": paid, "held": held, "open": open_,
            "refund": refund, "event": event}


def test_nothing_of_one_account_is_visible_or_usable_from_another(
    api: Api, other: Api
) -> None:
    a = a_world(api)
    b_customer = other.ok("POST", "/v1/customers", {"email": "b@example.com"})
    before = other.counts()
    intent_names = [a["paid"]["id"], a["paid"]["gateway_reference"], a["held"]["id"],
                    a["held"]["gateway_reference"], a["open"]["id"]]
    pm_names = [a["pm"]["id"], a["pm"]["gateway_token"]]
    reads = [
        *(f"/v1/payment_intents/{n}" for n in intent_names),
        f"/v1/refunds/{a['refund']['id']}",
        f"/v1/refunds/{a['refund']['gateway_reference']}",
        f"/v1/customers/{a['customer']['id']}",
        f"/v1/customers/{a['customer']['id']}/payment_methods",
        *(f"/v1/payment_methods/{n}" for n in pm_names),
        f"/v1/events/{a['event']['id']}",
    ]
    for path in reads:
        r = other.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "resource_missing", path
    writes: list[tuple[str, dict[str, Any]]] = [
        *((f"/v1/payment_intents/{n}", {"metadata": {"x": "1"}}) for n in intent_names),
        *((f"/v1/payment_intents/{n}/confirm", {"payment_method": "pm_card_visa"})
          for n in intent_names),
        *((f"/v1/payment_intents/{n}/capture", {}) for n in intent_names),
        *((f"/v1/payment_intents/{n}/cancel", {}) for n in intent_names),
        *(("/v1/refunds", {"payment_intent": n}) for n in intent_names),
        (f"/v1/customers/{a['customer']['id']}", {"name": "taken over"}),
        *((f"/v1/payment_methods/{n}/attach", {"customer": b_customer["id"]})
          for n in pm_names),
        *((f"/v1/payment_methods/{n}/detach", {}) for n in pm_names),
        *(("/v1/payment_intents", {"amount": 100, "currency": "usd", "payment_method": n,
                                   "confirm": True, "customer": b_customer["id"],
                                   "off_session": True}) for n in pm_names),
        ("/v1/payment_intents", {"amount": 100, "currency": "usd",
                                 "customer": a["customer"]["id"]}),
    ]
    for path, body in writes:
        r = other.post(path, body)
        assert r.status_code == 404, (path, body, r.status_code, r.text)
        assert r.json()["error"]["code"] == "resource_missing", path
    r = other.http.delete(f"/v1/customers/{a['customer']['id']}")
    assert r.status_code == 404
    # B's lists hold nothing of A's.
    mine_of_a = {a[k]["id"] for k in ("paid", "held", "open", "refund", "customer", "pm")}
    for path in ("/v1/payment_intents", "/v1/refunds", "/v1/customers", "/v1/events",
                 "/v1/disputes"):
        listed = other.ok("GET", path, params={"limit": 100})["data"]
        assert not mine_of_a & {item["id"] for item in listed}, path
        assert not {item.get("object_id") for item in listed} & mine_of_a, path
    for path, params in (("/v1/payment_intents", {"customer": a["customer"]["id"]}),
                         ("/v1/refunds", {"payment_intent": a["paid"]["id"]})):
        assert other.ok("GET", path, params=params)["data"] == [], path
    # Nothing of B's changed, and A's objects are as A left them.
    after = other.counts()
    assert after["payment_methods"] == before["payment_methods"]
    assert after["gateway_attempts"] == before["gateway_attempts"]
    assert after["refunds"] == before["refunds"] == 0
    assert api.ok("GET", f"/v1/payment_intents/{a['held']['id']}")["status"] == "requires_capture"
    assert api.ok("GET", f"/v1/payment_intents/{a['open']['id']}")["metadata"] == {}
    assert api.ok("GET", f"/v1/customers/{a['customer']['id']}").get("name") is None
    assert api.ok("GET", f"/v1/payment_methods/{a['pm']['id']}")["customer"] == (
        a["customer"]["id"])
    assert len(api.charges(a["paid"]["id"])) == 1
