"""A billing request that makes a payment or a refund on the way is audited as itself, on a
real server (SQLite and PostgreSQL): paying an invoice is ``invoice.pay`` on the invoice, a
credit note with a refund is ``credit_note.create`` on the note. The payment intent and the
refund those requests made write their entries in their own transactions only when they are
the request's answer (POST /v1/payment_intents/.../capture, POST /v1/refunds)."""

from __future__ import annotations

from conftest import Api
from support.billing import customer_with_card


def test_paying_an_invoice_and_a_refunding_credit_note_are_audited_as_themselves(
    api: Api,
) -> None:
    customer, _ = customer_with_card(api, None)
    invoice = api.ok("POST", "/v1/invoices", {"customer": customer, "currency": "usd",
                                               "auto_advance": False})
    api.ok("POST", "/v1/invoiceitems", {"customer": customer, "invoice": invoice["id"],
                                        "amount": 4000, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay")
    assert paid["status"] == "paid", paid
    note = api.ok("POST", "/v1/credit_notes", {"invoice": invoice["id"], "amount": 1500,
                                               "refund_amount": 1500})
    assert note["refund"], note

    log = api.ok("GET", "/v1/audit_log", params={"limit": 100})["data"]
    got = {(e["action"], e["object_id"]) for e in log}
    assert ("invoice.pay", invoice["id"]) in got, sorted(got)
    assert ("credit_note.create", note["id"]) in got, sorted(got)
    # Each request has exactly one entry: the nested payment and refund claimed none.
    by_request: dict[str, list[str]] = {}
    for e in log:
        if e["request_id"] is None:  # the key made for the test, outside any request
            continue
        by_request.setdefault(e["request_id"], []).append(e["action"])
    assert all(len(actions) == 1 for actions in by_request.values()), by_request
    assert not {a for a, _ in got} & {"payment_intent.pay", "refund.create"}, sorted(got)
