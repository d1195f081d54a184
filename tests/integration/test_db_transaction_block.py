"""``Database.write()`` and ``read()`` (storage/db.py ``_transaction``): the block's
transaction is committed when it ends, in one greenlet call with the connection's return to
the pool (issue 10), and on any error, a cancellation included, rolled back with the
connection returned: nothing of the block is kept and the pool does not leak. SQLite and
PostgreSQL, real databases."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from conftest import migrated_database_url
from paymux.storage import driver
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_names = itertools.count()
_INSERT = driver.Statement("INSERT INTO tx_block (id) VALUES (:id)")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"txblock_{next(_names)}")


async def _rows(db: Database) -> list[str]:
    async with db.read() as s:
        return [r[0] for r in (await s.execute(text("SELECT id FROM tx_block ORDER BY id")))]


def _out(db: Database) -> int:
    """Connections checked out of the writer's pool now."""
    return int(db.writer.pool.checkedout())  # type: ignore[attr-defined]


def test_a_block_commits_once_and_gives_its_connection_back(db_url: str) -> None:
    async def main() -> tuple[list[str], list[str], int]:
        db = Database(db_url)
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE tx_block (id TEXT PRIMARY KEY)"))
            seen: list[str] = []

            def commit(conn: Any) -> None:
                seen.append("commit")

            def checkin(dbapi_connection: Any, record: Any) -> None:
                seen.append("checkin")

            real_commit = driver.commit_lean

            async def lean_commit(c: Any) -> None:  # PostgreSQL's (storage/db.py _LeanSession)
                seen.append("commit")
                await real_commit(c)

            event.listen(db.writer.sync_engine, "commit", commit)
            event.listen(db.writer.sync_engine.pool, "checkin", checkin)
            driver.commit_lean = lean_commit  # type: ignore[assignment]
            try:
                async with db.write() as s:
                    await driver.execute(s, _INSERT, {"id": "a"})
                    await driver.later(s, _INSERT, {"id": "b"})  # held: sent before the COMMIT
            finally:
                driver.commit_lean = real_commit  # type: ignore[assignment]
            event.remove(db.writer.sync_engine, "commit", commit)
            event.remove(db.writer.sync_engine.pool, "checkin", checkin)
            return await _rows(db), seen, _out(db)
        finally:
            await db.dispose()

    rows, seen, out = asyncio.run(main())
    assert rows == ["a", "b"]
    assert seen == ["commit", "checkin"]
    assert out == 0


def test_an_error_in_the_block_keeps_nothing_and_gives_the_connection_back(
    db_url: str,
) -> None:
    async def main() -> tuple[list[str], int, int]:
        db = Database(db_url)
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE tx_block (id TEXT PRIMARY KEY)"))
            with pytest.raises(ValueError, match="the block's own"):
                async with db.write() as s:
                    await driver.execute(s, _INSERT, {"id": "a"})
                    await driver.later(s, _INSERT, {"id": "b"})
                    raise ValueError("the block's own")
            out = _out(db)
            # An error of the COMMIT itself (a held write's constraint) as well.
            with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
                async with db.write() as s:
                    await driver.execute(s, _INSERT, {"id": "c"})
                    await driver.later(s, _INSERT, {"id": "c"})
            return await _rows(db), out, _out(db)
        finally:
            await db.dispose()

    rows, out, after = asyncio.run(main())
    assert rows == []
    assert out == 0 and after == 0


@pytest.mark.parametrize("orm", [False, True], ids=["driver-only", "orm-too"])
def test_a_cancelled_block_keeps_nothing_and_gives_the_connection_back(
    db_url: str, orm: bool
) -> None:
    """``orm``: the block also runs an ORM statement and holds a write (on PostgreSQL its
    lean transaction is made an ORM session: storage/db.py ``_LeanSession``)."""

    async def main() -> tuple[list[str], int, bool]:
        db = Database(db_url)
        try:
            async with db.write() as s:
                await s.execute(text("CREATE TABLE tx_block (id TEXT PRIMARY KEY)"))
            inside = asyncio.Event()

            async def block() -> None:
                async with db.write() as s:
                    await driver.execute(s, _INSERT, {"id": "a"})
                    if orm:
                        await s.execute(text("INSERT INTO tx_block (id) VALUES ('b')"))
                        await driver.later(s, _INSERT, {"id": "c"})
                    inside.set()
                    await asyncio.sleep(30)

            task = asyncio.create_task(block())
            await inside.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            out = _out(db)
            # The connection came back usable: the next block commits on it.
            async with db.write() as s:
                await driver.execute(s, _INSERT, {"id": "z"})
            return await _rows(db), out, task.cancelled()
        finally:
            await db.dispose()

    rows, out, cancelled = asyncio.run(main())
    assert cancelled
    assert out == 0
    assert rows == ["z"]


def test_a_read_block_gives_its_connection_back(db_url: str) -> None:
    async def main() -> tuple[int, int]:
        db = Database(db_url)
        try:
            async with db.read() as s:
                one = (await s.execute(text("SELECT 1"))).scalar_one()
            return int(one), int(db.reader.pool.checkedout())  # type: ignore[attr-defined]
        finally:
            await db.dispose()

    assert asyncio.run(main()) == (1, 0)
