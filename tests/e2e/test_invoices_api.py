"""One-off invoices through /v1/invoices and /v1/invoiceitems on a real server over SQLite and
PostgreSQL: items, a coupon and tax rates, finalization and its numbers, paying with a saved
sandbox card, void, uncollectible, the illegal moves and another account's invoices.

Expected figures are worked out here by hand from the inputs (see each test), not read back
from the code under test."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from conftest import Api
from support.errors import error_of

NUMBER = re.compile(r"[0-9A-F]{8}-(\d{4})")


def saved_card(api: Api, customer_id: str, number: str = "4242424242424242") -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": time.gmtime().tm_year + 2,
        "cvc": "123", "postal_code": "94107"})
    assert r.status_code == 200, r.text
    pm = api.ok("POST", f"/v1/payment_methods/{r.json()['id']}/attach", {"customer": customer_id})
    return str(pm["id"])


def customer(api: Api) -> str:
    return str(api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"])


def draft_with_item(api: Api, cus: str, amount: int = 5000, **fields: Any) -> dict[str, Any]:
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd", **fields})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd",
                                         "description": "Setup fee"})
    return invoice


def test_a_manual_invoice_with_items_coupon_and_tax_is_finalized_numbered_and_paid(
    api: Api,
) -> None:
    cus = customer(api)
    pm = saved_card(api, cus)
    coupon = api.ok("POST", "/v1/coupons", {"percent_off": 10, "duration": "once"})
    vat = api.ok("POST", "/v1/tax_rates", {"display_name": "VAT", "percentage": 20,
                                           "inclusive": False})
    invoice = api.ok("POST", "/v1/invoices", {
        "customer": cus, "currency": "usd", "discounts": [{"coupon": coupon["id"]}],
        "default_tax_rates": [vat["id"]], "description": "March work",
        "metadata": {"order": "A-1"}})
    assert invoice["object"] == "invoice" and invoice["status"] == "draft"
    assert invoice["number"] is None and invoice["hosted_invoice_url"] is None
    assert invoice["billing_reason"] == "manual" and invoice["metadata"] == {"order": "A-1"}

    # 100.00 by amount, and 2 x 25.00 by unit amount; the draft's items have lines at once.
    consulting = api.ok("POST", "/v1/invoiceitems", {
        "customer": cus, "invoice": invoice["id"], "amount": 10000, "currency": "usd",
        "description": "Consulting", "tax_rates": [vat["id"]]})
    widgets = api.ok("POST", "/v1/invoiceitems", {
        "customer": cus, "invoice": invoice["id"], "unit_amount": 2500, "quantity": 2,
        "currency": "usd", "description": "Widgets", "tax_rates": [vat["id"]]})
    assert consulting["object"] == "invoiceitem" and consulting["invoice"] == invoice["id"]
    assert (widgets["amount"], widgets["quantity"], widgets["unit_amount"]) == (5000, 2, 2500)
    assert [t["id"] for t in widgets["tax_rates"]] == [vat["id"]]
    lines = api.ok("GET", f"/v1/invoices/{invoice['id']}/lines")
    assert [(x["description"], x["amount"]) for x in lines["data"]] == [
        ("Consulting", 10000), ("Widgets", 5000)]

    done = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    # subtotal 15000; 10% off = 1500 (900+... split 1000 / 500); tax 20% of the nets
    # 9000 and 4500 = 1800 + 900 = 2700; total 15000 - 1500 + 2700 = 16200.
    assert done["status"] == "open"
    assert (done["subtotal"], done["tax"], done["total"], done["amount_due"]) == (
        15000, 2700, 16200, 16200)
    assert [d["amount"] for d in done["total_discount_amounts"]] == [1500]
    match = NUMBER.fullmatch(done["number"])
    assert match is not None and match.group(1) == "0001", done["number"]
    assert done["hosted_invoice_url"].startswith(f"{api.server.url}/invoices/")
    assert done["invoice_pdf"] == done["hosted_invoice_url"] + "/pdf"

    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pm})
    assert paid["status"] == "paid" and paid["amount_paid"] == 16200
    assert paid["amount_remaining"] == 0
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["status"], pi["amount"], pi["currency"]) == ("succeeded", 16200, "usd")
    assert api.charges(pi["id"])[0]["amount"] == 16200  # the sandbox charged it, once

    # The account's next invoice takes the next number.
    second = draft_with_item(api, cus)
    numbered = api.ok("POST", f"/v1/invoices/{second['id']}/finalize")
    assert numbered["number"] == done["number"][:-4] + "0002"
    listed = api.ok("GET", "/v1/invoices", params={"customer": cus, "status": "paid"})
    assert [x["id"] for x in listed["data"]] == [invoice["id"]]


def test_pending_items_wait_for_an_invoice_that_includes_them(api: Api) -> None:
    cus = customer(api)
    first = api.ok("POST", "/v1/invoiceitems", {"customer": cus, "amount": 700,
                                                 "currency": "eur", "description": "A"})
    second = api.ok("POST", "/v1/invoiceitems", {"customer": cus, "amount": -200,
                                                  "currency": "eur", "description": "Credit"})
    assert first["invoice"] is None
    pending = api.ok("GET", "/v1/invoiceitems", params={"customer": cus, "pending": "true"})
    assert [x["id"] for x in pending["data"]] == [second["id"], first["id"]]
    changed = api.ok("POST", f"/v1/invoiceitems/{first['id']}",
                     {"amount": 900, "metadata": {"k": "v"}})
    assert changed["amount"] == 900 and changed["metadata"] == {"k": "v"}

    # Stripe's default excludes pending items; "include" takes them, currency and all.
    empty = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "eur"})
    assert empty["lines"]["data"] == []
    api.ok("DELETE", f"/v1/invoices/{empty['id']}")
    invoice = api.ok("POST", "/v1/invoices", {
        "customer": cus, "pending_invoice_items_behavior": "include"})
    assert invoice["currency"] == "eur"
    assert sorted(x["amount"] for x in invoice["lines"]["data"]) == [-200, 900]
    assert api.ok("GET", "/v1/invoiceitems", params={"customer": cus, "pending": "true"})[
        "data"] == []

    # A deleted draft gives its items back to pending.
    api.ok("DELETE", f"/v1/invoices/{invoice['id']}")
    again = api.ok("GET", "/v1/invoiceitems", params={"customer": cus, "pending": "true"})
    assert len(again["data"]) == 2
    gone = api.ok("DELETE", f"/v1/invoiceitems/{second['id']}")
    assert gone == {"id": second["id"], "object": "invoiceitem", "deleted": True}
    assert error_of(api.get(f"/v1/invoiceitems/{second['id']}"), 404)["code"] == (
        "resource_missing")


def test_void_and_uncollectible_and_the_moves_they_forbid(api: Api) -> None:
    cus = customer(api)
    item_invoice = draft_with_item(api, cus, 1234)
    draft_id = item_invoice["id"]
    # A draft can be neither voided nor paid out of band before it is open... void needs open.
    err = error_of(api.post(f"/v1/invoices/{draft_id}/void"), 400)
    assert err["code"] == "invoice_unexpected_state"
    api.ok("POST", f"/v1/invoices/{draft_id}/finalize")
    err = error_of(api.post(f"/v1/invoices/{draft_id}/finalize"), 400)
    assert err["code"] == "invoice_unexpected_state"
    # An open invoice's items and terms are frozen.
    item = api.ok("GET", "/v1/invoiceitems", params={"invoice": draft_id})["data"][0]
    err = error_of(api.post(f"/v1/invoiceitems/{item['id']}", {"amount": 1}), 400)
    assert err["code"] == "invoice_unexpected_state"
    err = error_of(api.http.delete(f"/v1/invoiceitems/{item['id']}"), 400)
    assert err["code"] == "invoice_unexpected_state"
    err = error_of(api.post("/v1/invoiceitems", {"customer": cus, "invoice": draft_id,
                                                 "amount": 1, "currency": "usd"}), 400)
    assert (err["code"], err["param"]) == ("invoice_unexpected_state", "invoice")
    frozen = api.ok("GET", f"/v1/invoices/{draft_id}")
    assert ([line["amount"] for line in frozen["lines"]["data"]], frozen["total"]) == (
        [1234], 1234)
    err = error_of(api.post(f"/v1/invoices/{draft_id}", {"description": "x"}), 400)
    assert err["code"] == "invoice_unexpected_state"
    assert api.ok("POST", f"/v1/invoices/{draft_id}", {"metadata": {"a": "b"}})[
        "metadata"] == {"a": "b"}
    err = error_of(api.http.delete(f"/v1/invoices/{draft_id}"), 400)
    assert err["code"] == "invoice_unexpected_state"

    voided = api.ok("POST", f"/v1/invoices/{draft_id}/void")
    assert voided["status"] == "void" and voided["status_transitions"]["voided_at"]
    for action in ("pay", "void", "mark_uncollectible", "finalize"):
        err = error_of(api.post(f"/v1/invoices/{draft_id}/{action}"), 400)
        assert err["code"] == "invoice_unexpected_state", action

    other = draft_with_item(api, cus, 999)
    api.ok("POST", f"/v1/invoices/{other['id']}/finalize")
    bad = api.ok("POST", f"/v1/invoices/{other['id']}/mark_uncollectible")
    assert bad["status"] == "uncollectible"
    # A late payment still settles it (out of band here).
    settled = api.ok("POST", f"/v1/invoices/{other['id']}/pay", {"paid_out_of_band": True})
    assert settled["status"] == "paid" and settled["paid_out_of_band"] is True
    err = error_of(api.post(f"/v1/invoices/{other['id']}/mark_uncollectible"), 400)
    assert err["code"] == "invoice_unexpected_state"


def test_bad_invoice_requests_are_refused_with_their_codes(api: Api) -> None:
    cus = customer(api)
    err = error_of(api.post("/v1/invoices", {"customer": cus}), 400)
    assert (err["code"], err["param"]) == ("parameter_missing", "currency")
    err = error_of(api.post("/v1/invoices", {"customer": cus, "currency": "usd",
                                             "collection_method": "send_invoice"}), 400)
    assert err["param"] == "days_until_due"
    err = error_of(api.post("/v1/invoices", {"customer": cus, "currency": "usd",
                                             "discounts": [{"coupon": "NOPE"}]}), 404)
    assert err["param"] == "coupon"
    err = error_of(api.post("/v1/invoiceitems", {"customer": cus, "amount": 5}), 400)
    assert err["param"] == "currency"
    err = error_of(api.post("/v1/invoiceitems", {"customer": cus, "currency": "usd",
                                                 "amount": 5, "unit_amount": 5}), 400)
    assert err["code"] == "parameters_exclusive"
    sent = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd",
                                           "collection_method": "send_invoice",
                                           "days_until_due": 30})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": sent["id"],
                                        "amount": 100, "currency": "usd"})
    # An item in another currency cannot join the draft.
    err = error_of(api.post("/v1/invoiceitems", {"customer": cus, "invoice": sent["id"],
                                                 "amount": 100, "currency": "eur"}), 400)
    assert err["code"] == "currency_mismatch"
    opened = api.ok("POST", f"/v1/invoices/{sent['id']}/finalize")
    # Due 30 days after finalization (in whole seconds).
    assert opened["due_date"] - opened["status_transitions"]["finalized_at"] in (
        30 * 86400, 30 * 86400 - 1, 30 * 86400 + 1)


def test_another_accounts_invoice_is_invisible(api: Api) -> None:
    cus = customer(api)
    invoice = draft_with_item(api, cus)
    item = api.ok("GET", "/v1/invoiceitems", params={"invoice": invoice["id"]})["data"][0]
    other = Api(api.server)
    try:
        for r in (
            other.get(f"/v1/invoices/{invoice['id']}"),
            other.post(f"/v1/invoices/{invoice['id']}/finalize"),
            other.post(f"/v1/invoices/{invoice['id']}/pay"),
            other.post(f"/v1/invoices/{invoice['id']}/void"),
            other.post(f"/v1/invoices/{invoice['id']}", {"description": "mine"}),
            other.http.delete(f"/v1/invoices/{invoice['id']}"),
            other.get(f"/v1/invoices/{invoice['id']}/lines"),
            other.get(f"/v1/invoiceitems/{item['id']}"),
            other.post("/v1/invoiceitems", {"customer": cus, "amount": 1, "currency": "usd"}),
        ):
            assert error_of(r, 404)["code"] == "resource_missing", r.request.url
        assert other.ok("GET", "/v1/invoices")["data"] == []
        assert other.ok("GET", "/v1/invoiceitems")["data"] == []
    finally:
        other.close()
    still = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert still["status"] == "draft" and still["description"] is None
