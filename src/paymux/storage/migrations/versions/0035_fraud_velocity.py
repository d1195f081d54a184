"""distinct cards counted per minute (issue 13, helper F13)

``fraud_velocity_buckets.cards``: how many of the key's distinct cards were last tried in the
minute. A card tried again moves from the bucket of its last minute to the current one (-1
there, +1 here, with the attempt's upsert), so the ``distinct_cards_per_<key>_<window>``
count of a window is the sum of its minutes' ``cards``, exact, and the decision reads at
most a day of minute rows per key instead of one row per card the key was tried with (a
card-testing flood of 100,000 cards made every decision of that key read 100,000 rows).

The rows already counted keep counting: the column is filled from ``fraud_velocity_cards``
(each card row counts once in the bucket of its minute; a minute with cards and no bucket
row gets one).

``ADD COLUMN ... NOT NULL DEFAULT 0`` is a catalog change on PostgreSQL 11+ (no rewrite), but
``ALTER TABLE`` takes an ACCESS EXCLUSIVE lock on a busy table: the migration waits at most
``lock_timeout`` for it (and fails, to be run again, rather than queue every payment behind a
long transaction), as 0034. The fill then runs in the same transaction, still holding that
lock (the count and the column must agree when decisions resume): one aggregate over the
last day's card rows, so a day with a card-testing flood of many thousands of cards pauses
screened confirms for the time of that aggregate. Run the upgrade at a quiet hour (docs/fraud.md).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-03 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "5s"
# Every card row counts once in its minute's bucket. (``WHERE true``: SQLite's parser needs a
# WHERE before an upsert's ON CONFLICT after a SELECT.)
_FILL = """
INSERT INTO fraud_velocity_buckets
    (account_id, livemode, "key", minute, attempts, declines, settled, cards)
SELECT account_id, livemode, "key", minute, 0, 0, 0, count(*)
FROM fraud_velocity_cards WHERE true
GROUP BY account_id, livemode, "key", minute
ON CONFLICT (account_id, livemode, "key", minute) DO UPDATE SET cards = excluded.cards
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.add_column(
        "fraud_velocity_buckets",
        sa.Column("cards", sa.Integer, nullable=False, server_default="0"),
    )
    if _postgres():
        op.execute("SET LOCAL lock_timeout = DEFAULT")
    op.execute(_FILL)


def downgrade() -> None:
    with op.batch_alter_table("fraud_velocity_buckets") as batch:
        batch.drop_column("cards")
