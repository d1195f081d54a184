"""webhook attempts found by their age: an index on webhook_attempts.created_us

`paymux webhooks prune-attempts` deletes the attempts older than the retention in batches;
without the index each batch reads the whole table. On PostgreSQL the index is built with a
plain CREATE INDEX, which holds writes to webhook_attempts while it builds.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_created_us"), ["created_us"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_created_us"))
