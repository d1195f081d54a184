"""Stripe's ``subscription`` and ``subscription_item`` objects, and the one helper that
moves a subscription's status: through ``rules.states.next_subscription_status`` only, with
the event each move emits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_views import price_view
from paymux.billing.rules.states import next_subscription_status
from paymux.services.context import emit
from paymux.storage.models import Price, Subscription, SubscriptionItem

__all__ = ["item_view", "items_of", "move", "subscription_view", "view_in"]


def _s(us: int | None) -> int | None:
    return None if us is None else us // 1_000_000


def item_view(item: SubscriptionItem, price: Price | None, sub: Subscription) -> dict[str, Any]:
    shown = price_view(price) if price is not None else item.price_id
    return {
        "id": item.id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": _s(item.created_us),
        "current_period_start": _s(sub.current_period_start_us),
        "current_period_end": _s(sub.current_period_end_us),
        "discounts": [],
        "metadata": item.metadata_ or {},
        "plan": shown,
        "price": shown,
        "quantity": item.quantity,
        "subscription": item.subscription_id,
        "tax_rates": list(item.tax_rate_ids or []),
    }


def subscription_view(
    sub: Subscription, items: list[tuple[SubscriptionItem, Price | None]]
) -> dict[str, Any]:
    pause = sub.pause_collection
    return {
        "id": sub.id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_cycle_anchor": _s(sub.billing_cycle_anchor_us),
        "billing_cycle_anchor_config": None,
        "billing_thresholds": None,
        "cancel_at": _s(sub.cancel_at_us),
        "cancel_at_period_end": bool(sub.cancel_at_period_end),
        "canceled_at": _s(sub.canceled_at_us),
        "cancellation_details": sub.cancellation_details
        or {"comment": None, "feedback": None, "reason": None},
        "collection_method": sub.collection_method,
        "created": _s(sub.created_us),
        "currency": sub.currency.lower(),
        "current_period_start": _s(sub.current_period_start_us),
        "current_period_end": _s(sub.current_period_end_us),
        "customer": sub.customer_id,
        "days_until_due": sub.days_until_due,
        "default_payment_method": sub.default_payment_method_id,
        "default_source": None,
        "default_tax_rates": list(sub.default_tax_rate_ids or []),
        "description": None,
        "discount": (
            {
                "object": "discount",
                "coupon": sub.coupon_id,
                "promotion_code": sub.promotion_code_id,
                "start": _s(sub.discount_start_us),
                "end": _s(sub.discount_end_us),
            }
            if sub.coupon_id
            else None
        ),
        "discounts": [],
        "ended_at": _s(sub.ended_at_us),
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [item_view(item, price, sub) for item, price in items],
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub.id}",
        },
        "latest_invoice": sub.latest_invoice_id,
        "livemode": bool(sub.livemode),
        "metadata": sub.metadata_ or {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": (
            None
            if not pause
            else {"behavior": pause.get("behavior"), "resumes_at": pause.get("resumes_at")}
        ),
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": sub.pending_update,
        "schedule": None,
        "start_date": _s(sub.start_date_us),
        "status": sub.status,
        "test_clock": sub.test_clock_id,
        "transfer_data": None,
        "trial_end": _s(sub.trial_end_us),
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": _s(sub.trial_start_us),
    }


async def items_of(s: AsyncSession, sub_id: str) -> list[tuple[SubscriptionItem, Price | None]]:
    rows = await s.execute(
        select(SubscriptionItem, Price)
        .join(Price, Price.id == SubscriptionItem.price_id, isouter=True)
        .where(SubscriptionItem.subscription_id == sub_id)
        .order_by(SubscriptionItem.created_us, SubscriptionItem.id)
    )
    return [(item, price) for item, price in rows.all()]


async def view_in(s: AsyncSession, sub: Subscription) -> dict[str, Any]:
    return subscription_view(sub, await items_of(s, sub.id))


_EVENT_OF = {
    "canceled": "customer.subscription.deleted",
    "incomplete_expired": "customer.subscription.updated",
    "paused": "customer.subscription.paused",
}


async def move(s: AsyncSession, sub: Subscription, trigger: str, now: int) -> bool:
    """Apply ``trigger`` to the subscription (the state table decides; a move not in it is a
    PaymuxError). Emits the move's event when the status changes. True if it changed."""
    before = sub.status
    after = next_subscription_status(before, trigger)
    if after == before:
        return False
    sub.status = after
    sub.updated_us = now
    if after == "canceled":
        sub.canceled_at_us = sub.canceled_at_us or now
        sub.ended_at_us = now
        sub.next_due_us = None
    if after == "incomplete_expired":
        sub.ended_at_us = now
        sub.next_due_us = None
    event = _EVENT_OF.get(str(after), "customer.subscription.updated")
    if before == "paused" and after == "active":
        event = "customer.subscription.resumed"
    await emit(s, sub.account_id, event, await view_in(s, sub), now)
    return True
