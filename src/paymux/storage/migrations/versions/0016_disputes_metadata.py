"""disputes metadata (issue 9): a dispute's metadata, as every other object has it

Stripe lets metadata be set on a dispute (``POST /v1/disputes/{id}``) in any state. Rows
recorded before this revision get an empty object.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("metadata", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_column("metadata")
