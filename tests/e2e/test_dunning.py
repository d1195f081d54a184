"""Dunning on a test clock (SQLite and PostgreSQL): a renewal whose saved card starts failing
(the sandbox's ``pm_card_chargeCustomerFail``: attaching succeeds, every charge is declined)
is retried on Stripe's default schedule (days 1, 2, 3, 5, 7, 10, 14 after the first failure),
the subscription is past_due meanwhile, a new default payment method retries the open invoice
at once, and when the retries run out the configured end applies (the test server's default:
cancel). 3-D Secure needed off-session is never retried: the invoice asks for the customer's
action on the hosted page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, make_settings
from paymux.billing.subscriptions import SubscriptionParams
from paymux.services import Paymux
from paymux.services.customers import CustomerParams
from support.billing import advance, attach, clock, customer_with_card, event_types, price, ts
from support.dbtemplate import migrated_sqlite_file
from support.processes import free_port

DAY = 86_400


def trialing_sub(api: Api, token: str, start: int) -> tuple[dict[str, Any], str, str]:
    """A subscription with a 7-day trial whose renewal is charged to ``token``."""
    c = clock(api, start)
    customer, _ = customer_with_card(api, c["id"], token)
    sub = api.ok(
        "POST",
        "/v1/subscriptions",
        {"customer": customer, "items": [{"price": price(api, 2500)}], "trial_period_days": 7},
    )
    assert sub["status"] == "trialing"
    return sub, c["id"], customer


def sub_moves(api: Api, sub_id: str) -> list[tuple[str, str]]:
    """(event type, the subscription's status in it) of the latest events about ``sub_id``."""
    data = api.ok("GET", "/v1/events", params={"limit": 100})["data"]
    return [
        (e["type"], e["data"]["object"]["status"])
        for e in reversed(data)
        if e["data"]["object"]["id"] == sub_id
    ]


def latest(api: Api, sub_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    sub = api.ok("GET", f"/v1/subscriptions/{sub_id}")
    return sub, api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")


def test_failed_renewal_is_retried_then_recovered_by_a_new_card(api: Api) -> None:
    start = ts(2026, 9, 1)
    sub, clock_id, customer = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    trial_end = start + 7 * DAY
    advance(api, clock_id, trial_end + 3600)
    sub, invoice = latest(api, sub["id"])
    assert sub["status"] == "past_due"
    assert (invoice["status"], invoice["attempt_count"], invoice["amount_due"]) == ("open", 1, 2500)
    assert invoice["next_payment_attempt"] == trial_end + 1 * DAY
    advance(api, clock_id, trial_end + 1 * DAY + 3600)  # the first retry fails too
    sub, invoice = latest(api, sub["id"])
    assert (sub["status"], invoice["attempt_count"]) == ("past_due", 2)
    assert invoice["next_payment_attempt"] == trial_end + 2 * DAY
    good = attach(api, customer, "pm_card_visa")
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"default_payment_method": good})
    sub, invoice = latest(api, sub["id"])  # retried at once, not at day 2
    assert sub["status"] == "active"
    assert (invoice["status"], invoice["attempt_count"], invoice["amount_paid"]) == (
        "paid",
        3,
        2500,
    )
    assert invoice["next_payment_attempt"] is None
    types = event_types(api, invoice["id"])
    assert types.count("invoice.payment_failed") == 2
    assert "invoice.paid" in types
    # The next renewal is charged to the new card.
    advance(api, clock_id, trial_end + 31 * DAY)
    sub, renewal = latest(api, sub["id"])
    assert (renewal["status"], renewal["attempt_count"], sub["status"]) == ("paid", 1, "active")


def test_retries_run_out_after_eight_tries_in_two_weeks_and_cancel(api: Api) -> None:
    start = ts(2026, 10, 1)
    sub, clock_id, _ = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    trial_end = start + 7 * DAY
    advance(api, clock_id, trial_end + 13 * DAY)
    sub, invoice = latest(api, sub["id"])
    assert (sub["status"], invoice["attempt_count"]) == ("past_due", 7)  # day 0,1,2,3,5,7,10
    assert invoice["next_payment_attempt"] == trial_end + 14 * DAY
    advance(api, clock_id, trial_end + 15 * DAY)
    sub, invoice = latest(api, sub["id"])
    assert (invoice["attempt_count"], invoice["next_payment_attempt"]) == (8, None)
    assert sub["status"] == "canceled"
    assert sub["cancellation_details"]["reason"] == "payment_failed"
    assert sub["ended_at"] == trial_end + 14 * DAY
    assert invoice["status"] == "open"  # Stripe leaves it open: it can still be paid
    assert ("customer.subscription.deleted", "canceled") in sub_moves(api, sub["id"])


def test_authentication_required_asks_for_action_and_is_not_retried(api: Api) -> None:
    start = ts(2026, 11, 1)
    sub, clock_id, _ = trialing_sub(api, "pm_card_authenticationRequired", start)
    advance(api, clock_id, start + 7 * DAY + 3600)
    sub, invoice = latest(api, sub["id"])
    assert sub["status"] == "past_due"
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
    types = event_types(api, invoice["id"])
    assert "invoice.payment_action_required" in types
    # (The trial's end and the failed renewal share their time: their order is not the claim.)
    assert ("customer.subscription.updated", "past_due") in sub_moves(api, sub["id"])
    # The event links the hosted page where the customer completes 3-D Secure.
    data = api.ok("GET", "/v1/events", params={"type": "invoice.payment_action_required"})
    [action] = [e for e in data["data"] if e["data"]["object"]["id"] == invoice["id"]]
    assert action["data"]["object"]["hosted_invoice_url"] == invoice["hosted_invoice_url"]
    assert invoice["hosted_invoice_url"].startswith(f"{api.server.url}/invoices/")
    # No retry is charged: the next look is the end of the retry window (day 14).
    assert invoice["next_payment_attempt"] == start + 7 * DAY + 14 * DAY
    advance(api, clock_id, start + 7 * DAY + 10 * DAY)
    sub, invoice = latest(api, sub["id"])
    assert (invoice["attempt_count"], sub["status"]) == (1, "past_due")


def test_a_new_default_card_on_the_customer_retries_the_open_invoice(api: Api) -> None:
    start = ts(2026, 12, 1)
    sub, clock_id, customer = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    advance(api, clock_id, start + 7 * DAY + 3600)
    sub, invoice = latest(api, sub["id"])
    assert (sub["status"], invoice["attempt_count"]) == ("past_due", 1)
    good = attach(api, customer, "pm_card_visa")
    api.ok(
        "POST", f"/v1/customers/{customer}", {"invoice_settings": {"default_payment_method": good}}
    )
    paid = api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    assert (paid["attempt_count"], paid["amount_paid"]) == (2, 2500)
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "active"


@pytest.mark.parametrize(("end", "status"), [("unpaid", "unpaid"), ("past_due", "past_due")])
def test_the_configured_end_applies_when_retries_run_out(
    tmp_path: Path, end: str, status: str
) -> None:
    """PAYMUX_BILLING_DUNNING_END=unpaid | past_due, on the library (SQLite; the clock's
    advance job run in place of a worker); an unpaid subscription comes back to active when
    its invoice is paid."""
    url = migrated_sqlite_file(tmp_path / "dunning.db")
    settings = make_settings(
        url, tmp_path, free_port(), billing_dunning_end=end, billing_retry_days="1,2"
    )

    async def run() -> None:
        app = Paymux(settings)
        try:
            account = (await app.accounts.create_key()).account_id
            start = ts(2027, 1, 1)
            clock = await app.clocks.create(account, start, "dunning")
            customer = (
                await app.customers.create(account, CustomerParams(test_clock=clock["id"]))
            )["id"]
            bad = await app.customers.attach(account, "pm_card_chargeCustomerFail", customer)
            product = await app.catalog.create_product(account, {"name": "P"})
            price = await app.catalog.create_price(
                account,
                {
                    "product": product["id"],
                    "unit_amount": 900,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                },
            )
            sub = await app.subscriptions.create(
                account,
                SubscriptionParams(
                    customer=customer,
                    items=[{"price": price["id"]}],
                    default_payment_method=bad["id"],
                    trial_period_days=3,
                ),
            )
            await app.clocks.advance(account, clock["id"], start + 10 * DAY)
            await app.clocks.run_advance(clock["id"])
            sub = await app.subscriptions.retrieve(account, sub["id"])
            invoice = await app.invoices.retrieve(account, sub["latest_invoice"])
            assert sub["status"] == status
            assert (invoice["status"], invoice["attempt_count"]) == ("open", 3)  # day 0, 1, 2
            assert invoice["next_payment_attempt"] is None
            if end == "unpaid":
                # Unpaid: the next period is still invoiced, and never charged.
                await app.clocks.advance(account, clock["id"], start + 35 * DAY)
                await app.clocks.run_advance(clock["id"])
                sub = await app.subscriptions.retrieve(account, sub["id"])
                renewal = await app.invoices.retrieve(account, sub["latest_invoice"])
                assert renewal["id"] != invoice["id"] and sub["status"] == "unpaid"
                assert renewal["period_start"] == start + 3 * DAY + 31 * DAY  # Feb 4
                assert (
                    renewal["status"],
                    renewal["attempt_count"],
                    renewal["payment_intent"],
                    renewal["amount_due"],
                ) == ("open", 0, None, 900)
            good = await app.customers.attach(account, "pm_card_visa", customer)
            paid = await app.invoices.pay(account, invoice["id"], payment_method=good["id"])
            assert paid["status"] == "paid"
            assert (await app.subscriptions.retrieve(account, sub["id"]))["status"] == "active"
        finally:
            await app.close()

    asyncio.run(run())


def test_remaining_status_moves_through_the_api(api: Api) -> None:
    """trialing -> trialing (trial moved), past_due -> canceled (DELETE), a leftover invoice
    of a canceled subscription paid (status stays canceled), paused -> canceled (DELETE)."""
    start = ts(2027, 2, 1)
    sub, clock_id, customer = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    moved = api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"trial_end": start + 9 * DAY})
    assert (moved["status"], moved["trial_end"]) == ("trialing", start + 9 * DAY)
    advance(api, clock_id, start + 9 * DAY + 3600)
    sub, invoice = latest(api, sub["id"])
    assert sub["status"] == "past_due"
    r = api.http.delete(f"/v1/subscriptions/{sub['id']}")
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    good = attach(api, customer, "pm_card_visa")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": good})
    assert paid["status"] == "paid"
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "canceled"

    c = clock(api, start)
    bare = api.ok("POST", "/v1/customers", {"test_clock": c["id"]})["id"]
    paused = api.ok(
        "POST",
        "/v1/subscriptions",
        {
            "customer": bare,
            "items": [{"price": price(api, 700)}],
            "trial_period_days": 1,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        },
    )
    advance(api, c["id"], start + 2 * DAY)
    assert api.ok("GET", f"/v1/subscriptions/{paused['id']}")["status"] == "paused"
    r = api.http.delete(f"/v1/subscriptions/{paused['id']}")
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    r = api.post(f"/v1/subscriptions/{paused['id']}/resume", json={})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "subscription_unexpected_state")


def test_the_payers_own_tries_neither_use_up_retries_nor_move_the_subscription(api: Api) -> None:
    """Stripe's count: the first try counts, then only automatic ones. Cards tried by hand
    (POST /pay, as the hosted page's tries) send invoice.payment_failed each, but leave the
    retry schedule and the subscription where they were; a good card then pays."""
    start = ts(2026, 10, 1)
    sub, clock_id, customer = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    trial_end = start + 7 * DAY
    advance(api, clock_id, trial_end + 3600)
    sub, invoice = latest(api, sub["id"])
    assert (sub["status"], invoice["attempt_count"]) == ("past_due", 1)
    assert invoice["next_payment_attempt"] == trial_end + 1 * DAY
    failed_before = event_types(api, invoice["id"]).count("invoice.payment_failed")
    bad = attach(api, customer, "pm_card_chargeCustomerFail")
    for _ in range(3):
        r = api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": bad})
        assert r.status_code == 402, r.text
    sub, after = latest(api, sub["id"])
    assert (sub["status"], after["status"], after["attempt_count"]) == ("past_due", "open", 1)
    assert after["next_payment_attempt"] == trial_end + 1 * DAY
    assert event_types(api, invoice["id"]).count("invoice.payment_failed") == failed_before + 3
    tried = api.server.sql("select count(*) from payment_intents where invoice_id = :i",
                           i=invoice["id"])[0][0]
    assert tried == 4  # the renewal's and three of the payer's: each a payment of its own
    good = attach(api, customer, "pm_card_visa")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": good})
    assert (paid["status"], paid["amount_paid"]) == ("paid", 2500)
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_three_d_secure_needed_off_session_moves_as_the_table_says(api: Api) -> None:
    """The two requires-action rows of the state table, through the API: a first invoice
    that needs 3-D Secure leaves the subscription incomplete (not retried, the customer asked
    to act); a past_due subscription whose retry (a new default card) needs it stays past_due,
    and the try, a hard decline, is not retried: the next look is the window's end."""
    start = ts(2027, 3, 1)
    c = clock(api, start)
    first, _ = customer_with_card(api, c["id"], "pm_card_authenticationRequired")
    sub = api.ok(
        "POST", "/v1/subscriptions", {"customer": first, "items": [{"price": price(api, 1200)}]}
    )
    assert sub["status"] == "incomplete"
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["attempt_count"], invoice["next_payment_attempt"]) == (
        "open",
        1,
        None,
    )
    assert "invoice.payment_action_required" in event_types(api, invoice["id"])

    sub, clock_id, customer = trialing_sub(api, "pm_card_chargeCustomerFail", start)
    trial_end = start + 7 * DAY
    advance(api, clock_id, trial_end + 3600)
    sub, invoice = latest(api, sub["id"])
    assert (sub["status"], invoice["attempt_count"]) == ("past_due", 1)
    threeds = attach(api, customer, "pm_card_authenticationRequired")
    api.ok("POST", f"/v1/subscriptions/{sub['id']}", {"default_payment_method": threeds})
    sub, invoice = latest(api, sub["id"])  # retried at once with the new card
    assert (sub["status"], invoice["status"], invoice["attempt_count"]) == ("past_due", "open", 2)
    assert invoice["next_payment_attempt"] == trial_end + 14 * DAY
    assert event_types(api, invoice["id"]).count("invoice.payment_action_required") == 1
