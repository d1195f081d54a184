"""A subscription's items: checking prices for a subscription (recurring, active for new
uses, one currency and one interval: Stripe's rule), and applying an items change
(``[{id?, price?, quantity?, deleted?, tax_rates?}]``, Stripe's ``items`` update)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_rows import price_row, tax_rate_row
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.context import merge_metadata
from paymux.storage.models import Price, Subscription, SubscriptionItem

__all__ = ["check_prices", "planned_item", "planned_items", "replace_items", "take_terms"]


def _invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


async def check_price(
    s: AsyncSession, account_id: str, price_id: str, param: str, *, new_use: bool
) -> Price:
    price = await price_row(s, account_id, price_id, param=param)
    if price.type != "recurring":
        raise _invalid(f"The price {price_id} is not recurring: a subscription needs one.", param)
    if new_use and not price.active:
        raise _invalid(f"The price {price_id} is archived: it cannot be used anymore.", param)
    return price


def check_prices(prices: list[Price]) -> None:
    """All items in one currency and one billing interval (Stripe's rule)."""
    if not prices:
        raise PaymuxError.of(
            "parameter_missing", "A subscription needs at least one item.", param="items"
        )
    first = prices[0]
    for price in prices[1:]:
        if price.currency != first.currency:
            raise PaymuxError.of(
                "currency_mismatch",
                "All items of a subscription must be in one currency.",
                param="items",
            )
        if (price.recurring_interval, price.recurring_interval_count) != (
            first.recurring_interval,
            first.recurring_interval_count,
        ):
            raise _invalid("All items of a subscription must bill on the same interval.", "items")


async def check_tax_rates(
    s: AsyncSession, account_id: str, ids: list[str] | None, param: str
) -> None:
    for rate_id in ids or []:
        await tax_rate_row(s, account_id, rate_id, param=param)


async def planned_items(
    s: AsyncSession, sub: Subscription, changes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The items the subscription will have after ``changes``: ``[{id | None, price,
    quantity, tax_rates, metadata}]`` (existing items first, in order), checked."""
    rows = (
        await s.execute(
            select(SubscriptionItem)
            .where(SubscriptionItem.subscription_id == sub.id)
            .order_by(SubscriptionItem.created_us, SubscriptionItem.id)
        )
    ).scalars()
    current: dict[str, dict[str, Any]] = {
        item.id: {
            "id": item.id,
            "price": item.price_id,
            "quantity": item.quantity,
            "tax_rates": item.tax_rate_ids,
            "metadata": dict(item.metadata_ or {}),
        }
        for item in rows
    }
    added: list[dict[str, Any]] = []
    for i, change in enumerate(changes):
        param = f"items[{i}]"
        item_id = change.get("id")
        if item_id is not None:
            if item_id not in current:
                raise PaymuxError.of(
                    "resource_missing", f"No such subscription item: '{item_id}'", param=param
                )
            if change.get("deleted"):
                del current[item_id]
                continue
            entry = current[item_id]
        else:
            if not change.get("price"):
                raise PaymuxError.of(
                    "parameter_missing", "A new item needs a price.", param=f"{param}[price]"
                )
            entry = {"id": None, "price": None, "quantity": 1, "tax_rates": None, "metadata": {}}
            added.append(entry)
        for key in ("price", "quantity", "tax_rates"):
            if change.get(key) is not None:
                entry[key] = change[key]
        if change.get("metadata"):
            entry["metadata"] = merge_metadata(entry["metadata"], change["metadata"])
    planned = [*current.values(), *added]
    prices = []
    for i, entry in enumerate(planned):
        price = await check_price(
            s, sub.account_id, entry["price"], f"items[{i}][price]", new_use=entry["id"] is None
        )
        if price.currency != sub.currency:
            raise PaymuxError.of(
                "currency_mismatch",
                f"The price {price.id} is in {price.currency.lower()}, the subscription in "
                f"{sub.currency.lower()}.",
                param=f"items[{i}][price]",
            )
        if int(entry["quantity"]) < 0:
            raise _invalid("quantity must be 0 or more", f"items[{i}][quantity]")
        await check_tax_rates(s, sub.account_id, entry["tax_rates"], f"items[{i}][tax_rates]")
        prices.append(price)
    check_prices(prices)
    return planned


async def replace_items(
    s: AsyncSession, sub: Subscription, planned: list[dict[str, Any]], now_us: int
) -> None:
    """Make the subscription's items ``planned`` (from ``planned_items``)."""
    existing = {
        item.id: item
        for item in (
            await s.execute(
                select(SubscriptionItem).where(SubscriptionItem.subscription_id == sub.id)
            )
        ).scalars()
    }
    keep = {entry["id"] for entry in planned if entry.get("id")}
    for item_id, item in existing.items():
        if item_id not in keep:
            await s.delete(item)
    for entry in planned:
        found = existing.get(entry.get("id") or "")
        if found is None:
            s.add(planned_item(sub, entry, None, now_us))
        else:
            take_terms(found, entry)
    await s.flush()


def take_terms(item: SubscriptionItem, entry: dict[str, Any]) -> None:
    """Give ``item`` the terms of ``entry`` (one of ``planned_items``)."""
    item.price_id = entry["price"]
    item.quantity = int(entry["quantity"])
    item.tax_rate_ids = entry.get("tax_rates")
    item.metadata_ = entry.get("metadata") or {}


def planned_item(
    sub: Subscription, entry: dict[str, Any], kept: SubscriptionItem | None, now_us: int
) -> SubscriptionItem:
    """The item ``entry`` makes, as a new object (not in any session): the stored item it
    keeps (``kept``: its id and creation time) with the entry's terms, or a new item dated
    ``now_us``. ``replace_items`` adds the new ones; the renewal's preview of a change asked
    for the period end builds all of them in memory (``SubscriptionDue._planned_rows``)."""
    item = SubscriptionItem(
        id=kept.id if kept is not None else new_id("si"),
        account_id=sub.account_id,
        subscription_id=sub.id,
        created_us=kept.created_us if kept is not None else now_us,
    )
    take_terms(item, entry)
    return item
