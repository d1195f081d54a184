"""Pooled PostgreSQL connections (``paymux.storage.db``): a connection the server closed
while it sat in the pool (what a restart or an administrator's ``pg_terminate_backend`` does)
is replaced before anyone uses it (``pool_pre_ping``), so the next transaction runs on a new
server process instead of failing; a one-statement read in autocommit leaves the connection
transactional. Real PostgreSQL (the session's throwaway cluster), no mocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from paymux.storage.db import Database
from support.pgbackends import terminate_backend
from support.pgcluster import PgCluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster | None, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    yield pg_cluster.create_database(f"checkout_{request.node.name[-40:].lower()}")


async def _backend_pid(db: Database) -> int:
    async with db.read() as s:
        return int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def test_a_pooled_connection_the_server_closed_is_replaced_before_use(pg_url: str) -> None:
    async def scenario() -> tuple[int, bool, int, int]:
        db = Database(pg_url, pool_size=2)
        try:
            # Two connections in the pool: the second one terminates the first.
            async with db.read() as a, db.read() as b:
                first = int((await a.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                await b.execute(text("SELECT 1"))
            ended = await terminate_backend(db, first)
            # Every pooled connection is used again; none fails with "connection is closed".
            pids = []
            for _ in range(3):
                pids.append(await _backend_pid(db))
            async with db.write() as s:
                await s.execute(text("CREATE TABLE IF NOT EXISTS t (v int)"))
                await s.execute(text("INSERT INTO t VALUES (1)"))
            async with db.read() as s:
                rows = int((await s.execute(text("SELECT count(*) FROM t"))).scalar_one())
            return first, ended, len({p for p in pids if p == first}), rows
        finally:
            await db.dispose()

    first, ended, reused, rows = asyncio.run(scenario())
    assert ended, f"pg_terminate_backend({first}) did not end it"
    assert reused == 0  # never the terminated server process again
    assert rows == 1


def test_a_one_statement_read_in_autocommit_leaves_the_next_transaction_atomic(
    pg_url: str,
) -> None:
    """``single_reader`` (GET of one object) runs its SELECT without BEGIN and ROLLBACK; the
    connection goes back to the pool transactional: a write transaction on it after that
    still rolls back whole."""

    async def scenario() -> tuple[bool, int]:
        db = Database(pg_url, pool_size=1)  # one connection: the read's is the write's
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE t (v int)"))
            async with db.single_reader.connect() as conn:
                # No transaction block around the statements (PostgreSQL refuses a SAVEPOINT
                # outside one).
                try:
                    await conn.execute(text("SAVEPOINT probe"))
                    alone = False
                except DBAPIError as exc:
                    alone = "transaction blocks" in str(exc)
            try:
                async with db.write() as s:
                    await s.execute(text("INSERT INTO t VALUES (1)"))
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            async with db.read() as s:
                rows = int((await s.execute(text("SELECT count(*) FROM t"))).scalar_one())
            return alone, rows
        finally:
            await db.dispose()

    alone, rows = asyncio.run(scenario())
    assert alone
    assert rows == 0  # in autocommit still, the INSERT would have stayed
