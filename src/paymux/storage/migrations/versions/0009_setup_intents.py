"""setup intents: saving a card for later without a charge

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "setup_intents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("usage", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("gateway_reference", sa.String(length=255), nullable=True),
        sa.Column("client_secret", sa.String(length=100), nullable=False),
        sa.Column("last_setup_error", sa.JSON(), nullable=True),
        sa.Column("next_action", sa.JSON(), nullable=True),
        sa.Column("return_url", sa.String(length=2048), nullable=True),
        sa.Column("payment_method_types", sa.JSON(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("canceled_us", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["payment_method_id"], ["payment_methods.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_setup_intents_account_created", "setup_intents", ["account_id", "created_us"]
    )
    op.create_index("ix_setup_intents_customer_id", "setup_intents", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_setup_intents_customer_id", table_name="setup_intents")
    op.drop_index("ix_setup_intents_account_created", table_name="setup_intents")
    op.drop_table("setup_intents")
