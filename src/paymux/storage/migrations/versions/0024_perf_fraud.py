"""Issue 10/13: the payment hot path and the fraud decision in the attempt's transaction.

A deliberate no-op, kept so the revision chain stays as it was reserved: the change needs
no schema change. The velocity counters (``fraud_velocity_buckets``, ``fraud_velocity_cards``),
the rules and the intents' ``fraud_outcome`` are 0019's; the decision, its reservation and
the attempt now share one transaction and read the intent under its row lock, which are
code changes only (services/payments.py, fraud/decisions.py, fraud/velocity.py).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 17:40:00.000000
"""

from __future__ import annotations

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
