"""PostgreSQL: ``Database.one_row``'s reads on connections kept outside the pool
(``PAYMUX_DB_READ_CONNECTIONS``, issue 10's GET of one object). Real PostgreSQL (the
session's throwaway cluster), no mocks.

- Reads one after another use one kept connection; concurrent reads open at most
  ``read_connections`` kept ones, and the pool never counts them (it keeps its size for
  transactions).
- A kept connection the server closed is never an error: the read runs on the pool, the
  dead connection is dropped, and a later read keeps a new one.
- A statement's own error is raised once and ends its kept connection.
- ``read_connections=0``: nothing kept. ``dispose()`` closes what is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from paymux.config import Settings
from paymux.root import Paymux
from paymux.storage import driver
from paymux.storage.db import Database
from support.pgbackends import terminate_backend
from support.pgcluster import PgCluster

_PID = driver.Statement("SELECT pg_backend_pid()")
_SLOW_PID = driver.Statement("SELECT pg_backend_pid() FROM pg_sleep(0.05)")


@pytest.fixture
def pg_url(pg_cluster: PgCluster | None, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    yield pg_cluster.create_database(f"kept_{request.node.name[-40:].lower()}")


async def _pid(db: Database, statement: driver.Statement = _PID) -> int:
    row = await db.one_row(statement, {})
    assert row is not None
    return int(row[0])


async def _sessions(url: str) -> set[int]:
    """The server processes connected to the database, seen from another engine."""
    other = Database(url, pool_size=1, read_connections=0)
    try:
        async with other.read() as s:
            rows = await s.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return {int(pid) for pid in rows.scalars()}
    finally:
        await other.dispose()


def test_reads_run_on_kept_connections_that_the_pool_does_not_count(pg_url: str) -> None:
    async def scenario() -> None:
        db = Database(pg_url, pool_size=1, read_connections=3)
        try:
            one_after_another = {await _pid(db) for _ in range(5)}
            assert len(one_after_another) == 1  # one kept connection, used again
            together = await asyncio.gather(*(_pid(db, _SLOW_PID) for _ in range(6)))
            # Three kept at most; the other reads ran on the pool (one connection, one
            # overflow: pool_size=1).
            assert db._kept == 3 and len(db._idle) == 3
            assert one_after_another <= set(together)
            assert db.writer.pool.checkedout() == 0  # the kept ones are not the pool's
            # The pool still has its size for transactions: two at once, beside them.
            async with db.write() as a, db.write() as b:
                await a.execute(text("SELECT 1"))
                await b.execute(text("SELECT 1"))
                assert db.writer.pool.checkedout() == 2
            kept = {held.driver_connection.get_server_pid() for held in db._idle}
            assert len(kept) == 3 and kept <= set(together) and kept <= await _sessions(pg_url)
        finally:
            await db.dispose()
        assert await _sessions(pg_url) == set()  # dispose() closed the kept ones too

    asyncio.run(scenario())


def test_a_kept_connection_the_server_closed_is_dropped_and_never_an_error(
    pg_url: str,
) -> None:
    async def scenario() -> None:
        db = Database(pg_url, pool_size=1, read_connections=1)
        try:
            first = await _pid(db)
            other = Database(pg_url, pool_size=1, read_connections=0)
            try:
                assert await terminate_backend(other, first)
            finally:
                await other.dispose()
            again = await _pid(db)  # the kept one is found closed: read on the pool
            assert again != first
            assert db._kept == 0 and db._idle == []
            later = await _pid(db)  # a new one kept
            assert later != first and db._kept == 1
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_failing_read_is_raised_once_and_ends_its_kept_connection(pg_url: str) -> None:
    async def scenario() -> None:
        db = Database(pg_url, pool_size=1, read_connections=1)
        try:
            async with db.write() as s:
                await s.execute(text("CREATE SEQUENCE kept_runs"))
            first = await _pid(db)
            failing = driver.Statement("SELECT nextval('kept_runs') / 0")
            with pytest.raises(DBAPIError, match="division by zero"):
                await db.one_row(failing, {})
            assert db._kept == 0
            async with db.read() as s:
                runs = (await s.execute(text("SELECT last_value FROM kept_runs"))).scalar_one()
            assert runs == 1  # ran once: an error of the statement is not retried
            assert await _pid(db) != first  # a new connection kept
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_none_kept_with_zero_and_the_setting_is_read(pg_url: str) -> None:
    async def scenario() -> None:
        db = Database(pg_url, pool_size=1, read_connections=0)
        try:
            pids = {await _pid(db) for _ in range(3)}
            assert db._kept == 0 and db._idle == []
            assert db.writer.pool.checkedin() == 1  # each read checked the pool's one out
            assert len(pids) == 1
        finally:
            await db.dispose()

    asyncio.run(scenario())
    assert Settings().db_read_connections == 5
    settings = Settings(database_url=pg_url, db_read_connections=2)
    assert Paymux(settings).ctx.db._read_connections == 2
