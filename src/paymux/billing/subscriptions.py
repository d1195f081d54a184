"""Subscriptions (``Paymux.subscriptions``): create (the first invoice, trials, anchors,
coupons, payment behaviours), retrieve, list. Changes (update, cancel, resume) are
subscription_changes.py; due work (renewals, trials, expiry) is subscription_due.py.

Times are the customer's: its test clock's frozen time when it lives on one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_rows import redeem_coupon
from paymux.billing.clock_time import now_for
from paymux.billing.invoice_core import DraftLine
from paymux.billing.invoices import InvoicesService
from paymux.billing.rules.periods import period_containing
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_changes import (
    SubscriptionChanges,
    UpdateParams,
    seconds_us,
)
from paymux.billing.subscription_due import next_due, upcoming_lead_us
from paymux.billing.subscription_items import (
    check_price,
    check_prices,
    check_tax_rates,
    replace_items,
)
from paymux.billing.subscription_lines import (
    UsageFn,
    first_period,
    interval_of,
    period_lines,
)
from paymux.billing.subscription_views import move, view_in
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    paginate,
    scoped,
)
from paymux.storage.models import (
    Customer,
    Invoice,
    Subscription,
    SubscriptionItem,
)

__all__ = ["SubscriptionParams", "SubscriptionsService", "UpdateParams"]

_DAY_US = 86_400 * 1_000_000


@dataclass
class SubscriptionParams:
    customer: str
    items: list[dict[str, Any]]
    default_payment_method: str | None = None
    trial_period_days: int | None = None
    trial_end: int | str | None = None
    billing_cycle_anchor: int | None = None
    collection_method: str = "charge_automatically"
    days_until_due: int | None = None
    coupon: str | None = None
    promotion_code: str | None = None
    discounts: list[dict[str, str]] | None = None
    payment_behavior: str = "allow_incomplete"
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    default_tax_rates: list[str] | None = None
    trial_settings: dict[str, Any] | None = None


class SubscriptionsService(SubscriptionChanges):
    def __init__(
        self, ctx: Context, invoices: InvoicesService, usage: UsageFn | None = None
    ) -> None:
        self.ctx = ctx
        self.invoices = invoices
        self.usage = usage

    # -- reads ------------------------------------------------------------------------------
    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        customer: str | None = None,
        status: str | None = None,
        price: str | None = None,
        test_clock: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = scoped(Subscription, account_id)
        if customer:
            query = query.where(Subscription.customer_id == customer)
        if test_clock:
            query = query.where(Subscription.test_clock_id == test_clock)
        if status and status != "all":
            query = query.where(Subscription.status == status)
        elif status is None:
            query = query.where(Subscription.status != "canceled")  # Stripe's default
        if price:
            query = query.where(
                Subscription.id.in_(
                    select(SubscriptionItem.subscription_id).where(
                        SubscriptionItem.price_id == price
                    )
                )
            )
        if created is not None:
            query = query.where(*created.clauses(Subscription.created_us))
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                Subscription,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [await view_in(s, row) for row in rows], more

    # -- create -----------------------------------------------------------------------------
    async def create(self, account_id: str, p: SubscriptionParams) -> dict[str, Any]:
        if p.collection_method == "send_invoice" and p.days_until_due is None:
            raise PaymuxError.of(
                "parameter_missing",
                "days_until_due is required with collection_method=send_invoice.",
                param="days_until_due",
            )
        async with self.ctx.db.write() as s:
            customer = await get_owned(s, Customer, p.customer, account_id, param="customer")
            now = await now_for(s, self.ctx, account_id, customer.id)
            prices = [
                await check_price(
                    s, account_id, str(item.get("price") or ""), f"items[{i}][price]", new_use=True
                )
                for i, item in enumerate(p.items)
            ]
            check_prices(prices)
            for i, item in enumerate(p.items):
                await check_tax_rates(
                    s, account_id, item.get("tax_rates"), f"items[{i}][tax_rates]"
                )
            await check_tax_rates(s, account_id, p.default_tax_rates, "default_tax_rates")
            if p.default_payment_method:
                await self._check_method(
                    s, account_id, p.default_payment_method, customer.id, "default_payment_method"
                )
            coupon_id, promo_id = await self._coupon_of(
                s, account_id, p.coupon, p.promotion_code, p.discounts
            )
            trial_end = self._trial_end(p, now)
            sub = Subscription(
                id=new_id("sub"),
                account_id=account_id,
                livemode=bool(customer.livemode),
                customer_id=customer.id,
                status="trialing" if trial_end else "incomplete",
                currency=prices[0].currency,
                collection_method=p.collection_method,
                days_until_due=p.days_until_due,
                default_payment_method_id=p.default_payment_method,
                billing_cycle_anchor_us=0,
                start_date_us=now,
                current_period_start_us=now,
                current_period_end_us=now,
                trial_start_us=now if trial_end else None,
                trial_end_us=trial_end,
                cancel_at_period_end=p.cancel_at_period_end,
                cancel_at_us=None if p.cancel_at is None else seconds_us(p.cancel_at, "cancel_at"),
                coupon_id=coupon_id,
                promotion_code_id=promo_id,
                discount_start_us=now if coupon_id else None,
                default_tax_rate_ids=p.default_tax_rates,
                payment_behavior=p.payment_behavior,
                trial_end_behavior=((p.trial_settings or {}).get("end_behavior") or {}).get(
                    "missing_payment_method"
                ),
                test_clock_id=customer.test_clock_id,
                metadata_=dict(p.metadata),
                created_us=now,
                updated_us=now,
            )
            if coupon_id:
                await redeem_coupon(
                    s, account_id, coupon_id, promo_id, now, customer_id=customer.id
                )
                sub.discount_end_us = await self._discount_end(s, account_id, coupon_id, now)
            s.add(sub)
            await s.flush()
            await replace_items(
                s,
                sub,
                [
                    {
                        "id": None,
                        "price": pr.id,
                        "quantity": int(item.get("quantity") or 1),
                        "tax_rates": item.get("tax_rates"),
                        "metadata": item.get("metadata") or {},
                    }
                    for item, pr in zip(p.items, prices, strict=True)
                ],
                now,
            )
            items = await self.items_with_prices(s, sub.id)
            names = await self.product_names(s, prices)
            if trial_end:
                sub.billing_cycle_anchor_us = trial_end
                start, end = now, trial_end
                lines = [
                    DraftLine(
                        type="subscription",
                        amount=0,
                        currency=pr.currency,
                        description=f"Trial period for {names.get(pr.product_id, pr.id)}",
                        period_start_us=start,
                        period_end_us=end,
                        quantity=item.quantity,
                        price_id=pr.id,
                        subscription_item_id=item.id,
                    )
                    for item, pr in items
                ]
            else:
                anchor = (
                    seconds_us(p.billing_cycle_anchor, "billing_cycle_anchor")
                    if p.billing_cycle_anchor
                    else now
                )
                sub.billing_cycle_anchor_us = anchor
                start, end = first_period(anchor, prices[0], now)
                interval, count = interval_of(prices[0])
                full = period_containing(anchor, interval, count, now)[0] if anchor != now else None
                lines = await period_lines(
                    s,
                    sub,
                    items,
                    start,
                    end,
                    previous=None,
                    usage=None,
                    names=names,
                    full_start_us=full,
                )
            sub.current_period_start_us, sub.current_period_end_us = start, end
            if p.cancel_at_period_end:
                sub.cancel_at_us = end
            if sub.collection_method == "send_invoice" and not trial_end:
                sub.status = "active"  # Stripe: send_invoice subscriptions start active
            invoice = await self.invoices.draft_in(
                s,
                account_id,
                customer_id=customer.id,
                currency=sub.currency,
                billing_reason="subscription_create",
                period_start_us=start,
                period_end_us=end,
                lines=lines,
                subscription_id=sub.id,
                period_key=f"{sub.id}:{start}",
                coupon_id=coupon_id,
                default_tax_rate_ids=p.default_tax_rates,
                collection_method=p.collection_method,
                days_until_due=p.days_until_due,
                now_us=now,
            )
            sub.latest_invoice_id = invoice.id
            sub.next_due_us = next_due(sub, now, upcoming_us=upcoming_lead_us(self.ctx))
            await emit(s, account_id, "customer.subscription.created", await view_in(s, sub), now)
            # Finalized, and its first try's job queued, in the transaction that creates it:
            # a process dying before the inline try below leaves the job to make it
            # (default_incomplete: the payer confirms it in the browser, no job charges it).
            await self.invoices.finalize_in(s, invoice, charge=False)
            if p.payment_behavior != "default_incomplete":
                await self.queue_first_try(s, invoice)
            sub_id, invoice_id = sub.id, invoice.id
        await self._first_payment(account_id, sub_id, invoice_id, p)
        return await self.retrieve(account_id, sub_id)

    async def upcoming(
        self, account_id: str, *, customer: str | None, subscription: str | None
    ) -> dict[str, Any]:
        """Stripe's upcoming invoice (``create_preview``): the invoice the next renewal of
        ``subscription`` (else of the customer's subscription renewing first) would make now,
        with the customer's balance, discounts and pending items (``preview_in``). A 404
        when nothing renews (no subscription that will invoice again). A read: nothing is
        locked or written (on SQLite it never waits for the one writer)."""
        if customer is None and subscription is None:
            raise PaymuxError.of(
                "parameter_missing",
                "Give customer or subscription: the invoice of which renewal to preview.",
                param="customer",
            )
        async with self.ctx.db.read() as s:
            if subscription is not None:
                sub = await get_owned(
                    s, Subscription, subscription, account_id, param="subscription"
                )
                if customer is not None and customer != sub.customer_id:
                    raise PaymuxError.of(
                        "parameter_invalid",
                        "The subscription belongs to another customer.",
                        param="subscription",
                    )
                chosen: Subscription | None = sub
            else:
                assert customer is not None
                await get_owned(s, Customer, customer, account_id, param="customer")
                chosen = await self._renewing_first(s, account_id, customer)
            renews = None if chosen is None else _renews_at(chosen)
            preview = (
                None
                if chosen is None or renews is None
                else await self.preview_in(s, chosen, renews)
            )
            if preview is None:
                raise PaymuxError.of(
                    "resource_missing",
                    "No upcoming invoice: no subscription here will invoice again.",
                    param="subscription" if subscription is not None else "customer",
                )
            return preview

    async def _renewing_first(
        self, s: AsyncSession, account_id: str, customer_id: str
    ) -> Subscription | None:
        rows = await s.execute(
            select(Subscription)
            .where(
                Subscription.account_id == account_id,
                Subscription.customer_id == customer_id,
                Subscription.status.in_(("trialing", "active", "past_due", "unpaid")),
            )
            .order_by(Subscription.id)
        )
        found = [(at, sub.id, sub) for sub in rows.scalars() if (at := _renews_at(sub))]
        return min(found)[2] if found else None

    def _trial_end(self, p: SubscriptionParams, now: int) -> int | None:
        if p.trial_end == "now":
            return None
        if p.trial_end is not None:
            end = seconds_us(int(p.trial_end), "trial_end")
            if end <= now:
                raise PaymuxError.of(
                    "parameter_invalid", "trial_end must be in the future.", param="trial_end"
                )
            return end
        if p.trial_period_days:
            return now + p.trial_period_days * _DAY_US
        return None

    async def _first_payment(
        self, account_id: str, sub_id: str, invoice_id: str, p: SubscriptionParams
    ) -> None:
        """Charge the first invoice (allow_incomplete / error_if_incomplete), or leave its
        payment to the browser (default_incomplete: the invoice's PaymentIntent is opened,
        not confirmed)."""
        async with self.ctx.db.read() as s:
            invoice = await s.get(Invoice, invoice_id)
            assert invoice is not None
            if invoice.status != "open" or invoice.collection_method != "charge_automatically":
                return
        if p.payment_behavior == "default_incomplete":
            await self.invoices.open_intent(account_id, invoice_id)
            return
        await self.pay_inline(account_id, invoice_id)
        if p.payment_behavior == "error_if_incomplete":
            async with self.ctx.db.write() as s:
                sub = await s.get(Subscription, sub_id, with_for_update=True)
                invoice = await s.get(Invoice, invoice_id, with_for_update=True)
                assert sub is not None and invoice is not None
                if sub.status != "incomplete":
                    return
                error = await self._last_error(s, invoice)
                await self.invoices.void_in(s, invoice)
                await move(
                    s, sub, T.CANCELED, await now_for(s, self.ctx, account_id, sub.customer_id)
                )
            raise error

    async def _last_error(self, s: AsyncSession, invoice: Invoice) -> PaymuxError:
        from paymux.storage.models import PaymentIntent

        pi = (
            await s.get(PaymentIntent, invoice.payment_intent_id)
            if invoice.payment_intent_id
            else None
        )
        last = (pi.last_payment_error if pi is not None else None) or {}
        return PaymuxError.of(
            str(last.get("code") or "card_declined"),
            str(last.get("message") or "The subscription's first payment failed."),
            decline_code=last.get("decline_code"),
        )

    # -- update -----------------------------------------------------------------------------


def _renews_at(sub: Subscription) -> int | None:
    """When the subscription next makes an invoice by itself (None: it ends first, or is
    not renewing)."""
    if sub.status == "trialing" and sub.trial_end_us is not None:
        at = sub.trial_end_us
    elif sub.status in ("active", "past_due", "unpaid"):
        at = sub.current_period_end_us
    else:
        return None
    if sub.cancel_at_us is not None and sub.cancel_at_us <= at:
        return None
    return at
