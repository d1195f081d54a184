"""``/v1/subscription_items``: one item of a subscription at a time. Each call is a
subscription update of that one item (``SubscriptionsService.update``), so prorations,
checks and events are the same as there."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from paymux.billing.subscription_views import item_view
from paymux.billing.subscriptions import SubscriptionsService, UpdateParams
from paymux.domain.errors import PaymuxError
from paymux.services.context import get_owned
from paymux.storage.models import Price, Subscription, SubscriptionItem

__all__ = ["SubscriptionItemsService"]


class SubscriptionItemsService:
    def __init__(self, subscriptions: SubscriptionsService) -> None:
        self.subscriptions = subscriptions
        self.ctx = subscriptions.ctx

    async def _view(self, account_id: str, item_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            item = await get_owned(s, SubscriptionItem, item_id, account_id)
            sub = await s.get(Subscription, item.subscription_id)
            price = await s.get(Price, item.price_id)
            assert sub is not None
            return item_view(item, price, sub)

    async def retrieve(self, account_id: str, item_id: str) -> dict[str, Any]:
        return await self._view(account_id, item_id)

    async def list_for(self, account_id: str, sub_id: str) -> list[dict[str, Any]]:
        view = await self.subscriptions.retrieve(account_id, sub_id)
        return list(view["items"]["data"])

    async def create(
        self, account_id: str, sub_id: str, item: dict[str, Any], update: UpdateParams
    ) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            await get_owned(s, Subscription, sub_id, account_id, param="subscription")
            before = set(
                (
                    await s.execute(
                        select(SubscriptionItem.id).where(
                            SubscriptionItem.subscription_id == sub_id
                        )
                    )
                ).scalars()
            )
        update.items = [item]
        view = await self.subscriptions.update(account_id, sub_id, update)
        added = [i for i in view["items"]["data"] if i["id"] not in before]
        if not added:
            raise PaymuxError.of("parameter_invalid", "No item was added.", param="price")
        return dict(added[0])

    async def _sub_of(self, account_id: str, item_id: str) -> str:
        async with self.ctx.db.read() as s:
            return (await get_owned(s, SubscriptionItem, item_id, account_id)).subscription_id

    async def update(
        self, account_id: str, item_id: str, change: dict[str, Any], update: UpdateParams
    ) -> dict[str, Any]:
        sub_id = await self._sub_of(account_id, item_id)
        update.items = [{"id": item_id, **change}]
        await self.subscriptions.update(account_id, sub_id, update)
        return await self._view(account_id, item_id)

    async def delete(self, account_id: str, item_id: str, update: UpdateParams) -> dict[str, Any]:
        sub_id = await self._sub_of(account_id, item_id)
        update.items = [{"id": item_id, "deleted": True}]
        await self.subscriptions.update(account_id, sub_id, update)
        return {"id": item_id, "object": "subscription_item", "deleted": True}
