"""``Database.one_row`` (GET of one object, the rate limit's count): a statement alone, on a
pooled PostgreSQL connection checked out WITHOUT the pool's ping (one round trip, not two;
a session's checkout sends its BEGIN as the check instead of a ping),
and still never failing on a connection the server closed while it sat in the pool: the
statement runs again, once, on a good connection. Any other error is raised after one run.
Real PostgreSQL (the session's throwaway cluster), no mocks; the ping is counted by wrapping
the ``SELECT 1`` of the pool's ping in asyncpg's query log. The pool's path, with no
connections kept for reads (``read_connections=0``; those: test_db_kept_readers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from paymux.storage import driver
from paymux.storage.db import Database
from support.pgbackends import terminate_backend
from support.pgcluster import PgCluster

_PID = driver.Statement("SELECT pg_backend_pid()")


@pytest.fixture
def pg_url(pg_cluster: PgCluster | None, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    yield pg_cluster.create_database(f"onerow_{request.node.name[-40:].lower()}")


async def _count_pings(db: Database) -> list[str]:
    """A list that grows by one for each ping (``SELECT 1``) and each BEGIN sent on the
    pool's one connection, from asyncpg's query logger (which sees every query it sends in
    the simple protocol: those two, COMMIT and ROLLBACK)."""
    raw = await db.writer.raw_connection()
    connection = raw.driver_connection
    raw.close()
    sent: list[str] = []

    def logged(query: Any) -> None:
        if query.query == "SELECT 1" or query.query.startswith("BEGIN"):
            sent.append(query.query.split()[0].rstrip(";"))

    connection.add_query_logger(logged)
    return sent


async def _terminate(url: str, pid: int) -> None:
    """End server process ``pid`` from a connection of another engine."""
    other = Database(url, pool_size=1)
    try:
        assert await terminate_backend(other, pid)
    finally:
        await other.dispose()


def test_one_row_sends_no_ping_and_a_session_checks_with_its_begin(pg_url: str) -> None:
    """``one_row``: its statement alone. A session's checkout (``db.read()``, ``write()``):
    its BEGIN is the pool's check, no ``SELECT 1`` before it (``_ping_once``)."""

    async def scenario() -> tuple[list[str], list[str], set[int]]:
        db = Database(pg_url, pool_size=1, read_connections=0)
        try:
            await db.one_row(_PID, {})  # the pool's one connection, made (a new one: no ping)
            sent = await _count_pings(db)
            pids = {int(row[0]) for row in [await db.one_row(_PID, {}) for _ in range(5)] if row}
            by_one_row = list(sent)
            for _ in range(3):
                async with db.read() as s:
                    await s.execute(text("SELECT 1"))
            async with db.write() as s:
                await s.execute(text("SELECT 2"))
            async with db.write() as s:
                await driver.fetch(s, _PID, {})
            return by_one_row, sent[len(by_one_row) :], pids
        finally:
            await db.dispose()

    by_one_row, by_sessions, pids = asyncio.run(scenario())
    assert by_one_row == []
    assert by_sessions == ["BEGIN"] * 5  # one each, and no ping
    assert len(pids) == 1  # one pooled connection, used again each time


def test_one_row_on_a_connection_the_server_closed_runs_on_a_new_one(pg_url: str) -> None:
    async def scenario() -> tuple[int, int, int, int]:
        db = Database(pg_url, pool_size=1, read_connections=0)
        try:
            first = await db.one_row(_PID, {})
            assert first is not None
            await _terminate(pg_url, int(first[0]))
            # The pool's one connection is the terminated one: checked out unpinged.
            again = await db.one_row(_PID, {})
            assert again is not None
            write = await db.one_row(_PID, {}, write=True)
            assert write is not None
            return int(first[0]), int(again[0]), int(write[0]), db.writer.pool.checkedout()
        finally:
            await db.dispose()

    first, again, write, checked_out = asyncio.run(scenario())
    assert again != first  # a new server process, and no error
    assert write == again  # the replacement is pooled and used again
    assert checked_out == 0


def test_one_row_runs_a_failing_statement_once(pg_url: str) -> None:
    """An error of the statement itself (here a division by zero after a sequence's
    ``nextval``) is raised, and the statement ran once: only a closed connection is retried."""

    async def scenario() -> int:
        db = Database(pg_url, pool_size=1, read_connections=0)
        try:
            async with db.write() as s:
                await s.execute(text("CREATE SEQUENCE one_row_runs"))
            failing = driver.Statement("SELECT nextval('one_row_runs') / 0")
            with pytest.raises(DBAPIError, match="division by zero"):
                await db.one_row(failing, {}, write=True)
            async with db.read() as s:
                return int(
                    (await s.execute(text("SELECT last_value FROM one_row_runs"))).scalar_one()
                )
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 1
