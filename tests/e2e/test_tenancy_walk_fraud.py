"""Two accounts on one server, the objects the other account walks leave out (test_account_walk*.py):
fraud rules, Radar value lists and their items, and reviews. Each of account A's, through every
read, update, delete and action route, and named in B's own creates (an item in A's list, a
rule naming A's list by its alias), is a 404 ``resource_missing`` for B (the alias: the 400 of
a list B does not have); B's lists never show it; A's objects are as A left them, and A's
rules decide nothing of B's. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer
from support.walks import ok, send

ALIAS = "walk_blocked_emails_a"


@pytest.fixture
def other(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


def a_world(api: Api) -> dict[str, Any]:
    """Account A's fraud objects: a review rule, a value list with an item, and a review of a
    payment that rule held."""
    rule = ok(api, "POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    lst = ok(
        api,
        "POST",
        "/v1/radar/value_lists",
        {"alias": ALIAS, "name": "Blocked e-mails", "item_type": "email"},
    )
    item = ok(
        api,
        "POST",
        "/v1/radar/value_list_items",
        {"value_list": lst["id"], "value": "fraud@example.com"},
    )
    pi = ok(api, "POST", "/v1/payment_intents", {"amount": 7000, "currency": "usd"})
    held = ok(
        api,
        "POST",
        f"/v1/payment_intents/{pi['id']}/confirm",
        {"payment_method": "pm_card_visa"},
        headers={"Paymux-Payer-Ip": "203.0.113.9"},
    )
    assert held["status"] == "requires_capture", held
    reviews = ok(api, "GET", "/v1/reviews", params={"open": "true"})["data"]
    review = next(rv for rv in reviews if rv["payment_intent"] == pi["id"])
    return {"rule": rule, "list": lst, "item": item, "review": review, "held": held}


def assert_missing(r: httpx.Response, what: str) -> None:
    assert r.status_code == 404, (what, r.status_code, r.text)
    assert r.json()["error"]["code"] == "resource_missing", what


def test_no_fraud_object_of_one_account_is_visible_or_usable_from_another(
    api: Api, other: Api
) -> None:
    a = a_world(api)
    rule, lst, item, review = a["rule"]["id"], a["list"]["id"], a["item"]["id"], a["review"]["id"]
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/fraud/rules/{rule}", None),
        ("POST", f"/v1/fraud/rules/{rule}", {"rule": "block if :amount: > 1"}),
        ("POST", f"/v1/fraud/rules/{rule}/disable", None),
        ("POST", f"/v1/fraud/rules/{rule}/enable", None),
        ("DELETE", f"/v1/fraud/rules/{rule}", None),
        ("GET", f"/v1/radar/value_lists/{lst}", None),
        ("POST", f"/v1/radar/value_lists/{lst}", {"name": "taken over"}),
        ("DELETE", f"/v1/radar/value_lists/{lst}", None),
        ("POST", "/v1/radar/value_list_items", {"value_list": lst, "value": "b@example.com"}),
        ("GET", f"/v1/radar/value_list_items/{item}", None),
        ("DELETE", f"/v1/radar/value_list_items/{item}", None),
        ("GET", f"/v1/reviews/{review}", None),
        ("POST", f"/v1/reviews/{review}/approve", None),
        ("POST", f"/v1/reviews/{review}/reject", None),
    ]
    for method, path, body in calls:
        assert_missing(send(other, method, path, body), f"{method} {path}")

    # B's lists hold nothing of A's, A's list's items included.
    mine_of_a = {rule, lst, item, review}
    for path, params in (
        ("/v1/fraud/rules", {}),
        ("/v1/radar/value_lists", {}),
        ("/v1/radar/value_lists", {"alias": ALIAS}),
        ("/v1/reviews", {}),
        ("/v1/reviews", {"open": "true"}),
    ):
        listed = ok(other, "GET", path, params={"limit": 100, **params})["data"]
        assert not mine_of_a & {x["id"] for x in listed}, path
    assert_missing(
        send(other, "GET", "/v1/radar/value_list_items", params={"value_list": lst}),
        "GET /v1/radar/value_list_items?value_list=A's",
    )

    # B's rule can't name A's list by its alias: for B there is no such list.
    r = send(other, "POST", "/v1/fraud/rules", {"rule": f"block if :email: in @{ALIAS}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "rule" and f"@{ALIAS}" in r.json()["error"]["message"]
    # A's review rule holds nothing of B's: the same payment is B's to capture at once.
    pi = ok(other, "POST", "/v1/payment_intents", {"amount": 7000, "currency": "usd"})
    paid = ok(
        other,
        "POST",
        f"/v1/payment_intents/{pi['id']}/confirm",
        {"payment_method": "pm_card_visa"},
        headers={"Paymux-Payer-Ip": "203.0.113.9"},
    )
    assert paid["status"] == "succeeded", paid
    assert ok(other, "GET", "/v1/reviews")["data"] == []

    # A's objects are as A left them.
    kept = ok(api, "GET", f"/v1/fraud/rules/{rule}")
    assert (kept["action"], kept["predicate"], kept["status"]) == (
        "review",
        ":amount: > 5000",
        "active",
    )
    assert ok(api, "GET", f"/v1/radar/value_lists/{lst}")["name"] == "Blocked e-mails"
    assert ok(api, "GET", f"/v1/radar/value_list_items/{item}")["value"] == "fraud@example.com"
    listed = ok(api, "GET", "/v1/radar/value_list_items", params={"value_list": lst})["data"]
    assert [x["id"] for x in listed] == [item]
    assert ok(api, "GET", f"/v1/reviews/{review}")["open"] is True
    assert ok(api, "GET", f"/v1/payment_intents/{a['held']['id']}")["status"] == (
        "requires_capture"
    )
