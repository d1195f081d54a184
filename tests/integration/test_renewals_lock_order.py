"""Two renewals of one customer's subscriptions at once never deadlock on the customer's row
(PostgreSQL; paymux in process, the scripted provider at the connector seam).

CI saw "deadlock detected" on ``SELECT customers ... FOR UPDATE`` with ten subscriptions of one
customer renewed by two workers. Each renewal locks its subscription, inserts the period's
invoice (whose foreign key to the customer takes a KEY SHARE lock on the customer's row), then
finalizes it, locking the customer to apply its balance. With ``FOR UPDATE`` each renewal's
upgrade waited for the other's KEY SHARE: a cycle. The customer is locked ``FOR NO KEY
UPDATE`` now (its key never changes), which a foreign key's KEY SHARE does not block: the two
finalizes queue one after the other.

Deterministic interleaving: each renewal is stopped right before its customer lock (a wrapper
around ``AsyncSession.get`` for the renewals' tasks only) until BOTH have reached it, each
holding its invoice's KEY SHARE; then both go on. Before the fix one of them was aborted by
PostgreSQL's deadlock detector, every time."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.storage.models import Customer
from support.billing_harness import customer_and_price, ok
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
_RENEWAL: contextvars.ContextVar[int | None] = contextvars.ContextVar("renewal", default=None)


@pytest.fixture
def pg(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"renewlock_{next(_names)}")


class Barrier:
    """Holds each renewal at its first customer lock until both are there (10 s at most)."""

    def __init__(self) -> None:
        self.arrived: set[int] = set()
        self.both = asyncio.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = AsyncSession.get
        barrier = self

        async def get(self: AsyncSession, entity: Any, ident: Any, **kw: Any) -> Any:
            who = _RENEWAL.get()
            if who is not None and entity is Customer and kw.get("with_for_update"):
                if who not in barrier.arrived:
                    barrier.arrived.add(who)
                    if len(barrier.arrived) == 2:
                        barrier.both.set()
                    await asyncio.wait_for(barrier.both.wait(), 30)
            return await original(self, entity, ident, **kw)

        monkeypatch.setattr(AsyncSession, "get", get)


def test_two_renewals_of_one_customer_at_once_do_not_deadlock(
    pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with Harness.open(pg, tmp_path) as h:
            cus, price = await customer_and_price(h, 1200)
            subs = [
                await ok(
                    h,
                    "/v1/subscriptions",
                    {"customer": cus, "items": [{"price": price}]},
                )
                for _ in range(2)
            ]
            assert [s["status"] for s in subs] == ["active", "active"]
            ends = await h.sql("select max(current_period_end_us) from subscriptions")
            at = int(ends[0][0]) + 1
            Barrier().install(monkeypatch)

            async def renew(i: int) -> None:
                _RENEWAL.set(i)
                await h.app.subscriptions.run_due(subs[i]["id"], at)

            outcomes = await asyncio.gather(renew(0), renew(1), return_exceptions=True)
            assert outcomes == [None, None]
            rows = await h.sql(
                "select subscription_id, status, amount_paid, number from invoices"
                " where billing_reason = 'subscription_cycle' order by subscription_id"
            )
            assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
                (s["id"], "paid", 1200) for s in subs
            )
            assert len({r[3] for r in rows}) == 2  # each its own number

    asyncio.run(main())
