"""Subscriptions through the HTTP API (SQLite and PostgreSQL): create on a price, the first
invoice paid off-session, renewals on a test clock with month-end anchors, statuses as the
state table says, prorations with literal amounts, cancel and resume."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conftest import Api
from support.billing import (
    advance,
    attach,
    clock,
    customer_with_card,
    event_types,
    invoices,
    price,
    ts,
)
from support.sandbox_pages import answer_challenge


def subscribe(api: Api, customer: str, price_id: str, **extra: Any) -> dict[str, Any]:
    return api.ok(
        "POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": price_id}], **extra}
    )


def latest_invoice(api: Api, sub_id: str) -> dict[str, Any]:
    sub = api.ok("GET", f"/v1/subscriptions/{sub_id}")
    return api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")


def test_first_invoice_is_paid_off_session_and_the_subscription_is_active(api: Api) -> None:
    c = clock(api, ts(2026, 3, 10, 12))
    customer, pm = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1500))
    assert sub["status"] == "active"
    assert sub["current_period_start"] == ts(2026, 3, 10, 12)
    assert sub["current_period_end"] == ts(2026, 4, 10, 12)
    assert sub["test_clock"] == c["id"]
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "paid"
    assert invoice["billing_reason"] == "subscription_create"
    assert (invoice["amount_due"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        1500,
        1500,
        0,
    )
    assert invoice["number"].endswith("-0001")
    assert invoice["hosted_invoice_url"].startswith(f"{api.server.url}/invoices/")
    assert invoice["invoice_pdf"] == invoice["hosted_invoice_url"] + "/pdf"
    assert [line["amount"] for line in invoice["lines"]["data"]] == [1500]
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert (pi["status"], pi["amount"], pi["invoice"], pi["payment_method"]) == (
        "succeeded",
        1500,
        invoice["id"],
        pm,
    )
    types = event_types(api, invoice["id"])
    assert {"invoice.created", "invoice.finalized", "invoice.paid"} <= set(types)
    # Events of one transaction share their time: their order among them is not the claim.
    assert event_types(api, sub["id"]).count("customer.subscription.created") == 1


def test_jan_31_anchor_renews_on_feb_28_then_mar_31_on_a_clock(api: Api) -> None:
    c = clock(api, ts(2027, 1, 31, 9))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 2000))
    assert sub["current_period_end"] == ts(2027, 2, 28, 9)
    advance(api, c["id"], ts(2027, 3, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2027, 2, 28, 9),
        ts(2027, 3, 31, 9),
    )
    advance(api, c["id"], ts(2027, 4, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2027, 3, 31, 9),
        ts(2027, 4, 30, 9),
    )
    found = invoices(api, sub["id"])
    assert [(i["period_start"], i["status"], i["amount_paid"]) for i in found] == [
        (ts(2027, 1, 31, 9), "paid", 2000),
        (ts(2027, 2, 28, 9), "paid", 2000),
        (ts(2027, 3, 31, 9), "paid", 2000),
    ]
    assert [i["billing_reason"] for i in found] == [
        "subscription_create",
        "subscription_cycle",
        "subscription_cycle",
    ]
    assert sub["status"] == "active"


def test_leap_year_feb_29(api: Api) -> None:
    c = clock(api, ts(2028, 1, 30))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 3100), billing_cycle_anchor=ts(2028, 1, 31))
    # The anchor is tomorrow: a one-day first period, prorated; then Feb 29 (2028 is leap).
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2028, 1, 30),
        ts(2028, 1, 31),
    )
    first = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    # 3100 for Dec 31 -> Jan 31 (31 days); one day of it: 100.
    assert first["lines"]["data"][0]["amount"] == 100
    assert first["lines"]["data"][0]["proration"] is True
    advance(api, c["id"], ts(2028, 2, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2028, 1, 31),
        ts(2028, 2, 29),
    )


def test_trial_then_renewal_and_trial_will_end(api: Api) -> None:
    c = clock(api, ts(2026, 6, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1000), trial_period_days=14)
    assert sub["status"] == "trialing"
    assert sub["trial_end"] == ts(2026, 6, 15)
    first = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (first["status"], first["amount_due"]) == ("paid", 0)
    advance(api, c["id"], ts(2026, 6, 13))
    assert "customer.subscription.trial_will_end" in event_types(api, sub["id"])
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "trialing"
    advance(api, c["id"], ts(2026, 6, 15, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "active"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2026, 6, 15),
        ts(2026, 7, 15),
    )
    latest = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (latest["status"], latest["amount_paid"]) == ("paid", 1000)


def test_mid_period_upgrade_prorations_to_the_second(api: Api) -> None:
    # April has 30 days: 2,592,000 s. Upgrade 1000 -> 3000 exactly 10 days in (20 days left).
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    basic, pro = price(api, 1000), price(api, 3000)
    sub = subscribe(api, customer, basic)
    advance(api, c["id"], ts(2026, 4, 11))
    item = sub["items"]["data"][0]["id"]
    sub = api.ok(
        "POST",
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"id": item, "price": pro}], "proration_behavior": "always_invoice"},
    )
    upgrade = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    amounts = sorted(line["amount"] for line in upgrade["lines"]["data"])
    # Unused 20/30 of 1000 = -666.67 -> -667; remaining 20/30 of 3000 = 2000.
    assert amounts == [-667, 2000]
    assert all(line["proration"] for line in upgrade["lines"]["data"])
    assert (upgrade["billing_reason"], upgrade["total"], upgrade["status"]) == (
        "subscription_update",
        1333,
        "paid",
    )
    advance(api, c["id"], ts(2026, 5, 1, 1))
    renewal = latest_invoice(api, sub["id"])
    assert [line["amount"] for line in renewal["lines"]["data"]] == [3000]


def test_create_prorations_go_on_the_next_invoice(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1000))
    advance(api, c["id"], ts(2026, 4, 16))  # 15 of 30 days left
    item = sub["items"]["data"][0]["id"]
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "quantity": 3}]})
    advance(api, c["id"], ts(2026, 5, 1, 1))
    renewal = latest_invoice(api, sub["id"])
    amounts = sorted(line["amount"] for line in renewal["lines"]["data"])
    # Next period 3 x 1000 = 3000; credit -500 (half of 1000); debit +1500 (half of 3000).
    assert amounts == [-500, 1500, 3000]
    assert renewal["amount_paid"] == 4000


def test_cancel_at_period_end_can_be_undone_then_cancels(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1000))
    sub = api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
    assert (sub["cancel_at_period_end"], sub["cancel_at"]) == (True, ts(2026, 5, 1))
    sub = api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": False})
    assert (sub["cancel_at_period_end"], sub["cancel_at"]) == (False, None)
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
    advance(api, c["id"], ts(2026, 5, 2))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert (sub["status"], sub["ended_at"]) == ("canceled", ts(2026, 5, 1))
    assert len(invoices(api, sub["id"])) == 1  # no renewal invoice
    assert "customer.subscription.deleted" in event_types(api, sub["id"])


def test_cancel_now_with_prorated_credit(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 3000))
    advance(api, c["id"], ts(2026, 4, 21))  # 10 of 30 days unused
    r = api.http.delete(
        f"/v1/subscriptions/{sub['id']}", params={"invoice_now": "true", "prorate": "true"}
    )
    assert r.status_code == 200, r.text
    sub = r.json()
    assert sub["status"] == "canceled"
    credit = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert [line["amount"] for line in credit["lines"]["data"]] == [-1000]
    assert (credit["total"], credit["amount_due"], credit["ending_balance"]) == (-1000, 0, -1000)
    assert api.server.sql("select balance from customers where id = :c", c=customer)[0][0] == -1000


def test_declined_first_payment_leaves_incomplete_then_expires(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"], "pm_card_chargeCustomerFail")
    sub = subscribe(api, customer, price(api, 1000))
    assert sub["status"] == "incomplete"
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["attempt_count"], invoice["next_payment_attempt"]) == (
        "open",
        1,
        None,
    )
    advance(api, c["id"], ts(2026, 4, 2))  # 24 h later: past the 23 h
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "incomplete_expired"
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "void"


def test_incomplete_paid_within_23_hours_becomes_active(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"], "pm_card_chargeCustomerFail")
    sub = subscribe(api, customer, price(api, 1000))
    assert sub["status"] == "incomplete"
    good = attach(api, customer, "pm_card_visa")
    invoice = api.ok("POST", f"/v1/invoices/{sub['latest_invoice']}/pay", {"payment_method": good})
    assert invoice["status"] == "paid"
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_error_if_incomplete_refuses_with_the_card_error(api: Api) -> None:
    customer, _ = customer_with_card(api, None, "pm_card_chargeCustomerFail")
    r = api.post(
        "/v1/subscriptions",
        {
            "customer": customer,
            "items": [{"price": price(api, 1000)}],
            "payment_behavior": "error_if_incomplete",
        },
    )
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "card_declined"


def test_send_invoice_is_active_with_a_due_date(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(
        api, customer, price(api, 1000), collection_method="send_invoice", days_until_due=30
    )
    assert sub["status"] == "active"
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["due_date"], invoice["attempt_count"]) == (
        "open",
        ts(2026, 5, 1),
        0,
    )


def test_archived_price_and_mixed_currencies_are_refused(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    archived = price(api, 1000)
    api.ok("POST", f"/v1/prices/{archived}", {"active": False})
    r = api.post("/v1/subscriptions", {"customer": customer, "items": [{"price": archived}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "items[0][price]"
    r = api.post(
        "/v1/subscriptions",
        {
            "customer": customer,
            "items": [{"price": price(api, 1000)}, {"price": price(api, 1000, currency="eur")}],
        },
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "currency_mismatch")
    r = api.post(
        "/v1/subscriptions",
        {
            "customer": customer,
            "items": [{"price": price(api, 1000)}, {"price": price(api, 1000, interval="year")}],
        },
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "items")


def test_list_filters(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    p = price(api, 1000)
    a = subscribe(api, customer, p)
    subscribe(api, customer, price(api, 500))
    found = api.ok("GET", "/v1/subscriptions", params={"price": p})["data"]
    assert [s["id"] for s in found] == [a["id"]]
    found = api.ok("GET", "/v1/subscriptions", params={"customer": customer, "status": "active"})
    assert len(found["data"]) == 2


@pytest.mark.parametrize(
    ("behavior", "left"),
    [("void", "void"), ("keep_as_draft", "draft"), ("mark_uncollectible", "uncollectible")],
)
def test_pause_collection_voids_renewals_and_resume(api: Api, behavior: str, left: str) -> None:
    """While collection is paused the renewal is made but not charged: voided, kept as a
    draft, or marked uncollectible; once resumed, the next renewal is charged again."""
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1000))
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"pause_collection": {"behavior": behavior}})
    advance(api, c["id"], ts(2026, 5, 1, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "active"
    paused = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (paused["status"], paused["amount_paid"], paused["attempt_count"]) == (left, 0, 0)
    assert paused["period_start"] == ts(2026, 5, 1)
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"pause_collection": ""})
    advance(api, c["id"], ts(2026, 6, 1, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")["status"] == "paid"


def test_trial_end_without_a_payment_method_pauses_then_resume(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer = api.ok("POST", "/v1/customers", {"test_clock": c["id"]})["id"]
    sub = subscribe(
        api,
        customer,
        price(api, 1000),
        trial_period_days=5,
        trial_settings={"end_behavior": {"missing_payment_method": "pause"}},
    )
    advance(api, c["id"], ts(2026, 4, 7))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "paused"
    assert "customer.subscription.paused" in event_types(api, sub["id"])
    pm = attach(api, customer, "pm_card_visa")
    api.ok(
        "POST", f"/v1/customers/{customer}", {"invoice_settings": {"default_payment_method": pm}}
    )
    sub = api.ok("POST", f"/v1/subscriptions/{sub['id']}/resume", {})
    assert sub["status"] == "active"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        ts(2026, 4, 7),
        ts(2026, 5, 7),
    )
    assert latest_invoice(api, sub["id"])["status"] == "paid"
    assert "customer.subscription.resumed" in event_types(api, sub["id"])


def test_trial_end_without_a_payment_method_can_cancel(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer = api.ok("POST", "/v1/customers", {"test_clock": c["id"]})["id"]
    sub = subscribe(
        api,
        customer,
        price(api, 1000),
        trial_end=ts(2026, 4, 3),
        trial_settings={"end_behavior": {"missing_payment_method": "cancel"}},
    )
    advance(api, c["id"], ts(2026, 4, 4))
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "canceled"


def test_an_active_subscription_can_be_put_on_trial(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    sub = subscribe(api, customer, price(api, 1000))
    sub = api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"trial_end": ts(2026, 6, 1)})
    assert (sub["status"], sub["trial_end"]) == ("trialing", ts(2026, 6, 1))
    advance(api, c["id"], ts(2026, 5, 15))
    assert len(invoices(api, sub["id"])) == 1  # nothing billed during the trial
    advance(api, c["id"], ts(2026, 6, 1, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "active"
    assert latest_invoice(api, sub["id"])["amount_paid"] == 1000


def test_downgrade_at_period_end(api: Api) -> None:
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    pro, basic = price(api, 5000), price(api, 1000)
    sub = subscribe(api, customer, pro)
    item = sub["items"]["data"][0]["id"]
    sub = api.ok(
        "POST",
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"id": item, "price": basic}], "paymux_apply_at": "period_end"},
    )
    assert sub["items"]["data"][0]["price"]["id"] == pro  # unchanged until the period ends
    assert sub["pending_update"]["items"][0]["price"] == basic
    advance(api, c["id"], ts(2026, 5, 1, 1))
    sub = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert sub["items"]["data"][0]["price"]["id"] == basic
    assert sub["pending_update"] is None
    renewal = latest_invoice(api, sub["id"])
    assert [line["amount"] for line in renewal["lines"]["data"]] == [1000]  # no proration


def test_a_default_incomplete_subscription_waits_for_the_browser(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    sub = subscribe(api, customer, price(api, 1000), payment_behavior="default_incomplete")
    assert sub["status"] == "incomplete"
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert (pi["status"], pi["amount"], pi["invoice"]) == (
        "requires_confirmation",
        1000,
        invoice["id"],
    )
    assert pi["client_secret"]
    api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {})
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "paid"
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_default_incomplete_with_3ds_the_browser_authenticates_then_it_is_active(
    api: Api,
) -> None:
    """``default_incomplete``, 3-D Secure included: the browser confirms the first invoice's
    intent, the card asks for a challenge (the sandbox's page), the payer completes it, and
    the invoice is paid and the subscription active, with one charge."""
    customer, _ = customer_with_card(api, None, "pm_card_threeDSecure2Required")
    sub = subscribe(api, customer, price(api, 1800), payment_behavior="default_incomplete")
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    pi_id = invoice["payment_intent"]
    asked = api.ok(
        "POST", f"/v1/payment_intents/{pi_id}/confirm", {"return_url": "https://shop.example/ok"}
    )
    assert asked["status"] == "requires_action"
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "incomplete"
    back = answer_challenge(asked["next_action"]["redirect_to_url"]["url"], "complete")
    assert back.status_code == 303
    paid = api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    assert (paid["amount_paid"], paid["amount_remaining"]) == (1800, 0)
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "active"
    assert len(api.charges(pi_id)) == 1


def test_expand_latest_invoice_payment_intent(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    sub = subscribe(
        api,
        customer,
        price(api, 1000),
        payment_behavior="default_incomplete",
        expand=["latest_invoice.payment_intent"],
    )
    invoice = sub["latest_invoice"]
    assert invoice["object"] == "invoice"
    assert invoice["payment_intent"]["object"] == "payment_intent"
    assert invoice["payment_intent"]["client_secret"].startswith(invoice["payment_intent"]["id"])
    got = api.ok("GET", f"/v1/invoices/{invoice['id']}", params={"expand[]": "subscription"})
    assert got["subscription"]["id"] == sub["id"]


def test_subscription_items_crud(api: Api) -> None:
    customer, _ = customer_with_card(api, None)
    sub = subscribe(api, customer, price(api, 1000))
    first = sub["items"]["data"][0]["id"]
    added = api.ok(
        "POST",
        "/v1/subscription_items",
        {
            "subscription": sub["id"],
            "price": price(api, 500),
            "quantity": 2,
            "proration_behavior": "none",
        },
    )
    assert (added["object"], added["quantity"], added["subscription"]) == (
        "subscription_item",
        2,
        sub["id"],
    )
    changed = api.ok(
        "POST", f"/v1/subscription_items/{first}", {"quantity": 3, "proration_behavior": "none"}
    )
    assert changed["quantity"] == 3
    assert api.ok("GET", f"/v1/subscription_items/{first}")["quantity"] == 3
    listed = api.ok("GET", "/v1/subscription_items", params={"subscription": sub["id"]})
    assert sorted(i["id"] for i in listed["data"]) == sorted([first, added["id"]])
    r = api.http.delete(
        f"/v1/subscription_items/{added['id']}", params={"proration_behavior": "none"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is True
    assert api.get(f"/v1/subscription_items/{added['id']}").status_code == 404
    assert api.get("/v1/subscription_items").status_code == 400


def test_paying_an_invoice_with_a_declined_card_answers_402(api: Api) -> None:
    customer, _ = customer_with_card(api, None, "pm_card_chargeCustomerFail")
    sub = subscribe(api, customer, price(api, 1000))
    r = api.post(f"/v1/invoices/{sub['latest_invoice']}/pay", json={})
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "card_declined"
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    # Stripe's count: the first (automatic) try counted; a manual try after it does not.
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)


def renewals(api: Api, sub_id: str) -> list[dict[str, Any]]:
    found = [i for i in invoices(api, sub_id) if i["billing_reason"] == "subscription_cycle"]
    return sorted(found, key=lambda i: i["period_start"])


def test_the_sweep_bills_every_missed_period_in_order(api: Api) -> None:
    """A subscription on the wall clock whose periods ended while nothing ran (its dates moved
    back 3 months): the worker's sweep renews it period by period, each invoice paid."""
    customer, _ = customer_with_card(api, None)
    sub = subscribe(api, customer, price(api, 1100))
    day = 86_400_000_000
    api.server.sql(
        "update subscriptions set billing_cycle_anchor_us = billing_cycle_anchor_us - :d, "
        "current_period_start_us = current_period_start_us - :d, "
        "current_period_end_us = current_period_end_us - :d, "
        "next_due_us = current_period_end_us - :d where id = :i",
        d=95 * day,
        i=sub["id"],
    )
    moved_end = sub["current_period_end"] - 95 * 86_400
    until = time.monotonic() + 20.0
    while [i["status"] for i in renewals(api, sub["id"])] != [
        "paid"
    ] * 3 and time.monotonic() < until:
        time.sleep(0.1)
    found = renewals(api, sub["id"])
    assert len(found) == 3, [i["period_start"] for i in found]
    # Contiguous periods from the moved period's end, each paid, numbered in period order.
    assert found[0]["period_start"] == moved_end
    assert [i["period_start"] for i in found[1:]] == [i["period_end"] for i in found[:-1]]
    assert [i["status"] for i in found] == ["paid"] * 3
    numbers = [int(i["number"].rsplit("-", 1)[1]) for i in found]
    assert numbers == sorted(numbers)
    starts = [i["period_start"] for i in found]
    final = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
    assert final["current_period_start"] == starts[-1]
    assert final["current_period_end"] > int(time.time())


def test_a_coupons_duration_decides_which_renewals_it_discounts(api: Api) -> None:
    """once: the first invoice only; repeating for 2 months: the invoices of the first two
    months; forever: every invoice. Amounts worked out by hand on a price of 1,000."""
    c = clock(api, ts(2026, 4, 1))
    customer, _ = customer_with_card(api, c["id"])
    once = api.ok("POST", "/v1/coupons", {"percent_off": 50, "duration": "once"})
    two_months = api.ok(
        "POST",
        "/v1/coupons",
        {"percent_off": 10, "duration": "repeating", "duration_in_months": 2},
    )
    forever = api.ok(
        "POST", "/v1/coupons", {"amount_off": 300, "currency": "usd", "duration": "forever"}
    )
    subs = {
        name: subscribe(api, customer, price(api, 1000), coupon=coupon["id"])["id"]
        for name, coupon in (("once", once), ("two_months", two_months), ("forever", forever))
    }
    for month in (5, 6, 7):
        advance(api, c["id"], ts(2026, month, 1, 1))
    paid = {
        name: [(i["total"], i["status"]) for i in invoices(api, sid)] for name, sid in subs.items()
    }
    assert paid == {
        "once": [(500, "paid"), (1000, "paid"), (1000, "paid"), (1000, "paid")],
        "two_months": [(900, "paid"), (900, "paid"), (1000, "paid"), (1000, "paid")],
        "forever": [(700, "paid"), (700, "paid"), (700, "paid"), (700, "paid")],
    }


# Which card a subscription's invoices are charged to (``InvoicePayments._payment_method``, one
# query): its own default_payment_method before its customer's default, on the first invoice
# and on a renewal made by the clock; the customer's when it names none.
def charged_method(api: Api, invoice_id: str) -> tuple[str, str | None]:
    """(the invoice's status, the payment method its intent charged)."""
    invoice = api.ok("GET", f"/v1/invoices/{invoice_id}")
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    return invoice["status"], pi["payment_method"]


def test_the_subscriptions_own_card_is_charged_before_the_customers(api: Api) -> None:
    c = clock(api, ts(2026, 3, 10, 12))
    customer, customers_card = customer_with_card(api, c["id"])
    own_card = attach(api, customer, "pm_card_mastercard")
    assert own_card != customers_card
    plan = price(api, 1500)
    own = api.ok(
        "POST",
        "/v1/subscriptions",
        {"customer": customer, "items": [{"price": plan}], "default_payment_method": own_card},
    )
    plain = api.ok("POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": plan}]})
    assert charged_method(api, own["latest_invoice"]) == ("paid", own_card)
    assert charged_method(api, plain["latest_invoice"]) == ("paid", customers_card)

    advance(api, c["id"], ts(2026, 4, 10, 13))  # each renews once, charged off-session
    for sub, card in ((own, own_card), (plain, customers_card)):
        renewed = api.ok("GET", f"/v1/subscriptions/{sub['id']}")
        assert renewed["latest_invoice"] != sub["latest_invoice"]
        assert renewed["current_period_start"] == ts(2026, 4, 10, 12)
        assert charged_method(api, renewed["latest_invoice"]) == ("paid", card)
