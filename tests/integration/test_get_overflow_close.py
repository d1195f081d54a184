"""A one-statement read (``storage.driver.first_row``, the GET of one object) on PostgreSQL
returns its connection to the pool properly when the pool keeps no more: an overflow
connection is closed, its server process ends, and nothing is logged as an error. Under
a GET load with more requests in flight than the pool holds, ``pooled.close()`` called
outside SQLAlchemy's greenlet failed (``MissingGreenlet``, logged as "Exception closing
connection" with its traceback) and left the connection open, its server process alive, for
every overflow connection. Real PostgreSQL (the session's throwaway cluster), no mocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from paymux.storage import driver
from paymux.storage.db import Database
from support.pgcluster import PgCluster

LOCK = 4_242_001  # an advisory lock the test holds while both reads wait for it
_WAIT = driver.Statement("SELECT pg_advisory_lock_shared(:k), pg_advisory_unlock_shared(:k)")
_OTHERS = driver.Statement(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()"
)


@pytest.fixture
def pg_url(pg_cluster: PgCluster | None, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    yield pg_cluster.create_database(f"get_{request.node.name[-40:].lower()}")


def test_an_overflow_connection_of_a_one_statement_read_is_closed(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[int, int]:
        # pool_size=1: one pooled connection plus one in overflow (max_overflow = pool_size).
        db = Database(pg_url, pool_size=1)
        holder = Database(pg_url, pool_size=1)
        try:
            async with holder.write() as s:
                await s.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK})
                # Two reads at once: each waits on the lock, so both connections are out.
                reads = [
                    asyncio.ensure_future(driver.first_row(db.reader, _WAIT, {"k": LOCK}))
                    for _ in range(2)
                ]
                # Both are waiting on the server (not a timing: a state); 30 s at most.
                for _ in range(3000):
                    waiting = (
                        await s.execute(
                            text(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND NOT granted"
                            )
                        )
                    ).scalar_one()
                    if waiting == 2:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"the two reads never both waited: {waiting} did")
                await s.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK})
            await asyncio.gather(*reads)
            async with holder.read() as s:
                for _ in range(500):  # the closed connection's server process goes away
                    left = (await driver.fetchrow(s, _OTHERS) or (0,))[0]
                    if left <= 1:
                        break
                    await asyncio.sleep(0.01)
            return int(left), cast(QueuePool, db.reader.sync_engine.pool).checkedout()
        finally:
            await db.dispose()
            await holder.dispose()

    with caplog.at_level(logging.ERROR):
        left, checked_out = asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []  # no "Exception closing connection"
    assert checked_out == 0
    assert left == 1  # db's pooled connection; its overflow one was closed
