"""the payment an inbound webhook was about (issue 15, helper B15)

- ``webhook_inbox.object_id`` (nullable): the payment intent an event was applied to (a
  payment's event, or a refund's or a dispute's: their payment), set in the transaction that
  applies it; NULL for an event not applied (yet), ignored, or about a setup intent;
- ``ix_webhook_inbox_account_object`` (account_id, object_id): a payment's page reads the
  inbound webhooks of its account (and of the deployment gateways: account NULL) about it.

Adding a nullable column without a default changes no row (on PostgreSQL a catalog change
only). On PostgreSQL the index is built ``CONCURRENTLY`` (outside the migration's
transaction): writes go on while it builds. A failed concurrent build leaves an INVALID
index: drop it and run the migration again.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03 05:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

_INDEX = "ix_webhook_inbox_account_object"
_COLUMNS = ["account_id", "object_id"]


def upgrade() -> None:
    op.add_column("webhook_inbox", sa.Column("object_id", sa.String(40), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(_INDEX, "webhook_inbox", _COLUMNS)
        return
    with op.get_context().autocommit_block():
        op.create_index(
            _INDEX, "webhook_inbox", _COLUMNS, postgresql_concurrently=True, if_not_exists=True
        )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="webhook_inbox")
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_column("object_id")
