"""issue 14 (helper H6): per-endpoint delivery claims

The delivery loop claims a few due deliveries per endpoint that has room (a LATERAL join on
PostgreSQL, a correlated ``IN (... LIMIT n)`` on SQLite: paymux/outbound/claims.py), so one
busy endpoint's backlog never fills the claim's window. Two partial indexes on the pending
deliveries:

- ``ix_webhook_deliveries_endpoint_due`` (endpoint_id, next_attempt_us): an endpoint's
  oldest due deliveries, one index range per endpoint;
- ``ix_webhook_deliveries_endpoint_leased`` (endpoint_id, lease_until_us), only the leased
  ones (claimed, not yet recorded): how many requests each endpoint has in flight across
  every worker, without reading its deliveries waiting for a retry.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"
LEASED = "status = 'pending' AND lease_until_us IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_endpoint_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_us"],
        unique=False,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_leased",
        "webhook_deliveries",
        ["endpoint_id", "lease_until_us"],
        unique=False,
        sqlite_where=sa.text(LEASED),
        postgresql_where=sa.text(LEASED),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint_leased", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_endpoint_due", table_name="webhook_deliveries")
