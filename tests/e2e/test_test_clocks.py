"""Test clocks at Stripe's paths (SQLite and PostgreSQL): create, retrieve, list, advance
(advancing, then ready once everything due has run), delete; customers on a clock; several
clocks isolated from each other and from the wall clock; bad input refused with stable
codes."""

from __future__ import annotations

from conftest import Api
from support.billing import advance, clock, customer_with_card, invoices, price, ts, wait_ready


def test_create_retrieve_list_and_shape(api: Api) -> None:
    c = clock(api, ts(2026, 1, 1), name="year one")
    assert c["object"] == "test_helpers.test_clock"
    assert (c["status"], c["frozen_time"], c["name"], c["livemode"]) == (
        "ready",
        ts(2026, 1, 1),
        "year one",
        False,
    )
    assert c["id"].startswith("clock_")
    assert api.ok("GET", f"/v1/test_helpers/test_clocks/{c['id']}") == c
    listed = api.ok("GET", "/v1/test_helpers/test_clocks")
    assert listed["object"] == "list"
    assert [x["id"] for x in listed["data"]] == [c["id"]]


def test_advance_goes_through_advancing_to_ready_and_runs_renewals_in_order(api: Api) -> None:
    c = clock(api, ts(2026, 1, 15))
    customer, _ = customer_with_card(api, c["id"])
    assert api.ok("GET", f"/v1/customers/{customer}")["test_clock"] == c["id"]
    sub = api.ok(
        "POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": price(api, 900)}]}
    )
    moved = api.ok(
        "POST", f"/v1/test_helpers/test_clocks/{c['id']}/advance", {"frozen_time": ts(2026, 7, 1)}
    )
    assert moved["status"] == "advancing"
    assert moved["status_details"]["advancing"]["target_frozen_time"] == ts(2026, 7, 1)
    # A second advance while one runs is refused.
    r = api.post(
        f"/v1/test_helpers/test_clocks/{c['id']}/advance", json={"frozen_time": ts(2026, 8, 1)}
    )
    if r.status_code == 200:  # the first had already finished: wait for the second
        wait_ready(api, c["id"], ts(2026, 8, 1))
    else:
        assert r.json()["error"]["param"] == "frozen_time"
        wait_ready(api, c["id"], ts(2026, 7, 1))
    advance(api, c["id"], ts(2026, 9, 1))
    found = invoices(api, sub["id"])
    assert [i["period_start"] for i in found] == [ts(2026, m, 15) for m in range(1, 9)]
    assert all(i["status"] == "paid" for i in found)
    # Numbers in the order the periods were invoiced: gap-free.
    numbers = [int(i["number"].rsplit("-", 1)[1]) for i in found]
    assert numbers == list(range(numbers[0], numbers[0] + 8))
    # Invoices carry the clock's time, not the wall's.
    assert [i["created"] for i in found] == [ts(2026, m, 15) for m in range(1, 9)]


def test_two_clocks_are_isolated(api: Api) -> None:
    a, b = clock(api, ts(2026, 1, 1)), clock(api, ts(2026, 1, 1))
    p = price(api, 1000)
    subs = []
    for c in (a, b):
        customer, _ = customer_with_card(api, c["id"])
        subs.append(
            api.ok("POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": p}]})
        )
    advance(api, a["id"], ts(2026, 4, 2))
    assert len(invoices(api, subs[0]["id"])) == 4  # Jan, Feb, Mar, Apr
    assert len(invoices(api, subs[1]["id"])) == 1  # b did not move
    assert api.ok("GET", f"/v1/test_helpers/test_clocks/{b['id']}")["frozen_time"] == ts(2026, 1, 1)


def test_a_customer_without_clock_is_on_the_wall_clock(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    sub = api.ok(
        "POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": price(api, 800)}]}
    )
    assert sub["test_clock"] is None
    assert abs(sub["start_date"] - sub["created"]) <= 1
    c = clock(api, ts(2026, 1, 1))
    advance(api, c["id"], ts(2027, 1, 1))
    assert len(invoices(api, sub["id"])) == 1


def test_delete_cancels_the_clocks_subscriptions(api: Api) -> None:
    c = clock(api, ts(2026, 1, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = api.ok(
        "POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": price(api, 800)}]}
    )
    r = api.http.delete(f"/v1/test_helpers/test_clocks/{c['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": c["id"], "object": "test_helpers.test_clock", "deleted": True}
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "canceled"
    assert api.get(f"/v1/test_helpers/test_clocks/{c['id']}").status_code == 404


def test_bad_input(api: Api) -> None:
    c = clock(api, ts(2026, 1, 1))
    r = api.post(
        f"/v1/test_helpers/test_clocks/{c['id']}/advance", json={"frozen_time": ts(2025, 1, 1)}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "parameter_invalid")
    assert r.json()["error"]["param"] == "frozen_time"
    r = api.post("/v1/test_helpers/test_clocks", json={"frozen_time": "soon"})
    assert r.status_code == 400
    r = api.post("/v1/customers", json={"test_clock": "clock_nope"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "resource_missing")
    assert api.get("/v1/test_helpers/test_clocks/clock_nope").status_code == 404
