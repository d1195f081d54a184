"""PLACEHOLDER owned by helper F13 this round (a no-op until it is written)

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-03 09:40:00.000000
"""

from __future__ import annotations

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
