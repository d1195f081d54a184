"""events.object_seq: each event's place among its object's events (issue 14, ordering)

``data.previous_attributes`` of an ``*.updated`` event is the diff against the object's
previous event. Found by time, two events in the same microsecond, or an event a test clock
backdated, could be diffed against the wrong one; ``emit`` now numbers an object's events
1, 2, ... in the emitting transaction (services/context.py) and the previous event is the
one numbered before.

A nullable column (a catalog-only change on PostgreSQL) and an index on (object_id,
object_seq). Existing events are numbered in the order the old rule used (created_us, then
id), per account and object, in one UPDATE ... FROM (PostgreSQL; SQLite 3.33+).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 15:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("object_seq", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_events_object_seq", ["object_id", "object_seq"], unique=False)
    op.execute(
        "UPDATE events SET object_seq = numbered.n FROM ("
        " SELECT id, ROW_NUMBER() OVER ("
        "  PARTITION BY account_id, object_id ORDER BY created_us, id) AS n"
        " FROM events) AS numbered"
        " WHERE events.id = numbered.id"
    )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_object_seq")
        batch_op.drop_column("object_seq")
