"""``Database.one_row`` on SQLite (GET of one object): reads run on one reader connection the
process holds (``Database._held_read``), not a pool checkout and check-in per read, and the
held connection never serves a stale snapshot nor holds a lock while idle. A read that fails
gives the connection up; the next read takes another. Real SQLite files, no mocks.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from paymux.storage import driver
from paymux.storage.db import Database

_VALUE = driver.Statement("SELECT v FROM t WHERE k = :k")
_BROKEN = driver.Statement("SELECT v FROM no_such_table WHERE k = :k")


async def _set(db: Database, value: int) -> None:
    async with db.write() as s:
        await s.execute(text("UPDATE t SET v = :v WHERE k = 1"), {"v": value})


def test_reads_share_one_held_connection_and_see_each_commit(tmp_path: Path) -> None:
    path = tmp_path / "held.db"

    async def scenario() -> tuple[list[int], int, int, int]:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)"))
                await s.execute(text("INSERT INTO t VALUES (1, 0)"))
            seen = []
            connections = set()
            for value in (10, 20, 30):
                await _set(db, value)  # committed between two reads
                row = await db.one_row(_VALUE, {"k": 1})
                assert row is not None
                seen.append(int(row[0]))
                assert db._held is not None
                connections.add(id(db._held.driver_connection))
            checked_out = db.reader.pool.checkedout()
            # Idle, the held connection holds no read lock: a checkpoint that must wait for
            # every reader (TRUNCATE) finishes at once from another connection.
            other = sqlite3.connect(path, timeout=0)
            try:
                busy = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                other.close()
            return seen, len(connections), checked_out, busy
        finally:
            await db.dispose()

    seen, connections, checked_out, busy = asyncio.run(scenario())
    assert seen == [10, 20, 30]  # each read sees the commit before it
    assert connections == 1  # one connection for every read
    assert checked_out == 1  # that one, held; nothing else out of the pool
    assert busy == 0


def test_a_failed_read_gives_the_held_connection_up(tmp_path: Path) -> None:
    path = tmp_path / "held.db"

    async def scenario() -> tuple[bool, int, int]:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)"))
                await s.execute(text("INSERT INTO t VALUES (1, 7)"))
            assert await db.one_row(_VALUE, {"k": 1}) == (7,)
            first = db._held
            with pytest.raises(Exception, match="no_such_table"):
                await db.one_row(_BROKEN, {"k": 1})
            given_up = db._held is None
            row = await db.one_row(_VALUE, {"k": 1})
            assert row is not None and db._held is not None and db._held is not first
            return given_up, int(row[0]), db.reader.pool.checkedout()
        finally:
            await db.dispose()

    given_up, value, checked_out = asyncio.run(scenario())
    assert given_up
    assert value == 7
    assert checked_out == 1  # the failed one went back invalidated, not left out
