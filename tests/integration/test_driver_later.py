"""``storage.driver.later``: writes held and sent together (issue 10), on a real PostgreSQL,
and at once on SQLite.

On PostgreSQL (``Database`` sets its engine up with ``send_writes_together``) the writes
held by one transaction go to the server as ONE statement, just before the transaction's
next statement (driver, ORM, SAVEPOINT) or its COMMIT; a ROLLBACK, or a ROLLBACK TO
SAVEPOINT, drops them unsent; a second write to a table already held sends the first one
before it (the parts of one statement do not see one another's effects); a held write's
error is raised at the COMMIT and nothing of the block is kept. The statements sent are
seen through ``driver.observe``: one per round trip."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, func, select
from sqlalchemy.exc import IntegrityError

from conftest import migrated_database_url
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.driver import Statement
from support.driver_sql import parts
from support.pgcluster import PgCluster

_names = itertools.count()
_T = TypeVar("_T")

_META = MetaData()
_A = Table(
    "later_a",
    _META,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("doc", JSON),
)
_B = Table(
    "later_b",
    _META,
    Column("id", BigInteger, primary_key=True),
    Column("note", String(40), nullable=False),
)
_INSERT_A = Statement(
    "INSERT INTO later_a (id, name, doc) VALUES (:id, :name, :doc)", binds={"doc": JSON()}
)
_INSERT_B = Statement("INSERT INTO later_b (id, note) VALUES (:id, :note)")
_RENAME_A = Statement("UPDATE later_a SET name = :name WHERE id = :id")
_COUNT_A = Statement("SELECT count(*) FROM later_a")


@pytest.fixture(params=["sqlite", "postgres"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"later_{next(_names)}")


@pytest.fixture
def pg_url(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"later_{next(_names)}")


def _run(coro: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coro

    return asyncio.run(main())


async def _database(url: str, pool_size: int = 10) -> Database:
    db = Database(url, pool_size=pool_size)
    async with db.write() as s:
        await s.run_sync(lambda session: _META.create_all(session.connection()))
    return db


async def _rows(db: Database) -> tuple[dict[int, tuple[str, Any]], dict[int, str]]:
    async with db.read() as s:
        a = {row.id: (row.name, row.doc) for row in await s.execute(select(_A))}
        b = {row.id: row.note for row in await s.execute(select(_B))}
    return a, b


class _Sent:
    """The statements sent on the driver, first words only."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.stop = driver.observe(lambda sql, _took: self.sql.append(" ".join(sql.split())))


def test_held_writes_go_to_postgresql_as_one_statement_at_the_commit(pg_url: str) -> None:
    async def main() -> None:
        db = await _database(pg_url)
        sent = _Sent()
        try:
            async with db.write() as s:
                values = {"id": 1, "name": "first", "doc": {"amount": 2500, "ok": True}}
                await driver.later(s, _INSERT_A, values)
                values["name"] = "changed after the call"  # converted at the call: unsent
                await driver.later(s, _INSERT_B, {"id": 1, "note": "second"})
                assert sent.sql == []  # held: nothing sent yet
            assert len(sent.sql) == 1, sent.sql
            assert sent.sql[0].startswith("WITH w0 AS (INSERT INTO later_a ")
            assert parts(sent.sql[0]) == [_INSERT_A.sql, _INSERT_B.sql]
            assert await _rows(db) == (
                {1: ("first", {"amount": 2500, "ok": True})},
                {1: "second"},
            )
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_held_writes_go_before_the_next_statement_of_any_kind(pg_url: str) -> None:
    async def main() -> None:
        db = await _database(pg_url)
        sent = _Sent()
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_A, {"id": 1, "name": "a", "doc": None})
                assert await driver.fetchrow(s, _COUNT_A) == (1,)  # a driver statement
                await driver.later(s, _INSERT_A, {"id": 2, "name": "b", "doc": None})
                orm_count = (await s.execute(select(func.count()).select_from(_A))).scalar()
                assert orm_count == 2  # an ORM statement
                await driver.later(s, _INSERT_A, {"id": 3, "name": "c", "doc": None})
                with pytest.raises(RuntimeError, match="undone"):
                    async with s.begin_nested():  # the SAVEPOINT sends id 3 before it
                        await driver.later(s, _INSERT_A, {"id": 4, "name": "d", "doc": None})
                        raise RuntimeError("undone")  # ROLLBACK TO SAVEPOINT drops id 4
                assert await driver.fetchrow(s, _COUNT_A) == (3,)
            inserts = [sql for sql in sent.sql if sql.startswith("INSERT INTO later_a")]
            assert len(inserts) == 3, sent.sql  # ids 1, 2, 3; id 4 never sent
            assert sorted((await _rows(db))[0]) == [1, 2, 3]
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_a_second_write_to_a_held_table_sends_the_first_before_it(pg_url: str) -> None:
    """Sent in one statement, the UPDATE would not see the INSERT's row (one snapshot)."""

    async def main() -> None:
        db = await _database(pg_url)
        sent = _Sent()
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_B, {"id": 9, "note": "b"})
                await driver.later(s, _INSERT_A, {"id": 1, "name": "inserted", "doc": None})
                await driver.later(s, _RENAME_A, {"id": 1, "name": "renamed"})
            assert len(sent.sql) == 2, sent.sql
            assert sent.sql[0].startswith("WITH w0 AS (INSERT INTO later_b")
            assert sent.sql[1].startswith("UPDATE later_a")
            assert await _rows(db) == ({1: ("renamed", None)}, {9: "b"})
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_a_rollback_drops_held_writes_and_the_connection_sends_none_later(pg_url: str) -> None:
    async def main() -> None:
        db = await _database(pg_url, pool_size=1)  # the next block gets the same connection
        sent = _Sent()
        try:
            with pytest.raises(RuntimeError, match="rolled back"):
                async with db.write() as s:
                    await driver.later(s, _INSERT_A, {"id": 1, "name": "dropped", "doc": None})
                    await driver.later(s, _INSERT_B, {"id": 1, "note": "dropped"})
                    raise RuntimeError("rolled back")
            async with db.write() as s:
                await driver.later(s, _INSERT_B, {"id": 2, "note": "kept"})
            # Only the second block's write: the first block's were never sent.
            assert sent.sql == ["INSERT INTO later_b (id, note) VALUES (:id, :note)"], sent.sql
            assert await _rows(db) == ({}, {2: "kept"})
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_a_held_writes_error_is_raised_at_the_commit_and_nothing_is_kept(pg_url: str) -> None:
    async def main() -> None:
        db = await _database(pg_url)
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_A, {"id": 1, "name": "first", "doc": None})
            with pytest.raises(IntegrityError):
                async with db.write() as s:
                    await driver.later(s, _INSERT_B, {"id": 7, "note": "not kept"})
                    await driver.later(s, _INSERT_A, {"id": 1, "name": "again", "doc": None})
                    await driver.later(s, _RENAME_A, {"id": 1, "name": "renamed"})
            assert await _rows(db) == ({1: ("first", None)}, {})
            async with db.write() as s:  # the connection is usable again
                await driver.later(s, _INSERT_B, {"id": 8, "note": "after"})
            assert (await _rows(db))[1] == {8: "after"}
        finally:
            await db.dispose()

    _run(main())


def test_sqlite_runs_each_held_write_at_once(url: str) -> None:
    """SQLite has no round trip to save: ``later`` is ``execute``. (Both databases: the
    rows are the same either way.)"""

    async def main() -> None:
        db = await _database(url)
        sent = _Sent()
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_A, {"id": 1, "name": "a", "doc": [1, 2]})
                await driver.later(s, _INSERT_B, {"id": 1, "note": "b"})
                sent_in_block = len(sent.sql)
            assert sent_in_block == (2 if db.is_sqlite else 0), sent.sql
            assert len(sent.sql) == (2 if db.is_sqlite else 1), sent.sql
            assert await _rows(db) == ({1: ("a", [1, 2])}, {1: "b"})
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_later_takes_one_plain_write_only(pg_url: str) -> None:
    assert Statement("INSERT INTO events (id) VALUES (:id)").writes == "events"
    assert Statement("  update payment_intents SET a = :a").writes == "payment_intents"
    assert Statement('DELETE FROM "later_a" WHERE id = :id').writes == "later_a"
    assert Statement("SELECT 1").writes is None
    assert Statement("WITH x AS (SELECT 1) INSERT INTO later_a (id) SELECT 1").writes is None

    async def main() -> None:
        db = await _database(pg_url)
        try:
            with pytest.raises(ValueError, match="INSERT, UPDATE or DELETE"):
                async with db.write() as s:
                    await driver.later(s, _COUNT_A)
        finally:
            await db.dispose()

    _run(main())


def test_driver_writes_in_a_savepoint_block_are_undone_with_it(url: str) -> None:
    """SQLAlchemy sends a ``begin_nested()`` block's SAVEPOINT at the block's first ORM
    statement: a block of driver statements alone gets its SAVEPOINT from the driver, so
    its rollback undoes them (an event reaction's writes, context.emit)."""

    async def main() -> None:
        db = await _database(url)
        try:
            async with db.write() as s:
                await driver.execute(s, _INSERT_B, {"id": 1, "note": "kept"})
                with pytest.raises(RuntimeError, match="undone"):
                    async with s.begin_nested():
                        await driver.execute(s, _INSERT_B, {"id": 2, "note": "undone"})
                        await driver.later(s, _INSERT_A, {"id": 2, "name": "undone", "doc": None})
                        raise RuntimeError("undone")
                async with s.begin_nested():
                    await driver.later(s, _INSERT_A, {"id": 3, "name": "kept", "doc": None})
            assert await _rows(db) == ({3: ("kept", None)}, {1: "kept"})
        finally:
            await db.dispose()

    _run(main())


# ``fetch_with_held``: a SELECT that carries the held writes (PostgreSQL: one round trip).
_JSON_OF_B = Statement(
    "SELECT note, CAST(:doc AS JSON) AS doc FROM later_b WHERE id = :id",
    binds={"doc": JSON()},
    results=(None, JSON()),
    columns=("note", "doc"),
)


def test_a_select_carries_the_held_writes_in_one_statement(pg_url: str) -> None:
    """The held writes are the SELECT's WITHs: one statement, the SELECT's rows typed as
    its own; the SELECT does not see them (one snapshot), and they are kept at the COMMIT."""

    async def main() -> None:
        db = await _database(pg_url)
        async with db.write() as s:
            await driver.execute(s, _INSERT_B, {"id": 7, "note": "there before"})
        sent = _Sent()
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_A, {"id": 1, "name": "held", "doc": {"n": 1}})
                await driver.later(s, _INSERT_B, {"id": 8, "note": "held too"})
                rows = await driver.fetch_with_held(
                    s, _JSON_OF_B, {"id": 8, "doc": {"k": [1, 2]}}, reads=frozenset({"later_c"})
                )
                assert rows == []  # the INSERT of row 8 is not seen by its own statement
                rows = await driver.fetch_with_held(
                    s, _JSON_OF_B, {"id": 7, "doc": {"k": [1, 2]}}, reads=frozenset({"later_c"})
                )
                assert [(r.note, r.doc) for r in rows] == [("there before", {"k": [1, 2]})]
            assert len(sent.sql) == 2, sent.sql  # the first carried both writes; the second alone
            assert parts(sent.sql[0]) == [_INSERT_A.sql, _INSERT_B.sql, _JSON_OF_B.sql]
            assert sent.sql[1] == " ".join(_JSON_OF_B.sql.split())
            a, b = await _rows(db)
            assert a == {1: ("held", {"n": 1})}
            assert b == {7: "there before", 8: "held too"}
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_a_held_write_to_a_table_the_select_reads_is_sent_before_it(pg_url: str) -> None:
    """``reads`` names later_b: the held INSERT into it goes first, alone, so the SELECT
    sees its row."""

    async def main() -> None:
        db = await _database(pg_url)
        sent = _Sent()
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_A, {"id": 1, "name": "held", "doc": None})
                await driver.later(s, _INSERT_B, {"id": 8, "note": "held too"})
                rows = await driver.fetch_with_held(
                    s, _JSON_OF_B, {"id": 8, "doc": None}, reads=frozenset({"later_b"})
                )
                assert [r.note for r in rows] == ["held too"]
            assert len(sent.sql) == 2, sent.sql
            assert parts(sent.sql[0]) == [_INSERT_A.sql, _INSERT_B.sql]
            assert parts(sent.sql[1]) == [" ".join(_JSON_OF_B.sql.split())]
        finally:
            sent.stop()
            await db.dispose()

    _run(main())


def test_a_held_write_carried_by_a_select_raises_there_and_keeps_nothing(pg_url: str) -> None:
    async def main() -> None:
        db = await _database(pg_url)
        async with db.write() as s:
            await driver.execute(s, _INSERT_B, {"id": 7, "note": "there before"})
        try:
            with pytest.raises(IntegrityError):
                async with db.write() as s:
                    await driver.later(s, _INSERT_A, {"id": 1, "name": "held", "doc": None})
                    await driver.later(s, _INSERT_B, {"id": 7, "note": "a duplicate"})
                    await driver.fetch_with_held(
                        s, _JSON_OF_B, {"id": 7, "doc": None}, reads=frozenset()
                    )
            a, b = await _rows(db)
            assert a == {} and b == {7: "there before"}
        finally:
            await db.dispose()

    _run(main())


def test_fetch_with_held_is_fetch_without_held_writes_and_takes_a_select_only(url: str) -> None:
    """SQLite (nothing is ever held) and PostgreSQL with nothing held: a plain fetch. A
    statement other than a SELECT is refused before anything is sent."""

    async def main() -> None:
        db = await _database(url)
        try:
            async with db.write() as s:
                await driver.later(s, _INSERT_B, {"id": 7, "note": "there"})
                with pytest.raises(ValueError, match="one SELECT"):
                    await driver.fetch_with_held(
                        s, _RENAME_A, {"id": 1, "name": "x"}, reads=frozenset()
                    )
                if db.is_sqlite:  # run at once: nothing held
                    rows = await driver.fetch_with_held(
                        s, _JSON_OF_B, {"id": 7, "doc": None}, reads=frozenset()
                    )
                    assert [r.note for r in rows] == ["there"]
                else:
                    with pytest.raises(ValueError, match="one SELECT"):
                        await driver.fetch_with_held(
                            s, _RENAME_A, {"id": 1, "name": "x"}, reads=frozenset()
                        )
                    rows = await driver.fetch_with_held(
                        s, _JSON_OF_B, {"id": 7, "doc": None}, reads=frozenset({"later_b"})
                    )
                    assert [r.note for r in rows] == ["there"]
            async with db.write() as s:
                rows = await driver.fetch_with_held(
                    s, _JSON_OF_B, {"id": 7, "doc": None}, reads=frozenset()
                )
                assert [r.note for r in rows] == ["there"]
        finally:
            await db.dispose()

    _run(main())
