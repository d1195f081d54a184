"""Customers, payment methods, lists, events, cancel and update through the HTTP API, on a real
server over SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import Api, RunningServer

PI = "/v1/payment_intents"


def tokenize(api: Api, number: str = "4242424242424242") -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": time.gmtime().tm_year + 2,
        "cvc": "123", "postal_code": "94107"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def customer(api: Api, **fields: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/customers", {"email": "payer@example.com", **fields})


def saved_card(api: Api, customer_id: str, number: str = "4242424242424242") -> dict[str, Any]:
    return api.ok("POST", f"/v1/payment_methods/{tokenize(api, number)}/attach",
                  {"customer": customer_id})


def events(api: Api, **params: Any) -> list[dict[str, Any]]:
    return list(api.ok("GET", "/v1/events", params={"limit": 100, **params})["data"])


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["request_id"] == r.headers["request-id"]
    return error


# -- customers ------------------------------------------------------------------------------------
def test_a_customer_is_created_retrieved_and_updated_with_metadata_merged(api: Api) -> None:
    created = customer(api, name="Ada", description="first",
                       metadata={"plan": "pro", "ref": "A1", "keep": "yes"})
    assert created["id"].startswith("cus_") and created["object"] == "customer"
    assert created["email"] == "payer@example.com" and created["name"] == "Ada"
    assert created["default_payment_method"] is None and "deleted" not in created
    assert api.ok("GET", f"/v1/customers/{created['id']}") == created

    updated = api.ok("POST", f"/v1/customers/{created['id']}",
                     {"name": "Ada L.", "metadata": {"plan": "team", "ref": "", "new": "1"}})
    assert updated["name"] == "Ada L." and updated["email"] == "payer@example.com"
    assert updated["description"] == "first"
    assert updated["metadata"] == {"plan": "team", "keep": "yes", "new": "1"}
    assert api.ok("GET", f"/v1/customers/{created['id']}") == updated
    # An update without metadata leaves it alone.
    again = api.ok("POST", f"/v1/customers/{created['id']}", {"email": "new@example.com"})
    assert again["metadata"] == updated["metadata"] and again["email"] == "new@example.com"
    types = [e["type"] for e in events(api, object_id=created["id"])]
    assert types == ["customer.updated", "customer.updated", "customer.created"]


def test_customers_are_listed_newest_first_filtered_by_email_and_deleted_ones_drop_out(
    api: Api,
) -> None:
    a = customer(api, email="a@example.com")
    b = customer(api, email="b@example.com")
    c = customer(api, email="a@example.com")
    listed = api.ok("GET", "/v1/customers")
    assert listed["object"] == "list" and listed["url"] == "/v1/customers"
    assert [x["id"] for x in listed["data"]] == [c["id"], b["id"], a["id"]]
    assert listed["has_more"] is False
    by_email = api.ok("GET", "/v1/customers", params={"email": "a@example.com"})["data"]
    assert [x["id"] for x in by_email] == [c["id"], a["id"]]

    deleted = api.ok("DELETE", f"/v1/customers/{b['id']}")
    assert deleted == {"id": b["id"], "object": "customer", "deleted": True}
    assert [x["id"] for x in api.ok("GET", "/v1/customers")["data"]] == [c["id"], a["id"]]
    assert api.ok("GET", f"/v1/customers/{b['id']}")["deleted"] is True
    assert [e["type"] for e in events(api, object_id=b["id"])] == [
        "customer.deleted", "customer.created"]


def test_a_deleted_customer_can_no_longer_be_updated_given_cards_or_charged(api: Api) -> None:
    cus = customer(api)
    api.ok("DELETE", f"/v1/customers/{cus['id']}")
    before = api.counts()
    for path, body, param in [
        (f"/v1/customers/{cus['id']}", {"name": "zombie"}, "id"),
        (f"/v1/payment_methods/{tokenize(api)}/attach", {"customer": cus["id"]}, "customer"),
        (PI, {"amount": 2000, "currency": "usd", "customer": cus["id"]}, "customer"),
    ]:
        error = error_of(api.post(path, body), 404)
        assert error["code"] == "resource_missing" and error["param"] == param
    assert api.counts()["customers"] == before["customers"]


# -- payment methods ------------------------------------------------------------------------------
def test_cards_are_attached_listed_made_default_and_detached(api: Api) -> None:
    cus = customer(api)
    visa = saved_card(api, cus["id"])
    assert visa["id"].startswith("pm_") and visa["customer"] == cus["id"]
    assert visa["card"]["brand"] == "visa" and visa["card"]["last4"] == "4242"
    assert visa["gateway"] == "sandbox" and visa["gateway_token"].startswith("pm_sbx_")
    mc = saved_card(api, cus["id"], "5555555555554444")
    listed = api.ok("GET", f"/v1/customers/{cus['id']}/payment_methods")
    assert listed["url"] == f"/v1/customers/{cus['id']}/payment_methods"
    assert [p["id"] for p in listed["data"]] == [mc["id"], visa["id"]]

    with_default = api.ok("POST", f"/v1/customers/{cus['id']}",
                          {"default_payment_method": visa["id"]})
    assert with_default["default_payment_method"] == visa["id"]
    # Attaching the same card again is a no-op, not a second row.
    before = api.counts()
    again = api.ok("POST", f"/v1/payment_methods/{visa['gateway_token']}/attach",
                   {"customer": cus["id"]})
    assert again["id"] == visa["id"] and api.counts() == before

    detached = api.ok("POST", f"/v1/payment_methods/{visa['id']}/detach")
    assert detached["id"] == visa["id"] and detached["customer"] is None
    assert api.ok("GET", f"/v1/customers/{cus['id']}")["default_payment_method"] is None
    remaining = api.ok("GET", f"/v1/customers/{cus['id']}/payment_methods")["data"]
    assert [p["id"] for p in remaining] == [mc["id"]]
    error = error_of(api.post(f"/v1/payment_methods/{visa['id']}/detach"), 400)
    assert error["code"] == "payment_method_unexpected_state"
    assert [e["type"] for e in events(api, type="payment_method.attached")] == [
        "payment_method.attached"] * 2
    assert len(events(api, type="payment_method.detached")) == 1


def test_a_default_payment_method_must_belong_to_the_customer(api: Api) -> None:
    a, b = customer(api), customer(api)
    card = saved_card(api, a["id"])
    before = api.counts()
    error = error_of(api.post(f"/v1/customers/{b['id']}", {"default_payment_method": card["id"]}),
                     400)
    assert error["code"] == "payment_method_unexpected_state"
    assert error["param"] == "default_payment_method"
    assert api.ok("GET", f"/v1/customers/{b['id']}")["default_payment_method"] is None
    assert api.counts() == before


def test_a_saved_card_is_charged_off_session(api: Api) -> None:
    cus = customer(api)
    card = saved_card(api, cus["id"])
    pi = api.ok("POST", PI, {"amount": 3100, "currency": "eur", "customer": cus["id"],
                             "payment_method": card["id"], "confirm": True, "off_session": True})
    assert pi["status"] == "succeeded" and pi["amount_received"] == 3100
    assert pi["customer"] == cus["id"] and pi["payment_method"] == card["id"]
    charges = api.charges(pi["id"])
    assert len(charges) == 1 and charges[0]["status"] == "succeeded"
    assert charges[0]["customer"].startswith("cus_sbx_")
    assert charges[0]["token"] == card["gateway_token"]
    listed = api.ok("GET", PI, params={"customer": cus["id"]})["data"]
    assert [p["id"] for p in listed] == [pi["id"]]


def test_a_card_saved_to_one_customer_cannot_be_used_for_another(api: Api) -> None:
    a, b = customer(api), customer(api)
    card = saved_card(api, a["id"])
    before = api.counts()
    attempts = [
        (PI, {"amount": 2000, "currency": "usd", "customer": b["id"],
              "payment_method": card["id"], "confirm": True, "off_session": True}),
        (PI, {"amount": 2000, "currency": "usd", "payment_method": card["id"]}),
        (f"/v1/payment_methods/{card['id']}/attach", {"customer": b["id"]}),
        (f"/v1/payment_methods/{card['gateway_token']}/attach", {"customer": b["id"]}),
    ]
    for path, body in attempts:
        error = error_of(api.post(path, body), 400)
        assert error["code"] == "payment_method_unexpected_state", path
        assert error["param"] == "payment_method"
    assert api.counts() == before
    assert api.ok("GET", f"/v1/payment_methods/{card['id']}")["customer"] == a["id"]
    assert api.ok("GET", f"/v1/customers/{b['id']}/payment_methods")["data"] == []


# -- cursor pagination ------------------------------------------------------------------------------
def make_five(api: Api, kind: str) -> list[str]:
    """Five objects of a kind, oldest first."""
    if kind == "payment_intents":
        return [api.ok("POST", PI, {"amount": 1000 + i, "currency": "usd"})["id"]
                for i in range(5)]
    if kind == "customers":
        return [customer(api, name=f"c{i}")["id"] for i in range(5)]
    pi = api.ok("POST", PI, {"amount": 5000, "currency": "usd", "confirm": True,
                             "payment_method": "pm_card_visa"})
    return [api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 100})["id"]
            for _ in range(5)]


@pytest.mark.parametrize("kind", ["payment_intents", "customers", "refunds"])
def test_a_list_is_paged_newest_first_with_starting_after_and_back_with_ending_before(
    api: Api, kind: str
) -> None:
    newest_first = list(reversed(make_five(api, kind)))
    path = f"/v1/{kind}"
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.ok("GET", path, params=params)
        assert page["object"] == "list" and page["url"] == path
        ids = [x["id"] for x in page["data"]]
        assert 1 <= len(ids) <= 2
        pages.append(ids)
        if not page["has_more"]:
            break
        params = {"limit": 2, "starting_after": ids[-1]}
        assert len(pages) < 10
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]

    back = api.ok("GET", path, params={"limit": 2, "ending_before": newest_first[4]})
    assert [x["id"] for x in back["data"]] == newest_first[2:4] and back["has_more"] is True
    back = api.ok("GET", path, params={"limit": 2, "ending_before": newest_first[2]})
    assert [x["id"] for x in back["data"]] == newest_first[0:2] and back["has_more"] is False
    first = api.ok("GET", path, params={"limit": 2, "ending_before": newest_first[0]})
    assert first["data"] == [] and first["has_more"] is False
    everything = api.ok("GET", path, params={"limit": 100})
    assert [x["id"] for x in everything["data"]] == newest_first
    assert everything["has_more"] is False


# -- events ---------------------------------------------------------------------------------------
def test_events_are_listed_and_filtered_by_type(api: Api) -> None:
    cus = customer(api)
    paid = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "confirm": True,
                               "payment_method": "pm_card_visa"})
    api.ok("POST", PI, {"amount": 2500, "currency": "usd"})

    everything = events(api)
    assert [e["type"] for e in everything] == [
        "payment_intent.created", "payment_intent.succeeded", "payment_intent.created",
        "customer.created"]
    succeeded = events(api, type="payment_intent.succeeded")
    assert len(succeeded) == 1
    event = succeeded[0]
    assert event["object"] == "event" and event["id"].startswith("evt_")
    assert event["data"]["object"]["id"] == paid["id"]
    assert event["data"]["object"]["status"] == "succeeded"
    assert api.ok("GET", f"/v1/events/{event['id']}") == event
    created = events(api, type="payment_intent.created")
    assert len(created) == 2 and {e["type"] for e in created} == {"payment_intent.created"}
    assert [e["data"]["object"]["status"] for e in created] == [
        "requires_payment_method", "requires_confirmation"]
    assert [e["data"]["object"]["id"] for e in events(api, type="customer.created")] == [cus["id"]]
    assert events(api, type="charge.dispute.created") == []
    both = events(api, type="payment_intent.created", object_id=paid["id"])
    assert [e["data"]["object"]["id"] for e in both] == [paid["id"]]


# -- cancel ---------------------------------------------------------------------------------------
def test_an_unconfirmed_intent_is_canceled_with_its_reason(api: Api) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd"})
    done = api.ok("POST", f"{PI}/{pi['id']}/cancel", {"cancellation_reason": "abandoned"})
    assert done["status"] == "canceled" and done["cancellation_reason"] == "abandoned"
    assert isinstance(done["canceled_at"], int) and done["canceled_at"] >= pi["created"]
    assert api.charges(pi["id"]) == []
    types = [e["type"] for e in events(api, object_id=pi["id"])]
    assert types == ["payment_intent.canceled", "payment_intent.created"]
    again = error_of(api.post(f"{PI}/{pi['id']}/cancel"), 400)
    assert again["code"] == "payment_intent_unexpected_state" and "canceled" in again["message"]


def test_canceling_an_authorized_intent_voids_it_at_the_gateway(api: Api) -> None:
    pi = api.ok("POST", PI, {"amount": 4200, "currency": "usd", "capture_method": "manual",
                             "confirm": True, "payment_method": "pm_card_visa"})
    assert pi["status"] == "requires_capture"
    assert api.charges(pi["id"])[0]["status"] == "requires_capture"
    done = api.ok("POST", f"{PI}/{pi['id']}/cancel", {"cancellation_reason": "duplicate"})
    assert done["status"] == "canceled" and done["cancellation_reason"] == "duplicate"
    assert done["amount_capturable"] == 0 and done["amount_received"] == 0
    charges = api.charges(pi["id"])
    assert len(charges) == 1 and charges[0]["status"] == "canceled"
    canceled = events(api, object_id=pi["id"], type="payment_intent.canceled")
    assert len(canceled) == 1
    assert canceled[0]["data"]["object"]["cancellation_reason"] == "duplicate"
    error = error_of(api.post(f"{PI}/{pi['id']}/capture"), 400)
    assert error["code"] == "payment_intent_unexpected_state"
    assert api.charges(pi["id"])[0]["status"] == "canceled"


def test_canceling_an_intent_waiting_for_3ds_voids_it_and_a_late_approval_changes_nothing(
    api: Api,
) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "confirm": True,
                             "payment_method": "pm_card_threeDSecure2Required"})
    assert pi["status"] == "requires_action"
    done = api.ok("POST", f"{PI}/{pi['id']}/cancel", {"cancellation_reason": "requested_by_customer"})
    assert done["status"] == "canceled" and done["next_action"] is None
    assert api.charges(pi["id"])[0]["status"] == "canceled"
    # The payer approves afterwards, with the challenge's own token (as its page's form
    # posts it). The sandbox refuses at once: the charge no longer waits for the payer, and
    # only an accepted answer sends a webhook, so nothing is left on its way to paymux.
    url = urlsplit(pi["next_action"]["redirect_to_url"]["url"])
    [token] = parse_qs(url.query)["token"]
    late = httpx.post(url._replace(query="").geturl(),
                      data={"token": token, "outcome": "complete"}, timeout=10)
    assert late.status_code == 409, late.text  # answering it changes nothing
    after = api.ok("GET", f"{PI}/{pi['id']}")
    assert after["status"] == "canceled" and after["amount_received"] == 0
    assert api.charges(pi["id"])[0]["status"] == "canceled"


# -- update ---------------------------------------------------------------------------------------
def test_an_unconfirmed_intent_can_change_its_amount_and_metadata_before_it_is_charged(
    api: Api,
) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "metadata": {"order": "1",
                                                                          "note": "x"}})
    updated = api.ok("POST", f"{PI}/{pi['id']}", {
        "amount": 3150, "description": "bigger order", "metadata": {"note": "", "tier": "gold"}})
    assert updated["status"] == "requires_payment_method"
    assert updated["amount"] == 3150 and updated["currency"] == "usd"
    assert updated["description"] == "bigger order"
    assert updated["metadata"] == {"order": "1", "tier": "gold"}
    assert api.ok("GET", f"{PI}/{pi['id']}") == updated
    with_method = api.ok("POST", f"{PI}/{pi['id']}", {"payment_method": "pm_card_visa"})
    assert with_method["status"] == "requires_confirmation"
    done = api.ok("POST", f"{PI}/{pi['id']}/confirm")
    assert done["status"] == "succeeded" and done["amount_received"] == 3150
    assert done["metadata"] == {"order": "1", "tier": "gold"}
    assert [c["amount"] for c in api.charges(pi["id"])] == [3150]


def test_an_update_to_jpy_checks_the_amount_against_the_new_currency(api: Api) -> None:
    pi = api.ok("POST", PI, {"amount": 5000, "currency": "usd"})
    updated = api.ok("POST", f"{PI}/{pi['id']}", {"currency": "jpy"})
    assert updated["amount"] == 5000 and updated["currency"] == "jpy"
    error = error_of(api.post(f"{PI}/{pi['id']}", {"amount": 49}), 400)
    assert error["code"] == "amount_too_small" and error["param"] == "amount"
    assert api.ok("GET", f"{PI}/{pi['id']}")["amount"] == 5000


# -- isolation of the sandbox's shared test tokens -------------------------------------------------
def test_two_accounts_can_each_save_the_same_magic_test_token(api: Api) -> None:
    other = Api(api.server)
    try:
        saved = []
        for client in (api, other):
            cus = customer(client)
            pm = client.ok("POST", "/v1/payment_methods/pm_card_visa/attach",
                           {"customer": cus["id"]})
            assert pm["customer"] == cus["id"] and pm["card"]["last4"] == "4242"
            pi = client.ok("POST", PI, {"amount": 2000, "currency": "usd", "customer": cus["id"],
                                        "payment_method": pm["id"], "confirm": True,
                                        "off_session": True})
            assert pi["status"] == "succeeded"
            saved.append(pm["id"])
        assert len(set(saved)) == 2
        # Detaching in one account leaves the other's saved card alone.
        api.ok("POST", f"/v1/payment_methods/{saved[0]}/detach")
        assert other.ok("GET", f"/v1/payment_methods/{saved[1]}")["customer"] is not None
    finally:
        other.close()


def test_another_account_cannot_use_a_card_saved_by_this_one(
    api: Api, server: RunningServer
) -> None:
    """A gateway token belongs to the account that first used it: to any other account it
    is as unknown as a token that never existed (404), by our id or by the token, on
    session or off, to pay, to attach or to read."""
    cus = customer(api)
    card = saved_card(api, cus["id"])
    paid = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "customer": cus["id"],
                               "payment_method": card["id"], "confirm": True})
    assert paid["status"] == "succeeded"
    other = Api(server)
    try:
        theirs = customer(other)
        before = other.counts()
        token = card["gateway_token"]
        for ref in (card["id"], token):
            attempts = [
                (PI, {"amount": 2000, "currency": "usd", "customer": theirs["id"],
                      "payment_method": ref, "confirm": True, "off_session": True}),
                (PI, {"amount": 2000, "currency": "usd", "payment_method": ref,
                      "confirm": True}),
                (f"/v1/payment_methods/{ref}/attach", {"customer": theirs["id"]}),
            ]
            for path, body in attempts:
                error = error_of(other.post(path, body), 404)
                assert (error["code"], error["param"]) == ("resource_missing", "payment_method"), (
                    path, ref)
            opened = other.ok("POST", PI, {"amount": 2000, "currency": "usd"})
            error = error_of(other.post(f"{PI}/{opened['id']}/confirm", {"payment_method": ref}),
                             404)
            assert error["code"] == "resource_missing"
            assert other.get(f"/v1/payment_methods/{ref}").status_code == 404
        assert len(api.charges(paid["id"])) == 1
        after = other.counts()
        assert after["payment_methods"] == before["payment_methods"]
        assert after["gateway_attempts"] == before["gateway_attempts"]
        # The sandbox's published test shortcuts stay usable by every account.
        shortcut = other.ok("POST", PI, {"amount": 2000, "currency": "usd",
                                         "payment_method": "pm_card_visa", "confirm": True})
        assert shortcut["status"] == "succeeded"
    finally:
        other.close()
