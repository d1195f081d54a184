"""the gateways' numeric risk score (issue 13, helper F13)

- ``payment_intents.gateway_risk_score``: the gateway's risk score (0-100) for the payment
  where it gives one (Stripe's ``outcome.risk_score`` on the payment's charge), stored with
  the payment's fraud data;
- ``fraud_velocity_buckets.gateway_risk_score``: the highest such score of the key's attempts
  settled in the minute, read by the velocity statement for ``:gateway_risk_score:`` (the
  card's highest in the last day).

Nullable columns without a default: no row changes (on PostgreSQL a catalog change only),
but ``ALTER TABLE`` still takes an ACCESS EXCLUSIVE lock on a busy table: on PostgreSQL the
migration waits at most ``lock_timeout`` for it (and fails, to be run again, rather than
queue every payment behind a long transaction).

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-03 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("payment_intents", "gateway_risk_score"),
    ("fraud_velocity_buckets", "gateway_risk_score"),
)
LOCK_TIMEOUT = "5s"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for table, column in _COLUMNS:
        op.add_column(table, sa.Column(column, sa.Integer, nullable=True))
    if _postgres():
        op.execute("SET LOCAL lock_timeout = DEFAULT")


def downgrade() -> None:
    for table, column in reversed(_COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
