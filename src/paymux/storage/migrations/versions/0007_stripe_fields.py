"""Stripe's field names on payment intents: receipt_email, statement_descriptor_suffix,
payment_method_types, automatic_payment_methods

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_email", sa.String(length=512), nullable=True))
        batch_op.add_column(
            sa.Column("statement_descriptor_suffix", sa.String(length=22), nullable=True)
        )
        batch_op.add_column(sa.Column("payment_method_types", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("automatic_payment_methods", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        for column in (
            "automatic_payment_methods",
            "payment_method_types",
            "statement_descriptor_suffix",
            "receipt_email",
        ):
            batch_op.drop_column(column)
