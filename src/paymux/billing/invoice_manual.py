"""Invoices the merchant makes and edits through ``/v1/invoices`` (a one-off invoice, not a
subscription's): creation with its discount, default tax rates and collection terms, and the
edits a draft allows. The draft itself is made by the invoices core
(``InvoicesService.create_draft``), which pulls the customer's pending items onto it when asked
(``pending_invoice_items_behavior=include``; Stripe's default is ``exclude``: items are then
added with ``POST /v1/invoiceitems`` and ``invoice=``).

The invoice's currency: the one given, else the customer's (their balance's and earlier
invoices'), else that of their oldest pending item; without any of these it must be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_checks import currency_code
from paymux.billing.catalog_rows import (
    coupon_row,
    promotion_code_row,
    redeem_coupon,
    tax_rate_row,
)
from paymux.billing.catalog_views import coupon_valid
from paymux.billing.clock_time import now_for
from paymux.domain.errors import PaymuxError
from paymux.services.context import Context, emit, get_owned, merge_metadata
from paymux.storage.models import Customer, Invoice, InvoiceItem, InvoiceLine, PaymentMethod

if TYPE_CHECKING:
    from paymux.root import Paymux

__all__ = ["InvoiceDraftUpdate", "ManualInvoiceParams", "ManualInvoices"]

MAX_DAYS_UNTIL_DUE = 3650
_DAY_US = 86_400_000_000


@dataclass
class ManualInvoiceParams:
    customer: str
    currency: str | None = None
    collection_method: str = "charge_automatically"
    days_until_due: int | None = None
    description: str | None = None
    auto_advance: bool | None = None
    pending_invoice_items_behavior: str = "exclude"
    metadata: dict[str, str] | None = None
    default_tax_rates: list[str] | None = None
    default_payment_method: str | None = None
    coupon: str | None = None
    promotion_code: str | None = None


@dataclass
class InvoiceDraftUpdate:
    description: str | None = None
    metadata: dict[str, str] | None = None
    auto_advance: bool | None = None
    collection_method: str | None = None
    days_until_due: int | None = None
    default_payment_method: str | None = None
    coupon: str | None = None  # "" removes the discount


def _invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


def check_collection(method: str, days_until_due: int | None) -> None:
    """Stripe's rule: ``send_invoice`` needs ``days_until_due``; ``charge_automatically``
    takes none (it is charged at finalization). Pure."""
    if method == "send_invoice" and days_until_due is None:
        raise PaymuxError.of(
            "parameter_missing",
            "A send_invoice invoice needs days_until_due.",
            param="days_until_due",
        )
    if method == "charge_automatically" and days_until_due is not None:
        raise _invalid("days_until_due applies to send_invoice invoices only.", "days_until_due")
    if days_until_due is not None and not 0 <= days_until_due <= MAX_DAYS_UNTIL_DUE:
        raise _invalid(
            f"days_until_due must be between 0 and {MAX_DAYS_UNTIL_DUE}.", "days_until_due"
        )


async def _coupon_id(
    s: AsyncSession, account_id: str, coupon: str | None, promo: str | None, now_us: int
) -> tuple[str | None, str | None]:
    """(coupon id, promotion code id) of the discount asked for, checked redeemable."""
    if coupon is not None and promo is not None:
        raise PaymuxError.of(
            "parameters_exclusive", "Use a coupon or a promotion code, not both.", param="coupon"
        )
    promo_id = None
    if promo is not None:
        code = await promotion_code_row(s, account_id, promo)
        if not code.active:
            raise PaymuxError.of(
                "promotion_code_invalid",
                f"Promotion code '{code.code}' is not active.",
                param="promotion_code",
            )
        coupon, promo_id = code.coupon_id, code.id
    if coupon is None:
        return None, None
    row = await coupon_row(s, account_id, coupon)
    if not coupon_valid(row, now_us):
        raise PaymuxError.of(
            "coupon_expired", f"Coupon '{row.id}' can no longer be redeemed.", param="coupon"
        )
    return row.id, promo_id


async def _currency_of(
    s: AsyncSession, account_id: str, customer: Customer, given: str | None
) -> str:
    if given is not None:
        code = currency_code(given).upper()
        held = (customer.currency or "").upper()
        if held and held != code:
            raise PaymuxError.of(
                "currency_mismatch",
                f"The customer is billed in {held.lower()}, not {code.lower()}.",
                param="currency",
            )
        return code
    if customer.currency:
        return customer.currency.upper()
    oldest = (
        await s.execute(
            select(InvoiceItem.currency)
            .where(
                InvoiceItem.account_id == account_id,
                InvoiceItem.customer_id == customer.id,
                InvoiceItem.invoice_id.is_(None),
            )
            .order_by(InvoiceItem.created_us, InvoiceItem.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if oldest is None:
        raise PaymuxError.of(
            "parameter_missing",
            "The customer has no currency yet (no invoice, balance or pending item): give "
            "currency.",
            param="currency",
        )
    return str(oldest).upper()


async def _own_payment_method(
    s: AsyncSession, account_id: str, customer_id: str, pm_id: str
) -> str:
    pm = await get_owned(s, PaymentMethod, pm_id, account_id, param="default_payment_method")
    if pm.customer_id != customer_id:
        raise PaymuxError.of(
            "payment_method_unexpected_state",
            "The default payment method must be attached to the invoice's customer.",
            param="default_payment_method",
        )
    return pm.id


class ManualInvoices:
    """``POST /v1/invoices`` and ``POST /v1/invoices/{id}`` (drafts only)."""

    def __init__(self, ctx: Context, app: Paymux) -> None:
        self.ctx = ctx
        self.app = app

    async def create(self, account_id: str, p: ManualInvoiceParams) -> dict[str, Any]:
        check_collection(p.collection_method, p.days_until_due)
        async with self.ctx.db.read() as s:
            customer = await get_owned(s, Customer, p.customer, account_id, param="customer")
            now = await now_for(s, self.ctx, account_id, customer.id)
            currency = await _currency_of(s, account_id, customer, p.currency)
            coupon_id, promo_id = await _coupon_id(s, account_id, p.coupon, p.promotion_code, now)
            rates: list[str] = []
            for i, rate_id in enumerate(p.default_tax_rates or []):
                rate = await tax_rate_row(s, account_id, rate_id, param=f"default_tax_rates[{i}]")
                if not rate.active:
                    raise _invalid(f"Tax rate {rate.id} is archived.", f"default_tax_rates[{i}]")
                if rate.id not in rates:
                    rates.append(rate.id)
            pm_id = (
                await _own_payment_method(s, account_id, customer.id, p.default_payment_method)
                if p.default_payment_method
                else None
            )
        invoice_id = await self.app.invoices.create_draft(
            account_id,
            customer_id=customer.id,
            currency=currency,
            billing_reason="manual",
            period_start_us=now,
            period_end_us=now,
            lines=[],
            coupon_id=coupon_id,
            default_tax_rate_ids=rates or None,
            collection_method=p.collection_method,
            days_until_due=p.days_until_due,
            default_payment_method_id=pm_id,
            auto_advance=bool(p.auto_advance),
            description=p.description,
            metadata=p.metadata,
            include_pending_items=p.pending_invoice_items_behavior == "include",
            now_us=now,
        )
        if coupon_id is not None:
            try:
                async with self.ctx.db.write() as s:
                    await redeem_coupon(
                        s, account_id, coupon_id, promo_id, now, customer_id=customer.id
                    )
            except PaymuxError:
                # Redeemed up meanwhile: no invoice with a discount it could not have.
                await self.delete_draft(account_id, invoice_id)
                raise
        return dict(await self.app.invoices.retrieve(account_id, invoice_id))

    async def delete_draft(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        """Delete a draft (Stripe's DELETE /v1/invoices/{id}; void an open one): its items go
        back to pending. Core DELETEs in the order the foreign keys need (lines, then the
        invoice): the ORM's unit of work, with no relationships declared, does not order them."""
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            if invoice.status != "draft":
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    f"This invoice is {invoice.status}: only a draft can be deleted (void an "
                    "open invoice).",
                    param="id",
                )
            await s.execute(
                update(InvoiceItem)
                .where(InvoiceItem.invoice_id == invoice.id)
                .values(invoice_id=None)
                .execution_options(synchronize_session=False)
            )
            await s.execute(
                delete(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .execution_options(synchronize_session=False)
            )
            s.expunge(invoice)
            await s.execute(
                delete(Invoice)
                .where(Invoice.id == invoice.id)
                .execution_options(synchronize_session=False)
            )
            return {"id": invoice_id, "object": "invoice", "deleted": True}

    async def update(
        self, account_id: str, invoice_id: str, p: InvoiceDraftUpdate
    ) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            if invoice.status != "draft":
                only_meta = (
                    p.metadata is not None
                    and p.description is None
                    and p.auto_advance is None
                    and p.collection_method is None
                    and p.days_until_due is None
                    and p.default_payment_method is None
                    and p.coupon is None
                )
                if not only_meta:
                    raise PaymuxError.of(
                        "invoice_unexpected_state",
                        f"This invoice is {invoice.status}: a finalized invoice's terms never "
                        "change (only its metadata can).",
                        param="id",
                    )
            now = await now_for(s, self.ctx, account_id, invoice.customer_id)
            if p.collection_method is not None or p.days_until_due is not None:
                method = p.collection_method or invoice.collection_method
                days = p.days_until_due
                if days is None and method == "send_invoice" and invoice.due_date_us is not None:
                    days = invoice.due_date_us // _DAY_US
                check_collection(method, days)
                invoice.collection_method = method
                # Until finalization the core keeps the days as an offset (see draft_in).
                invoice.due_date_us = None if days is None else days * _DAY_US
            if p.description is not None:
                invoice.description = p.description or None
            if p.auto_advance is not None:
                invoice.auto_advance = p.auto_advance
            if p.default_payment_method is not None:
                invoice.default_payment_method_id = (
                    await _own_payment_method(
                        s, account_id, invoice.customer_id, p.default_payment_method
                    )
                    if p.default_payment_method
                    else None
                )
            if p.coupon is not None:
                if p.coupon == "":
                    invoice.coupon_id = None
                else:
                    coupon_id, _ = await _coupon_id(s, account_id, p.coupon, None, now)
                    if coupon_id != invoice.coupon_id:
                        await redeem_coupon(
                            s, account_id, p.coupon, None, now, customer_id=invoice.customer_id
                        )
                    invoice.coupon_id = coupon_id
            if p.metadata is not None:
                invoice.metadata_ = merge_metadata(invoice.metadata_, p.metadata)
            invoice.updated_us = now
            await s.flush()
            view = dict(await self.app.invoices.view_in(s, invoice))
            await emit(s, account_id, "invoice.updated", view, now)
            return view
