"""A customer's credit balance and credit notes, through the HTTP API on a real server over
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from conftest import Api
from support.errors import error_of


def customer(api: Api) -> str:
    return str(api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"])


# -- the customer balance -------------------------------------------------------------------
def test_balance_adjustments_keep_a_history_whose_last_ending_balance_is_the_balance(
    api: Api,
) -> None:
    cus = customer(api)
    path = f"/v1/customers/{cus}/balance_transactions"
    first = api.ok("POST", path, {"amount": -1500, "currency": "usd", "description": "goodwill"})
    assert first["object"] == "customer_balance_transaction"
    assert first["id"].startswith("cbtxn_") and first["customer"] == cus
    assert (first["amount"], first["currency"], first["type"]) == (-1500, "usd", "adjustment")
    assert first["ending_balance"] == -1500 and first["description"] == "goodwill"
    second = api.ok("POST", path, {"amount": 400, "currency": "USD"})
    assert second["ending_balance"] == -1100

    listed = api.ok("GET", path)
    assert listed["object"] == "list" and listed["url"] == path
    assert [t["id"] for t in listed["data"]] == [second["id"], first["id"]]
    assert api.ok("GET", f"{path}/{first['id']}") == first
    rows = api.server.sql("select balance, currency from customers where id = :c", c=cus)
    assert (rows[0][0], rows[0][1]) == (-1100, "USD")
    shown = api.ok("GET", f"/v1/customers/{cus}")  # Stripe's customer.balance and currency
    assert (shown["balance"], shown["currency"]) == (-1100, "usd")


def test_a_balance_is_in_one_currency_and_bad_adjustments_are_refused(api: Api) -> None:
    cus = customer(api)
    path = f"/v1/customers/{cus}/balance_transactions"
    api.ok("POST", path, {"amount": -100, "currency": "eur"})
    err = error_of(api.post(path, {"amount": -100, "currency": "usd"}), 400)
    assert (err["code"], err["param"]) == ("currency_mismatch", "currency")
    assert error_of(api.post(path, {"amount": 0, "currency": "eur"}), 400)["param"] == "amount"
    assert error_of(api.post(path, {"amount": 5, "currency": "zzz"}), 400)["code"] == (
        "currency_unknown"
    )
    assert error_of(api.post(path, {"amount": "5", "currency": "eur"}), 400)["param"] == "amount"
    # Only the first adjustment was kept.
    assert len(api.ok("GET", path)["data"]) == 1


@pytest.mark.parametrize("where", ["customer", "transaction"])
def test_another_accounts_balance_is_invisible(api: Api, where: str) -> None:
    cus = customer(api)
    path = f"/v1/customers/{cus}/balance_transactions"
    txn = api.ok("POST", path, {"amount": -100, "currency": "usd"})
    other = Api(api.server)
    try:
        if where == "customer":
            r = other.post(path, {"amount": -100, "currency": "usd"})
        else:
            r = other.get(f"{path}/{txn['id']}")
        assert error_of(r, 404)["code"] == "resource_missing"
    finally:
        other.close()


# -- credit notes ---------------------------------------------------------------------------
def saved_card(api: Api, customer_id: str) -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": "4242424242424242", "exp_month": 12, "exp_year": time.gmtime().tm_year + 2,
        "cvc": "123"})
    assert r.status_code == 200, r.text
    pm = api.ok("POST", f"/v1/payment_methods/{r.json()['id']}/attach", {"customer": customer_id})
    return str(pm["id"])


def invoice_of(api: Api, cus: str, *amounts: int, pay_with: str | None = None) -> dict[str, Any]:
    """A finalized usd invoice with one item per amount; paid with ``pay_with`` if given."""
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    for n, amount in enumerate(amounts):
        api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                             "amount": amount, "currency": "usd",
                                             "description": f"Item {n + 1}"})
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    if pay_with is None:
        return opened
    return api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pay_with})


def test_a_partial_credit_note_on_a_paid_invoice_refunds_at_the_gateway(api: Api) -> None:
    cus = customer(api)
    paid = invoice_of(api, cus, 6000, 4000, pay_with=saved_card(api, cus))
    assert paid["status"] == "paid" and paid["amount_paid"] == 10000
    first_line = paid["lines"]["data"][0]["id"]
    note = api.ok("POST", "/v1/credit_notes", {
        "invoice": paid["id"], "reason": "product_unsatisfactory", "memo": "Broken part",
        "lines": [{"type": "invoice_line_item", "invoice_line_item": first_line,
                   "amount": 2500}],
        "refund_amount": 2500})
    assert note["object"] == "credit_note" and note["status"] == "issued"
    assert note["number"] == f"{paid['number']}-CN-01"
    assert (note["amount"], note["total"], note["pre_payment_amount"]) == (2500, 2500, 0)
    assert note["post_payment_amount"] == 2500 and note["type"] == "post_payment"
    assert note["lines"]["data"][0]["invoice_line_item"] == first_line
    refund = api.ok("GET", f"/v1/refunds/{note['refund']}")
    assert (refund["amount"], refund["payment_intent"]) == (2500, paid["payment_intent"])
    assert refund["metadata"]["credit_note"] == note["id"]
    # The sandbox gave the money back: its charge shows the refund.
    [charge] = api.charges(paid["payment_intent"])
    assert charge["amount_refunded"] == 2500

    # The line can be credited up to what is left of it (6000 - 2500), not more.
    over = api.post("/v1/credit_notes", {"invoice": paid["id"], "lines": [
        {"type": "invoice_line_item", "invoice_line_item": first_line, "amount": 3501}]})
    assert error_of(over, 400)["code"] == "amount_invalid"
    # The invoice can be credited up to its total less earlier notes: 10000 - 2500.
    too_much = api.post("/v1/credit_notes", {"invoice": paid["id"], "amount": 7501})
    assert error_of(too_much, 400)["param"] == "amount"
    # refund + credit + out of band must add up to the note.
    uneven = api.post("/v1/credit_notes", {"invoice": paid["id"], "amount": 1000,
                                           "refund_amount": 300, "credit_amount": 300})
    assert error_of(uneven, 400)["code"] == "parameter_invalid"
    second = api.ok("POST", "/v1/credit_notes", {"invoice": paid["id"], "amount": 1000,
                                                 "out_of_band_amount": 1000})
    assert second["number"] == f"{paid['number']}-CN-02"
    # A paid invoice's note cannot be voided (Stripe: only while the invoice is open).
    err = error_of(api.post(f"/v1/credit_notes/{second['id']}/void"), 400)
    assert err["code"] == "invoice_unexpected_state"
    listed = api.ok("GET", "/v1/credit_notes", params={"invoice": paid["id"]})
    assert [n["id"] for n in listed["data"]] == [second["id"], note["id"]]
    assert api.ok("GET", f"/v1/credit_notes/{note['id']}") == note


def test_a_balance_credit_is_applied_to_the_next_invoice(api: Api) -> None:
    cus = customer(api)
    paid = invoice_of(api, cus, 5000, pay_with=saved_card(api, cus))
    note = api.ok("POST", "/v1/credit_notes", {"invoice": paid["id"], "amount": 2500,
                                               "credit_amount": 2500})
    assert note["customer_balance_transaction"] is not None
    history = api.ok("GET", f"/v1/customers/{cus}/balance_transactions")["data"]
    assert [(t["type"], t["amount"], t["ending_balance"], t["credit_note"])
            for t in history] == [("credit_note", -2500, -2500, note["id"])]

    # The next invoice of 4000 takes the 2500 credit: 1500 is due and the balance is used up.
    following = invoice_of(api, cus, 4000)
    assert following["total"] == 4000 and following["starting_balance"] == -2500
    assert following["amount_due"] == 1500 and following["ending_balance"] == 0
    history = api.ok("GET", f"/v1/customers/{cus}/balance_transactions")["data"]
    assert (history[0]["type"], history[0]["amount"], history[0]["invoice"]) == (
        "applied_to_invoice", 2500, following["id"])
    assert history[0]["ending_balance"] == 0


def test_a_credit_note_on_an_open_invoice_lowers_what_is_due_and_voiding_restores_it(
    api: Api,
) -> None:
    cus = customer(api)
    opened = invoice_of(api, cus, 3000)
    preview = api.ok("GET", "/v1/credit_notes/preview",
                     params={"invoice": opened["id"], "amount": 1000})
    assert (preview["amount"], preview["pre_payment_amount"]) == (1000, 1000)
    assert api.ok("GET", "/v1/credit_notes", params={"invoice": opened["id"]})["data"] == []

    note = api.ok("POST", "/v1/credit_notes", {"invoice": opened["id"], "amount": 1000,
                                               "reason": "order_change"})
    assert note["type"] == "pre_payment" and note["refund"] is None
    after = api.ok("GET", f"/v1/invoices/{opened['id']}")
    assert (after["status"], after["amount_due"], after["amount_remaining"]) == (
        "open", 2000, 2000)
    # Before payment there is nothing to refund.
    refused = api.post("/v1/credit_notes", {"invoice": opened["id"], "amount": 2000,
                                            "refund_amount": 1})
    assert error_of(refused, 400)["code"] == "parameter_invalid"

    voided = api.ok("POST", f"/v1/credit_notes/{note['id']}/void")
    assert voided["status"] == "void" and voided["voided_at"] is not None
    assert api.ok("GET", f"/v1/invoices/{opened['id']}")["amount_remaining"] == 3000
    again = error_of(api.post(f"/v1/credit_notes/{note['id']}/void"), 400)
    assert again["code"] == "invoice_unexpected_state"

    # Crediting all that is left pays the invoice: nothing remains to collect.
    whole = api.ok("POST", "/v1/credit_notes", {"invoice": opened["id"], "amount": 3000})
    assert whole["number"] == f"{opened['number']}-CN-02"
    settled = api.ok("GET", f"/v1/invoices/{opened['id']}")
    assert (settled["status"], settled["amount_remaining"], settled["amount_paid"]) == (
        "paid", 0, 0)


def test_credit_notes_need_a_finalized_invoice_of_the_account(api: Api) -> None:
    cus = customer(api)
    draft = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    err = error_of(api.post("/v1/credit_notes", {"invoice": draft["id"], "amount": 1}), 400)
    assert err["code"] == "invoice_unexpected_state"
    err = error_of(api.post("/v1/credit_notes", {"invoice": draft["id"], "amount": 1,
                                                 "reason": "because"}), 400)
    assert err["param"] == "reason"
    opened = invoice_of(api, cus, 500)
    other = Api(api.server)
    try:
        r = other.post("/v1/credit_notes", {"invoice": opened["id"], "amount": 100})
        assert error_of(r, 404)["code"] == "resource_missing"
    finally:
        other.close()


# -- the same through stripe-python (form-encoded, nested arrays) -----------------------------
def test_stripe_python_drives_items_invoices_credit_notes_and_the_balance(api: Api) -> None:
    import stripe

    sdk = stripe.StripeClient(api_key=api.key, base_addresses={"api": api.server.url},
                              max_network_retries=0)
    cus = sdk.v1.customers.create(params={"email": "sdk@example.com"})
    pm = saved_card(api, cus.id)
    invoice = sdk.v1.invoices.create(params={"customer": cus.id, "currency": "usd",
                                             "metadata": {"via": "sdk"}})
    item = sdk.v1.invoice_items.create(params={
        "customer": cus.id, "invoice": invoice.id, "unit_amount": 1500, "quantity": 2,
        "currency": "usd", "description": "Seats", "period": {"start": 1_700_000_000,
                                                               "end": 1_702_592_000}})
    assert item.amount == 3000 and item.period.start == 1_700_000_000
    assert [i.id for i in sdk.v1.invoice_items.list(params={"invoice": invoice.id}).data] == [
        item.id]
    finalized = sdk.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status == "open" and finalized.amount_due == 3000
    paid = sdk.v1.invoices.pay(invoice.id, params={"payment_method": pm})
    assert paid.status == "paid"
    line = sdk.v1.invoices.line_items.list(invoice.id).data[0]
    note = sdk.v1.credit_notes.create(params={
        "invoice": invoice.id, "reason": "duplicate", "credit_amount": 1500,
        "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "quantity": 1}]})
    assert (note.amount, note.number) == (1500, f"{paid.number}-CN-01")
    assert sdk.v1.credit_notes.retrieve(note.id).customer_balance_transaction is not None
    history = sdk.v1.customers.balance_transactions.list(cus.id)
    assert [(t.type, t.amount) for t in history.data] == [("credit_note", -1500)]
    adjusted = sdk.v1.customers.balance_transactions.create(
        cus.id, params={"amount": 500, "currency": "usd", "description": "fee"})
    assert adjusted.ending_balance == -1000
