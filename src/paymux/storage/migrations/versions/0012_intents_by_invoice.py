"""payment intents found by their invoice: an index on payment_intents.invoice_id

The hosted invoice page counts the payments made for one invoice in the last hour (its limit
on tries, against card testing through a page); without the index that count reads every
intent. On PostgreSQL the index is built with a plain CREATE INDEX, which holds writes to
payment_intents while it builds: run this migration in a quiet moment on a large table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_intents_invoice_id"), ["invoice_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_intents_invoice_id"))
