"""Stripe's event.request and data.previous_attributes: events.request_id,
events.idempotency_key (the API request that caused the event; NULL for events a worker
caused) and events.previous_attributes (the changed fields' old values, on *.updated).

All nullable, so existing rows need no backfill; adding a nullable column without a
default is a catalog-only change on PostgreSQL (no table rewrite).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("previous_attributes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for column in ("previous_attributes", "idempotency_key", "request_id"):
            batch_op.drop_column(column)
