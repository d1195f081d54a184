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
inserted into. Events not dispatched yet move into the outbox; the mark and its partial index
go. Down: the mark comes back, set (0) on every event but those still in the outbox.

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

UNDISPATCHED = "dispatched_us IS NULL"


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
    op.execute(
        "INSERT INTO event_outbox (event_id) SELECT id FROM events"
        " WHERE dispatched_us IS NULL ORDER BY created_us, id"
    )
    op.drop_index("ix_events_undispatched", table_name="events")
    # A plain ALTER TABLE ... DROP COLUMN on SQLite too (3.35+): no copy of the events table.
    op.drop_column("events", "dispatched_us")


def downgrade() -> None:
    op.add_column("events", sa.Column("dispatched_us", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE events SET dispatched_us = 0 WHERE id NOT IN (SELECT event_id FROM event_outbox)"
    )
    op.create_index(
        "ix_events_undispatched",
        "events",
        ["created_us"],
        sqlite_where=sa.text(UNDISPATCHED),
        postgresql_where=sa.text(UNDISPATCHED),
    )
    op.drop_table("event_outbox")
