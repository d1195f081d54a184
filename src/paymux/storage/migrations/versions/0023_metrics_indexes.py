"""the indexes /metrics reads through (issue 16, ops)

Each scrape counts the webhook inbox's waiting and dead events, and the outbound deliveries
failed and pending (observability/metrics.py). Without an index each count reads the whole
table, which only grows (applied events, delivered and failed deliveries are kept). Two
indexes: webhook_inbox (status, gateway, received_us) and webhook_deliveries (status,
created_us).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 15:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_inbox_status",
        "webhook_inbox",
        ["status", "gateway", "received_us"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_status",
        "webhook_deliveries",
        ["status", "created_us"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_inbox_status", table_name="webhook_inbox")
