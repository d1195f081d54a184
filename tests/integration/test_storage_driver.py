"""Statements on the driver (storage/driver.py) inside our transactions, on SQLite and a real
PostgreSQL: a driver write and an ORM write of one ``Database.write()`` block commit together
and roll back together (the driver statement first, so on PostgreSQL it is the one that
begins the transaction); values round-trip with the same Python values and types as the ORM
reads them (int, str, bool, datetime with a time zone, JSON and JSONB, NULL); a unique
violation is ``sqlalchemy.exc.IntegrityError``, as on the ORM path; the driver refuses to
run outside a transaction; and on SQLite another connection's lock is waited out on the loop
(a write block's ``BEGIN IMMEDIATE`` waits, then the driver statement runs in it; a
statement right after a deferred BEGIN retries as the inline driver's cursor does)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import sqlite3
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.storage import driver, sqlite_inline
from paymux.storage.db import Database
from paymux.storage.driver import Statement
from paymux.storage.models import Account
from support.keys import random_token
from support.pgcluster import PgCluster

_names = itertools.count()
_T = TypeVar("_T")

_META = MetaData()
_SAMPLES = Table(
    "driver_samples",
    _META,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("at", DateTime(timezone=True)),
    Column("doc", JSON),
    Column("docb", JSON().with_variant(JSONB(), "postgresql")),
    Column("note", String(40)),
)
_COLUMN_TYPES = [column.type for column in _SAMPLES.columns]
_INSERT_SAMPLE = Statement(
    "INSERT INTO driver_samples (id, name, flag, at, doc, docb, note) "
    "VALUES (:id, :name, :flag, :at, :doc, :docb, :note)",
    binds={
        "flag": Boolean(),
        "at": DateTime(timezone=True),
        "doc": JSON(),
        "docb": _SAMPLES.c.docb.type,
    },
)
_READ_SAMPLE = Statement(
    "SELECT id, name, flag, at, doc, docb, note FROM driver_samples WHERE id = :id",
    results=_COLUMN_TYPES,
)
_INSERT_NAMED = Statement("INSERT INTO driver_samples (id, name, flag) VALUES (:id, :name, :flag)")
_COUNT = Statement("SELECT count(*) FROM driver_samples WHERE name = :name")
_AT = dt.datetime(2026, 12, 3, 16, 5, 7, 123456, tzinfo=dt.UTC)
_DOC = {"amount": 2500, "currency": "usd", "nested": {"list": [1, "two", None], "ok": True}}


@pytest.fixture(params=["sqlite", "postgres"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"drv_{next(_names)}")


def _run(coro: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coro

    return asyncio.run(main())


async def _database(url: str) -> Database:
    db = Database(url)
    async with db.write() as s:
        await s.run_sync(lambda session: _META.create_all(session.connection()))
    return db


async def _names_of(db: Database) -> tuple[set[str], set[str]]:
    """The samples' names and the accounts' ids, read by the ORM in a new transaction."""
    async with db.read() as s:
        samples = set((await s.execute(select(_SAMPLES.c.name))).scalars())
        accounts = set((await s.execute(select(Account.id))).scalars())
    return samples, accounts


def test_a_driver_write_and_an_orm_write_commit_together_and_roll_back_together(
    url: str,
) -> None:
    async def main() -> None:
        db = await _database(url)
        kept, dropped = random_token("acct_kept_"), random_token("acct_dropped_")
        try:
            async with db.write() as s:  # the driver's statement first: it begins
                assert (
                    await driver.execute(s, _INSERT_NAMED, {"id": 1, "name": kept, "flag": True})
                    == 1
                )
                s.add(Account(id=kept, name="kept", created_us=1))
                await s.flush()
                # Each side sees the other's write: one transaction on one connection.
                assert await driver.fetchrow(s, _COUNT, {"name": kept}) == (1,)
                assert (await s.execute(select(_SAMPLES.c.id))).scalars().all() == [1]
            with pytest.raises(RuntimeError, match="rolled back"):
                async with db.write() as s:
                    await driver.execute(s, _INSERT_NAMED, {"id": 2, "name": dropped, "flag": True})
                    s.add(Account(id=dropped, name="dropped", created_us=1))
                    await s.flush()
                    raise RuntimeError("rolled back")
            samples, accounts = await _names_of(db)
            assert samples == {kept}
            assert kept in accounts and dropped not in accounts
        finally:
            await db.dispose()

    _run(main())


def test_values_round_trip_with_the_types_the_orm_reads(url: str) -> None:
    async def main() -> None:
        db = await _database(url)
        full = {
            "id": 7,
            "name": "ünïcode name",
            "flag": True,
            "at": _AT,
            "doc": _DOC,
            "docb": {"k": ["v", 2]},
            "note": "a note",
        }
        empty = {
            "id": 8,
            "name": "nulls",
            "flag": False,
            "at": None,
            "doc": None,
            "docb": None,
            "note": None,
        }
        try:
            async with db.write() as s:
                await driver.execute(s, _INSERT_SAMPLE, full)  # written by the driver
                await s.execute(insert(_SAMPLES), [empty])  # written by the ORM (Core)
            async with db.read() as s:
                orm = {
                    row[0]: tuple(row)
                    for row in (await s.execute(select(_SAMPLES).order_by(_SAMPLES.c.id)))
                }
                drv = {i: await driver.fetchrow(s, _READ_SAMPLE, {"id": i}) for i in (7, 8)}
                assert await driver.fetchrow(s, _READ_SAMPLE, {"id": 9}) is None
            assert drv == orm
            for i in (7, 8):
                assert [type(v) for v in drv[i] or ()] == [type(v) for v in orm[i]]
            # Stated by hand: what was written comes back (SQLite keeps no time zone: the
            # ORM reads the UTC wall time back naive there, and so does the driver).
            row = drv[7]
            assert row is not None
            at = row[3]
            assert isinstance(at, dt.datetime)
            assert at.replace(tzinfo=dt.UTC) == _AT if db.is_sqlite else at == _AT
            assert row[:3] == (7, "ünïcode name", True)
            assert row[4:] == (_DOC, {"k": ["v", 2]}, "a note")
            assert drv[8] == (8, "nulls", False, None, None, None, None)
        finally:
            await db.dispose()

    _run(main())


def test_a_unique_violation_is_sqlalchemys_integrity_error(url: str) -> None:
    async def main() -> None:
        db = await _database(url)
        try:
            with pytest.raises(IntegrityError) as raised:
                async with db.write() as s:
                    await driver.execute(s, _INSERT_NAMED, {"id": 3, "name": "a", "flag": True})
                    await driver.execute(s, _INSERT_NAMED, {"id": 3, "name": "b", "flag": True})
            assert "driver_samples" in str(raised.value)
            samples, _ = await _names_of(db)
            assert samples == set()  # the block rolled back whole
            # The connection serves the next transaction.
            async with db.write() as s:
                await driver.execute(s, _INSERT_NAMED, {"id": 3, "name": "c", "flag": False})
            assert (await _names_of(db))[0] == {"c"}
        finally:
            await db.dispose()

    _run(main())


def test_the_driver_refuses_to_run_outside_a_transaction(url: str) -> None:
    async def main() -> None:
        db = Database(url)
        try:
            async with AsyncSession(db.writer) as s:
                with pytest.raises(RuntimeError, match="inside a transaction"):
                    await driver.fetch(s, _COUNT, {"name": "x"})
            async with AsyncSession(db.single_reader) as s, s.begin():
                with pytest.raises(RuntimeError, match="autocommit"):
                    await driver.fetch(s, Statement("SELECT 1"))
            async with db.read() as s:  # a parameter not given is an error of ours
                with pytest.raises(ValueError, match="name"):
                    await driver.fetch(s, _COUNT, {})
        finally:
            await db.dispose()

    _run(main())


def test_statements_render_parameters_once_for_both_drivers() -> None:
    st = Statement(
        "SELECT :a, CAST(:b AS BIGINT[]), x::text, ':not' || \"q:x\", :a FROM t WHERE y = :b"
    )
    assert st.names == ("a", "b")
    assert st.postgres == (
        "SELECT $1, CAST($2 AS BIGINT[]), x::text, ':not' || \"q:x\", $1 FROM t WHERE y = $2"
    )
    assert st.sqlite == (
        "SELECT ?1, CAST(?2 AS BIGINT[]), x::text, ':not' || \"q:x\", ?1 FROM t WHERE y = ?2"
    )
    with pytest.raises(ValueError, match="binds"):
        Statement("SELECT :a", binds={"b": JSON()})


def test_sqlite_a_write_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    """Another process's write lock (here another connection: SQLite's locks are the same):
    the write block's ``BEGIN IMMEDIATE`` waits for it on the loop; the driver statement
    inside the block then holds the lock and never meets SQLITE_BUSY."""
    url = migrated_database_url("sqlite", tmp_path, None, "drv_busy")

    async def main() -> None:
        db = await _database(url)
        other = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        started = asyncio.Event()

        async def write() -> None:
            started.set()
            async with db.write() as s:
                await driver.execute(s, _INSERT_NAMED, {"id": 5, "name": "mine", "flag": True})

        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO driver_samples (id, name, flag) VALUES (4, 'theirs', 0)")
            task = asyncio.create_task(write())
            await started.wait()
            assert not task.done()  # it cannot finish while the other connection writes
            other.execute("COMMIT")
            await task
            assert (await _names_of(db))[0] == {"theirs", "mine"}
        finally:
            other.close()
            await db.dispose()

    _run(main())


def test_sqlite_the_statement_after_a_deferred_begin_waits_on_the_loop(tmp_path: Path) -> None:
    """SQLITE_BUSY on the first statement after a deferred BEGIN (no lock held yet: SQLite's
    busy handler would retry it) is retried after ``asyncio.sleep``, as the inline driver's
    cursor retries it, and the loop keeps running meanwhile. A connection in exclusive
    locking mode is what makes a WAL reader meet it."""
    path = str(tmp_path / "drv_deferred.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.execute("INSERT INTO t VALUES (1)")
    setup.close()

    async def main() -> None:
        holder = sqlite3.connect(path, isolation_level=None, timeout=0)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO t VALUES (2)")
        holder.execute("COMMIT")  # exclusive mode: the lock stays until the connection closes
        conn = sqlite_inline._InlineDBAPI().connect(path)
        conn.execute("BEGIN")
        assert conn.lockless
        started = asyncio.Event()

        async def read() -> list[Any]:
            started.set()
            cursor = await sqlite_inline.execute_async(conn, "SELECT count(*) FROM t")
            return cursor.fetchall()

        try:
            task = asyncio.create_task(read())
            await started.wait()
            # The first try ran before the task first awaited: it met the lock and waits.
            assert not task.done()
            holder.close()
            assert await task == [(2,)]
            assert not conn.lockless
        finally:
            holder.close()
            conn.close()

    _run(main())


_CORE_READ = (
    select(_SAMPLES.c.id, _SAMPLES.c.name, _SAMPLES.c.flag, _SAMPLES.c.doc, _SAMPLES.c.docb)
    .where(_SAMPLES.c.id == bindparam("sample_id"), _SAMPLES.c.flag.is_(True))
    .add_columns(_SAMPLES.c.note.label("the_note"))
)
_CORE_STATEMENT = Statement.of(_CORE_READ)


def test_a_core_select_on_the_driver_reads_what_core_reads_outside_a_transaction(
    url: str,
) -> None:
    """``Statement.of`` (a Core select rendered once per driver) and ``first_row`` (one
    statement, no transaction: ``Database.first_row`` on the driver) give the Core row's
    names, values and types; the pool's connection goes back and serves the next read."""

    async def main() -> None:
        db = await _database(url)
        try:
            async with db.write() as s:
                await driver.execute(
                    s,
                    _INSERT_SAMPLE,
                    {
                        "id": 11,
                        "name": "n",
                        "flag": True,
                        "at": _AT,
                        "doc": _DOC,
                        "docb": [1, 2],
                        "note": None,
                    },
                )
                await driver.execute(s, _INSERT_NAMED, {"id": 12, "name": "off", "flag": False})
            for _ in range(3):  # more reads than a SQLite writer pool has connections
                core = await db.first_row(_CORE_READ, {"sample_id": 11})
                row = await driver.first_row(db.reader, _CORE_STATEMENT, {"sample_id": 11})
                assert core is not None and row is not None
                assert tuple(row) == tuple(core) == (11, "n", True, _DOC, [1, 2], None)
                assert [type(v) for v in row] == [type(v) for v in core]
                assert row._fields == core._fields  # type: ignore[attr-defined]
                assert row.the_note is None and row.doc == _DOC  # type: ignore[attr-defined]
            # The flag's clause as each dialect renders it: the unflagged row is not read.
            assert await driver.first_row(db.reader, _CORE_STATEMENT, {"sample_id": 12}) is None
            with pytest.raises(IntegrityError):  # an error invalidates, the pool carries on
                await driver.first_row(
                    db.reader,
                    Statement("INSERT INTO driver_samples (id, name, flag) VALUES (11, 'x', :f)"),
                    {"f": True},
                )
            assert await driver.first_row(db.reader, _CORE_STATEMENT, {"sample_id": 11})
        finally:
            await db.dispose()

    _run(main())
