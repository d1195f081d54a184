"""fraud rules, value lists, decisions, reviews (issue 13)

New tables: fraud_rules (an account's rules), radar_value_lists and radar_value_list_items
(Stripe's value lists), reviews (the review queue), fraud_velocity_buckets (per key and
minute) and fraud_velocity_cards (per key and distinct card): the sliding-window counters
shared by every API process, keyed by digests. One nullable column:
payment_intents.fraud_outcome (the latest decision, shown as the charge's ``outcome``);
adding it is a catalog-only change on PostgreSQL.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fraud_outcome", sa.JSON(), nullable=True))
    op.create_table(
        "fraud_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("predicate", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_fraud_rules_account_created", "fraud_rules", ["account_id", "created_us"], unique=False
    )
    op.create_table(
        "radar_value_lists",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("item_type", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "livemode", "alias", name="uq_radar_value_lists_alias"),
    )
    op.create_index(
        "ix_radar_value_lists_account_created",
        "radar_value_lists",
        ["account_id", "created_us"],
        unique=False,
    )
    op.create_table(
        "radar_value_list_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("value_list_id", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=800), nullable=False),
        sa.Column("match_value", sa.String(length=800), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["value_list_id"], ["radar_value_lists.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("value_list_id", "value", name="uq_radar_value_list_items_value"),
    )
    op.create_index(
        "ix_radar_value_list_items_list_created",
        "radar_value_list_items",
        ["value_list_id", "created_us"],
        unique=False,
    )
    op.create_index(
        "ix_radar_value_list_items_match",
        "radar_value_list_items",
        ["value_list_id", "match_value"],
        unique=False,
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=40), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("opened_reason", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("ip_country", sa.String(length=2), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("closed_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["payment_intent_id"], ["payment_intents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reviews_account_created", "reviews", ["account_id", "created_us"], unique=False
    )
    op.create_index("ix_reviews_payment_intent", "reviews", ["payment_intent_id"], unique=False)
    op.create_table(
        "fraud_velocity_buckets",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("declines", sa.Integer(), nullable=False),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "livemode", "key", "minute"),
    )
    op.create_table(
        "fraud_velocity_cards",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("card", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "livemode", "key", "card"),
    )


def downgrade() -> None:
    op.drop_table("fraud_velocity_cards")
    op.drop_table("fraud_velocity_buckets")
    op.drop_index("ix_reviews_payment_intent", table_name="reviews")
    op.drop_index("ix_reviews_account_created", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_radar_value_list_items_match", table_name="radar_value_list_items")
    op.drop_index("ix_radar_value_list_items_list_created", table_name="radar_value_list_items")
    op.drop_table("radar_value_list_items")
    op.drop_index("ix_radar_value_lists_account_created", table_name="radar_value_lists")
    op.drop_table("radar_value_lists")
    op.drop_index("ix_fraud_rules_account_created", table_name="fraud_rules")
    op.drop_table("fraud_rules")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("fraud_outcome")
