"""Stripe's contact and shipping fields: payment_intents.shipping, customers.phone/address/
shipping, payment_methods.billing_details

All nullable (None: not given), so existing rows need no backfill; adding a nullable column
without a default is a catalog-only change on PostgreSQL (no table rewrite).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 09:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shipping", sa.JSON(), nullable=True))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("address", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("shipping", sa.JSON(), nullable=True))
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billing_details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_column("billing_details")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for column in ("shipping", "address", "phone"):
            batch_op.drop_column(column)
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("shipping")
