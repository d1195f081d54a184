"""Reading what the gateways and our own state changes recorded: events (outbound webhooks
deliver them) and disputes; and what ``emit`` adds to an event beside its object (the
request that caused it, the previous values of an update's changed fields)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.events import changed_attributes
from paymux.security.logging import request_id_var
from paymux.services.context import Context, CreatedRange, get_owned, page_of
from paymux.services.idempotency import current_claim
from paymux.services.views import dispute_view, event_view
from paymux.storage.models import Dispute, Event

__all__ = ["EventsService", "previous_attributes_of", "request_of_now"]


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


def request_of_now() -> tuple[str | None, str | None]:
    """Stripe's ``event.request`` for an event emitted now: the id of the API request being
    served (``req_...``, set by the API middleware) and its Idempotency-Key, if any; both
    None outside a request (a worker, a job, the CLI)."""
    request_id = request_id_var.get()
    if request_id is None:
        return None, None
    claim = current_claim.get()
    return request_id, claim.key if claim is not None else None


async def previous_attributes_of(
    session: AsyncSession, account_id: str, object_id: str, obj: dict[str, Any]
) -> dict[str, Any] | None:
    """``data.previous_attributes`` of an ``*.updated`` event: what changed since the object's
    last event (every state change emits one, in its transaction, so the last event's
    snapshot is the object as it was before this change). None if there is no earlier
    event of the object."""
    last = await session.scalar(
        select(Event.data)
        .where(Event.object_id == object_id, Event.account_id == account_id)
        .order_by(Event.created_us.desc(), Event.id.desc())
        .limit(1)
    )
    if not isinstance(last, dict):
        return None
    return changed_attributes(last, obj)
