"""The SQLite checkpoint that holds the process's one writer connection
(``sqlite_inline._checkpoint_in_turn``) runs its steps on threads of its own, and a disposed
database leaves no checkpoint behind.

1. While it holds the writer connection, its step must not queue behind the application's
   other thread work (the loop's default executor: password hashing, invoice PDFs): every
   write of the process would wait for that work. Here the default executor is filled by
   blockers the moment the checkpoint's first copy ends, and a write must go through while
   they still block.
2. ``Database.dispose`` lets a pending checkpoint end first: else it checks a connection out
   of the disposed pool afterwards, one nothing closes.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from paymux.storage import sqlite_inline
from paymux.storage.db import Database

BLOCKERS = 2


@pytest.fixture
def checkpoint_at_every_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write's commit starts a checkpoint, and each checkpoint takes the writer."""
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(sqlite_inline, "WAL_REWIND_FRAMES", 0)


async def _table(db: Database) -> None:
    async with db.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))


async def _insert(db: Database) -> None:
    async with db.write() as s:
        await s.execute(text("INSERT INTO t DEFAULT VALUES"))


@pytest.mark.usefixtures("checkpoint_at_every_commit")
def test_a_checkpoint_holding_the_writer_does_not_wait_for_the_default_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()  # the blockers hold the default executor until it is set
    started = threading.Semaphore(0)
    real = sqlite_inline._passive
    copies = 0

    async def main() -> None:
        nonlocal copies
        loop = asyncio.get_running_loop()
        default = ThreadPoolExecutor(max_workers=BLOCKERS)
        loop.set_default_executor(default)

        def block() -> None:
            started.release()
            gate.wait()

        def passive(path: str, uri: bool) -> int:
            nonlocal copies
            copies += 1
            frames = real(path, uri)
            if copies == 1:  # the first copy (outside the writer) is done: fill the executor
                for _ in range(BLOCKERS):
                    loop.call_soon_threadsafe(loop.run_in_executor, None, block)
                for _ in range(BLOCKERS):
                    started.acquire()
            return frames

        monkeypatch.setattr(sqlite_inline, "_passive", passive)
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        try:
            await _table(db)
            await _insert(db)  # its commit (a row written) starts the checkpoint
            for _ in range(3000):  # the second copy is the one made holding the writer
                if copies >= 2:
                    break
                await asyncio.sleep(0.01)
            assert copies >= 2
            # A write while every default-executor thread is blocked: it must not wait for
            # them (the bound only keeps a failing run from hanging the suite).
            await asyncio.wait_for(_insert(db), timeout=30)
            assert not gate.is_set()
            async with db.read() as s:
                assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
        finally:
            gate.set()
            await db.dispose()
            default.shutdown(wait=True)

    asyncio.run(main())
    assert copies >= 2


@pytest.mark.usefixtures("checkpoint_at_every_commit")
def test_dispose_leaves_no_checkpoint_and_no_connection_behind(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        await _table(db)
        await _insert(db)  # its commit starts a checkpoint that will want the writer
        loop = asyncio.get_running_loop()
        await db.dispose()
        pending = [t for t in sqlite_inline._checkpoint_tasks if t.get_loop() is loop]
        assert [t for t in pending if not t.done()] == []
        for _ in range(50):  # any task still alive would now check a connection out
            await asyncio.sleep(0.01)
        pool = db.writer.sync_engine.pool
        assert pool.checkedin() == 0 and pool.checkedout() == 0, pool.status()

    asyncio.run(main())
