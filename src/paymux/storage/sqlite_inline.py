"""SQLite for the async engine with the sqlite3 calls made inline on the event loop.

Why: with aiosqlite every cursor call (BEGIN, execute, fetch, close, COMMIT) is a round trip
to a worker thread and back, and the issue-10 profile of a payment on SQLite spent about 60 %
of its CPU on that hand-off (aiosqlite's thread waking on its queue 34 %, the event loop
waking for each result 25 %), against 15 % in SQLite itself. On a local WAL file our
statements (small, indexed) take microseconds, less than the hand-off, so this driver runs
them directly on the loop.

What could make the loop wait, and what happens instead:

* Another process's write lock (the API server and ``paymux worker`` may share one file).
  Connections run with ``busy_timeout`` 0, so SQLite answers SQLITE_BUSY at once instead of
  sleeping in its busy handler; the statement is then retried after ``asyncio.sleep`` with
  SQLite's own back-off schedule (1, 2, 5 ... 100 ms), for up to :data:`LOCK_TIMEOUT` (30 s,
  the busy timeout used before), so the loop keeps serving while we wait. This process's own
  writers never get there: they queue for the one writer connection (``db.py``).
  A statement is retried only where SQLite's busy handler would have retried it: outside a
  transaction (``BEGIN IMMEDIATE``, the connection's pragmas), as the first statement after a
  deferred ``BEGIN`` (no lock held yet), and ``COMMIT``. Elsewhere SQLITE_BUSY means a
  deadlock or a stale snapshot that waiting cannot fix, and it is raised at once.
* WAL checkpoints. SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses
  1,000 WAL pages and writes and fsyncs about 4 MB (about 15 ms here). It is turned off on
  these connections; every :data:`CHECKPOINT_EVERY` write commits a PASSIVE checkpoint runs
  in a thread on a connection of its own (passive: it never waits for, nor blocks, readers
  or writers); now and then a second one copies the last pages while this process's
  writers wait in the pool for their one connection (the engine's ``writer_slot``), so
  that the WAL rewinds: see :func:`_checkpoint_in_turn` for why (a 20 - 90 ms stall of the
  API every few seconds otherwise).
* Closing a connection can checkpoint and delete the WAL (the last one to close); that
  happens on pool disposal at shutdown, and is left inline.

A statement that scans a large table would still hold the loop for its duration: the schema's
queries are by key or index, and that is what keeps this safe.

The dialect is registered as ``sqlite+paymux``; ``Database`` maps the public
``sqlite+aiosqlite://`` URLs to it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, Final, TypeVar

from greenlet import getcurrent  # type: ignore[import-untyped]
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.util import concurrency

__all__ = [
    "CHECKPOINT_EVERY",
    "DRIVER",
    "LOCK_TIMEOUT",
    "TRUNCATE_WAIT",
    "WAL_REWIND_FRAMES",
    "WAL_TRUNCATE_FRAMES",
    "InlineConnection",
    "InlineCursor",
    "SQLiteDialect_paymux",
    "WriterSlot",
    "checkpoint_in_background",
    "execute_async",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

WriterSlot = Callable[[], AbstractAsyncContextManager[object]]
"""Holds this process's one writer connection while entered (``db.py``: its pool's checkout)."""

DRIVER = "paymux"
LOCK_TIMEOUT = 30.0
"""Seconds a statement waits for another connection's lock before "database is locked"."""
CHECKPOINT_EVERY = 200
"""Write commits between two background checkpoints (a few pages each: about 1,000 pages)."""
WAL_REWIND_FRAMES = 8192
"""WAL frames (pages: 32 MiB at 4 KiB) past which a background checkpoint, holding this
process's writer connection, copies the rest so that the next write rewinds the WAL
(:func:`_checkpoint_in_turn`)."""
WAL_TRUNCATE_FRAMES = 32768
"""WAL frames (128 MiB) past which a checkpoint also empties the WAL (a TRUNCATE checkpoint:
the bound when rewinds keep failing, and the only one where no writer connection is known)."""
TRUNCATE_WAIT = 0.05
"""Seconds that emptying the WAL waits for readers to leave it (writers wait meanwhile)."""

# sqlite3's own ``Connection.cursor`` (``InlineConnection.cursor`` makes InlineCursors).
_PLAIN_CURSOR = sqlite3.Connection.cursor
# sqlite3's own busy handler schedule (sqliteDefaultBusyCallback), in seconds.
_DELAYS = (0.001, 0.002, 0.005, 0.010, 0.015, 0.020, 0.025, 0.025, 0.025, 0.050, 0.050, 0.100)
_SQLITE_BUSY = 5
_SQLITE_BUSY_RECOVERY = 261  # another connection is recovering the WAL index: transient
_DEFERRED_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION"})

# What sqlite3 binds: a sequence or a mapping of values (typed as its own stubs allow).
_Params = Any


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (_SQLITE_BUSY, _SQLITE_BUSY_RECOVERY)


class _Done(Awaitable[None]):
    """An awaitable that is already complete: awaiting it does not enter the event loop."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


def _mark_async(conn: InlineConnection) -> None:
    """Switch to the awaiting side once per SQLAlchemy greenlet call, at no loop cost.

    ``AsyncConnection.execute`` (and ``exec_driver_sql``, ``stream``) raise AwaitRequired
    when the driver never awaited during the call, which an inline driver would not do;
    AsyncSession does not check. One switch per call (not per statement: a call's BEGIN and
    its statement share it) costs a couple of microseconds.
    """
    current = getcurrent()
    if current is not conn.greenlet_seen and getattr(
        current, "__sqlalchemy_greenlet_provider__", False
    ):
        conn.greenlet_seen = current
        concurrency.await_(_DONE)


def _sleep(seconds: float) -> None:
    """Sleep without blocking the loop when called from SQLAlchemy's async greenlet."""
    if concurrency.in_greenlet():
        concurrency.await_(asyncio.sleep(seconds))
    else:  # plain sync use of the connection (no loop to keep responsive)
        time.sleep(seconds)


def _wait_for_lock(error: sqlite3.OperationalError, attempt: Callable[[], _T]) -> _T:
    """Retry ``attempt`` (which failed with SQLITE_BUSY) until the lock is free."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    for n in itertools.count():
        delay = _DELAYS[min(n, len(_DELAYS) - 1)]
        if time.monotonic() + delay > deadline:
            break
        _sleep(delay)
        try:
            return attempt()
        except sqlite3.OperationalError as again:
            if not _is_busy(again):
                raise
            error = again
    raise error


async def execute_async(
    conn: InlineConnection, sql: str, parameters: _Params = ()
) -> sqlite3.Cursor:
    """Run ``sql`` on ``conn`` from a coroutine (``storage/driver.py``: no SQLAlchemy greenlet)
    with :class:`InlineCursor`'s lock rules, the waits awaited on the loop
    (``asyncio.sleep``, SQLite's back-off schedule, up to :data:`LOCK_TIMEOUT`). A plain
    sqlite3 cursor is returned with its rows unread (read them before the next await)."""
    in_tx = conn.in_transaction
    # Through the connection's own ``cursor()`` (sqlite3's, with a plain cursor), never
    # ``sqlite3.Cursor(conn)``: the connection keeps a weak reference to each cursor made
    # from it and drops the dead ones only in ``cursor()`` (every 200th call, CPython's
    # ``_pysqlite_drop_unused_cursor_references``), so a cursor constructed directly left
    # one dead reference behind per statement for the life of the connection: the SQLite
    # server's memory grew by about 1 MiB per 10,000 payments (issue 10, bench/memory.py).
    cursor = _PLAIN_CURSOR(conn, sqlite3.Cursor)
    try:
        cursor.execute(sql, parameters)
    except sqlite3.OperationalError as error:
        if not (_is_busy(error) and (not in_tx or conn.lockless)):
            raise
        await _wait_async(error, partial(cursor.execute, sql, parameters))
    conn.lockless = False  # the statement after a deferred BEGIN took its snapshot
    return cursor


async def _wait_async(error: sqlite3.OperationalError, attempt: Callable[[], object]) -> None:
    """``_wait_for_lock`` from a coroutine: retry ``attempt`` until the lock is free."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    for n in itertools.count():
        delay = _DELAYS[min(n, len(_DELAYS) - 1)]
        if time.monotonic() + delay > deadline:
            break
        await asyncio.sleep(delay)
        try:
            attempt()
            return
        except sqlite3.OperationalError as again:
            if not _is_busy(again):
                raise
            error = again
    raise error


class InlineCursor(sqlite3.Cursor):
    """sqlite3's cursor with the lock waits, and rows read in full at ``execute``.

    Reading all rows at once is what the async adapters (aiosqlite's included) do: a result
    stays readable after ``await session.execute()`` returns, even once its transaction has
    ended, and no half-read statement is left holding a read snapshot.
    """

    connection: InlineConnection

    def __init__(self, connection: InlineConnection, /) -> None:
        super().__init__(connection)
        self._rows: deque[Any] = deque()

    def execute(self, sql: str, parameters: _Params = (), /) -> InlineCursor:
        conn = self.connection
        _mark_async(conn)
        in_tx = conn.in_transaction
        try:
            super().execute(sql, parameters)
        except sqlite3.OperationalError as error:
            if not (_is_busy(error) and (not in_tx or conn.lockless)):
                raise
            _wait_for_lock(error, partial(sqlite3.Cursor.execute, self, sql, parameters))
        # A deferred BEGIN takes no lock: the statement after it may still wait for one.
        conn.lockless = not in_tx and sql.strip().upper() in _DEFERRED_BEGINS
        self._rows = deque(super().fetchall()) if self.description is not None else deque()
        return self

    def executemany(self, sql: str, seq: Iterable[_Params], /) -> InlineCursor:
        conn = self.connection
        _mark_async(conn)
        in_tx = conn.in_transaction
        rows = list(seq)
        try:
            super().executemany(sql, rows)
        except sqlite3.OperationalError as error:
            if not (_is_busy(error) and (not in_tx or conn.lockless)):
                raise
            _wait_for_lock(error, partial(sqlite3.Cursor.executemany, self, sql, rows))
        conn.lockless = False
        self._rows = deque()
        return self

    def fetchone(self) -> Any:
        rows = self._rows
        return rows.popleft() if rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        n = self.arraysize if size is None else size
        return [rows.popleft() for _ in range(min(n, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> InlineCursor:
        return self

    def __next__(self) -> Any:
        if self._rows:
            return self._rows.popleft()
        raise StopIteration

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's async results; the rows are already read."""


class InlineConnection(sqlite3.Connection):
    """A sqlite3 connection for the async engine: calls run on the caller's thread."""

    lockless: bool
    """True between a deferred BEGIN and the first statement after it (no lock held)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lockless = False
        self.greenlet_seen: object = None
        self.checkpoint_target: tuple[str, bool] | None = None
        # Set by db.py on the writer engine's connections (None elsewhere).
        self.writer_slot: WriterSlot | None = None
        self._changes_seen = 0
        self._write_commits = 0

    def cursor(  # type: ignore[override]
        self, factory: Any = InlineCursor, *, server_side: bool = False
    ) -> InlineCursor:
        # server_side: what SQLAlchemy's async SQLite execution context passes; sqlite3
        # cursors step lazily anyway.
        cursor: InlineCursor = super().cursor(factory)
        return cursor

    def execute(self, sql: str, parameters: _Params = (), /) -> InlineCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: Iterable[_Params], /) -> InlineCursor:
        return self.cursor().executemany(sql, seq)

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            _wait_for_lock(error, partial(sqlite3.Connection.commit, self))
        self.lockless = False
        changes = self.total_changes
        if changes != self._changes_seen and self.checkpoint_target is not None:
            self._changes_seen = changes
            self._write_commits += 1
            if self._write_commits >= CHECKPOINT_EVERY:
                self._write_commits = 0
                _checkpoint_soon(*self.checkpoint_target, self.writer_slot)

    def rollback(self) -> None:
        super().rollback()
        self.lockless = False

    def terminate(self) -> None:
        """What the pool calls for a connection it cannot hand back (a transaction cut off by
        a cancellation or a BaseException, or one found by the garbage collector): closing it
        rolls back whatever it held, so no ``BEGIN IMMEDIATE`` is left holding the file."""
        self.lockless = False
        self.close()


_checkpointing: set[str] = set()
_checkpoint_tasks: set[asyncio.Task[None]] = set()  # referenced until done
# The checkpoints' own threads: :func:`_checkpoint_in_turn` holds the writer connection while
# its step runs, so that step must never queue behind the application's work in the loop's
# default executor (password hashing, PDF drawing): every write of the process would wait.
_CHECKPOINT_THREADS: Final = ThreadPoolExecutor(max_workers=4, thread_name_prefix="checkpoint")


def _passive(path: str, uri: bool) -> int:
    """A PASSIVE checkpoint on a connection of its own (copies what no reader still needs).
    Returns the WAL's length in frames (pages) since it was last rewound."""
    conn = sqlite3.connect(path, uri=uri, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames)
    finally:
        conn.close()


def _truncate(path: str, uri: bool) -> None:
    """A TRUNCATE checkpoint: copies the rest, waits up to :data:`TRUNCATE_WAIT` for readers
    to leave the WAL, and empties the file (when they don't, a later checkpoint tries again).
    It holds the write lock meanwhile."""
    conn = sqlite3.connect(path, uri=uri, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={round(TRUNCATE_WAIT * 1000)}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


def _checkpoint(path: str, uri: bool) -> None:
    """A PASSIVE checkpoint; past :data:`WAL_TRUNCATE_FRAMES`, a TRUNCATE one after it.

    SQLite rewinds the WAL only when a write begins with the WAL copied whole and no reader in
    it, which steady load never offers to a checkpoint that runs beside the writers: the WAL
    of ``paymux serve`` grew by 0.24 MiB a payment (1.7 GiB after 11,000), and its index
    (``-shm``, mapped into the process) with it. The TRUNCATE checkpoint bounds it
    (docs/benchmarks.md, issue 10 memory); :func:`_checkpoint_in_turn` makes it the exception."""
    if _passive(path, uri) >= WAL_TRUNCATE_FRAMES:
        _truncate(path, uri)


async def _checkpoint_in_turn(path: str, uri: bool, slot: WriterSlot) -> None:
    """The background checkpoint of a file this process writes through ``slot``.

    A PASSIVE checkpoint beside the writers never finds the WAL copied whole (pages are
    written while it copies), so SQLite never rewinds the WAL. The TRUNCATE checkpoint that
    bounded it took the write lock for 20 - 90 ms every few seconds (copy the rest, fsync,
    wait for readers, truncate), and the API's writers meanwhile met SQLITE_BUSY and slept
    SQLite's back-off (1, 2, 5, 10, 15, 20 ... ms): the stalls behind the sequential p99 of
    ``bench/payments.py`` on SQLite (issue 10, docs/operations.md).

    Now the bulk is copied beside the writers, as before, and nothing else happens until the
    WAL passes :data:`WAL_REWIND_FRAMES`. Then a second PASSIVE copies what was written
    meanwhile holding this process's one writer connection (its writers wait in the pool, in
    order, without polling): the WAL is whole when the next write begins, and that write
    rewinds it (unless a reader is in it at that moment: then the next checkpoint tries
    again). The hold is that short copy and its two fsyncs, not a truncate. Past
    :data:`WAL_TRUNCATE_FRAMES` (rewinds kept failing) the WAL is emptied, still holding the
    writer connection. Another process's writers (a ``paymux worker`` on the same file) are
    not held: for them it is as before."""
    loop = asyncio.get_running_loop()
    frames = await loop.run_in_executor(_CHECKPOINT_THREADS, _passive, path, uri)
    if frames < WAL_REWIND_FRAMES:
        return
    async with slot():
        frames = await loop.run_in_executor(_CHECKPOINT_THREADS, _passive, path, uri)
        if frames >= WAL_TRUNCATE_FRAMES:
            await loop.run_in_executor(_CHECKPOINT_THREADS, _truncate, path, uri)


async def finish_checkpoints() -> None:
    """Let this event loop's background checkpoints end (``Database.dispose``): one still
    waiting for the writer connection would otherwise check one out of the disposed pool, a
    connection nothing closes. One that doesn't end within 5 seconds is cancelled."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _checkpoint_tasks if t.get_loop() is loop and not t.done()]
    if not pending:
        return
    _done, late = await asyncio.wait(pending, timeout=5.0)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)


def _checkpoint_soon(
    path: str, uri: bool, slot: WriterSlot | None = None, *, hold: threading.Lock | None = None
) -> None:
    """Checkpoint ``path``'s WAL in the background, one at a time per file: in a thread, or,
    given this process's writer ``slot``, as :func:`_checkpoint_in_turn`, or given the lock
    its writers ``hold``, as :func:`_checkpoint_held`."""
    work = _checkpoint if hold is None else partial(_checkpoint_held, hold=hold)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # sync use: nothing to keep responsive
        try:
            work(path, uri)
        except sqlite3.Error as error:  # the commit itself succeeded: never fail it
            _log.warning("sqlite checkpoint failed: %r", error)
        return
    if path in _checkpointing:
        return
    _checkpointing.add(path)

    def done(future: asyncio.Future[None]) -> None:
        _checkpointing.discard(path)
        if not future.cancelled() and future.exception() is not None:
            _log.warning("sqlite checkpoint failed: %r", future.exception())

    try:
        if slot is None:
            future = loop.run_in_executor(_CHECKPOINT_THREADS, work, path, uri)
            future.add_done_callback(done)
        else:
            task = loop.create_task(_checkpoint_in_turn(path, uri, slot))
            _checkpoint_tasks.add(task)
            task.add_done_callback(_checkpoint_tasks.discard)
            task.add_done_callback(done)
    except RuntimeError as error:  # the loop is shutting down: the last close checkpoints
        _checkpointing.discard(path)
        _log.debug("sqlite checkpoint not started: %r", error)


def _checkpoint_held(path: str, uri: bool, hold: threading.Lock) -> None:
    """:func:`_checkpoint_in_turn` for a store whose writers take the threading lock ``hold``
    (in a thread): the bulk PASSIVE beside them; past :data:`WAL_REWIND_FRAMES`, a second one
    holding ``hold``, so that the WAL is whole when the next write begins and that write
    rewinds it; past :data:`WAL_TRUNCATE_FRAMES`, a TRUNCATE, still holding it."""
    if _passive(path, uri) < WAL_REWIND_FRAMES:
        return
    with hold:
        if _passive(path, uri) >= WAL_TRUNCATE_FRAMES:
            _truncate(path, uri)


def checkpoint_in_background(path: str, hold: threading.Lock) -> None:
    """Checkpoint the WAL of the SQLite file at ``path`` (a plain file name) in a thread, one
    checkpoint at a time per file (inline when no event loop runs), for a store written
    outside our engines whose writers all take ``hold`` (the sandbox processor's: it turns
    SQLite's automatic checkpoint off, so that its commits on the event loop never copy and
    fsync pages). Call it without holding ``hold``. See :func:`_checkpoint_held`."""
    _checkpoint_soon(path, False, hold=hold)


class _InlineDBAPI:
    """The DBAPI module the dialect sees: sqlite3's names, with ``connect`` made inline."""

    paramstyle = "qmark"
    has_stop = False  # no worker thread to stop

    def __init__(self) -> None:
        self.sqlite = sqlite3
        for name in (
            "DatabaseError",
            "Error",
            "IntegrityError",
            "InterfaceError",
            "InternalError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "DataError",
            "Warning",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
        ):
            setattr(self, name, getattr(sqlite3, name))

    def connect(self, database: str, **kwargs: Any) -> InlineConnection:
        kwargs.pop("async_creator_fn", None)
        kwargs["timeout"] = 0  # lock waits are ours (asyncio.sleep), never SQLite's sleep
        kwargs.setdefault("isolation_level", None)
        kwargs["check_same_thread"] = False  # the checkpoint thread never shares it, though
        conn = sqlite3.connect(database, factory=InlineConnection, **kwargs)
        assert isinstance(conn, InlineConnection)
        if database != ":memory:" and "mode=memory" not in database:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.checkpoint_target = (database, bool(kwargs.get("uri")))
        return conn


class SQLiteDialect_paymux(SQLiteDialect_aiosqlite):
    """aiosqlite's async dialect (pool, type handling) over :class:`_InlineDBAPI`."""

    driver = DRIVER
    supports_statement_cache = True
    # Terminating is closing (InlineConnection.terminate): a cut-off transaction's write lock
    # is released at once instead of staying with a connection nobody will use again.
    has_terminate = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _InlineDBAPI()

    def retrieve_dbapi_version(self, dbapi: Any) -> Any:
        return None

    def get_driver_connection(self, connection: Any) -> Any:
        return connection


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_paymux")
