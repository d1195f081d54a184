"""Stripe's resource shapes on a real server (SQLite and PostgreSQL): expand[], the list
filters (created[...], types[], charge), the read-only charges behind latest_charge,
metadata that changes in any state, and Stripe's field names on payment intents."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer
from paymux.services import Paymux
from support.errors import status_code_param as error_of


def pay(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {
        "amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        **params})


# -- expand -------------------------------------------------------------------------------------
def test_expand_replaces_ids_with_their_objects_at_any_depth(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "x@example.com", "name": "Ada"})
    paid = pay(api, customer=cus["id"])
    assert paid["latest_charge"] == "ch_" + paid["id"].removeprefix("pi_")
    plain = api.ok("GET", f"/v1/payment_intents/{paid['id']}")
    assert plain["customer"] == cus["id"] and isinstance(plain["payment_method"], str)
    full = api.ok("GET", f"/v1/payment_intents/{paid['id']}", params=[
        ("expand[]", "customer"), ("expand[]", "latest_charge.payment_method")])
    assert full["customer"]["object"] == "customer" and full["customer"]["name"] == "Ada"
    charge = full["latest_charge"]
    assert charge["object"] == "charge" and charge["amount_captured"] == 2500
    assert charge["payment_method"]["object"] == "payment_method"
    assert charge["payment_method"]["card"]["last4"] == "4242"
    assert isinstance(full["payment_method"], str)  # only what was asked for
    # Stripe's other spelling, expand[0], and JSON bodies on writes.
    indexed = api.ok("GET", f"/v1/payment_intents/{paid['id']}", params={"expand[0]": "customer"})
    assert indexed["customer"]["id"] == cus["id"]
    updated = api.ok("POST", f"/v1/payment_intents/{paid['id']}",
                     {"metadata": {"a": "1"}, "expand": ["customer"]})
    assert updated["customer"]["email"] == "x@example.com"


def test_a_list_expands_its_items_with_data_prefix(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "l@example.com"})
    pay(api, customer=cus["id"])
    listed = api.ok("GET", "/v1/payment_intents",
                    params={"customer": cus["id"], "expand[]": "data.customer"})
    assert [pi["customer"]["email"] for pi in listed["data"]] == ["l@example.com"]
    r = api.get("/v1/payment_intents", params={"expand[]": "customer"})  # needs data.
    assert error_of(r) == (400, "parameter_invalid", "expand")


@pytest.mark.parametrize("path", [
    "nothing", "customer.nothing", "amount", "latest_charge.payment_method.customer.x.y",
    "metadata"])
def test_a_field_that_cannot_be_expanded_is_a_400_and_nothing_is_made(
    api: Api, path: str
) -> None:
    before = api.counts()["payment_intents"]
    r = api.post("/v1/payment_intents", {"amount": 100, "currency": "usd", "expand": [path]})
    assert error_of(r) == (400, "parameter_invalid", "expand")
    assert f"({path})" in r.json()["error"]["message"]
    assert api.counts()["payment_intents"] == before


def test_a_restricted_key_expands_only_what_it_may_read(api: Api, server: RunningServer) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "r@example.com"})
    paid = pay(api, customer=cus["id"])

    async def make() -> str:
        app = Paymux(server.settings)
        try:
            new, _ = await app.keys.create(api.account_id, kind="restricted",
                                           permissions={"payment_intents": "read"})
            return new.key
        finally:
            await app.close()

    key = asyncio.run(make())
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}) as rk:
        assert rk.get(f"/v1/payment_intents/{paid['id']}").status_code == 200
        r = rk.get(f"/v1/payment_intents/{paid['id']}", params={"expand[]": "customer"})
        assert error_of(r) == (403, "api_key_permission_denied", "expand")
        assert "r@example.com" not in r.text


# -- filters ------------------------------------------------------------------------------------
def test_created_filters_bound_lists_by_the_second(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "c@example.com"})
    made = pay(api, customer=cus["id"])
    t = made["created"]

    def ids(**created: int) -> list[str]:
        params = {"customer": cus["id"], **{f"created[{k}]": str(v) for k, v in created.items()}}
        return [pi["id"] for pi in api.ok("GET", "/v1/payment_intents", params=params)["data"]]

    assert ids(gte=t) == [made["id"]] and ids(lte=t) == [made["id"]]
    assert ids(gt=t) == [] and ids(lt=t) == []
    assert ids(gt=t - 1, lt=t + 1) == [made["id"]]
    r = api.get("/v1/payment_intents", params={"created[after]": str(t)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "created[after]"
    r = api.get("/v1/customers", params={"created[gte]": "yesterday"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "created[gte]"


def test_events_filter_by_several_types_and_refunds_by_charge(api: Api) -> None:
    paid = pay(api)
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 500})
    types = ["payment_intent.succeeded", "refund.created"]
    events = api.ok("GET", "/v1/events", params=[("types[]", t) for t in types])
    assert {e["type"] for e in events["data"]} == set(types)
    by_charge = api.ok("GET", "/v1/refunds", params={"charge": paid["latest_charge"]})
    assert [r["id"] for r in by_charge["data"]] == [refund["id"]]
    assert refund["charge"] == paid["latest_charge"]


# -- charges ------------------------------------------------------------------------------------
def test_a_charge_follows_its_payment_through_capture_and_refund(api: Api) -> None:
    held = api.ok("POST", "/v1/payment_intents", {
        "amount": 3000, "currency": "eur", "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True, "receipt_email": "p@example.com"})
    ch = api.ok("GET", f"/v1/charges/{held['latest_charge']}")
    assert (ch["status"], ch["paid"], ch["captured"], ch["amount_captured"]) == (
        "succeeded", True, False, 0)
    assert ch["payment_intent"] == held["id"] and ch["currency"] == "eur"
    assert ch["receipt_email"] == "p@example.com"
    assert ch["payment_method_details"]["card"]["last4"] == "4242"
    api.ok("POST", f"/v1/payment_intents/{held['id']}/capture", {"amount_to_capture": 2000})
    api.ok("POST", "/v1/refunds", {"payment_intent": held["id"]})
    ch = api.wait_for(f"/v1/charges/{held['latest_charge']}", "refunded", True)
    assert (ch["captured"], ch["amount_captured"], ch["amount_refunded"]) == (True, 2000, 2000)
    listed = api.ok("GET", "/v1/charges", params={"payment_intent": held["id"]})
    assert [c["id"] for c in listed["data"]] == [held["latest_charge"]]


def test_a_declined_payment_has_a_failed_charge_and_an_open_one_has_none(api: Api) -> None:
    opened = api.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    assert opened["latest_charge"] is None
    r = api.post(f"/v1/payment_intents/{opened['id']}/confirm",
                 {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert r.status_code == 402
    after = api.ok("GET", f"/v1/payment_intents/{opened['id']}")
    ch = api.ok("GET", f"/v1/charges/{after['latest_charge']}")
    assert (ch["status"], ch["paid"], ch["failure_code"]) == ("failed", False, "card_declined")
    assert ch["outcome"]["reason"] == "insufficient_funds"


def test_charges_are_the_account_s_own(api: Api, server: RunningServer) -> None:
    paid = pay(api)
    other = Api(server)
    try:
        r = other.get(f"/v1/charges/{paid['latest_charge']}")
        assert error_of(r) == (404, "resource_missing", "id")
        assert other.ok("GET", "/v1/charges")["data"] == []
    finally:
        other.close()
    assert error_of(api.get("/v1/charges/ch_nope")) == (404, "resource_missing", "id")
    assert error_of(api.get("/v1/charges/pi_nope")) == (404, "resource_missing", "id")


# -- metadata and Stripe's field names ----------------------------------------------------------
def test_metadata_and_description_change_in_any_state_but_the_money_does_not(api: Api) -> None:
    paid = pay(api, metadata={"order": "1001", "gift": "yes"})
    assert paid["status"] == "succeeded"
    changed = api.ok("POST", f"/v1/payment_intents/{paid['id']}",
                     {"metadata": {"order": "1002", "gift": ""}, "description": "reshipped"})
    assert changed["metadata"] == {"order": "1002"} and changed["description"] == "reshipped"
    assert changed["status"] == "succeeded" and changed["amount"] == 2500
    r = api.post(f"/v1/payment_intents/{paid['id']}", {"amount": 10})
    assert error_of(r)[:2] == (400, "payment_intent_unexpected_state")
    assert api.ok("GET", f"/v1/payment_intents/{paid['id']}")["amount"] == 2500
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 100})
    noted = api.ok("POST", f"/v1/refunds/{refund['id']}", {"metadata": {"ticket": "T-9"}})
    assert noted["metadata"] == {"ticket": "T-9"} and noted["amount"] == 100
    pm = api.ok("POST", f"/v1/payment_methods/{paid['payment_method']}",
                {"metadata": {"label": "work card"}})
    assert pm["metadata"] == {"label": "work card"} and pm["card"]["last4"] == "4242"
    r = api.post(f"/v1/payment_methods/{paid['payment_method']}", {"card": {"last4": "1111"}})
    assert error_of(r)[:2] == (400, "parameter_unknown")


def test_stripe_field_names_on_payment_intents(api: Api) -> None:
    made = api.ok("POST", "/v1/payment_intents", {
        "amount": 1200, "currency": "usd", "receipt_email": "buyer@example.com",
        "statement_descriptor_suffix": "ORDER 42",
        "automatic_payment_methods": {"enabled": True}})
    assert made["receipt_email"] == "buyer@example.com"
    assert made["statement_descriptor_suffix"] == "ORDER 42"
    assert made["payment_method_types"] == ["card"]
    assert made["automatic_payment_methods"] == {"enabled": True}
    assert made["client_secret"].startswith(made["id"] + "_secret_")
    plain = api.ok("POST", "/v1/payment_intents", {"amount": 1200, "currency": "usd"})
    assert plain["automatic_payment_methods"] is None and plain["receipt_email"] is None
    r = api.post("/v1/payment_intents", {"amount": 1200, "currency": "usd",
                                         "payment_method_types": ["paypal"]})
    assert error_of(r) == (400, "parameter_invalid", "payment_method_types")
    r = api.post("/v1/payment_intents", {"amount": 1200, "currency": "usd",
                                         "receipt_email": "not an email"})
    assert error_of(r)[0] == 400 and r.json()["error"]["param"] == "receipt_email"
    # Form-encoded, as Stripe's SDKs send it.
    form = api.http.post("/v1/payment_intents", data={
        "amount": "700", "currency": "usd", "payment_method_types[0]": "card",
        "automatic_payment_methods[enabled]": "false", "metadata[k]": "v"})
    assert form.status_code == 200, form.text
    body = form.json()
    assert body["payment_method_types"] == ["card"] and body["metadata"] == {"k": "v"}
    assert body["automatic_payment_methods"] == {"enabled": False}
