"""Migration 0013 on a database that already holds data: intents, customers and payment
methods made before it keep every value, and read with no shipping, phone, address or billing
details (null, as Stripe shows an object without them); down and up again keeps them too.
SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command

from conftest import database_url
from paymux.storage.migrate import alembic_config, upgrade
from support.pgcluster import PgCluster
from support.served import run_sql

_SEED = (
    "INSERT INTO accounts (id, name, created_us) VALUES ('acct_a', 'a', 1)",
    "INSERT INTO customers (id, account_id, email, metadata, gateway_refs, deleted, livemode, "
    "balance, created_us, updated_us) VALUES ('cus_1', 'acct_a', 'jo@example.com', '{}', '{}', "
    "false, false, 0, 1, 1)",
    "INSERT INTO payment_methods (id, account_id, customer_id, gateway, token, type, "
    "card_last4, metadata, livemode, created_us) VALUES ('pm_1', 'acct_a', 'cus_1', 'sandbox', "
    "'tok_1', 'card', '4242', '{}', false, 1)",
    "INSERT INTO payment_intents (id, account_id, status, amount, currency, amount_capturable, "
    "amount_received, amount_refunded, amount_refund_pending, capture_method, customer_id, "
    "payment_method_id, off_session, gateway, metadata, confirm_count, livemode, created_us, "
    "updated_us) VALUES ('pi_1', 'acct_a', 'succeeded', 2000, 'USD', 0, 2000, 0, 0, "
    "'automatic', 'cus_1', 'pm_1', false, 'sandbox', '{}', 1, false, 1, 1)",
)
_READ = (
    "SELECT id, amount, status, shipping FROM payment_intents",
    "SELECT id, email, phone, address, shipping FROM customers",
    "SELECT id, card_last4, customer_id, billing_details FROM payment_methods",
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rows_made_before_0013_keep_their_values_and_read_without_contact_details(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"migration_0013_{backend}")
    upgrade(url, "0012")
    run_sql(url, *_SEED)
    upgrade(url, "0013")

    intents, customers, methods = run_sql(url, *_READ)
    assert [tuple(r) for r in intents] == [("pi_1", 2000, "succeeded", None)]
    assert [tuple(r) for r in customers] == [("cus_1", "jo@example.com", None, None, None)]
    assert [tuple(r) for r in methods] == [("pm_1", "4242", "cus_1", None)]

    command.downgrade(alembic_config(url), "0012")
    (kept,) = run_sql(url, "SELECT id, amount FROM payment_intents")
    assert [tuple(r) for r in kept] == [("pi_1", 2000)]
    upgrade(url, "0013")  # and forward again
    (customers,) = run_sql(url, "SELECT id, phone FROM customers")
    assert [tuple(r) for r in customers] == [("cus_1", None)]
