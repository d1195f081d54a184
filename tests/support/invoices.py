"""An invoice paid through the HTTP API of the running test server: the starting point of the
credit note tests (a note credits a paid invoice, by a refund of its payment)."""

from __future__ import annotations

from typing import Any

from conftest import Api

__all__ = ["open_invoice", "paid_invoice"]


def paid_invoice(api: Api, token: str = "pm_card_visa", amount: int = 3000) -> dict[str, Any]:
    """A new customer's invoice of ``amount`` (usd), finalized and paid with ``token``
    (a sandbox test card) saved for them; returns the paid invoice."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"]
    pm = api.ok("POST", f"/v1/payment_methods/{token}/attach", {"customer": cus})["id"]
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pm})
    assert paid["status"] == "paid"
    return paid


def open_invoice(api: Api, currency: str, amount: int) -> dict[str, Any]:
    """A new customer's open invoice of ``amount`` in ``currency`` that nobody charged yet
    (its payer pays it from the hosted page); returns the finalized invoice."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com", "name": "Payer"})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": currency})
    api.ok(
        "POST",
        "/v1/invoiceitems",
        {
            "customer": cus["id"],
            "invoice": invoice["id"],
            "amount": amount,
            "currency": currency,
            "description": "Workshop seat",
        },
    )
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert opened["status"] == "open" and opened["payment_intent"] is None
    return opened
