"""One account, two modes: every test-mode object of the account, named every way (our id,
the gateway token, the gateway reference), through the read, update and action routes, is a
404 ``resource_missing`` for the same account's live key, and never in its lists; the live
objects are as invisible to the test key. The test objects are as the test key left them.
SQLite and PostgreSQL.

(Across accounts the same is test_account_walk*.py; this is the other wall: a test key never
touches live objects and a live key never test ones, whatever the object's type.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from conftest import Api, RunningServer
from paymux.services import Paymux
from support.walks import ok, send


class Key(Api):
    """A client with a new key of ``account`` in the given mode (live keys over TLS, through
    the test server's trusted proxy)."""

    def __init__(self, server: RunningServer, account: str, livemode: bool) -> None:
        async def make() -> str:
            app = Paymux(server.settings)
            try:
                new, _ = await app.keys.create(account, livemode=livemode)
                return new.key
            finally:
                await app.close()

        self.server, self.account_id, self.key = server, account, asyncio.run(make())
        tls = {"x-forwarded-proto": "https"} if livemode else {}
        self.http = httpx.Client(
            base_url=server.url, timeout=30, headers={"authorization": f"Bearer {self.key}", **tls}
        )


def tokenize(server: RunningServer) -> str:
    r = httpx.post(
        f"{server.url}/sandbox/v1/tokens",
        timeout=10,
        json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def a_test_mode_world(api: Api) -> dict[str, Any]:
    """The account's test-mode objects of many kinds."""
    cus = ok(api, "POST", "/v1/customers", {"email": "test-mode@example.com"})
    pm = ok(
        api, "POST", f"/v1/payment_methods/{tokenize(api.server)}/attach", {"customer": cus["id"]}
    )
    paid = ok(
        api,
        "POST",
        "/v1/payment_intents",
        {
            "amount": 3000,
            "currency": "usd",
            "customer": cus["id"],
            "payment_method": pm["id"],
            "confirm": True,
        },
    )
    held = ok(
        api,
        "POST",
        "/v1/payment_intents",
        {
            "amount": 1500,
            "currency": "usd",
            "capture_method": "manual",
            "payment_method": "pm_card_visa",
            "confirm": True,
        },
    )
    open_ = ok(api, "POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    refund = ok(api, "POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 500})
    seti = ok(api, "POST", "/v1/setup_intents", {"customer": cus["id"]})
    product = ok(api, "POST", "/v1/products", {"name": "Test-mode product"})
    price = ok(
        api,
        "POST",
        "/v1/prices",
        {"product": product["id"], "unit_amount": 1000, "currency": "usd"},
    )
    coupon = ok(api, "POST", "/v1/coupons", {"percent_off": 10, "duration": "once"})
    rule = ok(api, "POST", "/v1/fraud/rules", {"rule": "review if :amount: > 900000"})
    lst = ok(
        api,
        "POST",
        "/v1/radar/value_lists",
        {"alias": "mode_walk_emails", "name": "Emails", "item_type": "email"},
    )
    event = ok(api, "GET", "/v1/events", params={"limit": 1})["data"][0]
    assert paid["status"] == "succeeded" and held["status"] == "requires_capture"
    assert all(
        o["livemode"] is False
        for o in (cus, pm, paid, held, refund, seti, product, price, coupon, event)
    )
    return {
        "customer": cus,
        "pm": pm,
        "paid": paid,
        "held": held,
        "open": open_,
        "refund": refund,
        "seti": seti,
        "product": product,
        "price": price,
        "coupon": coupon,
        "rule": rule,
        "list": lst,
        "event": event,
    }


def assert_missing(r: httpx.Response, what: str) -> None:
    assert r.status_code == 404, (what, r.status_code, r.text)
    assert r.json()["error"]["code"] == "resource_missing", what


def test_a_live_key_neither_sees_nor_touches_test_objects_and_back(api: Api) -> None:
    t = a_test_mode_world(api)
    live = Key(api.server, api.account_id, livemode=True)
    try:
        intents = [
            t["paid"]["id"],
            t["paid"]["gateway_reference"],
            t["held"]["id"],
            t["held"]["gateway_reference"],
            t["open"]["id"],
        ]
        pms = [t["pm"]["id"], t["pm"]["gateway_token"]]
        cus = t["customer"]["id"]
        reads = [
            *(f"/v1/payment_intents/{n}" for n in intents),
            f"/v1/refunds/{t['refund']['id']}",
            f"/v1/refunds/{t['refund']['gateway_reference']}",
            f"/v1/customers/{cus}",
            f"/v1/customers/{cus}/payment_methods",
            *(f"/v1/payment_methods/{n}" for n in pms),
            f"/v1/setup_intents/{t['seti']['id']}",
            f"/v1/events/{t['event']['id']}",
            f"/v1/products/{t['product']['id']}",
            f"/v1/prices/{t['price']['id']}",
            f"/v1/coupons/{t['coupon']['id']}",
            f"/v1/fraud/rules/{t['rule']['id']}",
            f"/v1/radar/value_lists/{t['list']['id']}",
        ]
        for path in reads:
            assert_missing(send(live, "GET", path), path)
        writes: list[tuple[str, dict[str, Any]]] = [
            *((f"/v1/payment_intents/{n}", {"metadata": {"x": "1"}}) for n in intents),
            *((f"/v1/payment_intents/{n}/capture", {}) for n in intents),
            *((f"/v1/payment_intents/{n}/cancel", {}) for n in intents),
            *(("/v1/refunds", {"payment_intent": n}) for n in intents),
            (f"/v1/customers/{cus}", {"name": "taken over"}),
            *((f"/v1/payment_methods/{n}/detach", {}) for n in pms),
            (f"/v1/setup_intents/{t['seti']['id']}/cancel", {}),
            (f"/v1/products/{t['product']['id']}", {"name": "taken over"}),
            (f"/v1/prices/{t['price']['id']}", {"nickname": "taken over"}),
            (f"/v1/fraud/rules/{t['rule']['id']}/disable", {}),
            (f"/v1/radar/value_lists/{t['list']['id']}", {"name": "taken over"}),
            ("/v1/radar/value_list_items", {"value_list": t["list"]["id"], "value": "x@y.z"}),
        ]
        for path, body in writes:
            assert_missing(send(live, "POST", path, body), f"POST {path}")
        assert_missing(send(live, "DELETE", f"/v1/customers/{cus}"), "DELETE customer")
        assert_missing(send(live, "DELETE", f"/v1/coupons/{t['coupon']['id']}"), "DELETE coupon")
        # The live key's lists hold nothing of test mode's.
        ids = {o["id"] for o in t.values()}
        for path in (
            "/v1/payment_intents",
            "/v1/refunds",
            "/v1/customers",
            "/v1/events",
            "/v1/setup_intents",
            "/v1/products",
            "/v1/prices",
            "/v1/coupons",
            "/v1/fraud/rules",
            "/v1/radar/value_lists",
        ):
            listed = ok(live, "GET", path, params={"limit": 100})["data"]
            assert not ids & {o["id"] for o in listed}, path
        assert ok(live, "GET", "/v1/payment_intents", params={"customer": cus})["data"] == []

        # And back: the live key's own objects are invisible to the test key.
        live_cus = ok(live, "POST", "/v1/customers", {"email": "live-mode@example.com"})
        live_product = ok(live, "POST", "/v1/products", {"name": "Live product"})
        live_rule = ok(live, "POST", "/v1/fraud/rules", {"rule": "review if :amount: > 900000"})
        assert live_cus["livemode"] is True and live_product["livemode"] is True
        for path in (
            f"/v1/customers/{live_cus['id']}",
            f"/v1/products/{live_product['id']}",
            f"/v1/fraud/rules/{live_rule['id']}",
        ):
            assert_missing(send(api, "GET", path), path)
        assert_missing(
            send(api, "POST", f"/v1/customers/{live_cus['id']}", {"name": "x"}),
            "POST live customer",
        )
        listed = {o["id"] for o in ok(api, "GET", "/v1/customers", params={"limit": 100})["data"]}
        assert live_cus["id"] not in listed and cus in listed
    finally:
        live.close()

    # The test objects are as the test key left them.
    assert ok(api, "GET", f"/v1/payment_intents/{t['held']['id']}")["status"] == (
        "requires_capture"
    )
    assert ok(api, "GET", f"/v1/payment_intents/{t['open']['id']}")["metadata"] == {}
    assert ok(api, "GET", f"/v1/customers/{cus}").get("name") is None
    assert ok(api, "GET", f"/v1/payment_methods/{t['pm']['id']}")["customer"] == cus
    assert ok(api, "GET", f"/v1/setup_intents/{t['seti']['id']}")["status"] == (t["seti"]["status"])
    assert ok(api, "GET", f"/v1/products/{t['product']['id']}")["name"] == "Test-mode product"
    assert ok(api, "GET", f"/v1/fraud/rules/{t['rule']['id']}")["status"] == "active"
    assert ok(api, "GET", f"/v1/radar/value_lists/{t['list']['id']}")["name"] == "Emails"
    assert len(api.charges(t["paid"]["id"])) == 1
