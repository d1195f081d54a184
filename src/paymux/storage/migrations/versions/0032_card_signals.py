"""the card's BIN and checks, and the gateways' risk per velocity key (issue 13, helper H13)

- ``payment_methods.card_bin``: the card number's first 6 digits where the gateway says them
  (the sandbox, Square, PayPal; PCI DSS allows keeping them with the last 4);
- ``payment_methods.card_cvc_check``, ``card_address_line1_check``,
  ``card_address_zip_check``: the checks the gateway made when it tokenized or saved the
  card (Stripe's ``card.checks``: pass, fail, unavailable, unchecked);
- ``fraud_velocity_buckets.gateway_risk``: the highest risk level a gateway gave the key's
  attempts settled in the minute (1 normal, 2 elevated, 3 highest), read by the velocity
  statement for ``:gateway_risk_level:``.

Nullable columns without a default: no row changes (on PostgreSQL a catalog change only).

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-03 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

_CARD = [
    ("card_bin", 8),
    ("card_cvc_check", 16),
    ("card_address_line1_check", 16),
    ("card_address_zip_check", 16),
]


def upgrade() -> None:
    for name, length in _CARD:
        op.add_column("payment_methods", sa.Column(name, sa.String(length), nullable=True))
    op.add_column("fraud_velocity_buckets", sa.Column("gateway_risk", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fraud_velocity_buckets") as batch:
        batch.drop_column("gateway_risk")
    with op.batch_alter_table("payment_methods") as batch:
        for name, _length in reversed(_CARD):
            batch.drop_column(name)
