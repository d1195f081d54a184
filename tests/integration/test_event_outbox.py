"""The events table is only ever inserted into (migration 0040, issue 10): ``emit`` writes
each event with its row of the outbox (``event_outbox``), and the outbound dispatcher makes
the event's deliveries and deletes that row in one transaction; it never writes the event
again. Marking the event's row instead (``events.dispatched_us`` until 0040) made
PostgreSQL write a new version of the whole row, with an entry in each of the table's
indexes, for every event dispatched.

In process (``support.harness``: the real services on a real database, both backends).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text

from paymux.outbound.dispatch import dispatch_once
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness

db = migrated_database_fixture("event_outbox")

# SQLite keeps no row versions: a trigger of the test's own counts the UPDATEs of events.
_SQLITE_UPDATES = (
    "CREATE TABLE events_updated (id TEXT)",
    "CREATE TRIGGER events_updated AFTER UPDATE ON events"
    " BEGIN INSERT INTO events_updated VALUES (new.id); END",
)


async def version_of(h: Harness, event_id: str, sqlite: bool) -> Any:
    """What changes when a row of events is written again: its version and place on
    PostgreSQL, the UPDATEs the trigger counted on SQLite."""
    if sqlite:
        return [tuple(r) for r in await h.sql("select id from events_updated")]
    rows = await h.sql("select xmin::text, ctid::text from events where id = :e", e=event_id)
    return [tuple(r) for r in rows]


def test_an_event_is_written_with_its_outbox_row_and_never_written_again(
    db: str, tmp_path: Path
) -> None:
    sqlite = db.startswith("sqlite")

    async def main() -> None:
        async with Harness.open(
            db, tmp_path, webhook_poll_interval=3600, encryption_keys=generate_key_entry("k1")
        ) as h:
            if sqlite:
                async with h.app.ctx.db.write() as s:
                    for statement in _SQLITE_UPDATES:
                        await s.execute(text(statement))
            r = await h.post(
                "/v1/webhook_endpoints",
                {"url": "http://127.0.0.1:9/hook", "enabled_events": ["customer.created"]},
            )
            assert r.status_code == 200, r.text
            endpoint = r.json()["id"]
            await dispatch_once(h.app.ctx)  # whatever came before the customer
            r = await h.post("/v1/customers", {"email": "a@example.com"})
            assert r.status_code == 200, r.text
            customer = r.json()["id"]
            [(event,)] = await h.sql(
                "select id from events where object_id = :c and type = 'customer.created'",
                c=customer,
            )
            # Written with its row of the outbox, in the customer's transaction, and marked
            # so the previous release's dispatcher takes it not (migration 0040).
            outbox = await h.sql("select event_id from event_outbox")
            assert [r[0] for r in outbox] == [event]
            marks = await h.sql("select dispatched_us from events where id = :e", e=event)
            assert [r[0] for r in marks] == [0]
            before = await version_of(h, event, sqlite)

            assert await dispatch_once(h.app.ctx) == 1
            deliveries = await h.sql(
                "select endpoint_id, status from webhook_deliveries where event_id = :e", e=event
            )
            assert [tuple(r) for r in deliveries] == [(endpoint, "pending")]
            assert await h.sql("select event_id from event_outbox") == []
            # The event as it was written: the dispatcher wrote it no new version.
            assert await version_of(h, event, sqlite) == before
            if sqlite:
                assert before == []
            # Taken once: a second look finds nothing, makes no second delivery.
            assert await dispatch_once(h.app.ctx) == 0
            [(count,)] = await h.sql(
                "select count(*) from webhook_deliveries where event_id = :e", e=event
            )
            assert count == 1

    asyncio.run(main())
