"""The invoice preview (``POST /v1/invoices/create_preview``, ``GET /v1/invoices/upcoming``) is a
read: it locks nothing and writes nothing, so it answers while another transaction holds what a
write would wait for. On SQLite another connection holds the database's one write lock
(``BEGIN IMMEDIATE``); on PostgreSQL another transaction holds the subscription's and the
customer's rows (``FOR UPDATE``). The subscription has a downgrade pending for its period end,
which the preview shows (and used to apply in a rolled-back savepoint of a write transaction).
Expected amounts are the prices below: 3000 now, 1000 from the next period."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import migrated_database_url
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[tuple[str, str, Path]]:
    name = f"preview_{next(_names)}"
    url = migrated_database_url(request.param, tmp_path, pg_cluster, name)
    yield request.param, url, tmp_path / f"{name}.db"


async def ok(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await h.post(path, body)
    assert r.status_code == 200, r.text
    return h.body(r)


async def downgraded_subscription(h: Harness) -> tuple[str, str]:
    """(customer, subscription): a monthly subscription at 3000 with a downgrade to 1000
    asked for its period end (still pending)."""
    cus = await ok(h, "/v1/customers", {"email": "preview@example.com"})
    pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
    await ok(
        h, f"/v1/customers/{cus['id']}", {"invoice_settings": {"default_payment_method": pm["id"]}}
    )
    product = await ok(h, "/v1/products", {"name": "Plan"})
    prices = [
        await ok(
            h,
            "/v1/prices",
            {
                "product": product["id"],
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": "month"},
            },
        )
        for amount in (3000, 1000)
    ]
    sub = await ok(
        h, "/v1/subscriptions", {"customer": cus["id"], "items": [{"price": prices[0]["id"]}]}
    )
    assert sub["status"] == "active"
    item = sub["items"]["data"][0]["id"]
    await ok(
        h,
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"id": item, "price": prices[1]["id"]}], "paymux_apply_at": "period_end"},
    )
    return cus["id"], sub["id"]


async def without_waiting(
    backend: str, url: str, call: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """Run ``call``; on PostgreSQL, fail as soon as any backend of the database waits for a
    lock (a preview that locks would wait for the test's own holder for ever). On SQLite a
    write would wait for the lock until its timeout and fail then."""
    task = asyncio.ensure_future(call())
    if backend == "postgres":
        engine = create_async_engine(url)
        try:
            while not task.done():
                async with engine.connect() as conn:
                    waiting = (
                        await conn.execute(
                            text(
                                "select count(*) from pg_locks l join pg_stat_activity a "
                                "on a.pid = l.pid where not l.granted "
                                "and a.datname = current_database()"
                            )
                        )
                    ).scalar_one()
                if waiting:
                    task.cancel()
                    raise AssertionError("the preview waits for a lock")
                await asyncio.sleep(0.01)
        finally:
            await engine.dispose()
    return await task


def test_the_preview_is_a_read(db: tuple[str, str, Path], tmp_path: Path) -> None:
    backend, url, sqlite_file = db

    async def main() -> None:
        async with Harness.open(url, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            cus, sub = await downgraded_subscription(h)
            before = await h.sql(
                "select count(*), max(updated_us) from invoices where customer_id = :c", c=cus
            )
            if backend == "sqlite":
                holder = sqlite3.connect(sqlite_file, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")  # the one write lock, held by another
                release: Callable[[], Awaitable[None]] | None = None
            else:
                engine = create_async_engine(url)
                conn = await engine.connect()
                await conn.execute(
                    text("select id from subscriptions where id = :s for update"), {"s": sub}
                )
                await conn.execute(
                    text("select id from customers where id = :c for update"), {"c": cus}
                )

                async def release() -> None:
                    await conn.rollback()
                    await conn.close()
                    await engine.dispose()

            try:
                by_sub = await without_waiting(
                    backend,
                    url,
                    lambda: h.post("/v1/invoices/create_preview", {"subscription": sub}),
                )
                by_customer = await without_waiting(
                    backend, url, lambda: h.http.get(f"/v1/invoices/upcoming?customer={cus}")
                )
            finally:
                if backend == "sqlite":
                    holder.rollback()
                    holder.close()
                else:
                    assert release is not None
                    await release()
            for r in (by_sub, by_customer):
                assert r.status_code == 200, r.text
                preview = h.body(r)
                assert preview["subscription"] == sub
                assert [line["amount"] for line in preview["lines"]["data"]] == [1000]
                assert (preview["subtotal"], preview["total"], preview["amount_due"]) == (
                    1000,
                    1000,
                    1000,
                )
            assert h.body(by_customer)["id"] is None
            # Nothing was written: the same invoices, the downgrade still pending, the items
            # as they were.
            after = await h.sql(
                "select count(*), max(updated_us) from invoices where customer_id = :c", c=cus
            )
            assert after == before
            now = await h.get(f"/v1/subscriptions/{sub}")
            assert [i["price"]["unit_amount"] for i in now["items"]["data"]] == [3000]
            assert now["pending_update"] is not None

    asyncio.run(main())
