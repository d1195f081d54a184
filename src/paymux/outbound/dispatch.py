"""The outbox is ``event_outbox`` (models.EventOutbox): ``emit`` writes, in the transaction of
a state change, the event and its outbox row; the dispatcher takes outbox rows (in the order
written, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers share the work), makes
one delivery per enabled endpoint of the event's account and mode that listens to its type,
and deletes the rows it took, all in ONE transaction. Killed at any point, either all of it
is written or none (the rows are taken again): no event is lost, none gets two deliveries.

Why a row per event and not a cursor on ``created_us``: an event's time is taken before
its transaction commits (a later-committing transaction can hold an earlier time), and test
clocks emit events at simulated times; a cursor would skip such events. Why not a mark on
the event's row (as until migration 0040): an UPDATE rewrites the whole row on PostgreSQL,
with an entry in each of the events table's indexes, next to the inserts of the payments
being settled; a DELETE of a two-column row writes no index entry. Off the request path:
one DELETE per batch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from sqlalchemy import Table, delete, select

from paymux.domain.ids import new_id
from paymux.outbound.batches import insert_rows
from paymux.outbound.endpoints import matches
from paymux.services.context import Context
from paymux.storage.keyed import among
from paymux.storage.models import Event, EventOutbox, WebhookDelivery, WebhookEndpoint

__all__ = ["DISPATCH_BATCH", "dispatch_once"]

DISPATCH_BATCH = 500
_DELIVERIES = cast(Table, WebhookDelivery.__table__)


async def dispatch_once(ctx: Context, limit: int = DISPATCH_BATCH) -> int:
    """Turn up to ``limit`` undispatched events into deliveries. Returns how many events."""
    async with ctx.db.read() as s:  # idle: no write transaction (SQLite's one writer)
        waiting = await s.scalar(select(EventOutbox.seq).limit(1))
    if waiting is None:
        return 0
    async with ctx.db.write() as s:
        query = (
            select(EventOutbox.seq, Event.id, Event.account_id, Event.type, Event.livemode)
            .join(Event, Event.id == EventOutbox.event_id)
            .order_by(EventOutbox.seq)
            .limit(limit)
        )
        if not ctx.db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=EventOutbox)
        events = (await s.execute(query)).all()
        if not events:
            return 0
        accounts = {e.account_id for e in events}
        endpoints: dict[tuple[str, bool], list[tuple[str, list[str]]]] = defaultdict(list)
        for ep in (
            await s.execute(
                select(
                    WebhookEndpoint.id,
                    WebhookEndpoint.account_id,
                    WebhookEndpoint.livemode,
                    WebhookEndpoint.enabled_events,
                ).where(
                    WebhookEndpoint.account_id.in_(accounts),
                    WebhookEndpoint.status == "enabled",
                    WebhookEndpoint.deleted.is_(False),
                )
            )
        ).all():
            endpoints[(ep.account_id, bool(ep.livemode))].append((ep.id, ep.enabled_events))
        now = ctx.now_us()
        rows: list[dict[str, Any]] = [
            {
                "id": new_id("whdl"),
                "account_id": e.account_id,
                "endpoint_id": endpoint_id,
                "event_id": e.id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_us": now,
                "created_us": now,
            }
            for e in events
            for endpoint_id, enabled in endpoints.get((e.account_id, bool(e.livemode)), [])
            if matches(enabled, e.type)
        ]
        await insert_rows(s, _DELIVERIES, rows)  # Core, one statement (batches.py)
        # The batch's keys as one array on PostgreSQL (``among``): as an IN list of the
        # batch's size, a plan made without statistics read the whole table.
        await s.execute(
            delete(EventOutbox)
            .where(among(EventOutbox.seq, "seqs", is_sqlite=ctx.db.is_sqlite))
            .execution_options(synchronize_session=False),
            {"seqs": [e.seq for e in events]},
        )
        return len(events)
