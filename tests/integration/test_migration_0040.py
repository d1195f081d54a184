"""Migration 0040 on a database that already holds events: those the outbound dispatcher had
not made deliveries of yet (``events.dispatched_us`` NULL) move into the outbox, oldest
first, and are dispatched once; those it had are not in it. Down again, the mark is back:
NULL on exactly the events still in the outbox. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_events_not_dispatched_yet_move_into_the_outbox_oldest_first(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"migration_0040_{backend}")
    upgrade(url, "0039")
    run_sql(url, *_SEED)
    upgrade(url, "0040")

    (outbox,) = run_sql(url, "SELECT event_id FROM event_outbox ORDER BY seq")
    assert [r[0] for r in outbox] == ["evt_early", "evt_late"]
    (events,) = run_sql(url, "SELECT * FROM events ORDER BY id")
    assert len(events) == 3
    assert "dispatched_us" not in events[0]._mapping  # the mark is gone

    # The dispatcher took one of them before going down: the other is still owed.
    run_sql(url, "DELETE FROM event_outbox WHERE event_id = 'evt_early'")
    command.downgrade(alembic_config(url), "0039")
    (marks,) = run_sql(url, "SELECT id, dispatched_us FROM events ORDER BY id")
    assert [tuple(r) for r in marks] == [("evt_done", 0), ("evt_early", 0), ("evt_late", None)]

    upgrade(url, "0040")  # and forward again
    (outbox,) = run_sql(url, "SELECT event_id FROM event_outbox ORDER BY seq")
    assert [r[0] for r in outbox] == ["evt_late"]
