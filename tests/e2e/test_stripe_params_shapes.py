"""Issue 9's last parameters and shapes, on a real server (SQLite and PostgreSQL), through
stripe-python and plain HTTP:

- answers shaped for an old pinned ``Stripe-Version`` (before ``2022-11-15``): a PaymentIntent
  carries ``charges`` (a list object; older code reads ``intent.charges.data[0]``) besides
  ``latest_charge``, and a Charge carries ``refunds`` (a list object), as Stripe served them;
  today's versions get neither (docs.stripe.com/changelog/2022-11-15);
- a Charge carries its intent's ``shipping`` (and takes it on update);
- a publishable key confirms with ``payment_method_data`` (a token, as Stripe.js sends it) and
  sees the intent's ``shipping``;
- SetupIntents take ``payment_method_data`` (a token only) on create and confirm.

Expected values are Stripe's documented shapes, written out here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import stripe

from conftest import Api, RunningServer
from paymux.services import Paymux

SHIPPING = {"name": "Jo Payer", "phone": "+15555550100", "carrier": "UPS",
            "tracking_number": "1Z999",
            "address": {"line1": "1 Main St", "city": "Springfield", "state": "IL",
                        "postal_code": "62701", "country": "US"}}
SHIPPING_VIEW = {"name": "Jo Payer", "phone": "+15555550100", "carrier": "UPS",
                 "tracking_number": "1Z999",
                 "address": {"line1": "1 Main St", "line2": None, "city": "Springfield",
                             "state": "IL", "postal_code": "62701", "country": "US"}}


def sdk_for(api: Api, version: str | None = None) -> stripe.StripeClient:
    options: dict[str, Any] = {"stripe_version": version} if version else {}
    return stripe.StripeClient(api_key=api.key, base_addresses={"api": api.server.url},
                               max_network_retries=0, **options)


def publishable_key(server: RunningServer, account_id: str) -> str:
    async def make() -> str:
        app = Paymux(server.settings)
        try:
            new, _ = await app.keys.create(account_id, kind="publishable")
            return new.key
        finally:
            await app.close()

    return asyncio.run(make())


def sandbox_token(server: RunningServer) -> str:
    """A card tokenized at the sandbox, as its browser form does (not a shared test token)."""
    r = httpx.post(f"{server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123",
        "postal_code": "94107"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


# -- old pinned versions -------------------------------------------------------------------
def test_an_old_pinned_version_gets_charges_on_the_intent_and_refunds_on_the_charge(
    api: Api,
) -> None:
    old = sdk_for(api, "2022-08-01")
    intent = old.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    assert intent.last_response.headers["Stripe-Version"] == "2022-08-01"
    assert intent.status == "succeeded"
    # What code written for those versions reads:
    assert intent.charges.object == "list"
    assert intent.charges.url == f"/v1/charges?payment_intent={intent.id}"
    assert (intent.charges.has_more, intent.charges.total_count) == (False, 1)
    charge = intent.charges.data[0]
    assert isinstance(charge, stripe.Charge)
    assert charge.id == intent.latest_charge and charge.id == "ch_" + intent.id[3:]
    assert (charge.amount, charge.amount_captured, charge.paid, charge.status) == (
        2500, 2500, True, "succeeded")
    assert (charge.payment_intent, charge.refunds.object, charge.refunds.data) == (
        intent.id, "list", [])

    old.v1.refunds.create(params={"payment_intent": intent.id, "amount": 700})
    got = old.v1.payment_intents.retrieve(intent.id)
    refunds = got.charges.data[0].refunds
    assert refunds.url == f"/v1/charges/{charge.id}/refunds"
    assert [(r.amount, r.status) for r in refunds.data] == [(700, "succeeded")]
    assert got.charges.data[0].amount_refunded == 700
    fetched = old.v1.charges.retrieve(charge.id)
    assert [r.amount for r in fetched.refunds.data] == [700]
    listed = old.v1.payment_intents.list(params={"limit": 1})
    assert [c.id for c in listed.data[0].charges.data] == [charge.id]
    assert [c.refunds.total_count for c in old.v1.charges.list().data] == [1]

    # Not yet confirmed: an empty list, as Stripe had.
    fresh = old.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    assert (fresh.charges.data, fresh.charges.total_count, fresh.latest_charge) == ([], 0, None)
    canceled = old.v1.payment_intents.cancel(fresh.id)
    assert canceled.charges.data == []


def test_an_old_pinned_version_gets_charges_on_a_decline_s_intent_and_expanded_objects(
    api: Api,
) -> None:
    """The old shape on the paths an old integration reads too: the intent a decline
    carries (``e.payment_intent.charges``), an expanded ``latest_charge`` (its ``refunds``)
    and an expanded ``payment_intent`` of a charge (its ``charges``)."""
    old = {"stripe-version": "2022-08-01"}
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"}, headers=old)
    r = api.post(f"/v1/payment_intents/{pi['id']}/confirm",
                 {"payment_method": "pm_card_chargeDeclined"}, headers=old)
    assert r.status_code == 402, r.text
    declined = r.json()["error"]["payment_intent"]
    assert declined["id"] == pi["id"]
    charges = declined["charges"]
    assert (charges["object"], charges["url"]) == ("list", f"/v1/charges?payment_intent={pi['id']}")
    assert [c["id"] for c in charges["data"]] == [declined["latest_charge"]] == [
        "ch_" + pi["id"][3:]]
    assert (charges["data"][0]["status"], charges["data"][0]["paid"]) == ("failed", False)
    today = api.post(f"/v1/payment_intents/{pi['id']}/confirm",
                     {"payment_method": "pm_card_chargeDeclined"})
    assert today.status_code == 402 and "charges" not in today.json()["error"]["payment_intent"]

    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 800, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True},
        headers=old)
    api.ok("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 300})
    got = api.ok("GET", f"/v1/payment_intents/{paid['id']}",
                 params={"expand[]": "latest_charge"}, headers=old)
    assert got["latest_charge"]["id"] == paid["latest_charge"]
    assert [x["amount"] for x in got["latest_charge"]["refunds"]["data"]] == [300]
    assert [x["amount"] for x in got["charges"]["data"][0]["refunds"]["data"]] == [300]
    charge = api.ok("GET", f"/v1/charges/{paid['latest_charge']}",
                    params={"expand[]": "payment_intent"}, headers=old)
    assert [c["id"] for c in charge["payment_intent"]["charges"]["data"]] == [charge["id"]]
    assert [x["amount"] for x in charge["refunds"]["data"]] == [300]


@pytest.mark.parametrize("version", [None, "2022-11-15", "2024-06-20", "2025-03-31.basil"])
def test_today_s_versions_get_no_charges_list(api: Api, version: str | None) -> None:
    sdk = sdk_for(api, version)
    intent = sdk.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    assert "charges" not in intent
    assert isinstance(intent.latest_charge, str)
    assert "refunds" not in sdk.v1.charges.retrieve(intent.latest_charge)
    raw = api.get(f"/v1/payment_intents/{intent.id}",
                  headers={"stripe-version": version} if version else {})
    assert "charges" not in raw.json()


# -- shipping on charges ---------------------------------------------------------------------
def test_a_charge_carries_its_intent_s_shipping_and_takes_it_on_update(api: Api) -> None:
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1800, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "shipping": SHIPPING})
    charge = api.ok("GET", f"/v1/charges/{pi['latest_charge']}")
    assert charge["shipping"] == SHIPPING_VIEW
    no_shipping = api.ok("POST", "/v1/payment_intents", {
        "amount": 1800, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    assert api.ok("GET", f"/v1/charges/{no_shipping['latest_charge']}")["shipping"] is None

    # The parcel's tracking number comes after the payment: set on the charge, in any state.
    api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    changed = api.ok("POST", f"/v1/charges/{charge['id']}", {
        "shipping": {**SHIPPING, "tracking_number": "1Z000"}})
    assert (changed["refunded"], changed["shipping"]["tracking_number"]) == (True, "1Z000")
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["shipping"][
        "tracking_number"] == "1Z000"
    cleared = api.http.post(f"/v1/charges/{charge['id']}", data={"shipping": ""})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["shipping"] is None
    sdk = sdk_for(api)
    listed = sdk.v1.charges.list(params={"payment_intent": no_shipping["id"]})
    assert listed.data[0].shipping is None
    missing_name = api.post(f"/v1/charges/{charge['id']}", {"shipping": {"address": {}}})
    assert missing_name.status_code == 400, missing_name.text
    assert missing_name.json()["error"]["param"].startswith("shipping")


# -- publishable key -----------------------------------------------------------------------
def test_a_publishable_key_confirms_with_payment_method_data_and_sees_shipping(
    api: Api,
) -> None:
    pk = publishable_key(api.server, api.account_id)
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 4100, "currency": "usd", "shipping": SHIPPING, "metadata": {"o": "1"}})
    secret = pi["client_secret"]
    browser = httpx.Client(base_url=api.server.url, timeout=30,
                           headers={"authorization": f"Bearer {pk}"})
    try:
        seen = browser.get(f"/v1/payment_intents/{pi['id']}", params={"client_secret": secret})
        assert seen.status_code == 200, seen.text
        assert seen.json()["shipping"] == SHIPPING_VIEW
        assert "metadata" not in seen.json() and "customer" not in seen.json()

        token = sandbox_token(api.server)
        # As Stripe.js's confirmCardPayment sends it: form-encoded, the card as a token.
        done = browser.post(f"/v1/payment_intents/{pi['id']}/confirm", data={
            "client_secret": secret, "payment_method_data[type]": "card",
            "payment_method_data[card][token]": token,
            "payment_method_data[billing_details][name]": "Jo Payer"})
        assert done.status_code == 200, done.text
        answer = done.json()
        assert (answer["status"], answer["shipping"]) == ("succeeded", SHIPPING_VIEW)
        assert "metadata" not in answer
        pm = api.ok("GET", f"/v1/payment_methods/{answer['payment_method']}")
        assert (pm["billing_details"]["name"], pm["card"]["last4"], pm["customer"]) == (
            "Jo Payer", "4242", None)

        # Still only the browser's fields, and still the secret.
        other = api.ok("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})
        r = browser.post(f"/v1/payment_intents/{other['id']}/confirm", data={
            "client_secret": other["client_secret"], "payment_method_data[type]": "card",
            "payment_method_data[card][token]": "tok_visa", "setup_future_usage": "off_session"})
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
            400, "parameter_not_allowed", "setup_future_usage")
        r = browser.post(f"/v1/payment_intents/{other['id']}/confirm", data={
            "payment_method_data[type]": "card", "payment_method_data[card][token]": "tok_visa"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "parameter_missing")
        r = browser.post(f"/v1/payment_intents/{other['id']}/confirm", data={
            "client_secret": other["client_secret"], "payment_method_data[type]": "card",
            "payment_method_data[card][number]": "4242424242424242"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "card_number_not_allowed")
        assert api.ok("GET", f"/v1/payment_intents/{other['id']}")["status"] == (
            "requires_payment_method")

        # A decline: the intent it carries is the publishable view too.
        customer = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})
        hidden = api.ok("POST", "/v1/payment_intents", {
            "amount": 600, "currency": "usd", "customer": customer["id"],
            "metadata": {"internal": "note"}})
        declining = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
            "number": "4000000000000002", "exp_month": 12, "exp_year": 2040, "cvc": "123",
            "postal_code": "94107"}).json()["id"]
        r = browser.post(f"/v1/payment_intents/{hidden['id']}/confirm", data={
            "client_secret": hidden["client_secret"], "payment_method_data[type]": "card",
            "payment_method_data[card][token]": declining})
        assert r.status_code == 402, r.text
        seen = r.json()["error"]["payment_intent"]
        assert (seen["id"], seen["status"]) == (hidden["id"], "requires_payment_method")
        assert seen["last_payment_error"]["code"] == "card_declined"
        assert "metadata" not in seen and "customer" not in seen and "note" not in r.text
        assert customer["id"] not in r.text
    finally:
        browser.close()


# -- SetupIntents ----------------------------------------------------------------------------
def test_a_setup_intent_takes_payment_method_data_on_create_and_confirm(api: Api) -> None:
    sdk = sdk_for(api)
    customer = sdk.v1.customers.create(params={"email": "saver@example.com"})
    seti = sdk.v1.setup_intents.create(params={
        "customer": customer.id, "confirm": True,
        "payment_method_data": {"type": "card", "card": {"token": "tok_mastercard"},
                                "billing_details": {"name": "Jo Saver"},
                                "metadata": {"from": "data"}}})
    assert seti.status == "succeeded"
    pm = sdk.v1.payment_methods.retrieve(str(seti.payment_method))
    assert (pm.customer, pm.card.brand, pm.card.last4) == (customer.id, "mastercard", "4444")
    assert (pm.billing_details.name, pm.metadata.to_dict()) == ("Jo Saver", {"from": "data"})

    token = sandbox_token(api.server)
    later = sdk.v1.setup_intents.create(params={"customer": customer.id})
    confirmed = sdk.v1.setup_intents.confirm(later.id, params={
        "payment_method_data": {"type": "card", "card": {"token": token}}})
    assert confirmed.status == "succeeded"
    saved = sdk.v1.payment_methods.retrieve(str(confirmed.payment_method))
    assert (saved.customer, saved.card.last4) == (customer.id, "4242")
    # The saved card pays off-session.
    paid = sdk.v1.payment_intents.create(params={
        "amount": 990, "currency": "usd", "customer": customer.id, "payment_method": saved.id,
        "off_session": True, "confirm": True})
    assert paid.status == "succeeded"

    # A token is one payment method, once; both ways at once is refused; no card data.
    again = sdk.v1.setup_intents.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as used:
        sdk.v1.setup_intents.confirm(again.id, params={
            "payment_method_data": {"type": "card", "card": {"token": token}}})
    assert (used.value.code, used.value.param) == (
        "payment_method_unexpected_state", "payment_method_data[card][token]")
    with pytest.raises(stripe.InvalidRequestError) as both:
        sdk.v1.setup_intents.create(params={
            "customer": customer.id, "payment_method": "pm_card_visa",
            "payment_method_data": {"type": "card", "card": {"token": "tok_visa"}}})
    assert (both.value.code, both.value.param) == ("parameters_exclusive", "payment_method_data")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.setup_intents.create(params={
            "customer": customer.id, "payment_method_data": {"type": "card"}})
    assert (missing.value.code, missing.value.param) == (
        "parameter_missing", "payment_method_data[card]")
    r = api.http.post("/v1/setup_intents", data={
        "customer": customer.id, "payment_method_data[type]": "card",
        "payment_method_data[card][number]": "4242424242424242"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "card_number_not_allowed")
    assert "4242424242424242" not in r.text
    assert sdk.v1.setup_intents.retrieve(again.id).status == "requires_payment_method"
    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.setup_intents.confirm(again.id, params={
            "payment_method_data": {"type": "card", "card": {"token": "tok_chargeDeclined"}}})
    assert declined.value.code == "card_declined"
