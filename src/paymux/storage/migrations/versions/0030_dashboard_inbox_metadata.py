"""the dashboard's inbox by account and its metadata search (issue 15, helper H5)

- ``webhook_inbox``: ``ix_webhook_inbox_account`` (account_id, status, received_us) and
  ``ix_webhook_inbox_account_received`` (account_id, received_us): the Webhooks page reads
  one account's inbox rows, by status or not, newest first, in SQL (it read the latest 500
  rows of every account and filtered them in Python, so an account with older events saw
  none);
- ``payment_intents.metadata``: on PostgreSQL ``jsonb`` (it was ``json``), with the GIN index
  ``ix_payment_intents_metadata`` (``jsonb_path_ops``): the payments search by a metadata
  pair asks ``metadata @> '{"key": "value"}'``, which the index answers (it read the whole
  table: 3.6 s with 1,000,000 payments). On SQLite the column stays JSON and the index is a
  partial index of no row (``WHERE 0``): the schema matches the models on both engines.

On PostgreSQL the indexes are built ``CONCURRENTLY`` (outside the migration's transaction):
writes go on while they build. The column's change of type rewrites ``payment_intents``
under an exclusive lock (reads and writes of payments wait for it: docs/dashboard.md
"Upgrading"). A failed concurrent build leaves an INVALID index: drop it and run the
migration again.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-03 04:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_NO_ROW = sa.text("0")
_INBOX = (
    ("ix_webhook_inbox_account", ["account_id", "status", "received_us"]),
    ("ix_webhook_inbox_account_received", ["account_id", "received_us"]),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name, columns in _INBOX:
            op.create_index(name, "webhook_inbox", columns)
        op.create_index(
            "ix_payment_intents_metadata", "payment_intents", ["metadata"], sqlite_where=_NO_ROW
        )
        return
    op.alter_column(
        "payment_intents",
        "metadata",
        type_=postgresql.JSONB(),
        existing_type=sa.JSON(),
        postgresql_using="metadata::jsonb",
    )
    with op.get_context().autocommit_block():
        for name, columns in _INBOX:
            op.create_index(
                name, "webhook_inbox", columns, postgresql_concurrently=True, if_not_exists=True
            )
        op.create_index(
            "ix_payment_intents_metadata",
            "payment_intents",
            ["metadata"],
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_payment_intents_metadata", table_name="payment_intents")
    for name, _ in reversed(_INBOX):
        op.drop_index(name, table_name="webhook_inbox")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "payment_intents",
            "metadata",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(),
            postgresql_using="metadata::json",
        )
