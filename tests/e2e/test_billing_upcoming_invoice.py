"""``invoice.upcoming`` and the invoice preview (SQLite and PostgreSQL, over HTTP).

The event is sent ``PAYMUX_BILLING_UPCOMING_INVOICE_DAYS`` (7 by default) before a
subscription renews, once per period, from the scheduler; a test clock's advance shows it at
its own time. ``POST /v1/invoices/create_preview`` (what the pinned stripe-python calls) and
the older ``GET /v1/invoices/upcoming`` show the invoice the next renewal will make, and store
nothing. Expected amounts are worked out by hand from the prices below."""

from __future__ import annotations

from typing import Any

import stripe

from conftest import Api
from support.billing import advance, clock, customer_with_card, invoices, price, ts

DAY = 86_400


def upcoming_events(api: Api, sub_id: str) -> list[dict[str, Any]]:
    """This subscription's ``invoice.upcoming`` events, oldest first."""
    data = api.ok("GET", "/v1/events", params={"type": "invoice.upcoming", "limit": 100})["data"]
    return [e for e in reversed(data) if e["data"]["object"]["subscription"] == sub_id]


def monthly(api: Api, start: int, amount: int = 1500) -> tuple[str, str, str]:
    """(clock, customer, subscription): a monthly subscription made at ``start`` on a clock."""
    clk = clock(api, start)["id"]
    cus, _ = customer_with_card(api, clk)
    sub = api.ok("POST", "/v1/subscriptions",
                 {"customer": cus, "items": [{"price": price(api, amount)}]})
    assert sub["status"] == "active"
    return clk, cus, sub["id"]


def test_sent_seven_days_before_each_renewal_once_per_period(api: Api) -> None:
    clk, cus, sub = monthly(api, ts(2027, 1, 1))
    # The renewal is on Feb 1: the notice is due on Jan 25, 00:00 UTC.
    advance(api, clk, ts(2027, 1, 24, 23))
    assert upcoming_events(api, sub) == []
    advance(api, clk, ts(2027, 1, 25, 1))
    [first] = upcoming_events(api, sub)
    assert first["created"] == ts(2027, 1, 25)
    preview = first["data"]["object"]
    assert preview["object"] == "invoice"
    assert preview["id"].startswith("upcoming_in_")
    assert preview["status"] == "draft" and preview["number"] is None
    assert preview["hosted_invoice_url"] is None
    assert preview["billing_reason"] == "upcoming"
    assert (preview["period_start"], preview["period_end"]) == (ts(2027, 2, 1), ts(2027, 3, 1))
    assert (preview["subtotal"], preview["total"], preview["amount_due"]) == (1500, 1500, 1500)
    assert [line["amount"] for line in preview["lines"]["data"]] == [1500]
    assert preview["customer"] == cus
    # Nothing of the preview was stored: still only the first invoice.
    assert len(invoices(api, sub)) == 1
    # Later steps of the same period send nothing more.
    advance(api, clk, ts(2027, 1, 31))
    assert len(upcoming_events(api, sub)) == 1
    # The renewal on Feb 1, then the next notice on Feb 22 (7 days before Mar 1).
    advance(api, clk, ts(2027, 2, 21))
    assert len(upcoming_events(api, sub)) == 1
    advance(api, clk, ts(2027, 2, 23))
    events = upcoming_events(api, sub)
    assert [e["created"] for e in events] == [ts(2027, 1, 25), ts(2027, 2, 22)]
    assert events[1]["data"]["object"]["period_start"] == ts(2027, 3, 1)
    made = invoices(api, sub)
    assert [i["period_start"] for i in made] == [ts(2027, 1, 1), ts(2027, 2, 1)]
    # The previews took no invoice number: the renewal's follows the first one's.
    first_no, second_no = (int(i["number"].rsplit("-", 1)[1]) for i in made)
    assert second_no == first_no + 1


def test_one_notice_when_a_single_advance_jumps_past_it(api: Api) -> None:
    clk, _, sub = monthly(api, ts(2027, 3, 1))
    advance(api, clk, ts(2027, 4, 1, 12))  # past the notice (Mar 25) and the renewal (Apr 1)
    events = upcoming_events(api, sub)
    assert [e["created"] for e in events] == [ts(2027, 3, 25)]
    assert events[0]["data"]["object"]["period_start"] == ts(2027, 4, 1)


def test_no_notice_for_a_subscription_ending_at_the_period_end(api: Api) -> None:
    clk, _, sub = monthly(api, ts(2027, 5, 1))
    api.ok("POST", f"/v1/subscriptions/{sub}", {"cancel_at_period_end": True})
    advance(api, clk, ts(2027, 5, 30))
    assert upcoming_events(api, sub) == []


def test_no_notice_when_the_period_is_shorter_than_the_lead(api: Api) -> None:
    clk = clock(api, ts(2027, 6, 1))["id"]
    cus, _ = customer_with_card(api, clk)
    weekly_price = price(api, 300, interval="day", recurring={"interval_count": 5})
    sub = api.ok("POST", "/v1/subscriptions", {"customer": cus, "items": [{"price": weekly_price}]})
    advance(api, clk, ts(2027, 6, 12))  # two renewals (Jun 6, Jun 11), periods of 5 days
    assert upcoming_events(api, sub["id"]) == []
    assert len(invoices(api, sub["id"])) == 3


def test_a_trial_end_is_announced_with_the_first_paid_invoice(api: Api) -> None:
    clk = clock(api, ts(2027, 7, 1))["id"]
    cus, _ = customer_with_card(api, clk)
    sub = api.ok("POST", "/v1/subscriptions", {
        "customer": cus, "items": [{"price": price(api, 2500)}], "trial_period_days": 14})
    assert sub["status"] == "trialing"
    advance(api, clk, ts(2027, 7, 9))  # trial ends Jul 15: the notice is on Jul 8
    [event] = upcoming_events(api, sub["id"])
    assert event["created"] == ts(2027, 7, 8)
    assert event["data"]["object"]["amount_due"] == 2500
    assert event["data"]["object"]["period_start"] == ts(2027, 7, 15)


def test_create_preview_with_stripe_python_and_the_older_get(api: Api) -> None:
    clk, cus, sub = monthly(api, ts(2027, 8, 1), amount=4000)
    # A pending item for the customer's next invoice: the preview has it with the period.
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "amount": 1000, "currency": "usd"})
    sdk = stripe.StripeClient(
        api_key=api.key, base_addresses={"api": api.server.url}, max_network_retries=0
    )
    preview = sdk.v1.invoices.create_preview({"subscription": sub})
    assert preview.id is not None and preview.id.startswith("upcoming_in_")
    assert preview.status == "draft"
    assert (preview.period_start, preview.period_end) == (ts(2027, 9, 1), ts(2027, 10, 1))
    assert sorted(line.amount for line in preview.lines.data) == [1000, 4000]
    assert preview.amount_due == 5000
    by_customer = sdk.v1.invoices.create_preview({"customer": cus})
    assert by_customer.amount_due == 5000
    older = api.ok("GET", "/v1/invoices/upcoming", params={"customer": cus})
    assert older["id"] is None and older["amount_due"] == 5000
    # Nothing was stored or taken: one invoice, the item still pending.
    assert len(invoices(api, sub)) == 1
    items = api.ok("GET", "/v1/invoiceitems", params={"customer": cus, "pending": "true"})
    assert [i["amount"] for i in items["data"]] == [1000]
    # The renewal then bills what the preview showed.
    advance(api, clk, ts(2027, 9, 1, 1))
    renewal = invoices(api, sub)[-1]
    assert (renewal["period_start"], renewal["amount_due"]) == (ts(2027, 9, 1), 5000)


def test_preview_errors_are_clear(api: Api) -> None:
    r = api.post("/v1/invoices/create_preview", {})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "customer"
    lonely = api.ok("POST", "/v1/customers", {"email": "none@example.com"})["id"]
    r = api.post("/v1/invoices/create_preview", {"customer": lonely})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "resource_missing"
    r = api.post("/v1/invoices/create_preview", {"subscription": "sub_nope"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "subscription"


def test_the_preview_has_a_downgrade_at_period_end_a_coupon_and_tax_and_keeps_them(
    api: Api,
) -> None:
    """Worked by hand: the renewal bills the downgraded price 2,000, 50 % off (1,000), then
    10 % exclusive tax on that (100): total 1,100."""
    clk = clock(api, ts(2027, 10, 1))["id"]
    cus, _ = customer_with_card(api, clk)
    pro, basic = price(api, 8000), price(api, 2000)
    coupon = api.ok("POST", "/v1/coupons", {"percent_off": 50, "duration": "forever"})
    tax = api.ok("POST", "/v1/tax_rates", {"display_name": "VAT", "percentage": 10,
                                           "inclusive": False})
    sub = api.ok("POST", "/v1/subscriptions", {
        "customer": cus, "items": [{"price": pro}], "coupon": coupon["id"],
        "default_tax_rates": [tax["id"]]})
    item = sub["items"]["data"][0]["id"]
    api.ok("POST", f"/v1/subscriptions/{sub['id']}",
           {"items": [{"id": item, "price": basic}], "paymux_apply_at": "period_end"})
    preview = api.ok("POST", "/v1/invoices/create_preview", {"subscription": sub["id"]})
    assert [line["amount"] for line in preview["lines"]["data"]] == [2000]
    assert (preview["subtotal"], preview["tax"], preview["total"]) == (2000, 100, 1100)
    assert preview["total_discount_amounts"][0]["amount"] == 1000
    # The downgrade is still only pending: the preview applied it in a rolled-back savepoint.
    now = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert now["items"]["data"][0]["price"]["id"] == pro
    assert now["pending_update"]["items"][0]["price"] == basic
    # The notice carries the same invoice; the renewal then bills it.
    advance(api, clk, ts(2027, 10, 26))
    [event] = upcoming_events(api, sub["id"])
    assert event["data"]["object"]["total"] == 1100
    advance(api, clk, ts(2027, 11, 1, 1))
    renewal = invoices(api, sub["id"])[-1]
    assert (renewal["period_start"], renewal["total"]) == (ts(2027, 11, 1), 1100)
