"""What comes due on a subscription, and doing it: the scheduler's and the test clocks' one
entry point, ``run_due(sub_id, now_us)``.

Each step is one transaction under the subscription's row lock, at its own time:
incomplete expiry (23 h), the trial-will-end notice (3 days before), the trial's end, a pause
that resumes, cancellation at ``cancel_at`` (or the period end), and the renewal. A renewal
advances the period and makes and finalizes its invoice in the same transaction (a draft if
``pause_collection`` keeps it so); the invoice carries
``period_key = <sub id>:<period start>`` (unique), so a period is invoiced once whatever
crashes or how many workers race. After each step, every invoice of the subscription
left a draft or never tried (its period invoices, its latest) is finalized and charged
(``advance_invoice``), oldest first: both idempotent, so a job killed anywhere and run again
finishes the work without doubling any of it.

``next_due_us`` is the earliest time anything is due (None: nothing); the sweep looks it up
through its index, and a test clock compares it with its own time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.invoices import DraftLine, InvoicesService
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_items import planned_item, replace_items
from paymux.billing.subscription_lines import UsageFn, period_after, period_lines
from paymux.billing.subscription_times import (
    INCOMPLETE_EXPIRY_US,
    RENEWING,
    TRIAL_NOTICE_US,
    next_due,
    upcoming_lead_us,
    upcoming_notice,
)
from paymux.billing.subscription_views import move, subscription_view, view_in
from paymux.jobs.queue import enqueue
from paymux.services.context import Context, emit
from paymux.storage.models import (
    Customer,
    Invoice,
    InvoiceLine,
    Job,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
)

__all__ = [
    "INCOMPLETE_EXPIRY_US",
    "RENEWING",
    "SAFETY_JOB_DELAY_S",
    "TRIAL_NOTICE_US",
    "DueWork",
    "first_try_key",
    "next_due",
    "upcoming_lead_us",
    "upcoming_notice",
]

log = logging.getLogger(__name__)

# The safety-net job behind an inline charge (``queue_first_try``) waits this long: the inline
# try normally ends well before, and drops it; it runs only if the process died meanwhile.
SAFETY_JOB_DELAY_S = 60.0
_LIVE_JOB = text("status IN ('queued', 'running')")


def first_try_key(invoice_id: str) -> str:
    """The dedupe key of the job that makes an invoice's first try: the one
    ``finalize_in(charge=True)`` uses too, so that the two can never both be queued."""
    return f"pay:{invoice_id}:1"


# A subscription's items as ``_period_lines`` reads them: (item, its price, product name).
_Rows = list[tuple[SubscriptionItem, Price, str | None]]


@dataclass(frozen=True)
class _Todo:
    """A subscription's invoices to advance: (id, status, collection method), in order."""

    account_id: str
    sub_status: str
    pause: str | None
    invoices: list[tuple[str, str, str]]


class DueWork:
    ctx: Context
    invoices: InvoicesService
    usage: UsageFn | None

    async def run_due(self, sub_id: str, now_us: int) -> None:
        """Every step due at ``now_us``, in time order, each followed by the advance of the
        invoices it (or a killed earlier run) left to finalize and charge."""
        for _ in range(1000):  # a bound: each step moves next_due_us forward
            more, todo = await self._step(sub_id, now_us)
            # Each period's invoice is finalized and tried before the next period is made
            # (a worker that was down for months bills every missed period, in order).
            await self._advance(todo)
            if not more:
                break

    async def _step(self, sub_id: str, now_us: int) -> tuple[bool, _Todo | None]:
        """One due step in one transaction; (more due?, what is left to advance: read in
        the same transaction, under the subscription's lock)."""
        async with self.ctx.db.write() as s:
            sub = await s.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
            if sub is None:
                return False, None
            if sub.next_due_us is None or sub.next_due_us > now_us:
                return False, await self._to_advance(s, sub)
            at = sub.next_due_us  # the step happens at its own time
            done = await self._do(s, sub, at, now_us)
            nxt = next_due(sub, at + 1, upcoming_us=upcoming_lead_us(self.ctx))
            if nxt is not None and nxt <= at:
                # The step did not move the subscription past ``at`` (say, a renewal of a
                # subscription left without items): never loop on it.
                log.warning("subscription %s: nothing to do at %s", sub.id, at)
                nxt = None
            sub.next_due_us = nxt
            more = done and nxt is not None and nxt <= now_us  # more due: another step
            return more, await self._to_advance(s, sub)

    async def _do(self, s: AsyncSession, sub: Subscription, at: int, now_us: int) -> bool:
        """One due step of ``sub`` (locked) at time ``at``. True if it did something."""
        if sub.status == "incomplete":
            if at >= sub.created_us + INCOMPLETE_EXPIRY_US:
                await move(s, sub, T.INCOMPLETE_EXPIRED, at)
                if sub.latest_invoice_id:
                    invoice = await s.get(Invoice, sub.latest_invoice_id, with_for_update=True)
                    if invoice is not None and invoice.status == "open":
                        await self.invoices.void_in(s, invoice)
                return True
            return False
        if sub.cancel_at_us is not None and sub.cancel_at_us <= at:
            if sub.cancel_at_period_end:
                sub.cancellation_details = {
                    "comment": None,
                    "feedback": None,
                    "reason": "cancellation_requested",
                }
            await move(s, sub, T.CANCELED, sub.cancel_at_us)
            return True
        noticed = await self._upcoming(s, sub, at, now_us)
        if sub.status == "trialing" and sub.trial_end_us is not None:
            if at < sub.trial_end_us:
                # The step AT the notice's time (steps run at their own times, ``_step``):
                # never again at a later step before the trial's end (``invoice.upcoming``'s,
                # whose lead may be under 3 days).
                if at == sub.trial_end_us - TRIAL_NOTICE_US:
                    await emit(
                        s,
                        sub.account_id,
                        "customer.subscription.trial_will_end",
                        await view_in(s, sub),
                        at,
                    )
                    return True
            else:
                return await self._end_trial(s, sub, sub.trial_end_us)
        resumes = (sub.pause_collection or {}).get("resumes_at")
        if resumes and int(resumes) * 1_000_000 <= at:
            sub.pause_collection = None
            sub.updated_us = at
            await emit(
                s, sub.account_id, "customer.subscription.updated", await view_in(s, sub), at
            )
            return True
        if sub.status in RENEWING and sub.current_period_end_us <= at:
            await self._renew(s, sub, sub.current_period_end_us, "subscription_cycle")
            return True
        return noticed

    async def _upcoming(self, s: AsyncSession, sub: Subscription, at: int, now_us: int) -> bool:
        """``invoice.upcoming`` for the coming renewal, if its time has come at ``at`` (the
        step's time): once per renewal (``upcoming_notice_for_us``, set in the same
        transaction). Its object is the invoice the renewal would make now (``preview_in``, an
        id of its own). A notice whose renewal is already due at ``now_us`` (a worker down for
        days: the step is dated at the notice's time, but runs now) is skipped, not sent late;
        True either way (the subscription moved: the renewal's step follows in the same run).
        A test clock runs each step at its time (``now_us`` is ``at``): never skipped."""
        notice = upcoming_notice(sub, upcoming_lead_us(self.ctx))
        if notice is None or notice[0] > at:
            return False
        renews = notice[1]
        sub.upcoming_notice_for_us = renews
        if now_us >= renews:
            return True
        preview = await self.preview_in(s, sub, renews)
        if preview is None:
            return False
        await emit(s, sub.account_id, "invoice.upcoming", preview, at)
        return True

    async def preview_in(
        self, s: AsyncSession, sub: Subscription, start: int
    ) -> dict[str, Any] | None:
        """The invoice the renewal of ``sub`` at ``start`` would make now, as Stripe's preview
        shows it (``upcoming_view``): the same lines, pending items, discount, taxes and
        balance as the renewal computes, in memory (``InvoicesCore.preview``). Reads only:
        no invoice, number, lock or balance change, so it runs in a read transaction (the
        API's preview) as well as in the scheduler's. A change asked for the period end (a
        downgrade) is applied to items made in memory (``_planned_rows``), never to the
        stored ones. None: the subscription has no items."""
        rows = await self._planned_rows(s, sub, start) if sub.pending_update else None
        built = await self._period_lines(s, sub, start, rows)
        if built is None:
            return None
        lines, end = built
        view = await self.invoices.preview(
            s,
            sub.account_id,
            customer_id=sub.customer_id,
            currency=sub.currency,
            billing_reason="upcoming",
            period_start_us=start,
            period_end_us=end,
            lines=lines,
            created_us=start,
            subscription_id=sub.id,
            coupon_id=self._coupon_at(sub, start),
            default_tax_rate_ids=sub.default_tax_rate_ids,
            collection_method=sub.collection_method,
        )
        return upcoming_view(view, start)

    async def _planned_rows(self, s: AsyncSession, sub: Subscription, start: int) -> _Rows:
        """The items ``_apply_pending_update`` would give ``sub`` at ``start``, as the rows
        ``_period_lines`` reads (item, price, product name): kept items with their new
        terms, new ones dated ``start`` (``replace_items``'s order), as objects made in
        memory and never added to the session."""
        current = await self._item_rows(s, sub.id)
        wanted = (sub.pending_update or {}).get("items")
        if not wanted:
            return current
        kept = {item.id: item for item, _, _ in current}
        price_ids = {str(entry["price"]) for entry in wanted}
        found = await s.execute(
            select(Price, Product.name)
            .outerjoin(Product, Product.id == Price.product_id)
            .where(Price.id.in_(price_ids))
        )
        prices = {price.id: (price, name) for price, name in found.all()}
        rows: _Rows = []
        for entry in wanted:
            price, name = prices[str(entry["price"])]
            item = planned_item(sub, entry, kept.get(entry.get("id") or ""), start)
            rows.append((item, price, name))
        rows.sort(key=lambda row: (row[0].created_us, row[0].id))
        return rows

    @staticmethod
    async def _item_rows(s: AsyncSession, sub_id: str) -> _Rows:
        """The subscription's items as stored, in order, with their prices and products'
        names."""
        found = await s.execute(
            select(SubscriptionItem, Price, Product.name)
            .join(Price, Price.id == SubscriptionItem.price_id)
            .outerjoin(Product, Product.id == Price.product_id)
            .where(SubscriptionItem.subscription_id == sub_id)
            .order_by(SubscriptionItem.created_us, SubscriptionItem.id)
        )
        return [(item, price, name) for item, price, name in found.all()]

    async def _end_trial(self, s: AsyncSession, sub: Subscription, at: int) -> bool:
        """The trial is over: active (or paused / canceled without a payment method, as
        trial_settings ask), and its first paid period's invoice."""
        if sub.trial_end_behavior in ("pause", "cancel") and not await self._has_method(s, sub):
            trigger = T.PAUSED if sub.trial_end_behavior == "pause" else T.CANCELED
            await move(s, sub, trigger, at)
            return True
        await move(s, sub, T.TRIAL_ENDED, at)
        await self._renew(s, sub, at, "subscription_cycle")
        return True

    async def _has_method(self, s: AsyncSession, sub: Subscription) -> bool:
        if sub.default_payment_method_id:
            return True
        customer = await s.get(Customer, sub.customer_id)
        return customer is not None and customer.default_payment_method is not None

    async def items_with_prices(
        self, s: AsyncSession, sub_id: str
    ) -> list[tuple[SubscriptionItem, Price]]:
        rows = await s.execute(
            select(SubscriptionItem, Price)
            .join(Price, Price.id == SubscriptionItem.price_id)
            .where(SubscriptionItem.subscription_id == sub_id)
            .order_by(SubscriptionItem.created_us, SubscriptionItem.id)
        )
        return [(item, price) for item, price in rows.all()]

    async def product_names(self, s: AsyncSession, prices: list[Price]) -> dict[str, str]:
        ids = {p.product_id for p in prices}
        if not ids:
            return {}
        rows = await s.execute(select(Product.id, Product.name).where(Product.id.in_(ids)))
        return {str(a): str(b) for a, b in rows.all()}

    async def _apply_pending_update(self, s: AsyncSession, sub: Subscription, at: int) -> None:
        """A change asked for the period end (a downgrade): the items it lists replace the
        subscription's, now that the new period starts (no proration: a whole period)."""
        pending = sub.pending_update or {}
        wanted = pending.get("items")
        if not wanted:
            sub.pending_update = None
            return
        await replace_items(s, sub, wanted, at)
        sub.pending_update = None

    async def _renew(self, s: AsyncSession, sub: Subscription, start: int, reason: str) -> None:
        """Advance to the period starting at ``start`` and make its invoice (once).

        The subscription's row changes (period, latest invoice, next due time) are all made
        after the draft, so that they reach the database in one UPDATE (with the event's
        view); its items and their products' names are one query."""
        await self._apply_pending_update(s, sub, start)
        rows = await self._item_rows(s, sub.id)
        built = await self._period_lines(s, sub, start, rows)
        if built is None:
            return
        lines, end = built
        pause = sub.pause_collection or {}
        made: list[InvoiceLine] = []
        invoice = await self.invoices.draft_in(
            s,
            sub.account_id,
            customer_id=sub.customer_id,
            currency=sub.currency,
            billing_reason=reason,
            period_start_us=start,
            period_end_us=end,
            lines=lines,
            subscription_id=sub.id,
            period_key=f"{sub.id}:{start}",
            coupon_id=self._coupon_at(sub, start),
            default_tax_rate_ids=sub.default_tax_rate_ids,
            collection_method=sub.collection_method,
            days_until_due=sub.days_until_due,
            auto_advance=pause.get("behavior") != "keep_as_draft",
            now_us=start,
            lines_out=made,
        )
        sub.current_period_start_us, sub.current_period_end_us = start, end
        sub.updated_us = start
        sub.latest_invoice_id = invoice.id
        # What the caller sets next (``_step``, ``resume``): set now, the same UPDATE.
        sub.next_due_us = next_due(sub, start + 1, upcoming_us=upcoming_lead_us(self.ctx))
        # Its view from the items read above (nothing changed them since): not read again.
        view = subscription_view(sub, [(item, price) for item, price, _ in rows])
        await emit(s, sub.account_id, "customer.subscription.updated", view, start)
        if invoice.status == "draft" and invoice.auto_advance:
            # Finalized in the same transaction (not one of its own after it): its number
            # and totals commit with the period. Its payment is tried after the commit
            # (``advance_invoice``), never inside a transaction. A draft made just now is
            # finalized from its lines in hand (``made``; empty: an existing one, read).
            await self.invoices.finalize_in(s, invoice, charge=False, lines=made or None)

    async def _period_lines(
        self, s: AsyncSession, sub: Subscription, start: int, rows: _Rows | None = None
    ) -> tuple[list[DraftLine], int] | None:
        """The lines of the period of ``sub`` starting at ``start`` (its items as they are,
        or ``rows``; its metered usage of the period before, a proration's leftovers), and
        the period's end; None without items. Reads only."""
        previous = (sub.current_period_start_us, sub.current_period_end_us)
        if rows is None:
            rows = await self._item_rows(s, sub.id)
        if not rows:
            return None
        items = [(item, price) for item, price, _ in rows]
        names = {price.product_id: str(name) for _, price, name in rows if name is not None}
        end = period_after(sub, items[0][1], start)
        was_trial = sub.trial_end_us is not None and previous[1] == sub.trial_end_us
        lines = await period_lines(
            s,
            sub,
            items,
            start,
            end,
            previous=None if was_trial else previous,
            usage=self.usage,
            names=names,
        )
        return lines, end

    @staticmethod
    def _coupon_at(sub: Subscription, at: int) -> str | None:
        if sub.coupon_id is None:
            return None
        if sub.discount_end_us is not None and sub.discount_end_us <= at:
            return None
        return sub.coupon_id

    async def advance_invoice(self, sub_id: str) -> None:
        """Finalize and try every invoice of the subscription left to advance (``_Todo``)."""
        async with self.ctx.db.read() as s:
            sub = await s.get(Subscription, sub_id, populate_existing=True)
            todo = None if sub is None else await self._to_advance(s, sub)
        await self._advance(todo)

    @staticmethod
    async def _to_advance(s: AsyncSession, sub: Subscription) -> _Todo | None:
        """The subscription's invoices to finalize and try, oldest period first: its period
        invoices (``period_key``) and its latest one that are drafts to advance, or open
        and never tried. Not only the latest: a job killed after a period's draft
        committed, run again once the next period is due too, makes that next period's
        draft first; the earlier one is still finalized and charged (each once: a
        finalized invoice is no draft any more, and a try reserves its intent id)."""
        if sub.latest_invoice_id is None or sub.status == "incomplete_expired":
            return None  # its first invoice is never charged now (a draft left by a crash too)
        rows = (
            await s.execute(
                select(Invoice.id, Invoice.status, Invoice.collection_method)
                .where(
                    Invoice.subscription_id == sub.id,
                    or_(Invoice.period_key.is_not(None), Invoice.id == sub.latest_invoice_id),
                    or_(
                        and_(Invoice.status == "draft", Invoice.auto_advance.is_(True)),
                        and_(
                            Invoice.status == "open",
                            Invoice.attempt_count == 0,
                            # an older period's open invoice: only one paymux charges by
                            # itself (a send_invoice or auto_advance=false one waits for its
                            # payer or merchant, and a pause's void never reaches it)
                            or_(
                                Invoice.id == sub.latest_invoice_id,
                                and_(
                                    Invoice.collection_method == "charge_automatically",
                                    Invoice.auto_advance.is_(True),
                                ),
                            ),
                        ),
                    ),
                )
                .order_by(Invoice.period_start_us, Invoice.created_us, Invoice.id)
            )
        ).all()
        if not rows:
            return None
        return _Todo(
            sub.account_id,
            sub.status,
            (sub.pause_collection or {}).get("behavior"),
            [(str(i), str(st), str(m)) for i, st, m in rows],
        )

    async def _advance(self, todo: _Todo | None) -> None:
        if todo is None:
            return
        for invoice_id, status, method in todo.invoices:
            await self._advance_one(
                todo.account_id, invoice_id, status, method, todo.sub_status, todo.pause
            )

    async def _advance_one(
        self,
        account_id: str,
        invoice_id: str,
        status: str,
        method: str,
        sub_status: str,
        pause: str | None,
    ) -> None:
        """Finalize the invoice if it is a draft, and try its payment if no try was made yet
        (an in-flight one is resumed by its reserved intent id)."""
        if status == "draft":
            view = await self._finalize_quietly(account_id, invoice_id)
            if view is None:  # finalized by another run meanwhile: as it is now
                async with self.ctx.db.read() as s:
                    invoice = await s.get(Invoice, invoice_id, populate_existing=True)
                    assert invoice is not None
                    view = {"status": invoice.status, "attempt_count": invoice.attempt_count}
            if view["status"] != "open" or view["attempt_count"] != 0:
                return  # paid at finalization (nothing due), or tried already
        if pause == "void":
            await self.invoices.void(account_id, invoice_id)
            return
        if pause == "mark_uncollectible":
            await self.invoices.mark_uncollectible(account_id, invoice_id)
            return
        if method == "charge_automatically" and sub_status != "unpaid":
            await self.invoices.attempt(account_id, invoice_id, from_job=True)

    async def queue_first_try(self, s: AsyncSession, invoice: Invoice) -> None:
        """In the transaction that finalized ``invoice`` (before the API answers): the
        ``invoice_pay`` job that makes its first try if the inline try after the commit never
        happens (the process died in between). Delayed (``SAFETY_JOB_DELAY_S``) so that it
        does not race the inline try; ``pay_inline`` drops it once that try is over. Run
        anyway (in flight meanwhile), it finds the invoice paid, or its reserved intent in
        flight, and makes no second one (``InvoicePayments.attempt``)."""
        if (
            invoice.status != "open"
            or invoice.collection_method != "charge_automatically"
            or not invoice.auto_advance
        ):
            return
        await enqueue(
            s,
            "invoice_pay",
            # "try": the try this job is for (the handler may skip it once the invoice is
            # past it; today pay_inline drops the job instead).
            {"account_id": invoice.account_id, "invoice_id": invoice.id, "try": 1},
            now_us=self.ctx.now_us(),
            delay=SAFETY_JOB_DELAY_S,
            dedupe_key=first_try_key(invoice.id),
            account_id=invoice.account_id,
        )

    async def pay_inline(self, account_id: str, invoice_id: str) -> None:
        """The first try of an invoice, now (its job queued by ``queue_first_try``); once the
        try is over, paid or declined, its job is dropped: run after a decline, it would make
        a second try out of the retry schedule."""
        await self.invoices.attempt(account_id, invoice_id, from_job=True)
        await self.drop_first_try(invoice_id)

    async def drop_first_try(self, invoice_id: str) -> None:
        """Mark the invoice's queued first-try job done (a claimed one runs: harmless)."""
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            await s.execute(
                update(Job)
                .where(
                    Job.dedupe_key == first_try_key(invoice_id),
                    _LIVE_JOB,  # the partial unique index's predicate: served by it
                    Job.status == "queued",
                )
                .values(status="done", updated_us=now)
                .execution_options(synchronize_session=False)
            )

    async def _finalize_quietly(self, account_id: str, invoice_id: str) -> dict[str, Any] | None:
        from paymux.domain.errors import PaymuxError

        try:
            return await self.invoices.finalize(account_id, invoice_id, charge=False)
        except PaymuxError as exc:
            if exc.code != "invoice_unexpected_state":
                raise
            return None  # finalized by another run


def upcoming_view(view: dict[str, Any], created_us: int) -> dict[str, Any]:
    """An invoice's view as Stripe's preview shows it: an id of its own that names no stored
    invoice (``upcoming_in_...``, as ``create_preview`` answers), no number or hosted page,
    a draft dated when the renewal will make it."""
    out = dict(view)
    out.update(
        id=f"upcoming_{view['id']}",
        number=None,
        status="draft",
        created=created_us // 1_000_000,
        hosted_invoice_url=None,
        invoice_pdf=None,
        effective_at=None,
        due_date=None,
        next_payment_attempt=None,
        payment_intent=None,
        status_transitions={
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
    )
    lines = dict(out.get("lines") or {})
    lines["url"] = "/v1/invoices/upcoming/lines"
    out["lines"] = lines
    return out
