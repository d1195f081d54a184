"""What comes due on a subscription, and doing it: the scheduler's and the test clocks' one
entry point, ``run_due(sub_id, now_us)``.

Each step is one transaction under the subscription's row lock, at its own time:
incomplete expiry (23 h), the trial-will-end notice (3 days before), the trial's end, a pause
that resumes, cancellation at ``cancel_at`` (or the period end), and the renewal. A renewal
advances the period and makes its invoice in the same transaction; the invoice carries
``period_key = <sub id>:<period start>`` (unique), so a period is invoiced once whatever
crashes or how many workers race. After the steps, the latest invoice is finalized and
charged (``advance_invoice``): both idempotent, so a job killed anywhere and run again
finishes the work without doubling any of it.

``next_due_us`` is the earliest time anything is due (None: nothing); the sweep looks it up
through its index, and a test clock compares it with its own time.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.invoices import InvoicesService
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_lines import UsageFn, period_after, period_lines
from paymux.billing.subscription_views import move, view_in
from paymux.services.context import Context, emit
from paymux.storage.models import (
    Customer,
    Invoice,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
)

__all__ = ["INCOMPLETE_EXPIRY_US", "TRIAL_NOTICE_US", "DueWork", "next_due"]

log = logging.getLogger(__name__)

INCOMPLETE_EXPIRY_US = 23 * 3600 * 1_000_000
TRIAL_NOTICE_US = 3 * 86_400 * 1_000_000
_RENEWING = ("active", "past_due", "unpaid")


def next_due(sub: Subscription, now_us: int | None = None) -> int | None:
    """The earliest time something is due on the subscription (None: nothing ever)."""
    status = sub.status
    if status in ("canceled", "incomplete_expired", "paused"):
        return None
    times: list[int] = []
    if status == "incomplete":
        return sub.created_us + INCOMPLETE_EXPIRY_US
    if status == "trialing" and sub.trial_end_us is not None:
        notice = sub.trial_end_us - TRIAL_NOTICE_US
        if now_us is not None and now_us < notice:
            times.append(notice)
        times.append(sub.trial_end_us)
    else:
        times.append(sub.current_period_end_us)
    if sub.cancel_at_us is not None:
        times.append(sub.cancel_at_us)
    resumes = (sub.pause_collection or {}).get("resumes_at")
    if resumes:
        times.append(int(resumes) * 1_000_000)
    return min(times)


class DueWork:
    ctx: Context
    invoices: InvoicesService
    usage: UsageFn | None

    async def run_due(self, sub_id: str, now_us: int) -> None:
        """Every step due at ``now_us``, in time order, then the latest invoice's advance."""
        for _ in range(1000):  # a bound: each step moves next_due_us forward
            more = await self._step(sub_id, now_us)
            # Each period's invoice is finalized and tried before the next period is made
            # (a worker that was down for months bills every missed period, in order).
            await self.advance_invoice(sub_id)
            if not more:
                break

    async def _step(self, sub_id: str, now_us: int) -> bool:
        async with self.ctx.db.write() as s:
            sub = await s.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
            if sub is None or sub.next_due_us is None or sub.next_due_us > now_us:
                return False
            at = sub.next_due_us  # the step happens at its own time
            done = await self._do(s, sub, at, now_us)
            nxt = next_due(sub, at + 1)
            if nxt is not None and nxt <= at:
                # The step did not move the subscription past ``at`` (say, a renewal of a
                # subscription left without items): never loop on it.
                log.warning("subscription %s: nothing to do at %s", sub.id, at)
                nxt = None
            sub.next_due_us = nxt
            return done and nxt is not None and nxt <= now_us  # more due: another step

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
        if sub.status == "trialing" and sub.trial_end_us is not None:
            if at < sub.trial_end_us:
                if at >= sub.trial_end_us - TRIAL_NOTICE_US:
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
        if sub.status in _RENEWING and sub.current_period_end_us <= at:
            await self._renew(s, sub, sub.current_period_end_us, "subscription_cycle")
            return True
        return False

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
        from paymux.billing.subscription_items import replace_items

        await replace_items(s, sub, wanted, at)
        sub.pending_update = None

    async def _renew(self, s: AsyncSession, sub: Subscription, start: int, reason: str) -> None:
        """Advance to the period starting at ``start`` and make its invoice (once)."""
        previous = (sub.current_period_start_us, sub.current_period_end_us)
        await self._apply_pending_update(s, sub, start)
        items = await self.items_with_prices(s, sub.id)
        if not items:
            return
        end = period_after(sub, items[0][1], start)
        sub.current_period_start_us, sub.current_period_end_us = start, end
        sub.updated_us = start
        names = await self.product_names(s, [p for _, p in items])
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
        pause = sub.pause_collection or {}
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
        )
        sub.latest_invoice_id = invoice.id
        await emit(s, sub.account_id, "customer.subscription.updated", await view_in(s, sub), start)

    @staticmethod
    def _coupon_at(sub: Subscription, at: int) -> str | None:
        if sub.coupon_id is None:
            return None
        if sub.discount_end_us is not None and sub.discount_end_us <= at:
            return None
        return sub.coupon_id

    async def advance_invoice(self, sub_id: str) -> None:
        """Finalize the latest invoice if it is a draft to advance, and try its payment if
        no try was made yet (an in-flight one is resumed by its reserved intent id)."""
        async with self.ctx.db.read() as s:
            sub = await s.get(Subscription, sub_id, populate_existing=True)
            if sub is None or sub.latest_invoice_id is None:
                return
            invoice = await s.get(Invoice, sub.latest_invoice_id, populate_existing=True)
            if invoice is None:
                return
            account_id, invoice_id, status = sub.account_id, invoice.id, invoice.status
            auto, method = invoice.auto_advance, invoice.collection_method
            sub_status, pause = sub.status, (sub.pause_collection or {}).get("behavior")
        if sub_status == "incomplete_expired":
            return  # its first invoice is never charged now (a draft left by a crash included)
        if status == "draft" and auto:
            await self._finalize_quietly(account_id, invoice_id)
        async with self.ctx.db.read() as s:
            invoice = await s.get(Invoice, invoice_id, populate_existing=True)
            assert invoice is not None
            ready = invoice.status == "open" and invoice.attempt_count == 0
        if not ready:
            return
        if pause == "void":
            await self.invoices.void(account_id, invoice_id)
            return
        if pause == "mark_uncollectible":
            await self.invoices.mark_uncollectible(account_id, invoice_id)
            return
        if method == "charge_automatically" and sub_status != "unpaid":
            await self.invoices.attempt(account_id, invoice_id, from_job=True)

    async def _finalize_quietly(self, account_id: str, invoice_id: str) -> dict[str, Any] | None:
        from paymux.domain.errors import PaymuxError

        try:
            return await self.invoices.finalize(account_id, invoice_id, charge=False)
        except PaymuxError as exc:
            if exc.code != "invoice_unexpected_state":
                raise
            return None  # finalized by another run
