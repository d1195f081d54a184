"""jobs: a dedupe key is unique only while its job is queued or running

The UNIQUE constraint on ``jobs.dedupe_key`` held a key forever, so work whose earlier job
had finished or died could never be queued again under the same key. It becomes a partial
unique index over the live jobs (``status IN ('queued', 'running')``), which both SQLite
and PostgreSQL support, and which ``INSERT ... ON CONFLICT (dedupe_key) WHERE ...`` names.

Building the index reads the whole table (PostgreSQL holds a SHARE lock on ``jobs`` while it
does: enqueues wait, about a second per million rows). The downgrade puts the UNIQUE
constraint back; it fails if a key was used again meanwhile (delete the older done or dead
jobs that share a key first).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "status IN ('queued', 'running')"
# SQLite's UNIQUE(dedupe_key) from 0001 has no name; batch mode names it by this convention
# so it can be dropped (PostgreSQL named it jobs_dedupe_key_key).
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _dedupe_constraint_name() -> str:
    for uq in sa.inspect(op.get_bind()).get_unique_constraints("jobs"):
        if uq["column_names"] == ["dedupe_key"]:
            return uq["name"] or "uq_jobs_dedupe_key"
    raise RuntimeError("jobs has no UNIQUE (dedupe_key) constraint to replace")


def upgrade() -> None:
    name = _dedupe_constraint_name()
    with op.batch_alter_table("jobs", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(name, type_="unique")
        batch_op.create_index(
            "ux_jobs_dedupe_key_live",
            ["dedupe_key"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_jobs_dedupe_key_live", sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )
        # The name PostgreSQL gave 0001's unnamed constraint (SQLite's batch mode needs one).
        batch_op.create_unique_constraint("jobs_dedupe_key_key", ["dedupe_key"])
