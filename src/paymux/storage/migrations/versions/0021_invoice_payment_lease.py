"""invoice payment lease, and the renewal an invoice.upcoming was sent for (issue 11)

Three nullable columns, each a catalog-only change on PostgreSQL (no table rewrite):
- invoices.payment_lease_holder, invoices.payment_lease_until_us: which intent holds the
  invoice's one charge path (a dunning try, the hosted page's payment), until when
  (billing/payment_lease.py);
- subscriptions.upcoming_notice_for_us: the renewal time whose ``invoice.upcoming`` event was
  sent, so it is sent once per period.

(Chained after 0020, the worker heartbeats of issue 16, which took that number first.)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_lease_holder", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("payment_lease_until_us", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upcoming_notice_for_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("upcoming_notice_for_us")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("payment_lease_until_us")
        batch_op.drop_column("payment_lease_holder")
