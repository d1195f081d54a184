"""The subscription state-table rows that were tested only as rules (tests/unit/billing) and
on the library, never through the HTTP API: how retries running out end under
``PAYMUX_BILLING_DUNNING_END=unpaid`` and ``=past_due``, what an unpaid subscription does
next, and an incomplete one canceled. Each through HTTP on a test clock, the expected statuses written here:

- (past_due, retries_exhausted_unpaid) -> unpaid
- (past_due, retries_exhausted_past_due) -> past_due
- (unpaid, invoice_paid) -> active
- (unpaid, canceled) -> canceled
- (incomplete, canceled) -> canceled

A server per end (SQLite; the state moves are the services', the same on both databases), the
retry schedule shortened to days 1 and 2 after the first failure: tries on days 0, 1 and 2,
then the end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from support.billing import advance, attach, clock, customer_with_card, event_types, price, ts

DAY = 86_400
START = ts(2027, 4, 1)
TRIAL_END = START + 3 * DAY


@pytest.fixture(scope="module", params=["unpaid", "past_due"])
def ended(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningServer]]:
    end = str(request.param)
    tmp = tmp_path_factory.mktemp(f"state-rows-{end}")
    url = migrated_database_url("sqlite", tmp, None, f"state_rows_{end}")
    settings = make_settings(
        url, tmp, free_port(), billing_dunning_end=end, billing_retry_days="1,2"
    )
    running = RunningServer(settings).start()
    try:
        yield end, running
    finally:
        running.stop()


@pytest.fixture
def api(ended: tuple[str, RunningServer]) -> Iterator[Api]:
    client = Api(ended[1])
    try:
        yield client
    finally:
        client.close()


def failing_subscription(api: Api, clock_id: str) -> tuple[str, str]:
    """A subscription (3-day trial, 900 a month) whose saved card declines every charge:
    (subscription id, customer id)."""
    customer, _ = customer_with_card(api, clock_id, "pm_card_chargeCustomerFail")
    sub = api.ok(
        "POST",
        "/v1/subscriptions",
        {"customer": customer, "items": [{"price": price(api, 900)}], "trial_period_days": 3},
    )
    assert sub["status"] == "trialing"
    return sub["id"], customer


def statuses(api: Api, sub_id: str, at: int) -> set[str]:
    """The statuses the subscription's events made at clock time ``at`` carried (a set:
    the events of one instant have no order)."""
    data = api.ok("GET", "/v1/events", params={"limit": 100})["data"]
    return {
        e["data"]["object"]["status"]
        for e in data
        if e["data"]["object"]["id"] == sub_id
        and e["type"].startswith("customer.subscription.")
        and e["created"] == at
    }


def exhausted(api: Api) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """Two failing subscriptions on one clock, advanced past the last retry (day 2 after
    the trial's end): (clock id, [(subscription id, its open renewal invoice)] with the
    customers)."""
    c = clock(api, START, name="state-rows")
    subs = [failing_subscription(api, c["id"]) for _ in range(2)]
    advance(api, c["id"], TRIAL_END + 2 * DAY + 3600)
    out = []
    for sub_id, customer in subs:
        sub = api.ok("GET", f"/v1/subscriptions/{sub_id}")
        invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
        assert (invoice["billing_reason"], invoice["status"], invoice["amount_due"]) == (
            "subscription_cycle",
            "open",
            900,
        )
        # Tries on days 0, 1 and 2 of the schedule; none after.
        assert (invoice["attempt_count"], invoice["next_payment_attempt"]) == (3, None)
        out.append((customer, {"sub": sub, "invoice": invoice}))
    return c["id"], out


def test_retries_running_out_end_as_configured(api: Api, ended: tuple[str, RunningServer]) -> None:
    """(past_due, retries_exhausted_unpaid) -> unpaid; (past_due, retries_exhausted_past_due)
    -> past_due. Either way the subscription is not canceled and its invoice stays open."""
    end = ended[0]
    _, subs = exhausted(api)
    for _, got in subs:
        sub = got["sub"]
        if end == "unpaid":
            assert sub["status"] == "unpaid"
            assert "past_due" in statuses(api, sub["id"], TRIAL_END)
            assert statuses(api, sub["id"], TRIAL_END + 2 * DAY) == {"unpaid"}
        else:
            assert sub["status"] == "past_due"
            assert "past_due" in statuses(api, sub["id"], TRIAL_END)
            assert statuses(api, sub["id"], TRIAL_END + 2 * DAY) == set()  # no move: stays
        assert (sub["canceled_at"], sub["ended_at"]) == (None, None)


@pytest.mark.parametrize("ended", ["unpaid"], indirect=True)
def test_an_unpaid_subscription_is_active_once_paid_or_canceled_by_delete(
    api: Api, ended: tuple[str, RunningServer]
) -> None:
    """(unpaid, invoice_paid) -> active: the open invoice paid with a good card through
    POST /v1/invoices/{id}/pay. (unpaid, canceled) -> canceled: DELETE. An unpaid
    subscription's next renewal is invoiced and never charged (the rule's other half)."""
    clock_id, subs = exhausted(api)
    (payer, first), (_, second) = subs
    assert [first["sub"]["status"], second["sub"]["status"]] == ["unpaid", "unpaid"]

    good = attach(api, payer, "pm_card_visa")
    paid = api.ok("POST", f"/v1/invoices/{first['invoice']['id']}/pay", {"payment_method": good})
    assert (paid["status"], paid["amount_paid"]) == ("paid", 900)
    after = api.ok("GET", f"/v1/subscriptions/{first['sub']['id']}")
    assert after["status"] == "active"
    assert statuses(api, after["id"], TRIAL_END + 2 * DAY + 3600) == {"active"}

    r = api.http.delete(f"/v1/subscriptions/{second['sub']['id']}")
    assert r.status_code == 200, r.text
    canceled = r.json()
    assert canceled["status"] == "canceled"
    assert canceled["ended_at"] == TRIAL_END + 2 * DAY + 3600  # the clock's time
    assert statuses(api, canceled["id"], TRIAL_END + 2 * DAY + 3600) == {"canceled"}
    invoice = api.ok("GET", f"/v1/invoices/{second['invoice']['id']}")
    assert invoice["status"] == "open"  # as Stripe: a canceled subscription's invoice stays

    # A month on (Apr 4 -> May 4): the paid one renewed and charged again, the canceled one billed nothing.
    advance(api, clock_id, TRIAL_END + 30 * DAY + 3600)  # May 4, 01:00
    renewed = api.ok("GET", f"/v1/subscriptions/{first['sub']['id']}")
    latest = api.ok("GET", f"/v1/invoices/{renewed['latest_invoice']}")
    assert latest["id"] != first["invoice"]["id"]
    # The good card was given for the one payment only: the default still declines.
    assert (latest["billing_reason"], latest["attempt_count"]) == ("subscription_cycle", 1)
    assert renewed["status"] == "past_due"
    gone = api.ok("GET", f"/v1/subscriptions/{second['sub']['id']}")
    assert (gone["status"], gone["latest_invoice"]) == ("canceled", second["invoice"]["id"])


@pytest.mark.parametrize("ended", ["unpaid"], indirect=True)
def test_an_incomplete_subscription_is_canceled_by_delete_or_by_error_if_incomplete(
    api: Api, ended: tuple[str, RunningServer]
) -> None:
    """(incomplete, canceled) -> canceled, both ways the API fires it: DELETE of a subscription
    whose first payment was declined, and ``payment_behavior=error_if_incomplete``, which
    answers the card error (402) and leaves the subscription canceled, its invoice void."""
    c = clock(api, START, name="incomplete-rows")
    declined, _ = customer_with_card(api, c["id"], "pm_card_chargeCustomerFail")
    sub = api.ok(
        "POST", "/v1/subscriptions", {"customer": declined, "items": [{"price": price(api, 900)}]}
    )
    assert sub["status"] == "incomplete"
    r = api.http.delete(f"/v1/subscriptions/{sub['id']}")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["ended_at"]) == ("canceled", START)
    assert "customer.subscription.deleted" in event_types(api, sub["id"])

    refused, _ = customer_with_card(api, c["id"], "pm_card_chargeCustomerFail")
    r = api.post(
        "/v1/subscriptions",
        {
            "customer": refused,
            "items": [{"price": price(api, 900)}],
            "payment_behavior": "error_if_incomplete",
        },
    )
    assert r.status_code == 402, r.text
    listed = api.ok("GET", "/v1/subscriptions", params={"customer": refused, "status": "all"})
    [gone] = listed["data"]
    assert (gone["status"], gone["ended_at"]) == ("canceled", START)
    assert api.ok("GET", f"/v1/invoices/{gone['latest_invoice']}")["status"] == "void"
