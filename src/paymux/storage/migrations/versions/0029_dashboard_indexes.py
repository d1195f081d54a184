"""the dashboard's indexes on payment_intents (issue 15, helper H8; bench/dashboard.py)

- ``ix_payment_intents_customer`` (account_id, customer_id, created_us): the payments page
  filtered by a customer walked the account's (account_id, created_us) index until it had a
  page of that customer's payments (240 ms for a customer of 200 among 1,000,000);
- ``ix_payment_intents_volume`` (account_id, livemode, status, created_us), on PostgreSQL
  with currency and amount_received included: the home page's volume per day and currency
  reads the index only, not the table;
- ``ix_payment_intents_failed`` (account_id, livemode, created_us) where last_payment_error
  IS NOT NULL: the home page's declines by reason read only the failed payments.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02 18:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_FAILED = sa.text("last_payment_error IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_payment_intents_customer",
        "payment_intents",
        ["account_id", "customer_id", "created_us"],
    )
    op.create_index(
        "ix_payment_intents_volume",
        "payment_intents",
        ["account_id", "livemode", "status", "created_us"],
        postgresql_include=["currency", "amount_received"],
    )
    op.create_index(
        "ix_payment_intents_failed",
        "payment_intents",
        ["account_id", "livemode", "created_us"],
        postgresql_where=_FAILED,
        sqlite_where=_FAILED,
    )


def downgrade() -> None:
    op.drop_index("ix_payment_intents_failed", table_name="payment_intents")
    op.drop_index("ix_payment_intents_volume", table_name="payment_intents")
    op.drop_index("ix_payment_intents_customer", table_name="payment_intents")
