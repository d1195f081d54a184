"""Billing: catalog (products, prices, coupons, promotion codes, tax rates), subscriptions and
their items, invoices with lines, items, numbering and credit notes, customer balances, meters
and meter events, test clocks; customers get a balance, a currency and a test clock

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:20:32.842280
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_events",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "livemode", "identifier"),
    )
    with op.batch_alter_table("meter_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_meter_events_usage",
            ["account_id", "livemode", "event_name", "customer_id", "timestamp_us"],
            unique=False,
        )

    op.create_table(
        "coupons",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=True),
        sa.Column("percent_off", sa.String(length=16), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=16), nullable=False),
        sa.Column("duration_in_months", sa.Integer(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("redeem_by_us", sa.BigInteger(), nullable=True),
        sa.Column("applies_to_products", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "id"),
    )
    op.create_table(
        "invoice_sequences",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "livemode"),
    )
    op.create_table(
        "meters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(length=250), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("aggregation", sa.String(length=16), nullable=False),
        sa.Column("customer_mapping_key", sa.String(length=100), nullable=False),
        sa.Column("value_key", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deactivated_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "livemode", "event_name"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("default_price_id", sa.String(length=40), nullable=True),
        sa.Column("unit_label", sa.String(length=12), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(
            "ix_products_account_created", ["account_id", "created_us"], unique=False
        )

    op.create_table(
        "promotion_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("coupon_id", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=True),
        sa.Column("restrictions", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("promotion_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_promotion_codes_account_code", ["account_id", "code"], unique=False
        )

    op.create_table(
        "tax_rates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(length=50), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("percentage", sa.String(length=16), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("state", sa.String(length=50), nullable=True),
        sa.Column("jurisdiction", sa.String(length=50), nullable=True),
        sa.Column("tax_type", sa.String(length=32), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tax_rates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tax_rates_account_created", ["account_id", "created_us"], unique=False
        )

    op.create_table(
        "test_clocks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("frozen_time_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("advancing_to_us", sa.BigInteger(), nullable=True),
        sa.Column("deletes_after_us", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "customer_balance_transactions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("ending_balance", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("credit_note_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=350), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_balance_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_balance_transactions_customer_id"),
            ["customer_id"],
            unique=False,
        )

    op.create_table(
        "invoice_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("subscription_item_id", sa.String(length=40), nullable=True),
        sa.Column("price_id", sa.String(length=40), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("proration", sa.Boolean(), nullable=False),
        sa.Column("discountable", sa.Boolean(), nullable=False),
        sa.Column("tax_rate_ids", sa.JSON(), nullable=True),
        sa.Column("test_clock_id", sa.String(length=40), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoice_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_items_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_invoice_items_invoice_id"), ["invoice_id"], unique=False
        )

    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("period_key", sa.String(length=80), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("collection_method", sa.String(length=24), nullable=False),
        sa.Column("billing_reason", sa.String(length=32), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("total_discount", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("starting_balance", sa.BigInteger(), nullable=False),
        sa.Column("ending_balance", sa.BigInteger(), nullable=True),
        sa.Column("amount_due", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("amount_remaining", sa.BigInteger(), nullable=False),
        sa.Column("discount_amounts", sa.JSON(), nullable=False),
        sa.Column("tax_amounts", sa.JSON(), nullable=False),
        sa.Column("coupon_id", sa.String(length=100), nullable=True),
        sa.Column("default_payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=40), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_payment_attempt_us", sa.BigInteger(), nullable=True),
        sa.Column("due_date_us", sa.BigInteger(), nullable=True),
        sa.Column("auto_advance", sa.Boolean(), nullable=False),
        sa.Column("hosted_token", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("test_clock_id", sa.String(length=40), nullable=True),
        sa.Column("finalized_at_us", sa.BigInteger(), nullable=True),
        sa.Column("paid_at_us", sa.BigInteger(), nullable=True),
        sa.Column("voided_at_us", sa.BigInteger(), nullable=True),
        sa.Column("marked_uncollectible_at_us", sa.BigInteger(), nullable=True),
        sa.Column("paid_out_of_band", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "number"),
        sa.UniqueConstraint("hosted_token"),
        sa.UniqueConstraint("period_key"),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_account_created", ["account_id", "created_us"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_invoices_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invoices_subscription_id"), ["subscription_id"], unique=False
        )

    op.create_table(
        "prices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("billing_scheme", sa.String(length=16), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=True),
        sa.Column("tiers_mode", sa.String(length=16), nullable=True),
        sa.Column("tiers", sa.JSON(), nullable=True),
        sa.Column("recurring_interval", sa.String(length=8), nullable=True),
        sa.Column("recurring_interval_count", sa.Integer(), nullable=True),
        sa.Column("recurring_usage_type", sa.String(length=16), nullable=True),
        sa.Column("recurring_meter_id", sa.String(length=40), nullable=True),
        sa.Column("lookup_key", sa.String(length=200), nullable=True),
        sa.Column("nickname", sa.String(length=250), nullable=True),
        sa.Column("tax_behavior", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "lookup_key"),
    )
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prices_account_created", ["account_id", "created_us"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_prices_product_id"), ["product_id"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("collection_method", sa.String(length=24), nullable=False),
        sa.Column("days_until_due", sa.Integer(), nullable=True),
        sa.Column("default_payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("billing_cycle_anchor_us", sa.BigInteger(), nullable=False),
        sa.Column("start_date_us", sa.BigInteger(), nullable=False),
        sa.Column("current_period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("current_period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("trial_start_us", sa.BigInteger(), nullable=True),
        sa.Column("trial_end_us", sa.BigInteger(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("cancel_at_us", sa.BigInteger(), nullable=True),
        sa.Column("canceled_at_us", sa.BigInteger(), nullable=True),
        sa.Column("ended_at_us", sa.BigInteger(), nullable=True),
        sa.Column("cancellation_details", sa.JSON(), nullable=True),
        sa.Column("pause_collection", sa.JSON(), nullable=True),
        sa.Column("coupon_id", sa.String(length=100), nullable=True),
        sa.Column("promotion_code_id", sa.String(length=40), nullable=True),
        sa.Column("discount_start_us", sa.BigInteger(), nullable=True),
        sa.Column("discount_end_us", sa.BigInteger(), nullable=True),
        sa.Column("default_tax_rate_ids", sa.JSON(), nullable=True),
        sa.Column("latest_invoice_id", sa.String(length=40), nullable=True),
        sa.Column("pending_update", sa.JSON(), nullable=True),
        sa.Column("payment_behavior", sa.String(length=32), nullable=True),
        sa.Column("trial_end_behavior", sa.String(length=16), nullable=True),
        sa.Column("test_clock_id", sa.String(length=40), nullable=True),
        sa.Column("next_due_us", sa.BigInteger(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriptions_account_created", ["account_id", "created_us"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_subscriptions_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index("ix_subscriptions_next_due", ["next_due_us"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subscriptions_test_clock_id"), ["test_clock_id"], unique=False
        )

    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refund_amount", sa.BigInteger(), nullable=False),
        sa.Column("credit_amount", sa.BigInteger(), nullable=False),
        sa.Column("out_of_band_amount", sa.BigInteger(), nullable=False),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("memo", sa.String(length=500), nullable=True),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("voided_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False
        )

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("subscription_item_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_item_id", sa.String(length=40), nullable=True),
        sa.Column("price_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("proration", sa.Boolean(), nullable=False),
        sa.Column("discountable", sa.Boolean(), nullable=False),
        sa.Column("discount_amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amounts", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_lines_invoice_id"), ["invoice_id"], unique=False
        )

    op.create_table(
        "subscription_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("price_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("tax_rate_ids", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["price_id"],
            ["prices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscription_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscription_items_subscription_id"), ["subscription_id"], unique=False
        )

    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invoice_id", sa.String(length=40), nullable=True))

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("test_clock_id", sa.String(length=40), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_customers_test_clock_id"), ["test_clock_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("invoice_id")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_test_clock_id"))
        batch_op.drop_column("test_clock_id")
        batch_op.drop_column("currency")
        batch_op.drop_column("balance")

    with op.batch_alter_table("subscription_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_items_subscription_id"))

    op.drop_table("subscription_items")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_lines_invoice_id"))

    op.drop_table("invoice_lines")
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_notes_invoice_id"))

    op.drop_table("credit_notes")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_test_clock_id"))
        batch_op.drop_index("ix_subscriptions_next_due")
        batch_op.drop_index(batch_op.f("ix_subscriptions_customer_id"))
        batch_op.drop_index("ix_subscriptions_account_created")

    op.drop_table("subscriptions")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prices_product_id"))
        batch_op.drop_index("ix_prices_account_created")

    op.drop_table("prices")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_customer_id"))
        batch_op.drop_index("ix_invoices_account_created")

    op.drop_table("invoices")
    with op.batch_alter_table("invoice_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_items_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_invoice_items_customer_id"))

    op.drop_table("invoice_items")
    with op.batch_alter_table("customer_balance_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_balance_transactions_customer_id"))

    op.drop_table("customer_balance_transactions")
    op.drop_table("test_clocks")
    with op.batch_alter_table("tax_rates", schema=None) as batch_op:
        batch_op.drop_index("ix_tax_rates_account_created")

    op.drop_table("tax_rates")
    with op.batch_alter_table("promotion_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_promotion_codes_account_code")

    op.drop_table("promotion_codes")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index("ix_products_account_created")

    op.drop_table("products")
    op.drop_table("meters")
    op.drop_table("invoice_sequences")
    op.drop_table("coupons")
    with op.batch_alter_table("meter_events", schema=None) as batch_op:
        batch_op.drop_index("ix_meter_events_usage")

    op.drop_table("meter_events")
