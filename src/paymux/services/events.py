"""Reading what the gateways and our own state changes recorded: events (outbound webhooks
will deliver them) and disputes."""

from __future__ import annotations

from typing import Any

from paymux.services.context import Context, get_owned, paginate, scoped
from paymux.services.views import dispute_view, event_view
from paymux.storage.models import Dispute, Event

__all__ = ["EventsService"]


class EventsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def retrieve(self, account_id: str, event_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return event_view(await get_owned(s, Event, event_id, account_id))

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        type: str | None = None,
        object_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = scoped(Event, account_id)
        if type:
            query = query.where(Event.type == type)
        if object_id:
            query = query.where(Event.object_id == object_id)
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                Event,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [event_view(e) for e in rows], more

    async def list_disputes(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        payment_intent: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = scoped(Dispute, account_id)
        if payment_intent:
            query = query.where(Dispute.payment_intent_id == payment_intent)
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                Dispute,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [dispute_view(d) for d in rows], more
