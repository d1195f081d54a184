"""3-D Secure on every gateway (issue 12 section 3, helper H4)

Three nullable columns, catalog-only changes on PostgreSQL:
payment_intents.payment_method_options (Stripe's ``payment_method_options``, the card's
``request_three_d_secure``), payment_intents.three_d_secure (the latest confirmation's 3-D
Secure outcome, shown as the charge's ``payment_method_details.card.three_d_secure``) and
payment_methods.network_transaction_id (the card's first customer-initiated payment, which
merchant-initiated charges reference).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_method_options", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("three_d_secure", sa.JSON(), nullable=True))
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("network_transaction_id", sa.String(length=255), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_column("network_transaction_id")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("three_d_secure")
        batch_op.drop_column("payment_method_options")
