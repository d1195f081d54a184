"""Migration 0040 on a database that already holds events, run while the previous release
still serves (docs/operations.md, "Upgrades"): the events its dispatcher had not made
deliveries of yet (``events.dispatched_us`` NULL) move into the outbox, oldest first; none
is left for the previous release's dispatcher to take a second time (no mark NULL); an
event the previous release inserts meanwhile gets its row of the outbox (a trigger) and
none for the previous dispatcher either, while an event inserted as this release's ``emit``
inserts it gets no second row. Down again, the mark is NULL on exactly the events still in
the outbox. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from conftest import database_url
from paymux.storage.migrate import alembic_config, upgrade
from support.pgcluster import PgCluster
from support.served import run_sql

_EVENT = (
    "INSERT INTO events (id, account_id, type, object_id, data, livemode, created_us,"
    " dispatched_us) VALUES ('{id}', 'acct_a', 'customer.created', 'cus_1', '{{}}', false,"
    " {created}, {dispatched})"
)
_SEED = (
    "INSERT INTO accounts (id, name, created_us) VALUES ('acct_a', 'a', 1)",
    _EVENT.format(id="evt_done", created=5, dispatched=7),
    _EVENT.format(id="evt_late", created=20, dispatched="NULL"),
    _EVENT.format(id="evt_early", created=10, dispatched="NULL"),
)
# The previous release's emit: no mark (NULL), no row of the outbox.
_PREVIOUS_EMIT = (
    "INSERT INTO events (id, account_id, type, object_id, data, livemode, created_us)"
    " VALUES ('evt_previous', 'acct_a', 'customer.created', 'cus_1', '{}', false, 30)"
)
# This release's emit: the mark 0 and its row of the outbox (services/context.py).
_THIS_EMIT = (
    _EVENT.format(id="evt_this", created=40, dispatched=0),
    "INSERT INTO event_outbox (event_id) VALUES ('evt_this')",
)
_OUTBOX = "SELECT event_id FROM event_outbox ORDER BY seq"
_PREVIOUS_LOOK = "SELECT id FROM events WHERE dispatched_us IS NULL"  # its dispatcher's


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_events_not_dispatched_move_into_the_outbox_and_the_previous_release_takes_none(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"migration_0040_{backend}")
    upgrade(url, "0039")
    run_sql(url, *_SEED)
    upgrade(url, "0040")

    outbox, previous_look = run_sql(url, _OUTBOX, _PREVIOUS_LOOK)
    assert [r[0] for r in outbox] == ["evt_early", "evt_late"]
    assert previous_look == []

    run_sql(url, _PREVIOUS_EMIT, *_THIS_EMIT)
    outbox, previous_look, marks = run_sql(
        url, _OUTBOX, _PREVIOUS_LOOK, "SELECT id, dispatched_us FROM events ORDER BY id"
    )
    assert [r[0] for r in outbox] == ["evt_early", "evt_late", "evt_previous", "evt_this"]
    assert previous_look == []
    assert [tuple(r) for r in marks] == [
        ("evt_done", 7),
        ("evt_early", 0),
        ("evt_late", 0),
        ("evt_previous", 0),
        ("evt_this", 0),
    ]

    # This release's dispatcher took two of them before going down: the others are owed.
    run_sql(url, "DELETE FROM event_outbox WHERE event_id IN ('evt_early', 'evt_this')")
    command.downgrade(alembic_config(url), "0039")
    (marks,) = run_sql(url, "SELECT id, dispatched_us FROM events ORDER BY id")
    assert [tuple(r) for r in marks] == [
        ("evt_done", 7),
        ("evt_early", 0),
        ("evt_late", None),
        ("evt_previous", None),
        ("evt_this", 0),
    ]

    upgrade(url, "0040")  # and forward again
    (outbox,) = run_sql(url, _OUTBOX)
    assert [r[0] for r in outbox] == ["evt_late", "evt_previous"]


def test_the_migration_waits_for_the_previous_releases_transactions_on_events(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """PostgreSQL, 0040 run while the previous release serves: its dispatcher has taken an
    event (``FOR UPDATE``, its mark not written yet) and its ``emit`` has inserted one (not
    committed yet). The migration waits for both: the event taken is left to that dispatcher
    (moved too, it would be dispatched twice), and the one inserted meanwhile is moved
    (missed, it would have neither the old mark's dispatcher nor a row in the outbox)."""
    url = database_url("postgres", tmp_path, pg_cluster, "migration_0040_concurrent")
    assert pg_cluster is not None
    dsn = pg_cluster.dsn(url.rsplit("/", 1)[1])
    upgrade(url, "0039")
    run_sql(url, *_SEED)

    async def main() -> None:
        dispatcher, emitter, watcher = [await asyncpg.connect(dsn) for _ in range(3)]
        try:
            taking = dispatcher.transaction()
            await taking.start()
            taken = await dispatcher.fetch(
                "SELECT id FROM events WHERE dispatched_us IS NULL ORDER BY created_us"
                " LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            assert [r["id"] for r in taken] == ["evt_early"]
            emitting = emitter.transaction()
            await emitting.start()
            await emitter.execute(_PREVIOUS_EMIT)
            migrating = asyncio.create_task(asyncio.to_thread(upgrade, url, "0040"))
            mine = [c.get_server_pid() for c in (dispatcher, emitter, watcher)]
            for _ in range(200):  # until the migration waits for a lock (or has finished)
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND NOT pid = ANY($1::int[])",
                    mine,
                )
                if waiting or migrating.done():
                    break
                await asyncio.sleep(0.05)
            await dispatcher.execute("UPDATE events SET dispatched_us = 5 WHERE id = 'evt_early'")
            await taking.commit()
            await emitting.commit()
            await asyncio.wait_for(migrating, 60)
        finally:
            for connection in (dispatcher, emitter, watcher):
                await connection.close()

    asyncio.run(main())
    outbox, marks = run_sql(url, _OUTBOX, "SELECT id, dispatched_us FROM events ORDER BY id")
    assert [r[0] for r in outbox] == ["evt_late", "evt_previous"]
    assert [tuple(r) for r in marks] == [
        ("evt_done", 7),
        ("evt_early", 5),  # the previous release's dispatcher's: dispatched once, by it
        ("evt_late", 0),
        ("evt_previous", 0),
    ]
