"""the outbox is a table of its own: dispatching an event no longer rewrites its row (issue 10)

The outbound dispatcher marked each event it had made deliveries of (``events.dispatched_us``,
migration 0011): an UPDATE of the event's row, which PostgreSQL writes as a new version of
the whole row (the column was in the predicate of a partial index, so never a HOT update)
with a new entry in each of the events table's indexes, next to the entries the payments
being settled were inserting. Measured (docs/benchmarks.md): with the worker in the API
process, a payment's event INSERT took 507 us of PostgreSQL's time instead of 376, and the
outbound loop cost 11% of the payments a second.

Now ``emit`` writes, with the event, a row of ``event_outbox`` (its event's id, in the
order written), and the dispatcher deletes the rows it took: the events table is only ever
inserted into. Events not dispatched yet move into the outbox.

Written to run while the previous release still serves (docs/operations.md, "Upgrades"):
nothing is dropped. ``dispatched_us`` stays, and is never NULL from now on, so the previous
release's dispatcher (which takes the events whose mark is NULL) finds nothing: this
release's ``emit`` writes 0 (the event has its row in the outbox), the events moved into the
outbox are marked 0, and an event the previous release's ``emit`` inserts (the mark NULL)
gets its row of the outbox and the mark 0 from a trigger (``paymux_event_outbox_compat``).
So during a rolling upgrade every event is dispatched once, by this release's dispatcher,
whichever release emitted it. The partial index on NULL marks stays too (empty: the
previous release's look is instant). A later release drops the trigger, the index and the
column. Down: the events still in the outbox get their NULL mark back.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-05 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None

_TRIGGER = "paymux_event_outbox_compat"

# PostgreSQL: before the row is written, so its mark is set in the row itself (no UPDATE).
_PG_FUNCTION = f"""
CREATE FUNCTION {_TRIGGER}() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $function$
BEGIN
    INSERT INTO event_outbox (event_id) VALUES (NEW.id);
    NEW.dispatched_us := 0;
    RETURN NEW;
END
$function$
"""  # noqa: S608 (every part a constant of this module)

# The WHEN is false for this release's events (their mark is 0): no function call.
_PG_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
BEFORE INSERT ON events
FOR EACH ROW
WHEN (NEW.dispatched_us IS NULL)
EXECUTE FUNCTION {_TRIGGER}()
"""

# SQLite's triggers cannot change NEW: the mark is set after the row is written.
_SQLITE_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
AFTER INSERT ON events
FOR EACH ROW
WHEN NEW.dispatched_us IS NULL
BEGIN
    INSERT INTO event_outbox (event_id) VALUES (NEW.id);
    UPDATE events SET dispatched_us = 0 WHERE id = NEW.id;
END
"""  # noqa: S608 (every part a constant of this module)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    if _postgres():
        # No event written or marked meanwhile: the transactions that insert events or hold
        # some (a previous release's dispatcher, between its FOR UPDATE and its mark) finish
        # first, and new ones wait until this one commits (plain reads go on). Without it an
        # event taken by that dispatcher could be moved too (dispatched twice), and one
        # inserted while this ran (before the trigger) be left with neither (never).
        op.execute("LOCK TABLE events IN EXCLUSIVE MODE")
    # (SQLite: the migration holds the one writer already.)
    # The events not dispatched yet (the partial index of 0011 finds them), oldest first.
    op.execute(
        "INSERT INTO event_outbox (event_id) SELECT id FROM events"
        " WHERE dispatched_us IS NULL ORDER BY created_us, id"
    )
    op.execute("UPDATE events SET dispatched_us = 0 WHERE dispatched_us IS NULL")
    if _postgres():
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER {_TRIGGER}" + (" ON events" if _postgres() else ""))
    if _postgres():
        op.execute(f"DROP FUNCTION {_TRIGGER}()")
    op.execute(
        "UPDATE events SET dispatched_us = NULL WHERE id IN (SELECT event_id FROM event_outbox)"
    )
    op.drop_table("event_outbox")
