"""A credit note's refund that fails after the note was issued (the sandbox's refund-fail card:
the refund succeeds, then fails by webhook) is never left looking paid: the note stays issued
(a credit note is a document only a void changes), its refunds entry shows nothing refunded,
and the merchant hears of it (``refund.failed`` on the refund, ``credit_note.updated`` on the
note)."""

from __future__ import annotations

from typing import Any

from conftest import Api
from support.billing import event_types


def paid_invoice(api: Api, token: str, amount: int = 3000) -> dict[str, Any]:
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"]
    pm = api.ok("POST", f"/v1/payment_methods/{token}/attach", {"customer": cus})["id"]
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pm})
    assert paid["status"] == "paid"
    return paid


def test_a_credit_note_whose_refund_fails_later_shows_it(api: Api) -> None:
    invoice = paid_invoice(api, "pm_card_refundFail")
    note = api.ok("POST", "/v1/credit_notes",
                  {"invoice": invoice["id"], "amount": 1000, "refund_amount": 1000})
    assert note["status"] == "issued"
    assert note["refunds"] == [{"amount_refunded": 1000, "refund": note["refund"]}]
    refund = api.wait_for(f"/v1/refunds/{note['refund']}", "status", "failed")
    assert refund["failure_reason"] == "expired_or_canceled_card"
    assert refund["metadata"]["credit_note"] == note["id"]
    after = api.ok("GET", f"/v1/credit_notes/{note['id']}")
    assert after["status"] == "issued"
    assert after["refunds"] == [{"amount_refunded": 0, "refund": note["refund"]}]
    assert event_types(api, note["id"]) == ["credit_note.created", "credit_note.updated"]
    assert "refund.failed" in event_types(api, refund["id"])
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert pi["amount_refunded"] == 0


def test_a_credit_note_whose_refund_succeeds_shows_it_refunded(api: Api) -> None:
    invoice = paid_invoice(api, "pm_card_visa")
    note = api.ok("POST", "/v1/credit_notes",
                  {"invoice": invoice["id"], "amount": 1000, "refund_amount": 1000})
    api.wait_for(f"/v1/refunds/{note['refund']}", "status", "succeeded")
    after = api.ok("GET", f"/v1/credit_notes/{note['id']}")
    assert after["refunds"] == [{"amount_refunded": 1000, "refund": note["refund"]}]
    assert event_types(api, note["id"]) == ["credit_note.created"]
