"""Stripe's parameters a typical integration sends, over plain HTTP (form bodies in bracket
notation, as the SDKs send them, and JSON), on a real server over SQLite and PostgreSQL:

- ``POST /v1/payment_methods`` ``type=card&card[token]=tok_visa``: a detached ``pm_`` of the
  calling account, with ``billing_details`` and ``metadata``, that pays later. There is no
  field for card data: ``card[number]``, ``card[cvc]``, ``card[exp_month]`` are refused (a
  card number by the card-number guard, anything else as an unknown parameter) and nothing
  is recorded. A token is the account's that first made a payment method of it: another
  account gets 404 for the token and for the ``pm_``.
- ``payment_method_data[type]=card&payment_method_data[card][token]=...`` on a PaymentIntent
  create and confirm.
- ``shipping`` on a PaymentIntent (create, update in any state, ``""`` removes it).
- A customer's ``phone``, ``address`` and ``shipping``; ``payment_method`` on its create
  (attached as attach does, with attach's errors).

Expected values are Stripe's documented shapes (docs.stripe.com/api), written out here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer
from paymux.services import Paymux

VISA = "4242424242424242"
EMPTY_ADDRESS = {"city": None, "country": None, "line1": None, "line2": None,
                 "postal_code": None, "state": None}


def form(api: Api, path: str, data: dict[str, str], key: str | None = None) -> httpx.Response:
    """A form-encoded POST, as Stripe's SDKs send it (``data`` keys in bracket notation)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return api.http.post(path, data=data, headers=headers)


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def refused(r: httpx.Response, status: int, code: str, param: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    return error


def sandbox_token(server: RunningServer, number: str = VISA) -> str:
    """A card tokenized at the sandbox, as its browser form does: a token of its own (not a
    shared test token), which becomes the account's that first uses it."""
    r = httpx.post(f"{server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123",
        "postal_code": "94107"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def restricted_key(server: RunningServer, account_id: str, permissions: dict[str, str]) -> str:
    async def make() -> str:
        app = Paymux(server.settings)
        try:
            new, _ = await app.keys.create(account_id, kind="restricted", permissions=permissions)
            return new.key
        finally:
            await app.close()

    return asyncio.run(make())


@pytest.fixture
def other(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


# -- POST /v1/payment_methods ---------------------------------------------------------------
def test_a_card_token_makes_a_detached_payment_method_that_pays_later(api: Api) -> None:
    pm = ok(form(api, "/v1/payment_methods", {
        "type": "card", "card[token]": "tok_visa",
        "billing_details[name]": "Jo Doe", "billing_details[email]": "jo@example.com",
        "billing_details[phone]": "+15555550123",
        "billing_details[address][line1]": "1 Main St",
        "billing_details[address][city]": "Springfield",
        "billing_details[address][postal_code]": "12345",
        "billing_details[address][country]": "US",
        "metadata[order]": "1001"}))
    assert pm["id"].startswith("pm_") and pm["id"] != "tok_visa"
    assert (pm["object"], pm["type"], pm["customer"]) == ("payment_method", "card", None)
    assert (pm["card"]["brand"], pm["card"]["last4"]) == ("visa", "4242")
    assert pm["billing_details"] == {
        "name": "Jo Doe", "email": "jo@example.com", "phone": "+15555550123",
        "address": {"line1": "1 Main St", "line2": None, "city": "Springfield", "state": None,
                    "postal_code": "12345", "country": "US"}}
    assert pm["metadata"] == {"order": "1001"}
    assert ok(api.get(f"/v1/payment_methods/{pm['id']}")) == pm

    # Each use of the shared test token is a payment method of its own, as on Stripe.
    again = ok(form(api, "/v1/payment_methods", {"type": "card", "card[token]": "tok_visa"}))
    assert again["id"] != pm["id"]
    assert again["billing_details"] == {"name": None, "email": None, "phone": None,
                                        "address": EMPTY_ADDRESS}

    paid = ok(form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method": pm["id"], "confirm": "true"}))
    assert (paid["status"], paid["payment_method"], paid["amount_received"]) == (
        "succeeded", pm["id"], 1000)
    # Stripe's other test tokens make payment methods too; a declining card declines when paid.
    declining = ok(form(api, "/v1/payment_methods",
                        {"type": "card", "card[token]": "tok_chargeDeclined"}))
    assert (declining["card"]["brand"], declining["card"]["last4"]) == ("visa", "0002")
    declined = form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method": declining["id"],
        "confirm": "true"})
    assert refused(declined, 402, "card_declined", None)["type"] == "card_error"


def test_there_is_no_field_for_card_data(api: Api) -> None:
    before = api.counts()
    # A card number anywhere is the card-number guard's: 400 naming where it was.
    refused(form(api, "/v1/payment_methods", {"type": "card", "card[number]": VISA,
                                              "card[exp_month]": "12", "card[exp_year]": "2040",
                                              "card[cvc]": "123"}),
            400, "card_number_not_allowed", "card[number]")
    refused(api.post("/v1/payment_methods", {"type": "card", "card": {"number": VISA}}),
            400, "card_number_not_allowed", "card[number]")
    # Something that is no card number still has nowhere to go.
    refused(form(api, "/v1/payment_methods", {"type": "card", "card[number]": "4242"}),
            400, "parameter_unknown", "card[number]")
    refused(form(api, "/v1/payment_methods",
                 {"type": "card", "card[token]": "tok_visa", "card[cvc]": "123"}),
            400, "parameter_unknown", "card[cvc]")
    refused(form(api, "/v1/payment_methods",
                 {"type": "card", "card[token]": "tok_visa", "card[exp_month]": "12"}),
            400, "parameter_unknown", "card[exp_month]")
    refused(form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method_data[type]": "card",
        "payment_method_data[card][number]": VISA}),
        400, "card_number_not_allowed", "payment_method_data[card][number]")
    refused(form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method_data[type]": "card",
        "payment_method_data[card][token]": "tok_visa", "payment_method_data[card][cvc]": "1"}),
        400, "parameter_unknown", "payment_method_data[card][cvc]")
    assert api.counts() == before


def test_bad_values_are_refused_with_a_stable_code_and_param(api: Api) -> None:
    before = api.counts()
    refused(form(api, "/v1/payment_methods", {"type": "paypal", "card[token]": "tok_visa"}),
            400, "parameter_invalid", "type")
    refused(form(api, "/v1/payment_methods", {"type": "card"}),
            400, "parameter_missing", "card")
    refused(form(api, "/v1/payment_methods", {"type": "card", "card[token]": "tok_nope"}),
            404, "resource_missing", "card[token]")
    refused(form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method": "pm_card_visa",
        "payment_method_data[type]": "card", "payment_method_data[card][token]": "tok_visa"}),
        400, "parameters_exclusive", "payment_method_data")
    refused(form(api, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "shipping[address][city]": "Springfield"}),
        400, "parameter_missing", "shipping[name]")
    refused(form(api, "/v1/customers", {"shipping[name]": "Jo"}),
            400, "parameter_missing", "shipping[address]")
    assert api.counts() == before
    # A payment method's id is no token.
    pm = ok(form(api, "/v1/payment_methods", {"type": "card", "card[token]": "tok_visa"}))
    refused(form(api, "/v1/payment_methods", {"type": "card", "card[token]": pm["id"]}),
            400, "parameter_invalid", "card[token]")


def test_a_token_is_the_accounts_that_made_a_payment_method_of_it(
    api: Api, other: Api
) -> None:
    token = sandbox_token(api.server)
    pm = ok(form(api, "/v1/payment_methods", {"type": "card", "card[token]": token}))
    assert (pm["customer"], pm["card"]["last4"]) == (None, "4242")
    owners = api.server.sql(
        "select account_id from gateway_token_owners where token = :t", t=token)
    assert [row[0] for row in owners] == [api.account_id]
    # One payment method per token.
    refused(form(api, "/v1/payment_methods", {"type": "card", "card[token]": token}),
            400, "payment_method_unexpected_state", "card[token]")

    before = other.counts()
    refused(form(other, "/v1/payment_methods", {"type": "card", "card[token]": token}),
            404, "resource_missing", "card[token]")
    refused(form(other, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method": pm["id"], "confirm": "true"}),
        404, "resource_missing", "payment_method")
    refused(form(other, "/v1/payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method_data[type]": "card",
        "payment_method_data[card][token]": token}),
        404, "resource_missing", "payment_method_data[card][token]")
    assert other.get(f"/v1/payment_methods/{pm['id']}").status_code == 404
    assert other.counts() == before

    paid = ok(form(api, "/v1/payment_intents", {
        "amount": "1500", "currency": "usd", "payment_method": pm["id"], "confirm": "true"}))
    assert (paid["status"], paid["payment_method"]) == ("succeeded", pm["id"])


def test_a_shared_test_token_s_retry_after_a_lost_answer_gets_the_same_payment_method(
    api: Api,
) -> None:
    """``tok_visa`` gives each use a payment method with a fresh token of its own, so only
    its id (derived from the Idempotency-Key) finds the one a request's first run made:
    the retry after a lost answer gets it back (before: a 503 on every retry), among other
    payment methods of the account made from the same shortcut."""

    def lose_answer(key: str) -> None:  # as if the process died before storing it
        api.server.sql(
            "update idempotency_keys set status = 'in_flight', response_status = null, "
            "response_body = null, locked_us = 0 where key = :k and account_id = :a",
            k=key, a=api.account_id)

    body = {"type": "card", "card[token]": "tok_visa"}
    others = [ok(form(api, "/v1/payment_methods", body))["id"] for _ in range(2)]
    keyed = {"idempotency-key": "pm-tv"}
    first = ok(api.http.post("/v1/payment_methods", data=body, headers=keyed))
    lose_answer("pm-tv")
    retry = api.http.post("/v1/payment_methods", data=body, headers=keyed)
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers  # it ran again, and resumed
    assert retry.json()["id"] == first["id"] and first["id"] not in others

    intent = {"amount": "700", "currency": "usd", "payment_method_data[type]": "card",
              "payment_method_data[card][token]": "tok_visa", "confirm": "true"}
    keyed = {"idempotency-key": "pi-tv"}
    paid = ok(api.http.post("/v1/payment_intents", data=intent, headers=keyed))
    assert paid["status"] == "succeeded"
    lose_answer("pi-tv")
    again = api.http.post("/v1/payment_intents", data=intent, headers=keyed)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["payment_method"], again.json()["status"]) == (
        paid["id"], paid["payment_method"], "succeeded")
    rows = api.server.sql("select id from payment_methods where account_id = :a",
                          a=api.account_id)
    assert sorted(r[0] for r in rows) == sorted([*others, first["id"], paid["payment_method"]])


def test_a_restricted_key_needs_the_payment_methods_write_grant(api: Api) -> None:
    reader = restricted_key(api.server, api.account_id, {"payment_methods": "read"})
    writer = restricted_key(api.server, api.account_id, {"payment_methods": "write"})
    body = {"type": "card", "card[token]": "tok_visa"}
    assert form(api, "/v1/payment_methods", body, key=reader).status_code == 403
    assert refused(form(api, "/v1/payment_methods", body, key=reader), 403,
                   "api_key_permission_denied", None)["type"] == "invalid_request_error"
    made = ok(form(api, "/v1/payment_methods", body, key=writer))
    assert made["customer"] is None


# -- payment_method_data ----------------------------------------------------------------------
def test_payment_method_data_makes_the_payment_method_the_intent_uses(api: Api) -> None:
    paid = ok(form(api, "/v1/payment_intents", {
        "amount": "2000", "currency": "usd", "confirm": "true",
        "payment_method_data[type]": "card", "payment_method_data[card][token]": "tok_visa",
        "payment_method_data[billing_details][name]": "Jo Doe",
        "payment_method_data[metadata][source]": "checkout"}))
    assert paid["status"] == "succeeded" and paid["payment_method"].startswith("pm_")
    pm = ok(api.get(f"/v1/payment_methods/{paid['payment_method']}"))
    assert (pm["customer"], pm["billing_details"]["name"], pm["metadata"]) == (
        None, "Jo Doe", {"source": "checkout"})

    # On confirm too (JSON this time).
    open_ = api.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    assert open_["payment_method"] is None
    confirmed = api.ok("POST", f"/v1/payment_intents/{open_['id']}/confirm", {
        "payment_method_data": {"type": "card", "card": {"token": "tok_mastercard"}}})
    assert confirmed["status"] == "succeeded"
    used = ok(api.get(f"/v1/payment_methods/{confirmed['payment_method']}"))
    assert used["card"]["brand"] == "mastercard"
    fresh = api.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    refused(api.post(f"/v1/payment_intents/{fresh['id']}/confirm", {
        "payment_method": "pm_card_visa",
        "payment_method_data": {"type": "card", "card": {"token": "tok_visa"}}}),
        400, "parameters_exclusive", "payment_method_data")
    refused(api.post(f"/v1/payment_intents/{fresh['id']}/confirm", {
        "payment_method_data": {"type": "card", "card": {}}}),
        400, "parameter_missing", "payment_method_data[card][token]")
    assert ok(api.get(f"/v1/payment_intents/{fresh['id']}"))["status"] == (
        "requires_payment_method")


# -- shipping ---------------------------------------------------------------------------------
def test_a_payment_intent_keeps_its_shipping_in_any_state(api: Api) -> None:
    bare = api.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"})
    assert bare["shipping"] is None
    pi = ok(form(api, "/v1/payment_intents", {
        "amount": "2000", "currency": "usd", "payment_method": "pm_card_visa",
        "confirm": "true", "shipping[name]": "Jo Doe", "shipping[phone]": "+15555550123",
        "shipping[address][line1]": "1 Main St", "shipping[address][line2]": "Apt 2",
        "shipping[address][city]": "Springfield", "shipping[address][state]": "IL",
        "shipping[address][postal_code]": "12345", "shipping[address][country]": "US"}))
    expected = {
        "name": "Jo Doe", "phone": "+15555550123", "carrier": None, "tracking_number": None,
        "address": {"line1": "1 Main St", "line2": "Apt 2", "city": "Springfield",
                    "state": "IL", "postal_code": "12345", "country": "US"}}
    assert (pi["status"], pi["shipping"]) == ("succeeded", expected)
    assert ok(api.get(f"/v1/payment_intents/{pi['id']}"))["shipping"] == expected

    # The parcel leaves after the payment: a tracking number on a succeeded intent.
    shipped = ok(form(api, f"/v1/payment_intents/{pi['id']}", {
        "shipping[name]": "Jo Doe", "shipping[address][city]": "Springfield",
        "shipping[carrier]": "USPS", "shipping[tracking_number]": "9400100000000000000000"}))
    assert shipped["shipping"] == {
        "name": "Jo Doe", "phone": None, "carrier": "USPS",
        "tracking_number": "9400100000000000000000",
        "address": EMPTY_ADDRESS | {"city": "Springfield"}}
    assert (shipped["status"], shipped["amount_received"]) == ("succeeded", 2000)
    cleared = ok(form(api, f"/v1/payment_intents/{pi['id']}", {"shipping": ""}))
    assert cleared["shipping"] is None
    assert ok(api.get(f"/v1/payment_intents/{pi['id']}"))["shipping"] is None


def test_a_card_number_in_shipping_is_refused_by_the_guard(api: Api) -> None:
    before = api.counts()
    refused(form(api, "/v1/payment_intents", {
        "amount": "2000", "currency": "usd", "shipping[name]": VISA,
        "shipping[address][city]": "Springfield"}),
        400, "card_number_not_allowed", "shipping[name]")
    refused(api.post("/v1/payment_intents", {
        "amount": 2000, "currency": "usd",
        "shipping": {"name": "Jo", "address": {"line1": "4242 4242 4242 4242"}}}),
        400, "card_number_not_allowed", "shipping[address][line1]")
    assert api.counts() == before


# -- customers --------------------------------------------------------------------------------
def test_a_customer_has_a_phone_an_address_and_shipping(api: Api) -> None:
    bare = ok(form(api, "/v1/customers", {"name": "Bare"}))
    assert (bare["phone"], bare["address"], bare["shipping"]) == (None, None, None)

    cus = ok(form(api, "/v1/customers", {
        "name": "Jo", "phone": "+15555550123", "address[line1]": "1 Main St",
        "address[city]": "Springfield", "address[country]": "US",
        "shipping[name]": "Jo at work", "shipping[address][line1]": "2 Side St"}))
    assert cus["phone"] == "+15555550123"
    assert cus["address"] == EMPTY_ADDRESS | {"line1": "1 Main St", "city": "Springfield",
                                              "country": "US"}
    assert cus["shipping"] == {"name": "Jo at work", "phone": None,
                               "address": EMPTY_ADDRESS | {"line1": "2 Side St"}}
    assert ok(api.get(f"/v1/customers/{cus['id']}")) == cus

    moved = ok(form(api, f"/v1/customers/{cus['id']}", {
        "address[line1]": "3 New Rd", "address[city]": "Shelbyville", "address[country]": "US",
        "phone": ""}))
    assert (moved["phone"], moved["address"]) == (None, EMPTY_ADDRESS | {
        "line1": "3 New Rd", "city": "Shelbyville", "country": "US"})
    assert moved["shipping"] == cus["shipping"]  # untouched
    cleared = ok(form(api, f"/v1/customers/{cus['id']}", {"address": "", "shipping": ""}))
    assert (cleared["address"], cleared["shipping"], cleared["name"]) == (None, None, "Jo")


def test_a_customer_is_created_with_a_payment_method_attached(api: Api, other: Api) -> None:
    cus = ok(form(api, "/v1/customers", {
        "name": "Saver", "payment_method": "pm_card_visa",
        "invoice_settings[default_payment_method]": "pm_card_visa"}))
    saved = ok(api.get(f"/v1/customers/{cus['id']}/payment_methods"))["data"]
    assert [(pm["customer"], pm["card"]["last4"]) for pm in saved] == [(cus["id"], "4242")]
    assert cus["invoice_settings"]["default_payment_method"] == saved[0]["id"]
    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "customer": cus["id"],
        "payment_method": saved[0]["id"], "confirm": True})
    assert paid["status"] == "succeeded"

    # attach's errors, and no customer left behind.
    live = len(ok(api.get("/v1/customers"))["data"])
    refused(form(api, "/v1/customers", {"payment_method": "pm_doesnotexist"}),
            404, "resource_missing", "payment_method")
    refused(form(api, "/v1/customers", {"payment_method": saved[0]["id"]}),
            400, "payment_method_unexpected_state", "payment_method")
    refused(form(other, "/v1/customers", {"payment_method": saved[0]["id"]}),
            404, "resource_missing", "payment_method")
    refused(form(api, "/v1/customers", {"payment_method": "pm_card_visa",
                                        "invoice_settings[default_payment_method]": "pm_x"}),
            400, "payment_method_unexpected_state", "invoice_settings[default_payment_method]")
    declined = form(api, "/v1/customers", {"payment_method": "pm_card_chargeDeclined"})
    assert refused(declined, 402, "card_declined", None)["type"] == "card_error"
    assert len(ok(api.get("/v1/customers"))["data"]) == live
