"""attempt targets and recovery points; payment methods found by gateway token

Attempts remember the state they started from and the one they aim at; idempotency keys
record a recovery point; payment methods are found by gateway token across accounts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("target", sa.String(length=32), nullable=True))
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovery_point", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("object_id", sa.String(length=40), nullable=True))
    op.create_index("ix_payment_methods_gateway_token", "payment_methods", ["gateway", "token"])


def downgrade() -> None:
    op.drop_index("ix_payment_methods_gateway_token", table_name="payment_methods")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("object_id")
        batch_op.drop_column("recovery_point")
    with op.batch_alter_table("gateway_attempts", schema=None) as batch_op:
        batch_op.drop_column("target")
        batch_op.drop_column("from_status")
