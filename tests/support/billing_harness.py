"""Billing starting points for in-process tests (``support.harness.Harness``): an open
invoice whose first try was declined, shared by the payment lease and /pay race tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from support.fake_gateway import Outcome
from support.harness import Harness

__all__ = [
    "customer_and_price",
    "declined_invoice",
    "declined_open_invoice",
    "finalized_invoice",
    "ok",
]


async def ok(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await h.post(path, body)
    assert r.status_code == 200, r.text
    return h.body(r)


async def finalized_invoice(h: Harness, customer: dict[str, Any]) -> dict[str, Any]:
    """An open invoice of 2,000 for a new customer (``customer``: its create parameters)
    whose default card is a good one, nothing tried yet."""
    cus = await ok(h, "/v1/customers", customer)
    pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
    await ok(
        h, f"/v1/customers/{cus['id']}", {"invoice_settings": {"default_payment_method": pm["id"]}}
    )
    await ok(h, "/v1/invoiceitems", {"customer": cus["id"], "amount": 2000, "currency": "usd"})
    invoice = await ok(
        h, "/v1/invoices", {"customer": cus["id"], "pending_invoice_items_behavior": "include"}
    )
    await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {})
    return invoice


async def declined_open_invoice(h: Harness, customer: dict[str, Any]) -> dict[str, Any]:
    """An open invoice of 2,000 for a new customer (``customer``: its create parameters)
    whose first try was declined, the customer's default card now a good one."""
    invoice = await finalized_invoice(h, customer)
    h.gw.script("authorize", Outcome.decline("card_declined"))
    r = await h.post(f"/v1/invoices/{invoice['id']}/pay", {})
    assert r.status_code == 402, r.text
    return invoice


async def declined_invoice(h: Harness) -> tuple[dict[str, Any], str]:
    """An open invoice of 2,000 whose first off-session try was declined (its intent waits
    for a payment method), the customer's default card now a good one; (invoice, its token)."""
    invoice = await declined_open_invoice(h, {"email": "lease@example.com"})
    rows = await h.sql(
        "select hosted_token, status, amount_remaining from invoices where id = :i", i=invoice["id"]
    )
    token, status, remaining = rows[0]
    assert (status, remaining) == ("open", 2000)
    # The dunning retry is due now (not advancing the clock: the lease is timed by it too).
    async with h.app.ctx.db.write() as s:
        await s.execute(
            text("update invoices set next_payment_attempt_us = :t where id = :i"),
            {"t": h.app.ctx.now_us(), "i": invoice["id"]},
        )
    return invoice, str(token)


async def customer_and_price(h: Harness, amount: int) -> tuple[str, str]:
    """(a customer whose default card is a good one, a monthly price of ``amount`` usd)."""
    cus = await ok(h, "/v1/customers", {"email": "billing@example.com"})
    pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
    await ok(
        h, f"/v1/customers/{cus['id']}", {"invoice_settings": {"default_payment_method": pm["id"]}}
    )
    product = await ok(h, "/v1/products", {"name": "Pro"})
    price = await ok(
        h,
        "/v1/prices",
        {
            "product": product["id"],
            "unit_amount": amount,
            "currency": "usd",
            "recurring": {"interval": "month"},
        },
    )
    return str(cus["id"]), str(price["id"])
