"""Checkouts of PostgreSQL's pooled connections are served in the order they came
(``storage.db``'s ``_HandOff`` queue under the pool).

``asyncio.Queue``, under SQLAlchemy's pool, puts a connection checked in into the queue and
wakes the first waiter; before the waiter runs, the task that checked it in (a request
starting its next transaction) took it again, and the waiter went back to the end of the
line. At 16 clients on 10 connections some payments waited several turns: PostgreSQL's p99
was 115-121 ms, 98 ms of it before the first BEGIN (issue 10; docs/benchmarks.md). Real
PostgreSQL (the session's throwaway cluster), no mocks: the wait is seen in the pool's own
queue (a state, not a time). SQLite's writer keeps SQLAlchemy's queue: handing its one
connection over in turn made fewer payments a second (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from paymux.storage.db import Database
from support.pgcluster import PgCluster


@pytest.fixture
def db_url(request: pytest.FixtureRequest, pg_cluster: PgCluster | None) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    name = request.node.originalname[-40:].lower()  # type: ignore[attr-defined]
    yield pg_cluster.create_database(f"fair_{name}")


def _open(url: str) -> Database:
    # One pooled connection, and a wait for it far longer than the test before an overflow
    # connection (so every checkout here waits for the one connection).
    return Database(url, pool_size=1, overflow_wait=600.0, read_connections=0)


async def _until_waiting(db: Database, waiters: int) -> None:
    """Until ``waiters`` checkouts wait in the write pool's queue."""
    queue: Any = db.writer.sync_engine.pool._pool._queue  # type: ignore[attr-defined]
    for _ in range(100_000):
        if len(queue._getters) >= waiters:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{waiters} checkouts never waited")


async def _write(db: Database, order: list[str], name: str) -> None:
    """A write transaction that notes ``name`` in ``order`` once it has the connection."""
    async with db.write() as s:
        await s.execute(text("SELECT 1"))
        order.append(name)


async def _two_waiting(db: Database, order: list[str], *names: str) -> list[asyncio.Future[None]]:
    """With the pool's one connection out (held here, then checked in), two transactions
    that wait for it, in the order of ``names``: both waiting before it is checked in."""
    waiting = []
    async with db.write() as s:
        await s.execute(text("SELECT 1"))
        for count, name in enumerate(names, start=1):
            waiting.append(asyncio.ensure_future(_write(db, order, name)))
            await _until_waiting(db, count)
    return waiting


def test_a_transaction_started_right_after_a_check_in_waits_behind_those_already_waiting(
    db_url: str,
) -> None:
    async def scenario() -> list[str]:
        db = _open(db_url)
        order: list[str] = []
        try:
            waiting = await _two_waiting(db, order, "first waiter", "second waiter")
            # Checked in; this task asks again at once, before the waiters have run.
            await _write(db, order, "the task that checked it in")
            await asyncio.gather(*waiting)
        finally:
            await db.dispose()
        return order

    assert asyncio.run(scenario()) == [
        "first waiter",
        "second waiter",
        "the task that checked it in",
    ]


def test_a_waiter_cancelled_after_it_was_handed_the_connection_passes_it_on(db_url: str) -> None:
    async def scenario() -> tuple[list[str], int]:
        db = _open(db_url)
        order: list[str] = []
        try:
            cancelled, after = await _two_waiting(db, order, "cancelled", "after")
            # Handed to the first waiter at the check-in above; cancelled before it ran.
            cancelled.cancel()
            await asyncio.wait_for(after, 30)
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            # Nothing lost: the connection is back in the pool, free for the next.
            await _write(db, order, "next")
            checked_out = db.writer.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await db.dispose()
        return order, checked_out

    order, checked_out = asyncio.run(scenario())
    assert order == ["after", "next"]
    assert checked_out == 0
