"""Reading what the gateways and our own state changes recorded: events (outbound webhooks
deliver them) and disputes; and what ``emit`` adds to an event beside its object (the
request that caused it, the previous values of an update's changed fields)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.events import changed_attributes
from paymux.security.logging import request_id_var
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    merge_metadata,
    page_of,
)
from paymux.services.idempotency import current_claim
from paymux.services.views import dispute_view, event_view
from paymux.storage.models import Dispute, Event

__all__ = [
    "EventsService",
    "last_event_of",
    "previous_attributes_of",
    "request_of_now",
]


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

    async def update_dispute(
        self, account_id: str, dispute_id: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        """A dispute's metadata, in any state (won and lost too), as Stripe allows; a change
        emits ``charge.dispute.updated`` with the previous metadata, as Stripe does."""
        async with self.ctx.db.write() as s:
            dispute = await get_owned(s, Dispute, dispute_id, account_id, lock=True)
            if metadata is not None:
                merged = merge_metadata(dispute.metadata_, metadata)
                if merged != (dispute.metadata_ or {}):
                    now = max(self.ctx.now_us(), dispute.updated_us)
                    dispute.metadata_ = merged
                    dispute.updated_us = now
                    await emit(s, account_id, "charge.dispute.updated", dispute_view(dispute), now)
            return dispute_view(dispute)


def request_of_now() -> tuple[str | None, str | None]:
    """Stripe's ``event.request`` for an event emitted now: the id of the API request being
    served (``req_...``, set by the API middleware) and its Idempotency-Key, if any; both
    None outside a request (a worker, a job, the CLI)."""
    request_id = request_id_var.get()
    if request_id is None:
        return None, None
    claim = current_claim.get()
    return request_id, claim.key if claim is not None else None


async def last_event_of(
    session: AsyncSession, account_id: str, object_id: str
) -> tuple[dict[str, Any] | None, int]:
    """The object's last event: its snapshot and its ``object_seq`` ((None, 0) if the object
    has none). Last in the object's own sequence (``emit`` numbers an object's events in
    their transactions, the object's row locked by its change), not in time: a test clock
    backdates events and two events can share a microsecond.

    An event written by the previous release during a rolling upgrade has no ``object_seq``
    (NULL): when the object's newest event by time (created_us, then id) is one, it is the
    last event (the old rule), and the sequence goes on from the highest number given."""
    mine = (Event.object_id == object_id, Event.account_id == account_id)
    top_seq = select(func.max(Event.object_seq)).where(*mine).scalar_subquery()
    newest = (
        await session.execute(
            select(Event.data, Event.object_seq, top_seq.label("top_seq"))
            .where(*mine)
            .order_by(Event.created_us.desc(), Event.id.desc())
            .limit(1)
        )
    ).first()
    if newest is None:
        return None, 0
    top = int(newest.top_seq or 0)
    row = newest
    if newest.object_seq is not None and newest.object_seq != top:
        # Not the newest in time (a backdated clock): the one numbered last is.
        row = (
            await session.execute(
                select(Event.data, Event.object_seq).where(*mine, Event.object_seq == top).limit(1)
            )
        ).one()
    return (row.data if isinstance(row.data, dict) else None), top


async def previous_attributes_of(
    session: AsyncSession, account_id: str, object_id: str, obj: dict[str, Any]
) -> dict[str, Any] | None:
    """``data.previous_attributes`` of an ``*.updated`` event: what changed since the object's
    last event (every state change emits one, in its transaction, so the last event's
    snapshot is the object as it was before this change). None if there is no earlier
    event of the object."""
    last, _ = await last_event_of(session, account_id, object_id)
    return None if last is None else changed_attributes(last, obj)
