"""checkout sessions (issue 12): hosted checkout, Stripe's Checkout Session; CSP reports

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_status", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_subtotal", sa.BigInteger(), nullable=True),
        sa.Column("amount_total", sa.BigInteger(), nullable=True),
        sa.Column("line_items", sa.JSON(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("customer_email", sa.String(length=512), nullable=True),
        sa.Column("client_reference_id", sa.String(length=200), nullable=True),
        sa.Column("success_url", sa.String(length=2048), nullable=True),
        sa.Column("cancel_url", sa.String(length=2048), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("capture_method", sa.String(length=16), nullable=False),
        sa.Column("payment_method_types", sa.JSON(), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=40), nullable=True),
        sa.Column("setup_intent_id", sa.String(length=40), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("completed_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_checkout_sessions_account_created", "checkout_sessions", ["account_id", "created_us"]
    )
    op.create_index(
        "ix_checkout_sessions_payment_intent", "checkout_sessions", ["payment_intent_id"]
    )
    op.create_index("ix_checkout_sessions_setup_intent", "checkout_sessions", ["setup_intent_id"])
    op.create_index(
        "ix_checkout_sessions_status_expires", "checkout_sessions", ["status", "expires_us"]
    )
    op.create_table(
        "csp_reports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("page", sa.String(length=512), nullable=False),
        sa.Column("directive", sa.String(length=128), nullable=False),
        sa.Column("blocked", sa.String(length=512), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=True),
        sa.Column("line", sa.BigInteger(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_csp_reports_last_seen", "csp_reports", ["last_seen_us"])


def downgrade() -> None:
    op.drop_index("ix_csp_reports_last_seen", table_name="csp_reports")
    op.drop_table("csp_reports")
    op.drop_index("ix_checkout_sessions_status_expires", table_name="checkout_sessions")
    op.drop_index("ix_checkout_sessions_setup_intent", table_name="checkout_sessions")
    op.drop_index("ix_checkout_sessions_payment_intent", table_name="checkout_sessions")
    op.drop_index("ix_checkout_sessions_account_created", table_name="checkout_sessions")
    op.drop_table("checkout_sessions")
