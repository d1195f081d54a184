"""the request log: recent API calls per account and mode (issue 15, helper R15)

- ``request_log``: one row per authenticated API call (method, route template, path, status,
  duration, request id, key id, the body redacted as the logs are and capped), written in
  batches by services/request_log.py and trimmed to the newest entries per account and mode;
- ``ix_request_log_account_created`` (account_id, livemode, created_us, id): the dashboard's
  page (newest first, cursors) and the trim.

A new, empty table: nothing to block. The index is still built ``CONCURRENTLY`` on PostgreSQL
(outside the migration's transaction), as 0030 and 0031 do; a failed concurrent build leaves
an INVALID index: drop it and run the migration again.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-03 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

_INDEX = "ix_request_log_account_created"
_COLUMNS = ["account_id", "livemode", "created_us", "id"]


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(_INDEX, "request_log", _COLUMNS)
        return
    with op.get_context().autocommit_block():
        op.create_index(
            _INDEX, "request_log", _COLUMNS, postgresql_concurrently=True, if_not_exists=True
        )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="request_log")
    op.drop_table("request_log")
