"""jobs: a fencing token per claim, and job ids never reused on SQLite

``jobs.lease_id`` is bumped by every claim; a worker's ``complete`` / ``fail`` / lease
extension takes effect only while the row still carries the worker's id and that number,
so a worker that lost its lease (it stalled past it, another worker claimed the job) cannot
overwrite the new owner's outcome (paymux.jobs.queue). Existing rows start at 0, the
column's server default (a process of the previous version enqueueing during a rolling
upgrade names no lease_id).

On SQLite the table is rebuilt with AUTOINCREMENT: a plain INTEGER PRIMARY KEY hands out
max(id) + 1, so the id of a pruned job (the newest ones, once every job had finished) was
given to the next job, and anything still naming the old job (a log line, an operator's
``paymux jobs retry ID``, a stalled worker) named the new one. The rebuild copies the rows
(the jobs table is locked while it does: small, once finished jobs are pruned);
sqlite_sequence starts at the largest id copied. PostgreSQL's BIGSERIAL never reused ids.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

LIVE = "status IN ('queued', 'running')"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _rebuild_sqlite(autoincrement: bool) -> None:
    """Recreate the SQLite table (with or without AUTOINCREMENT), and its partial unique
    index by name (batch mode's copy of it is not relied upon)."""
    with op.batch_alter_table(
        "jobs", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ) as batch_op:
        batch_op.drop_index("ux_jobs_dedupe_key_live")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.create_index(
            "ux_jobs_dedupe_key_live",
            ["dedupe_key"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_id", sa.BigInteger(), nullable=False, server_default="0")
        )
    if _sqlite():
        _rebuild_sqlite(autoincrement=True)


def downgrade() -> None:
    if _sqlite():
        _rebuild_sqlite(autoincrement=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_id")
