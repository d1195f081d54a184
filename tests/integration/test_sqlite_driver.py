"""The inline SQLite driver (``paymux.storage.sqlite_inline``) that ``Database`` uses for
``sqlite+aiosqlite://`` URLs: sqlite3 calls run on the event loop, so waiting for another
process's write lock must not block the loop, errors must roll back, and values must come
back as they went in.

No timing assertions: loop responsiveness is shown by counting the ticks another coroutine
makes while our write waits for a lock held by a second process.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from paymux.storage import sqlite_inline
from paymux.storage.db import Database

TICKS = 200

# A second process that takes the write lock, inserts a row, and commits when told to.
HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO t(v) VALUES ('theirs')")
print("locked", flush=True)
sys.stdin.readline()
c.execute("COMMIT")
print("committed", flush=True)
sys.stdin.readline()
"""


def url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def make_table(db: Database) -> None:
    async with db.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v)"))


async def values(db: Database) -> list[Any]:
    async with db.read() as s:
        return [r[0] for r in (await s.execute(text("SELECT v FROM t ORDER BY id"))).all()]


async def insert(db: Database, value: Any) -> None:
    async with db.write() as s:
        await s.execute(text("INSERT INTO t(v) VALUES (:v)"), {"v": value})


class Holder:
    """Another process holding SQLite's write lock on ``path`` until :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def commit(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("commit\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "committed"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_public_url_runs_on_the_inline_driver_and_sqlite_never_sleeps(tmp_path: Path) -> None:
    """SQLite's busy handler would sleep on the loop's thread: its timeout must be 0 (the
    driver waits for locks with asyncio.sleep instead, see the tests below)."""

    async def main() -> list[Any]:
        db = Database(url_for(tmp_path / "a.db"))
        try:
            async with db.write() as s:
                writer = (await s.execute(text("PRAGMA busy_timeout"))).scalar()
            async with db.read() as s:
                reader = (await s.execute(text("PRAGMA busy_timeout"))).scalar()
            return [db.writer.dialect.driver, db.reader.dialect.driver, writer, reader]
        finally:
            await db.dispose()

    assert asyncio.run(main()) == ["paymux", "paymux", 0, 0]


def test_write_waits_for_another_process_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"

    async def main() -> tuple[int, bool, list[Any]]:
        db = Database(url_for(path))
        await make_table(db)
        holder = Holder(path)
        try:
            write = asyncio.create_task(insert(db, "ours"))
            ticks = 0
            while ticks < TICKS:  # the loop keeps running other coroutines meanwhile
                await asyncio.sleep(0)
                ticks += 1
            pending_while_locked = not write.done()
            holder.commit()
            await write
            return ticks, pending_while_locked, await values(db)
        finally:
            holder.close()
            await db.dispose()

    ticks, pending_while_locked, rows = asyncio.run(main())
    assert ticks == TICKS
    assert pending_while_locked
    # Ours committed after theirs: it waited for the other process's transaction.
    assert rows == ["theirs", "ours"]


def test_reads_do_not_wait_for_another_process_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"

    async def main() -> tuple[list[Any], list[Any]]:
        db = Database(url_for(path))
        await make_table(db)
        await insert(db, "before")
        holder = Holder(path)
        try:
            during = await values(db)  # WAL: the committed snapshot, no lock wait
            holder.commit()
            return during, await values(db)
        finally:
            holder.close()
            await db.dispose()

    during, after = asyncio.run(main())
    assert during == ["before"]
    assert after == ["before", "theirs"]


def test_lock_wait_gives_up_with_database_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "LOCK_TIMEOUT", 0.05)
    path = tmp_path / "timeout.db"

    async def main() -> list[Any]:
        db = Database(url_for(path))
        await make_table(db)
        holder = Holder(path)
        try:
            with pytest.raises(OperationalError, match="database is locked"):
                await insert(db, "ours")
            holder.commit()
            await insert(db, "later")  # the writer connection is usable again
            return await values(db)
        finally:
            holder.close()
            await db.dispose()

    assert asyncio.run(main()) == ["theirs", "later"]


def test_cancelled_lock_wait_leaves_the_writer_usable(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"

    async def main() -> list[Any]:
        db = Database(url_for(path))
        await make_table(db)
        holder = Holder(path)
        try:
            write = asyncio.create_task(insert(db, "cancelled"))
            for _ in range(TICKS):
                await asyncio.sleep(0)
            assert not write.done()
            write.cancel()
            with pytest.raises(asyncio.CancelledError):
                await write
            holder.commit()
            await insert(db, "ours")
            return await values(db)
        finally:
            holder.close()
            await db.dispose()

    assert asyncio.run(main()) == ["theirs", "ours"]


def test_statement_error_rolls_back_the_transaction(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        db = Database(url_for(tmp_path / "rollback.db"))
        try:
            await make_table(db)
            await insert(db, "kept")
            with pytest.raises(IntegrityError):
                async with db.write() as s:
                    await s.execute(text("INSERT INTO t(id, v) VALUES (2, 'undone')"))
                    await s.execute(text("INSERT INTO t(id, v) VALUES (1, 'duplicate')"))
            await insert(db, "after")
            return await values(db)
        finally:
            await db.dispose()

    assert asyncio.run(main()) == ["kept", "after"]


def test_values_round_trip(tmp_path: Path) -> None:
    sent: list[Any] = [
        2**40,
        2**63 - 1,
        -(2**63),
        None,
        "h\u00e9llo \u2713 \u65e5\u672c \U0001f600",
        "",
        b"\x00\xff\x10binary",
        1.5,
    ]

    async def main() -> tuple[list[Any], list[str]]:
        db = Database(url_for(tmp_path / "types.db"))
        try:
            await make_table(db)
            for value in sent:
                await insert(db, value)
            async with db.read() as s:
                result = await s.execute(text("SELECT typeof(v) FROM t ORDER BY id"))
            # Read after the transaction ended: the rows were fetched with the statement.
            kinds = [r[0] for r in result.all()]
            return await values(db), kinds
        finally:
            await db.dispose()

    got, kinds = asyncio.run(main())
    assert got == [
        1099511627776,
        9223372036854775807,
        -9223372036854775808,
        None,
        "h\u00e9llo \u2713 \u65e5\u672c \U0001f600",
        "",
        b"\x00\xff\x10binary",
        1.5,
    ]
    assert kinds == ["integer", "integer", "integer", "null", "text", "text", "blob", "real"]


def test_wal_is_checkpointed_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint (inside a COMMIT, on the loop) is off; every CHECKPOINT_EVERY
    write commits one runs in a thread, which copies the WAL into the database file."""
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 2)
    path = tmp_path / "ckpt.db"
    blob = bytes(range(256)) * 64  # 16 KiB: several pages per commit

    async def main() -> tuple[int, int, int, int]:
        db = Database(url_for(path))
        try:
            await make_table(db)  # changes no row: not a write commit that counts
            async with db.read() as s:
                autocheckpoint = (await s.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
            await insert(db, blob)  # write commit 1
            size_before = path.stat().st_size  # nothing copied into the file yet
            await insert(db, blob)  # 2: a checkpoint starts in a thread
            for _ in range(2000):
                if path.stat().st_size > size_before:
                    break
                await asyncio.sleep(0.005)
            return int(autocheckpoint or 0), size_before, path.stat().st_size, len(blob)
        finally:
            await db.dispose()

    autocheckpoint, before, after, n = asyncio.run(main())
    assert autocheckpoint == 0
    assert after >= before + 2 * n  # both rows' pages are now in the database file
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (2,)


def _cursor_references(conn: sqlite3.Connection) -> int:
    """How many weak references to cursors ``conn`` keeps (CPython's sqlite3 holds them in a
    list of its own, one per cursor made from it, the dead ones dropped now and then)."""
    lists = [r for r in gc.get_referents(conn) if isinstance(r, list)]
    return max(
        (len(r) for r in lists if r and all(isinstance(x, weakref.ref) for x in r)), default=0
    )


def test_statements_leave_no_cursor_references_behind(tmp_path: Path) -> None:
    """The driver's statements (``execute_async``, every ``storage/driver.py`` statement on
    SQLite) keep the connection's list of cursor references bounded: sqlite3 prunes its dead
    ones only when a cursor is made through ``Connection.cursor``. A cursor constructed
    directly (``sqlite3.Cursor(conn)``, as it was) left one per statement for the life of the
    connection: the SQLite server's memory grew by about 1 MiB per 10,000 payments (issue 10)."""
    conn = sqlite3.connect(tmp_path / "cursors.db", factory=sqlite_inline.InlineConnection)

    async def main() -> list[int]:
        counts = []
        for _ in range(5):
            for _ in range(1_000):
                cursor = await sqlite_inline.execute_async(conn, "SELECT ?", (1,))
                assert cursor.fetchall() == [(1,)]
                del cursor
            counts.append(_cursor_references(conn))
        return counts

    try:
        counts = asyncio.run(main())
    finally:
        conn.close()
    # sqlite3 drops the dead references every 200 cursors: never more than about that many,
    # after 1,000 statements as after 5,000 (it was 1,000, 2,000, ... 5,000); and never none
    # (the last statement's is there still): the list looked at is the one that holds them.
    assert all(0 < count <= 201 for count in counts), counts
