"""Stripe's ``invoice`` and ``line_item`` objects, from our rows (amounts in minor units,
times in seconds). Pure: the caller loads the invoice and its lines."""

from __future__ import annotations

from typing import Any

from paymux.storage.models import Invoice, InvoiceLine

__all__ = ["hosted_url", "invoice_view", "line_view", "lines_list"]


def _s(us: int | None) -> int | None:
    return None if us is None else us // 1_000_000


def hosted_url(public_url: str, token: str) -> str:
    """The hosted invoice page (served by the invoices router: H6)."""
    return f"{public_url.rstrip('/')}/invoices/{token}"


def line_view(line: InvoiceLine, livemode: bool) -> dict[str, Any]:
    is_sub = line.type == "subscription"
    taxes = [
        {
            "amount": int(t.get("amount", 0)),
            "tax_rate": t.get("tax_rate"),
            "inclusive": bool(t.get("inclusive", False)),
            "tax_behavior": "inclusive" if t.get("inclusive") else "exclusive",
            "type": "tax_rate_details",
        }
        for t in (line.tax_amounts or [])
    ]
    details = {
        "invoice_item": line.invoice_item_id,
        "proration": bool(line.proration),
        "proration_details": {"credited_items": None},
        "subscription": line.subscription_id,
    }
    if is_sub:
        details["subscription_item"] = line.subscription_item_id
    return {
        "id": line.id,
        "object": "line_item",
        "amount": line.amount,
        "currency": line.currency.lower(),
        "description": line.description,
        "discount_amounts": (
            [{"amount": line.discount_amount, "discount": None}] if line.discount_amount else []
        ),
        "discountable": bool(line.discountable),
        "discounts": [],
        "invoice": line.invoice_id,
        "invoice_item": line.invoice_item_id,
        "livemode": livemode,
        "metadata": line.metadata_ or {},
        "period": {"start": _s(line.period_start_us), "end": _s(line.period_end_us)},
        "quantity": line.quantity,
        "proration": bool(line.proration),
        "price": line.price_id,
        "pricing": {
            "type": "price_details",
            "price_details": {"price": line.price_id, "product": None},
            "unit_amount_decimal": None,
        },
        "subscription": line.subscription_id,
        "subscription_item": line.subscription_item_id,
        "type": line.type,
        "parent": {
            "type": "subscription_item_details" if is_sub else "invoice_item_details",
            "subscription_item_details": details if is_sub else None,
            "invoice_item_details": None if is_sub else details,
        },
        "pretax_credit_amounts": [],
        "taxes": taxes,
        "tax_amounts": [
            {"amount": t["amount"], "inclusive": t["inclusive"], "tax_rate": t["tax_rate"]}
            for t in taxes
        ],
        "subtotal": line.amount,
    }


def lines_list(invoice: Invoice, lines: list[InvoiceLine]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [line_view(line, bool(invoice.livemode)) for line in lines],
        "has_more": False,
        "url": f"/v1/invoices/{invoice.id}/lines",
    }


def invoice_view(invoice: Invoice, lines: list[InvoiceLine], public_url: str) -> dict[str, Any]:
    """The invoice as Stripe shows it. A draft has no number and no hosted page yet."""
    draft = invoice.status == "draft"
    url = None if draft else hosted_url(public_url, invoice.hosted_token)
    inclusive = sum(
        int(t.get("amount", 0)) for t in invoice.tax_amounts or [] if t.get("inclusive")
    )
    return {
        "id": invoice.id,
        "object": "invoice",
        "account_country": None,
        "account_name": None,
        "amount_due": invoice.amount_due,
        "amount_overpaid": 0,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "amount_shipping": 0,
        "attempt_count": invoice.attempt_count,
        "attempted": invoice.attempt_count > 0,
        "auto_advance": bool(invoice.auto_advance),
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_reason": invoice.billing_reason,
        "collection_method": invoice.collection_method,
        "created": _s(invoice.created_us),
        "currency": invoice.currency.lower(),
        "customer": invoice.customer_id,
        "default_payment_method": invoice.default_payment_method_id,
        "default_tax_rates": [],
        "description": invoice.description,
        "discount": (
            {"coupon": invoice.coupon_id, "object": "discount"} if invoice.coupon_id else None
        ),
        "discounts": [],
        "due_date": _s(invoice.due_date_us),
        "effective_at": _s(invoice.finalized_at_us),
        "ending_balance": invoice.ending_balance,
        "hosted_invoice_url": url,
        "invoice_pdf": None if url is None else url + "/pdf",
        "last_finalization_error": None,
        "lines": lines_list(invoice, lines),
        "livemode": bool(invoice.livemode),
        "metadata": invoice.metadata_ or {},
        "next_payment_attempt": _s(invoice.next_payment_attempt_us),
        "number": invoice.number,
        "paid": invoice.status == "paid",
        "paid_out_of_band": bool(invoice.paid_out_of_band),
        "parent": (
            {
                "type": "subscription_details",
                "subscription_details": {"subscription": invoice.subscription_id, "metadata": {}},
                "quote_details": None,
            }
            if invoice.subscription_id
            else None
        ),
        "payment_intent": invoice.payment_intent_id,
        "period_end": _s(invoice.period_end_us),
        "period_start": _s(invoice.period_start_us),
        "starting_balance": invoice.starting_balance,
        "status": invoice.status,
        "status_transitions": {
            "finalized_at": _s(invoice.finalized_at_us),
            "marked_uncollectible_at": _s(invoice.marked_uncollectible_at_us),
            "paid_at": _s(invoice.paid_at_us),
            "voided_at": _s(invoice.voided_at_us),
        },
        "subscription": invoice.subscription_id,
        "subtotal": invoice.subtotal,
        "subtotal_excluding_tax": invoice.subtotal - inclusive,
        "tax": invoice.tax,
        "test_clock": invoice.test_clock_id,
        "total": invoice.total,
        "total_discount_amounts": [
            {"amount": d.get("amount", 0), "discount": d.get("coupon")}
            for d in invoice.discount_amounts or []
        ],
        "total_excluding_tax": invoice.total - invoice.tax,
        "total_tax_amounts": [
            {
                "amount": t.get("amount", 0),
                "inclusive": t.get("inclusive"),
                "tax_rate": t.get("tax_rate"),
            }
            for t in invoice.tax_amounts or []
        ],
        "total_taxes": [
            {
                "amount": t.get("amount", 0),
                "tax_behavior": "inclusive" if t.get("inclusive") else "exclusive",
                "tax_rate_details": {"tax_rate": t.get("tax_rate")},
                "taxability_reason": None,
                "taxable_amount": None,
                "type": "tax_rate_details",
            }
            for t in invoice.tax_amounts or []
        ],
        "webhooks_delivered_at": None,
    }
