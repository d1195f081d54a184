"""The lines a subscription's invoices carry: each licensed item's period in advance, each
metered item's usage of the period that just ended (in arrears, as Stripe does), and the
prorations of a change (``rules.proration``). Amounts come from ``rules.pricing``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_rows import price_terms
from paymux.billing.invoice_core import DraftLine
from paymux.billing.rules.periods import Interval, period_containing
from paymux.billing.rules.pricing import amount_for
from paymux.billing.rules.proration import ProrationItem, change_prorations, prorate
from paymux.storage.models import Price, Subscription, SubscriptionItem

__all__ = [
    "UsageFn",
    "interval_of",
    "item_amount",
    "period_after",
    "period_lines",
    "proration_lines",
]

# (session, account_id, livemode, meter_id, customer_id, start_us, end_us) -> the usage
# (MetersService.usage).
UsageFn = Callable[[AsyncSession, str, bool, str, str, int, int], Awaitable[int]]


def interval_of(price: Price) -> tuple[Interval, int]:
    return cast(Interval, price.recurring_interval or "month"), int(
        price.recurring_interval_count or 1
    )


def period_after(sub: Subscription, price: Price, start_us: int) -> int:
    """The end of the period starting at ``start_us``: the next boundary from the anchor."""
    interval, count = interval_of(price)
    return period_containing(sub.billing_cycle_anchor_us, interval, count, start_us)[1]


def first_period(anchor_us: int, price: Price, now_us: int) -> tuple[int, int]:
    """[now, end) of a new subscription: the anchor's period holding now (a future anchor
    makes a shorter, prorated first period)."""
    interval, count = interval_of(price)
    return now_us, period_containing(anchor_us, interval, count, now_us)[1]


def metered(price: Price) -> bool:
    return price.recurring_usage_type == "metered"


def item_amount(price: Price, quantity: int) -> int:
    return amount_for(price_terms(price), quantity)


def _describe(price: Price, quantity: int, product_name: str | None) -> str:
    name = product_name or price.nickname or price.id
    return f"{quantity} \u00d7 {name}"


async def period_lines(
    s: AsyncSession,
    sub: Subscription,
    items: list[tuple[SubscriptionItem, Price]],
    start_us: int,
    end_us: int,
    *,
    previous: tuple[int, int] | None,
    usage: UsageFn | None,
    names: dict[str, str],
    full_start_us: int | None = None,
) -> list[DraftLine]:
    """A period's lines: licensed items for [start, end) (prorated when the period is shorter
    than a full one: ``full_start_us``), metered items for the ``previous`` period's usage."""
    lines: list[DraftLine] = []
    for item, price in items:
        name = names.get(price.product_id)
        if metered(price):
            if previous is None or usage is None or price.recurring_meter_id is None:
                continue
            used = await usage(
                s,
                sub.account_id,
                bool(sub.livemode),
                price.recurring_meter_id,
                sub.customer_id,
                previous[0],
                previous[1],
            )
            lines.append(
                DraftLine(
                    type="subscription",
                    amount=amount_for(price_terms(price), used),
                    currency=price.currency,
                    description=_describe(price, used, name) + " (usage)",
                    period_start_us=previous[0],
                    period_end_us=previous[1],
                    quantity=used,
                    price_id=price.id,
                    subscription_item_id=item.id,
                    tax_rate_ids=tuple(item.tax_rate_ids) if item.tax_rate_ids else None,
                )
            )
            continue
        amount = item_amount(price, item.quantity)
        proration = full_start_us is not None and full_start_us < start_us
        if proration:
            assert full_start_us is not None
            amount = prorate(amount, full_start_us, end_us, start_us, end_us)
        lines.append(
            DraftLine(
                type="subscription",
                amount=amount,
                currency=price.currency,
                description=_describe(price, item.quantity, name),
                period_start_us=start_us,
                period_end_us=end_us,
                quantity=item.quantity,
                price_id=price.id,
                subscription_item_id=item.id,
                proration=proration,
                tax_rate_ids=tuple(item.tax_rate_ids) if item.tax_rate_ids else None,
            )
        )
    return lines


def proration_lines(
    old: list[dict[str, Any]],
    new: list[dict[str, Any]],
    period_start_us: int,
    period_end_us: int,
    at_us: int,
) -> list[dict[str, Any]]:
    """Prorations of a change at ``at_us``: each ``{key, amount, description, price_id,
    quantity}`` (full-period amounts) before and after; returns invoice-item fields."""
    by_key = {**{o["key"]: o for o in old}, **{n["key"]: n for n in new}}
    lines = change_prorations(
        [ProrationItem(o["key"], o["amount"], o["description"]) for o in old],
        [ProrationItem(n["key"], n["amount"], n["description"]) for n in new],
        period_start_us,
        period_end_us,
        at_us,
    )
    old_keys = {o["key"]: o for o in old}
    out = []
    for line in lines:
        source = (
            old_keys[line.key] if line.amount < 0 and line.key in old_keys else by_key[line.key]
        )
        prefix = "Unused time on" if line.amount < 0 else "Remaining time on"
        out.append(
            {
                "key": line.key,
                "amount": line.amount,
                "from_us": line.from_us,
                "to_us": line.to_us,
                "description": f"{prefix} {line.description or source['description']}",
                "price_id": source["price_id"],
                "quantity": source["quantity"],
            }
        )
    return out
