"""Reading what the gateways and our own state changes recorded: events (outbound webhooks
will deliver them) and disputes."""

from __future__ import annotations

from typing import Any

from paymux.services.context import Context, CreatedRange, get_owned, page_of
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
        created: CreatedRange | None = None,
        types: list[str] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Event,
            account_id,
            event_view,
            Event.type == type if type else None,
            Event.type.in_(types) if types else None,
            Event.object_id == object_id if object_id else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def list_disputes(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        payment_intent: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Dispute,
            account_id,
            dispute_view,
            Dispute.payment_intent_id == payment_intent if payment_intent else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def retrieve_dispute(self, account_id: str, dispute_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return dispute_view(await get_owned(s, Dispute, dispute_id, account_id))
