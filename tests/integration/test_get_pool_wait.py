"""The PostgreSQL pool (``storage.db``): a checkout that finds every pooled connection out
waits for one to come back (up to ``overflow_wait``) before it opens an overflow connection,
which the next check-in would close again. Under a GET load with more requests in flight
than the pool holds, every such checkout opened a new connection (a server process, its
set-up queries, its statements prepared again): hundreds a second (issue 10). When none
comes back in time, the overflow connection is still opened, so code that holds one
connection while it asks for another goes on. Real PostgreSQL (the session's throwaway
cluster), no mocks; connections counted by the pool's ``connect`` event. The reads here
use the pool: no connections kept for reads (``read_connections=0``; test_db_kept_readers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from paymux.storage import driver
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_PID = driver.Statement("SELECT pg_backend_pid()")


@pytest.fixture
def pg_url(pg_cluster: PgCluster | None, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    yield pg_cluster.create_database(f"poolwait_{request.node.name[-40:].lower()}")


def _count_connects(db: Database) -> list[int]:
    connects: list[int] = []

    def connected(*_: Any) -> None:
        connects.append(1)

    event.listen(db.writer.sync_engine.pool, "connect", connected)
    return connects


def test_a_checkout_waits_for_the_pooled_connection_instead_of_opening_another(
    pg_url: str,
) -> None:
    async def scenario() -> tuple[int, int, bool, int]:
        # One pooled connection (and one overflow allowed); a wait far longer than the test.
        db = Database(pg_url, pool_size=1, overflow_wait=600.0, read_connections=0)
        try:
            first = await db.one_row(_PID, {})
            assert first is not None
            connects = _count_connects(db)
            queue: Any = db.writer.sync_engine.pool._pool._queue  # type: ignore[attr-defined]
            async with db.read() as s:
                await s.execute(text("SELECT 1"))  # the pool's one connection is out
                read = asyncio.ensure_future(db.one_row(_PID, {}))
                # Until the read waits for a connection, or has one (a state, not a time).
                for _ in range(100_000):
                    if read.done() or queue._getters:
                        break
                    await asyncio.sleep(0.001)
                waited = bool(queue._getters)
            second = await read
            assert second is not None
            return int(first[0]), int(second[0]), waited, len(connects)
        finally:
            await db.dispose()

    first, second, waited, connects = asyncio.run(scenario())
    assert waited  # it waited in the pool's queue
    assert connects == 0  # no connection was opened for it
    assert second == first  # it got the pooled connection once the session gave it back


def test_when_none_comes_back_the_overflow_connection_is_opened(pg_url: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        db = Database(pg_url, pool_size=1, overflow_wait=0.05, read_connections=0)
        try:
            connects = _count_connects(db)
            async with db.read() as s:
                held = int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                # The session keeps its connection: the read opens the overflow one.
                other = await db.one_row(_PID, {})
                assert other is not None
            return held, int(other[0]), len(connects)
        finally:
            await db.dispose()

    held, other, connects = asyncio.run(scenario())
    assert other != held
    assert connects == 2  # the session's, then the overflow one
