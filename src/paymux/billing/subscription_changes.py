"""Changes to a subscription: update (items with prorations, cancel at period end, pause
collection, payment method, coupon, trial), cancel now, resume. ``SubscriptionChanges`` is a
part of ``SubscriptionsService`` (subscriptions.py); the helpers here are shared with its
create.

Downgrades at the period end (paymux's simpler equivalent of Stripe's subscription
schedules): an update with ``paymux_apply_at=period_end`` checks the new items now, keeps
them as the subscription's ``pending_update``, and applies them when the next period starts,
before its invoice is made (no proration: the new items bill a whole period). Any later update
of the items replaces it; ``paymux_apply_at=now`` (the default) is Stripe's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_rows import coupon_row, promotion_code_row, redeem_coupon
from paymux.billing.clock_time import now_for
from paymux.billing.rules.periods import boundary
from paymux.billing.rules.proration import cancel_credit
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_due import (
    SAFETY_JOB_DELAY_S,
    DueWork,
    next_due,
    upcoming_lead_us,
)
from paymux.billing.subscription_items import (
    check_tax_rates,
    planned_items,
    replace_items,
)
from paymux.billing.subscription_lines import (
    item_amount,
    metered,
    proration_lines,
)
from paymux.billing.subscription_views import move, view_in
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.jobs.queue import enqueue
from paymux.services.context import (
    emit,
    get_owned,
    merge_metadata,
)
from paymux.storage.models import (
    Invoice,
    InvoiceItem,
    PaymentMethod,
    Price,
    Subscription,
)

__all__ = ["MAX_SECONDS", "SubscriptionChanges", "UpdateParams", "seconds_us"]


@dataclass
class UpdateParams:
    items: list[dict[str, Any]] | None = None
    proration_behavior: str = "create_prorations"
    proration_date: int | None = None
    cancel_at_period_end: bool | None = None
    cancel_at: int | str | None = None
    pause_collection: dict[str, Any] | str | None = None
    default_payment_method: str | None = None
    coupon: str | None = None
    promotion_code: str | None = None
    trial_end: int | str | None = None
    metadata: dict[str, str] | None = None
    collection_method: str | None = None
    days_until_due: int | None = None
    default_tax_rates: list[str] | str | None = None
    payment_behavior: str | None = None
    paymux_apply_at: str = "now"


def _metadata_only(p: UpdateParams) -> bool:
    """An update that sets metadata and changes nothing else (the proration options alone
    change nothing)."""
    others = (p.items, p.cancel_at_period_end, p.cancel_at, p.pause_collection,
              p.default_payment_method, p.coupon, p.promotion_code, p.trial_end,
              p.collection_method, p.days_until_due, p.default_tax_rates)
    return p.metadata is not None and all(value is None for value in others)


# Times given to billing stay before 2100: period arithmetic on dates far beyond is refused
# with a clear error, not a 500.
MAX_SECONDS = 4_102_444_800


def seconds_us(value: int, param: str) -> int:
    if value <= 0 or value >= MAX_SECONDS:
        raise PaymuxError.of(
            "parameter_invalid", f"{param} must be a unix time before 2100.", param=param
        )
    return value * 1_000_000


class SubscriptionChanges(DueWork):
    async def retrieve(self, account_id: str, sub_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return await view_in(s, await get_owned(s, Subscription, sub_id, account_id))

    async def _coupon_of(
        self,
        s: AsyncSession,
        account_id: str,
        coupon: str | None,
        promotion_code: str | None,
        discounts: list[dict[str, str]] | None,
    ) -> tuple[str | None, str | None]:
        for d in discounts or []:
            coupon = d.get("coupon") or coupon
            promotion_code = d.get("promotion_code") or promotion_code
        promo_id = None
        if promotion_code:
            promo = await promotion_code_row(s, account_id, promotion_code)
            promo_id = promo.id
            coupon = coupon or promo.coupon_id
        if coupon:
            await coupon_row(s, account_id, coupon)
        return coupon, promo_id

    async def _check_method(
        self, s: AsyncSession, account_id: str, pm_id: str, customer_id: str, param: str
    ) -> None:
        pm = await get_owned(s, PaymentMethod, pm_id, account_id, param=param)
        if pm.customer_id != customer_id:
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                "The payment method must be attached to the subscription's customer.",
                param=param,
            )

    async def _discount_end(
        self, s: AsyncSession, account_id: str, coupon_id: str, now: int
    ) -> int | None:
        coupon = await coupon_row(s, account_id, coupon_id)
        if coupon.duration == "forever":
            return None
        if coupon.duration == "repeating" and coupon.duration_in_months:
            return boundary(now, "month", 1, int(coupon.duration_in_months))
        return now + 1  # once: the first invoice only

    async def update(self, account_id: str, sub_id: str, p: UpdateParams) -> dict[str, Any]:
        retry_invoice: str | None = None
        pay_now: str | None = None
        async with self.ctx.db.write() as s:
            sub = await get_owned(s, Subscription, sub_id, account_id, lock=True)
            if sub.status in ("canceled", "incomplete_expired") and _metadata_only(p):
                # As on Stripe: an ended subscription still takes its metadata (issue 9).
                assert p.metadata is not None
                merged = merge_metadata(sub.metadata_, p.metadata)
                if merged == (sub.metadata_ or {}):
                    return await view_in(s, sub)  # nothing changed: no event
                now = await now_for(s, self.ctx, account_id, sub.customer_id)
                sub.metadata_ = merged
                sub.updated_us = max(now, sub.updated_us)
                view = await view_in(s, sub)
                await emit(s, account_id, "customer.subscription.updated", view, now)
                return view
            if sub.status in ("canceled", "incomplete_expired"):
                raise PaymuxError.of(
                    "subscription_unexpected_state",
                    f"A {sub.status} subscription cannot be updated.",
                    param="id",
                )
            now = await now_for(s, self.ctx, account_id, sub.customer_id)
            if p.metadata is not None:
                sub.metadata_ = merge_metadata(sub.metadata_, p.metadata)
            if p.default_payment_method is not None:
                if p.default_payment_method == "":
                    sub.default_payment_method_id = None
                else:
                    await self._check_method(
                        s,
                        account_id,
                        p.default_payment_method,
                        sub.customer_id,
                        "default_payment_method",
                    )
                    if p.default_payment_method != sub.default_payment_method_id:
                        sub.default_payment_method_id = p.default_payment_method
                        retry_invoice = await self._open_invoice(s, sub)
            if p.collection_method is not None:
                sub.collection_method = p.collection_method
            if p.days_until_due is not None:
                sub.days_until_due = p.days_until_due
            if p.default_tax_rates is not None:
                rates = [] if p.default_tax_rates == "" else list(p.default_tax_rates)
                await check_tax_rates(s, account_id, rates, "default_tax_rates")
                sub.default_tax_rate_ids = rates or None
            if p.coupon is not None or p.promotion_code is not None:
                coupon_id, promo_id = await self._coupon_of(
                    s, account_id, p.coupon or None, p.promotion_code or None, None
                )
                if coupon_id and coupon_id != sub.coupon_id:
                    await redeem_coupon(
                        s, account_id, coupon_id, promo_id, now, customer_id=sub.customer_id
                    )
                    sub.discount_start_us = now
                    sub.discount_end_us = await self._discount_end(s, account_id, coupon_id, now)
                sub.coupon_id, sub.promotion_code_id = coupon_id, promo_id
            if p.cancel_at_period_end is not None:
                sub.cancel_at_period_end = p.cancel_at_period_end
                sub.cancel_at_us = sub.current_period_end_us if p.cancel_at_period_end else None
            if p.cancel_at is not None:
                sub.cancel_at_period_end = False
                sub.cancel_at_us = (
                    None if p.cancel_at == "" else seconds_us(int(p.cancel_at), "cancel_at")
                )
            if p.pause_collection is not None:
                pause = dict(p.pause_collection) if isinstance(p.pause_collection, dict) else None
                if pause and pause.get("resumes_at") is not None:
                    seconds_us(int(pause["resumes_at"]), "pause_collection[resumes_at]")
                sub.pause_collection = pause
            if p.trial_end is not None:
                await self._change_trial(s, sub, p.trial_end, now)
            if p.items is not None:
                pay_now = await self._change_items(s, sub, p, now)
            sub.updated_us = now
            sub.next_due_us = next_due(sub, now, upcoming_us=upcoming_lead_us(self.ctx))
            await emit(s, account_id, "customer.subscription.updated", await view_in(s, sub), now)
            if pay_now is not None:  # always_invoice: finalized with its job, in this commit
                await self._finalize_with_job(s, pay_now)
        if pay_now is not None:
            await self.pay_inline(account_id, pay_now)
        if retry_invoice is not None:
            await self.invoices.attempt(account_id, retry_invoice, from_job=True)
        if p.trial_end == "now":
            await self.run_due(sub_id, now)
        return await self.retrieve(account_id, sub_id)

    async def _open_invoice(self, s: AsyncSession, sub: Subscription) -> str | None:
        """The subscription's open invoice whose payment failed: retried at once when the
        payment method changes (dunning)."""
        found = (
            await s.execute(
                select(Invoice.id)
                .where(
                    Invoice.subscription_id == sub.id,
                    Invoice.status == "open",
                    Invoice.attempt_count > 0,
                    Invoice.collection_method == "charge_automatically",
                )
                .order_by(Invoice.created_us.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return None if found is None else str(found)

    async def _change_trial(
        self, s: AsyncSession, sub: Subscription, value: int | str, now: int
    ) -> None:
        if value == "now":
            if sub.status == "trialing":
                sub.trial_end_us = now
            return
        end = seconds_us(int(value), "trial_end")
        if end <= now:
            raise PaymuxError.of(
                "parameter_invalid", "trial_end must be in the future.", param="trial_end"
            )
        await move(s, sub, T.TRIAL_STARTED, now)
        sub.trial_end_us = end
        sub.trial_start_us = sub.trial_start_us or now
        sub.current_period_end_us = end
        sub.billing_cycle_anchor_us = end

    async def _full_amounts(
        self, s: AsyncSession, planned: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entry in planned:
            price = await s.get(Price, entry["price"])
            assert price is not None
            if metered(price):
                continue
            out.append(
                {
                    "key": entry.get("id") or f"new:{len(out)}",
                    "amount": item_amount(price, int(entry["quantity"])),
                    "description": f"{entry['quantity']} \u00d7 {price.nickname or price.id}",
                    "price_id": price.id,
                    "quantity": int(entry["quantity"]),
                }
            )
        return out

    async def _change_items(
        self, s: AsyncSession, sub: Subscription, p: UpdateParams, now: int
    ) -> str | None:
        """New items now (with prorations as ``proration_behavior`` asks), or at the period
        end (``paymux_apply_at=period_end``). Returns an invoice to finalize and pay now."""
        assert p.items is not None
        planned = await planned_items(s, sub, p.items)
        if p.paymux_apply_at == "period_end":
            sub.pending_update = {
                "items": planned,
                "applies_at": sub.current_period_end_us // 1_000_000,
            }
            return None
        current = await planned_items(s, sub, [])
        old = await self._full_amounts(s, current)
        at = now if p.proration_date is None else seconds_us(p.proration_date, "proration_date")
        await replace_items(s, sub, planned, now)
        sub.pending_update = None
        if p.proration_behavior == "none" or sub.status == "trialing":
            return None
        after = await planned_items(s, sub, [])
        new = await self._full_amounts(s, after)
        lines = proration_lines(
            old, new, sub.current_period_start_us, sub.current_period_end_us, at
        )
        for line in lines:
            s.add(
                InvoiceItem(
                    id=new_id("ii"),
                    account_id=sub.account_id,
                    livemode=sub.livemode,
                    customer_id=sub.customer_id,
                    invoice_id=None,
                    subscription_id=sub.id,
                    subscription_item_id=None
                    if str(line["key"]).startswith("new:")
                    else line["key"],
                    price_id=line["price_id"],
                    amount=line["amount"],
                    currency=sub.currency,
                    quantity=line["quantity"],
                    description=line["description"],
                    period_start_us=line["from_us"],
                    period_end_us=line["to_us"],
                    proration=True,
                    discountable=False,
                    test_clock_id=sub.test_clock_id,
                    metadata_={},
                    created_us=now,
                )
            )
        await s.flush()
        if p.proration_behavior != "always_invoice" or not lines:
            return None
        invoice = await self.invoices.draft_in(
            s,
            sub.account_id,
            customer_id=sub.customer_id,
            currency=sub.currency,
            billing_reason="subscription_update",
            period_start_us=at,
            period_end_us=sub.current_period_end_us,
            lines=[],
            subscription_id=sub.id,
            coupon_id=None,
            collection_method=sub.collection_method,
            days_until_due=sub.days_until_due,
            now_us=now,
        )
        sub.latest_invoice_id = invoice.id
        return invoice.id

    async def _finalize_with_job(self, s: AsyncSession, invoice_id: str) -> None:
        """Finalize a draft made in this transaction, and queue its first try's job."""
        invoice = await s.get(Invoice, invoice_id)  # made in this transaction
        assert invoice is not None
        await self.invoices.finalize_in(s, invoice, charge=False)
        await self.queue_first_try(s, invoice)

    # -- cancel / resume --------------------------------------------------------------------
    async def cancel(
        self, account_id: str, sub_id: str, *, invoice_now: bool = False, prorate: bool = False
    ) -> dict[str, Any]:
        invoice_id: str | None = None
        async with self.ctx.db.write() as s:
            sub = await get_owned(s, Subscription, sub_id, account_id, lock=True)
            now = await now_for(s, self.ctx, account_id, sub.customer_id)
            if prorate and sub.status in ("active", "past_due"):
                for item, price in await self.items_with_prices(s, sub.id):
                    if metered(price):
                        continue
                    credit = cancel_credit(
                        item_amount(price, item.quantity),
                        sub.current_period_start_us,
                        sub.current_period_end_us,
                        now,
                    )
                    if credit:
                        s.add(
                            InvoiceItem(
                                id=new_id("ii"),
                                account_id=account_id,
                                livemode=sub.livemode,
                                customer_id=sub.customer_id,
                                subscription_id=sub.id,
                                subscription_item_id=item.id,
                                price_id=price.id,
                                amount=credit,
                                currency=sub.currency,
                                quantity=item.quantity,
                                description=(
                                    f"Unused time on {item.quantity} \u00d7 "
                                    f"{price.nickname or price.id}"
                                ),
                                period_start_us=now,
                                period_end_us=sub.current_period_end_us,
                                proration=True,
                                discountable=False,
                                test_clock_id=sub.test_clock_id,
                                metadata_={},
                                created_us=now,
                            )
                        )
                await s.flush()
            sub.cancellation_details = {
                "comment": None,
                "feedback": None,
                "reason": "cancellation_requested",
            }
            await move(s, sub, T.CANCELED, now)
            if invoice_now:
                pending = (
                    await s.execute(
                        select(InvoiceItem.id)
                        .where(
                            InvoiceItem.customer_id == sub.customer_id,
                            InvoiceItem.invoice_id.is_(None),
                        )
                        .limit(1)
                    )
                ).first()
                if pending is not None:
                    invoice = await self.invoices.draft_in(
                        s,
                        account_id,
                        customer_id=sub.customer_id,
                        currency=sub.currency,
                        billing_reason="subscription_cycle",
                        period_start_us=now,
                        period_end_us=now,
                        lines=[],
                        subscription_id=sub.id,
                        now_us=now,
                    )
                    invoice_id = invoice.id
                    sub.latest_invoice_id = invoice.id
                    await self._finalize_with_job(s, invoice.id)
        if invoice_id is not None:
            await self.pay_inline(account_id, invoice_id)
        return await self.retrieve(account_id, sub_id)

    async def resume(self, account_id: str, sub_id: str) -> dict[str, Any]:
        """A paused subscription resumes: active, a new period from now, invoiced."""
        async with self.ctx.db.write() as s:
            sub = await get_owned(s, Subscription, sub_id, account_id, lock=True)
            now = await now_for(s, self.ctx, account_id, sub.customer_id)
            await move(s, sub, T.RESUMED, now)
            sub.billing_cycle_anchor_us = now
            sub.trial_end_us = (
                None if sub.trial_end_us and sub.trial_end_us > now else sub.trial_end_us
            )
            await self._renew(s, sub, now, "subscription_update")
            sub.next_due_us = next_due(sub, now, upcoming_us=upcoming_lead_us(self.ctx))
            if sub.test_clock_id is None:
                # If the process dies before the advance below, this job does it (finalize
                # and charge the new period's invoice); after it, the job finds nothing left
                # to do. (On a test clock, the clock's next advance does it.)
                await enqueue(
                    s,
                    "subscription_due",
                    {"sub_id": sub.id},
                    now_us=self.ctx.now_us(),
                    delay=SAFETY_JOB_DELAY_S,
                    dedupe_key=f"resume:{sub.id}:{now}",
                    account_id=account_id,
                )
        await self.advance_invoice(sub_id)
        return await self.retrieve(account_id, sub_id)
