"""Upgrading a database whose subscriptions were made before ``invoice.upcoming`` existed (before
migration 0021): their ``next_due_us`` is the renewal, as that release computed it, so the
scheduler would first look at them at the renewal, too late for the notice (it is never sent
after the renewal). After the upgrade, the worker's first sweep brings ``next_due_us`` forward
to the notice (7 days before the renewal by default), and the notice is sent at its time.
A ``send_invoice`` subscription gets none (Stripe sends it for automatic charges only) and
keeps its due time. SQLite and PostgreSQL; the old rows are written as that release wrote them,
at revision 0020."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import database_url
from paymux.storage.migrate import upgrade
from support.billing import ts
from support.fake_gateway import ScriptedGateway
from support.harness import START_US, Harness
from support.pgcluster import PgCluster

# The harness's wall clock starts on 2027-01-15 08:00 UTC (START_US); the subscriptions'
# period is January, renewing on Feb 1; the notice is due on Jan 25, 00:00 UTC.
P0, P1, NOTICE = ts(2027, 1, 1), ts(2027, 2, 1), ts(2027, 1, 25)
US = 1_000_000


def _seed() -> tuple[str, ...]:
    sub = (
        "INSERT INTO subscriptions (id, account_id, livemode, customer_id, status, currency, "
        "collection_method, days_until_due, billing_cycle_anchor_us, start_date_us, "
        "current_period_start_us, current_period_end_us, cancel_at_period_end, next_due_us, "
        "metadata, created_us, updated_us) VALUES ('{id}', 'acct_old', false, 'cus_old', "
        "'active', 'USD', '{method}', {days}, {p0}, {p0}, {p0}, {p1}, false, {p1}, '{{}}', "
        "{p0}, {p0})"
    )
    item = (
        "INSERT INTO subscription_items (id, account_id, subscription_id, price_id, quantity, "
        "metadata, created_us) VALUES ('si_{id}', 'acct_old', '{id}', 'price_old', 1, '{{}}', "
        "{p0})"
    )
    rows = []
    for sub_id, method, days in (
        ("sub_auto", "charge_automatically", "NULL"),
        ("sub_sent", "send_invoice", "30"),
    ):
        values = {"id": sub_id, "method": method, "days": days, "p0": P0 * US, "p1": P1 * US}
        rows += [sub.format(**values), item.format(**values)]
    return (
        f"INSERT INTO accounts (id, name, created_us) VALUES ('acct_old', 'old', {P0 * US})",
        "INSERT INTO customers (id, account_id, email, metadata, gateway_refs, deleted, "
        f"livemode, balance, created_us, updated_us) VALUES ('cus_old', 'acct_old', "
        f"'old@example.com', '{{}}', '{{}}', false, false, 0, {P0 * US}, {P0 * US})",
        "INSERT INTO products (id, account_id, livemode, name, active, metadata, deleted, "
        f"created_us, updated_us) VALUES ('prod_old', 'acct_old', false, 'Plan', true, '{{}}', "
        f"false, {P0 * US}, {P0 * US})",
        "INSERT INTO prices (id, account_id, livemode, product_id, active, currency, type, "
        "billing_scheme, unit_amount, recurring_interval, recurring_interval_count, "
        "recurring_usage_type, tax_behavior, metadata, created_us, updated_us) VALUES "
        "('price_old', 'acct_old', false, 'prod_old', true, 'USD', 'recurring', 'per_unit', "
        f"1500, 'month', 1, 'licensed', 'unspecified', '{{}}', {P0 * US}, {P0 * US})",
        *rows,
    )


def _run(url: str, *statements: str) -> None:
    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_subscriptions_from_before_the_notice_get_their_first_invoice_upcoming(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    assert START_US < NOTICE * US < P1 * US  # the notice is still to come after the upgrade
    url = database_url(backend, tmp_path, pg_cluster, f"upcoming_upgrade_{backend}")
    upgrade(url, "0020")
    _run(url, *_seed())
    upgrade(url)

    async def main() -> None:
        async with Harness.open(url, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            assert await due(h) == {"sub_auto": P1 * US, "sub_sent": P1 * US}  # as left
            await h.drain()  # the worker's first sweep
            assert await due(h) == {"sub_auto": NOTICE * US, "sub_sent": P1 * US}
            assert await notices(h) == []  # not yet due
            h.advance(NOTICE - START_US // US + 3600)  # Jan 25, 01:00
            await h.drain()
            [(created, preview)] = await notices(h)  # the event's object: the invoice
            assert created == NOTICE * US
            assert preview["subscription"] == "sub_auto"
            assert (preview["period_start"], preview["period_end"]) == (P1, ts(2027, 3, 1))
            assert preview["amount_due"] == 1500
            # Sent once: the next due time is the renewal again.
            assert await due(h) == {"sub_auto": P1 * US, "sub_sent": P1 * US}

    asyncio.run(main())


async def due(h: Harness) -> dict[str, int]:
    rows = await h.sql("select id, next_due_us from subscriptions where account_id = 'acct_old'")
    return {str(i): int(n) for i, n in rows}


async def notices(h: Harness) -> list[tuple[int, dict[str, Any]]]:
    rows = await h.sql(
        "select created_us, data from events where type = 'invoice.upcoming' "
        "and account_id = 'acct_old'"
    )
    return [(int(c), d if isinstance(d, dict) else json.loads(d)) for c, d in rows]
