"""PLACEHOLDER owned by helper B11 this round (a no-op until it is written)

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-03 09:40:00.000000
"""

from __future__ import annotations

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
