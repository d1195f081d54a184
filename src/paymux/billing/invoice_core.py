"""Invoices, the core: drafts, finalization (totals frozen, a gap-free number), void and
uncollectible. Paying is in invoice_payments.py (``InvoicesService`` inherits it).

An invoice is a draft while its lines may change; finalizing freezes it (``open``): its totals
are computed once by ``rules.totals``, the customer's credit balance is applied, and its
number is taken from the account's ``InvoiceSequence`` row under that row's lock in the same
transaction: a rolled-back finalization gives its number back, so numbers are gap-free and
never shared. Only an open invoice is charged. Every status change goes through
``rules.states.next_invoice_status``.

Exactly once per subscription period: a subscription's period invoice carries
``period_key`` (unique); ``draft_in`` answers the existing invoice for a key instead of making
a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.balance import CUSTOMER_LOCK, adjust_balance
from paymux.billing.catalog_rows import coupon_terms, tax_terms
from paymux.billing.clock_time import clock_now, now_for
from paymux.billing.dunning import on_invoice_paid
from paymux.billing.invoice_views import invoice_view
from paymux.billing.rules.states import InvoiceAction, next_invoice_status
from paymux.billing.rules.totals import LineInput, TaxTerms, Totals, invoice_totals
from paymux.domain.ids import new_id
from paymux.jobs.queue import enqueue
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    paginate,
    scoped,
)
from paymux.storage.models import (
    Coupon,
    Customer,
    Invoice,
    InvoiceItem,
    InvoiceLine,
    InvoiceSequence,
    Subscription,
    TaxRate,
)

__all__ = ["DraftLine", "InvoicesCore", "invoice_prefix", "lock_invoice", "queue_release"]


async def lock_invoice(
    s: AsyncSession, account_id: str, invoice_id: str, *, param: str = "id"
) -> Invoice:
    """``invoice_id`` of the account (404 otherwise), locked, after its subscription's row
    when it has one: the order the renewal steps and the payment hook take them in
    (``InvoicePayments.on_intent_settled``). A path that locks the invoice and then reaches
    the subscription (paying it, a failed try, the end of its retries, a credit note that
    settles it) would otherwise deadlock on PostgreSQL with a renewal step holding the
    subscription and waiting for the invoice. An invoice's subscription never changes, so
    the unlocked first read names the right one."""
    peek = await get_owned(s, Invoice, invoice_id, account_id, param=param)
    if peek.subscription_id is not None:
        await s.get(Subscription, peek.subscription_id, with_for_update=True)
    invoice = await s.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)
    assert invoice is not None
    return invoice


async def queue_release(s: AsyncSession, ctx: Context, invoice: Invoice) -> None:
    """In the caller's transaction, which closes ``invoice`` or changes what it asks for: a
    job (``release_invoice_intent``) that cancels its intent if that still waits for the payer
    at an amount no longer due (``InvoicePayments.release``). Queued with the change, so a
    crash right after it can't leave an intent able to charge a closed invoice."""
    if invoice.payment_intent_id is None:
        return
    await enqueue(
        s,
        "release_invoice_intent",
        {"account_id": invoice.account_id, "pi_id": invoice.payment_intent_id},
        now_us=ctx.now_us(),
        dedupe_key=f"release:{invoice.payment_intent_id}:{invoice.status}:"
        f"{invoice.amount_remaining}",
        account_id=invoice.account_id,
    )


@dataclass(frozen=True)
class DraftLine:
    """One line of a new draft: a subscription item's period, a proration, metered usage."""

    type: str  # subscription | invoiceitem
    amount: int
    currency: str
    description: str | None
    period_start_us: int
    period_end_us: int
    quantity: int | None = None
    price_id: str | None = None
    subscription_item_id: str | None = None
    proration: bool = False
    discountable: bool = True
    tax_rate_ids: tuple[str, ...] | None = None
    invoice_item_id: str | None = None


def invoice_prefix(account_id: str, livemode: bool) -> str:
    """An account's invoice number prefix (Stripe's look: ``A1B2C3D4-0001``); test and live
    numbers run apart."""
    digest = hashlib.sha256(f"{account_id}:{livemode}".encode()).hexdigest()
    return digest[:8].upper()


class InvoicesCore:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- reads ------------------------------------------------------------------------------
    async def lines_of(self, s: AsyncSession, invoice_id: str) -> list[InvoiceLine]:
        rows = await s.execute(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice_id)
            .order_by(InvoiceLine.position)
        )
        return list(rows.scalars())

    def view(self, invoice: Invoice, lines: list[InvoiceLine]) -> dict[str, Any]:
        return invoice_view(invoice, lines, self.ctx.settings.base_url())

    async def view_in(self, s: AsyncSession, invoice: Invoice) -> dict[str, Any]:
        return self.view(invoice, await self.lines_of(s, invoice.id))

    async def retrieve(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id)
            return await self.view_in(s, invoice)

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        customer: str | None = None,
        subscription: str | None = None,
        status: str | None = None,
        collection_method: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = scoped(Invoice, account_id)
        for column, value in (
            (Invoice.customer_id, customer),
            (Invoice.subscription_id, subscription),
            (Invoice.status, status),
            (Invoice.collection_method, collection_method),
        ):
            if value is not None:
                query = query.where(column == value)
        if created is not None:
            query = query.where(*created.clauses(Invoice.created_us))
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                Invoice,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [await self.view_in(s, row) for row in rows], more

    # -- drafts -----------------------------------------------------------------------------
    async def create_draft(
        self,
        account_id: str,
        *,
        customer_id: str,
        currency: str,
        billing_reason: str,
        period_start_us: int,
        period_end_us: int,
        lines: list[DraftLine],
        subscription_id: str | None = None,
        period_key: str | None = None,
        coupon_id: str | None = None,
        default_tax_rate_ids: list[str] | None = None,
        collection_method: str = "charge_automatically",
        days_until_due: int | None = None,
        default_payment_method_id: str | None = None,
        auto_advance: bool = True,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        include_pending_items: bool = True,
        now_us: int | None = None,
    ) -> str:
        """A draft invoice in its own transaction (see ``draft_in``)."""
        async with self.ctx.db.write() as s:
            at = (
                now_us
                if now_us is not None
                else await now_for(s, self.ctx, account_id, customer_id)
            )
            invoice = await self.draft_in(
                s,
                account_id,
                customer_id=customer_id,
                currency=currency,
                billing_reason=billing_reason,
                period_start_us=period_start_us,
                period_end_us=period_end_us,
                lines=lines,
                subscription_id=subscription_id,
                period_key=period_key,
                coupon_id=coupon_id,
                default_tax_rate_ids=default_tax_rate_ids,
                collection_method=collection_method,
                days_until_due=days_until_due,
                default_payment_method_id=default_payment_method_id,
                auto_advance=auto_advance,
                description=description,
                metadata=metadata,
                include_pending_items=include_pending_items,
                now_us=at,
            )
            return invoice.id

    async def draft_in(
        self,
        s: AsyncSession,
        account_id: str,
        *,
        customer_id: str,
        currency: str,
        billing_reason: str,
        period_start_us: int,
        period_end_us: int,
        lines: list[DraftLine],
        now_us: int,
        subscription_id: str | None = None,
        period_key: str | None = None,
        coupon_id: str | None = None,
        default_tax_rate_ids: list[str] | None = None,
        collection_method: str = "charge_automatically",
        days_until_due: int | None = None,
        default_payment_method_id: str | None = None,
        auto_advance: bool = True,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        include_pending_items: bool = True,
        lines_out: list[InvoiceLine] | None = None,
    ) -> Invoice:
        """A draft in the caller's transaction; with ``period_key``, the invoice that already
        bills that period if there is one (never a second). Pending invoice items of the
        customer (in this currency) are pulled onto it. ``days_until_due`` is kept in the
        metadata-free column ``due_date_us`` as an offset until finalization sets the date.
        ``lines_out``: given, it receives the lines of a draft made now, in order (left empty
        for an existing invoice), for a caller that finalizes it in the same transaction
        (``finalize_in(lines=...)``) without reading them back."""
        if period_key is not None:
            existing = (
                await s.execute(select(Invoice).where(Invoice.period_key == period_key))
            ).scalar_one_or_none()
            if existing is not None:
                return existing
        customer = await get_owned(s, Customer, customer_id, account_id, param="customer")
        invoice = _new_draft(
            customer,
            currency=currency,
            billing_reason=billing_reason,
            period_start_us=period_start_us,
            period_end_us=period_end_us,
            subscription_id=subscription_id,
            coupon_id=coupon_id,
            collection_method=collection_method,
            now_us=now_us,
            period_key=period_key,
            default_payment_method_id=default_payment_method_id,
            auto_advance=auto_advance,
            hosted_token=new_id("ivt", 40),
            description=description,
            # Until finalization: the days it will be due after (send_invoice).
            due_date_us=None if days_until_due is None else days_until_due * 86_400_000_000,
            metadata_=dict(metadata or {}),
            discount_amounts=[],
            tax_amounts=[],
        )
        s.add(invoice)
        defaults = tuple(default_tax_rate_ids or ())
        made = [
            self._line(invoice, position, line, defaults, subscription_id)
            for position, line in enumerate(lines)
        ]
        if include_pending_items:
            for item in await _pending_items(s, account_id, customer_id, currency, lock=True):
                item.invoice_id = invoice.id
                made.append(
                    self._line(invoice, len(made), _item_line(item), defaults, item.subscription_id)
                )
        s.add_all(made)
        await s.flush()
        # Its view from the lines just made (every column set here, in position order): not
        # read back.
        await emit(s, account_id, "invoice.created", self.view(invoice, made), now_us)
        if lines_out is not None:
            lines_out.extend(made)
        return invoice

    async def preview(
        self,
        s: AsyncSession,
        account_id: str,
        *,
        customer_id: str,
        currency: str,
        billing_reason: str,
        period_start_us: int,
        period_end_us: int,
        lines: list[DraftLine],
        created_us: int,
        subscription_id: str | None = None,
        coupon_id: str | None = None,
        default_tax_rate_ids: list[str] | None = None,
        collection_method: str = "charge_automatically",
    ) -> dict[str, Any]:
        """The view of the invoice ``draft_in`` then ``finalize_in`` would make of these lines
        now (the customer's pending items in this currency, the coupon, taxes and balance
        applied), computed in memory: nothing is written, locked or numbered (a preview)."""
        customer = await get_owned(s, Customer, customer_id, account_id, param="customer")
        invoice = _new_draft(
            customer,
            currency=currency,
            billing_reason=billing_reason,
            period_start_us=period_start_us,
            period_end_us=period_end_us,
            subscription_id=subscription_id,
            coupon_id=coupon_id,
            collection_method=collection_method,
            now_us=created_us,
            auto_advance=True,
            hosted_token="",
            metadata_={},
            # never flushed: the columns the database would default are set here
            amount_paid=0,
            paid_out_of_band=False,
        )
        defaults = tuple(default_tax_rate_ids or ())
        made = [
            self._line(invoice, position, line, defaults, subscription_id)
            for position, line in enumerate(lines)
        ]
        for item in await _pending_items(s, account_id, customer_id, currency, lock=False):
            made.append(
                self._line(invoice, len(made), _item_line(item), defaults, item.subscription_id)
            )
        await self._set_totals(s, invoice, made, customer)
        return self.view(invoice, made)

    @staticmethod
    def _line(
        invoice: Invoice,
        position: int,
        line: DraftLine,
        defaults: tuple[str, ...],
        subscription_id: str | None,
    ) -> InvoiceLine:
        return InvoiceLine(
            id=new_id("il"),
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            position=position,
            type=line.type,
            subscription_id=subscription_id,
            subscription_item_id=line.subscription_item_id,
            invoice_item_id=line.invoice_item_id,
            price_id=line.price_id,
            description=line.description,
            quantity=line.quantity,
            amount=line.amount,
            currency=line.currency.upper(),
            period_start_us=line.period_start_us,
            period_end_us=line.period_end_us,
            proration=line.proration,
            discountable=line.discountable,
            discount_amount=0,
            # A line's own rates, else the invoice's defaults (Stripe's rule).
            tax_amounts=[
                {"tax_rate": r, "amount": 0, "inclusive": False}
                for r in (line.tax_rate_ids if line.tax_rate_ids is not None else defaults)
            ],
            metadata_={},
        )

    # -- finalize ---------------------------------------------------------------------------
    async def finalize(
        self, account_id: str, invoice_id: str, *, charge: bool = True
    ) -> dict[str, Any]:
        """draft -> open in one transaction (see the module docstring). ``charge``: queue the
        payment of a charge_automatically invoice (False: the caller pays it at once)."""
        async with self.ctx.db.write() as s:
            invoice = await lock_invoice(s, account_id, invoice_id)
            await self.finalize_in(s, invoice, charge=charge)
            return await self.view_in(s, invoice)

    async def finalize_in(
        self,
        s: AsyncSession,
        invoice: Invoice,
        *,
        charge: bool,
        lines: list[InvoiceLine] | None = None,
    ) -> None:
        """``lines``: the draft's lines as ``draft_in`` made them in this transaction (its
        ``lines_out``), not read again; None: read."""
        new_status = next_invoice_status(invoice.status, InvoiceAction.FINALIZE)
        # FOR NO KEY UPDATE (``CUSTOMER_LOCK``): the renewal that got here inserted its
        # invoice first, whose foreign key holds the customer's row in KEY SHARE; FOR UPDATE
        # would wait for every other renewal's KEY SHARE on it while they wait for this one's
        # (CI: "deadlock detected" with ten subscriptions of one customer, two workers).
        customer = await s.get(Customer, invoice.customer_id, with_for_update=CUSTOMER_LOCK)
        assert customer is not None
        now = await clock_now(s, self.ctx, customer.test_clock_id)  # ``now_for``, row in hand
        if lines is None:
            lines = await self.lines_of(s, invoice.id)
        totals = await self._set_totals(s, invoice, lines, customer)
        applied = totals.ending_balance - totals.starting_balance
        if applied:
            await adjust_balance(
                s,
                invoice.account_id,
                invoice.customer_id,
                applied,
                invoice.currency,
                "applied_to_invoice",
                invoice_id=invoice.id,
                now_us=now,
            )
        invoice.number = await self._take_number(s, invoice.account_id, bool(invoice.livemode))
        invoice.status = new_status
        invoice.finalized_at_us = now
        if invoice.collection_method == "send_invoice":
            days_us = invoice.due_date_us or 0
            invoice.due_date_us = now + days_us
        else:
            invoice.due_date_us = None
        invoice.updated_us = now
        await emit(s, invoice.account_id, "invoice.finalized", self.view(invoice, lines), now)
        if invoice.amount_due == 0:
            await self.settle_paid(s, invoice, now, amount=0)
        elif (
            charge and invoice.collection_method == "charge_automatically" and invoice.auto_advance
        ):
            await enqueue(
                s,
                "invoice_pay",
                {"account_id": invoice.account_id, "invoice_id": invoice.id},
                now_us=self.ctx.now_us(),
                dedupe_key=f"pay:{invoice.id}:{invoice.attempt_count + 1}",
                account_id=invoice.account_id,
            )

    async def _set_totals(
        self, s: AsyncSession, invoice: Invoice, lines: list[InvoiceLine], customer: Customer
    ) -> Totals:
        """Compute the invoice's totals (its lines', discounts, taxes, the customer's balance
        applied) and set them on it and its lines; returns them. Writes nothing itself."""
        totals = invoice_totals(
            [
                LineInput(
                    amount=line.amount,
                    discountable=bool(line.discountable),
                    tax_rate_ids=tuple(t["tax_rate"] for t in line.tax_amounts or []),
                )
                for line in lines
            ],
            await self._coupon(s, invoice),
            await self._tax_terms(s, invoice.account_id, lines),
            customer.balance if (customer.currency in (None, invoice.currency)) else 0,
        )
        for line, line_totals in zip(lines, totals.lines, strict=True):
            line.discount_amount = line_totals.discount_amount
            line.tax_amounts = [
                {"tax_rate": rate, "amount": amount, "inclusive": inclusive}
                for rate, amount, inclusive in line_totals.tax_amounts
            ]
        invoice.subtotal = totals.subtotal
        invoice.total_discount = totals.total_discount
        invoice.tax = totals.tax
        invoice.total = totals.total
        invoice.starting_balance = totals.starting_balance
        invoice.ending_balance = totals.ending_balance
        invoice.amount_due = totals.amount_due
        invoice.amount_remaining = totals.amount_due
        invoice.discount_amounts = (
            [{"coupon": invoice.coupon_id, "amount": totals.total_discount}]
            if totals.total_discount
            else []
        )
        invoice.tax_amounts = [
            {"tax_rate": rate, "amount": amount, "inclusive": inclusive}
            for rate, amount, inclusive in totals.tax_amounts
        ]
        return totals

    async def _coupon(self, s: AsyncSession, invoice: Invoice) -> Any:
        if invoice.coupon_id is None:
            return None
        coupon = await s.get(Coupon, {"account_id": invoice.account_id, "id": invoice.coupon_id})
        if coupon is None:
            return None
        if coupon.amount_off is not None and (coupon.currency or "").upper() != invoice.currency:
            return None  # an amount off in another currency does not apply
        return coupon_terms(coupon)

    async def _tax_terms(
        self, s: AsyncSession, account_id: str, lines: list[InvoiceLine]
    ) -> dict[str, TaxTerms]:
        wanted = {t["tax_rate"] for line in lines for t in (line.tax_amounts or [])}
        if not wanted:
            return {}
        rows = await s.execute(
            select(TaxRate).where(TaxRate.account_id == account_id, TaxRate.id.in_(wanted))
        )
        return {row.id: tax_terms(row) for row in rows.scalars()}

    async def _take_number(self, s: AsyncSession, account_id: str, livemode: bool) -> str:
        """The next number, under the sequence row's lock, in the caller's transaction: a
        concurrent finalization waits for this one to commit (or roll back and give the
        number back)."""
        table = InvoiceSequence.__table__
        dialect_insert = sqlite.insert if self.ctx.db.is_sqlite else postgresql.insert
        # One statement: the account's first number makes the row (number 1, the next 2);
        # any later one bumps it, under the row lock the upsert takes.
        stmt = dialect_insert(table).values(  # type: ignore[arg-type]
            account_id=account_id,
            livemode=livemode,
            prefix=invoice_prefix(account_id, livemode),
            next_number=2,
        )
        row = (
            await s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["account_id", "livemode"],
                    set_={"next_number": table.c.next_number + 1},
                ).returning(table.c.prefix, table.c.next_number)
            )
        ).one()
        prefix, following = str(row[0]), int(row[1])
        return f"{prefix}-{following - 1:04d}"

    # -- paid, void, uncollectible ----------------------------------------------------------
    async def settle_paid(
        self,
        s: AsyncSession,
        invoice: Invoice,
        now: int,
        *,
        amount: int,
        out_of_band: bool = False,
        by_intent: str | None = None,
    ) -> None:
        """open (or uncollectible) -> paid in the caller's transaction, with its events and
        the subscription's move (``on_invoice_paid``). Paid other than by its intent
        (``by_intent``: out of band, by a credit, below the minimum), an intent of it still
        waiting for the payer must never charge now: ``queue_release``."""
        if invoice.payment_intent_id is not None and invoice.payment_intent_id != by_intent:
            await queue_release(s, self.ctx, invoice)
            # Not paid by that intent: let go of it, so money it still brings is never taken
            # as this invoice's payment (the hook returns it).
            invoice.payment_intent_id = None
        invoice.status = next_invoice_status(invoice.status, InvoiceAction.PAY)
        invoice.amount_paid += amount
        invoice.amount_remaining = 0
        invoice.paid_at_us = now
        invoice.next_payment_attempt_us = None
        invoice.paid_out_of_band = out_of_band
        invoice.updated_us = now
        view = await self.view_in(s, invoice)
        await emit(s, invoice.account_id, "invoice.paid", view, now)
        await emit(s, invoice.account_id, "invoice.payment_succeeded", view, now)
        if invoice.subscription_id is not None:
            await on_invoice_paid(s, self.ctx, invoice, now)

    async def void(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            await self.void_in(s, invoice)
            return await self.view_in(s, invoice)

    async def void_in(self, s: AsyncSession, invoice: Invoice) -> None:
        invoice.status = next_invoice_status(invoice.status, InvoiceAction.VOID)
        await queue_release(s, self.ctx, invoice)
        now = await now_for(s, self.ctx, invoice.account_id, invoice.customer_id)
        invoice.voided_at_us = now
        invoice.next_payment_attempt_us = None
        invoice.amount_remaining = 0
        invoice.updated_us = now
        await emit(s, invoice.account_id, "invoice.voided", await self.view_in(s, invoice), now)

    async def mark_uncollectible(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            invoice.status = next_invoice_status(invoice.status, InvoiceAction.MARK_UNCOLLECTIBLE)
            now = await now_for(s, self.ctx, account_id, invoice.customer_id)
            invoice.marked_uncollectible_at_us = now
            invoice.next_payment_attempt_us = None
            invoice.updated_us = now
            view = await self.view_in(s, invoice)
            await emit(s, account_id, "invoice.marked_uncollectible", view, now)
            return view


async def _pending_items(
    s: AsyncSession, account_id: str, customer_id: str, currency: str, *, lock: bool
) -> list[InvoiceItem]:
    """The customer's pending invoice items in ``currency``, oldest first (``lock``: under
    their row locks, to be taken onto an invoice)."""
    query = (
        select(InvoiceItem)
        .where(
            InvoiceItem.account_id == account_id,
            InvoiceItem.customer_id == customer_id,
            InvoiceItem.invoice_id.is_(None),
            func.upper(InvoiceItem.currency) == currency.upper(),
        )
        .order_by(InvoiceItem.created_us, InvoiceItem.id)
    )
    if lock:
        query = query.with_for_update()
    return list((await s.execute(query)).scalars())


def _item_line(item: InvoiceItem) -> DraftLine:
    """A pending invoice item as an invoice's line."""
    return DraftLine(
        type="invoiceitem",
        amount=item.amount,
        currency=item.currency,
        description=item.description,
        period_start_us=item.period_start_us,
        period_end_us=item.period_end_us,
        quantity=item.quantity,
        price_id=item.price_id,
        subscription_item_id=item.subscription_item_id,
        proration=bool(item.proration),
        discountable=bool(item.discountable),
        tax_rate_ids=tuple(item.tax_rate_ids) if item.tax_rate_ids else None,
        invoice_item_id=item.id,
    )


def _new_draft(
    customer: Customer,
    *,
    currency: str,
    billing_reason: str,
    period_start_us: int,
    period_end_us: int,
    subscription_id: str | None,
    coupon_id: str | None,
    collection_method: str,
    now_us: int,
    **columns: Any,
) -> Invoice:
    """A draft invoice of ``customer`` (a new id, its account, mode and test clock), the
    columns every draft shares set here and the rest (``columns``) by the caller: the one
    constructor of ``draft_in`` and of the in-memory ``preview``, so a new column can't be
    set by one and missed by the other."""
    return Invoice(
        id=new_id("in"),
        account_id=customer.account_id,
        livemode=bool(customer.livemode),
        customer_id=customer.id,
        subscription_id=subscription_id,
        status="draft",
        currency=currency.upper(),
        collection_method=collection_method,
        billing_reason=billing_reason,
        period_start_us=period_start_us,
        period_end_us=period_end_us,
        coupon_id=coupon_id,
        test_clock_id=customer.test_clock_id,
        attempt_count=0,
        created_us=now_us,
        updated_us=now_us,
        **columns,
    )
