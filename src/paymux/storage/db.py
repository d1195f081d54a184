"""Engines and transactions for SQLite (WAL, the embedded default) and PostgreSQL.

``db.write()`` opens a write transaction: on SQLite it starts with ``BEGIN IMMEDIATE`` on the
process's single writer connection, so concurrent writers queue for it (and wait for other
processes' writers, see below) instead of failing mid-transaction with SQLITE_BUSY;
``db.read()`` opens a plain one. On PostgreSQL both are ordinary transactions, on pooled
connections checked at checkout (``pool_pre_ping``), the transaction's BEGIN serving as the
check (``_ping_once``), and lean: the block gets a session that is only the pooled connection
until code uses it as an ORM session (``_LeanSession``; the driver's statements never do).
``db.one_row()`` runs one statement that is its own transaction (GET of one object, the rate
limit's count): on PostgreSQL on a connection checked out without the ping, run again on a
pinged one if that connection was closed; on SQLite a read runs on one reader connection the
process holds (``_held_read``).

SQLite runs on the inline driver (``sqlite_inline``: sqlite3 calls on the event loop, no
thread hop per cursor call); ``sqlite+aiosqlite://`` URLs are mapped to it, and waits for
another process's lock sleep on the loop instead of in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from typing import Any, Final, NamedTuple, cast

import orjson
from sqlalchemy import Engine, Row, event, exc, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.util import queue as sqla_queue

from paymux.storage import driver, sqlite_inline

__all__ = ["Database"]


_AIOSQLITE = "sqlite+aiosqlite:"
# An execution option: the connection's statements run without a BEGIN (one-statement reads).
_ONE_STATEMENT = "paymux_one_statement"
# PostgreSQL: reader connections ``one_row`` keeps outside the pool (``_kept_read``), at most
# this many by default (``PAYMUX_DB_READ_CONNECTIONS``).
READ_CONNECTIONS = 5


class _KeptGone(Exception):
    """``_kept_read``'s connection was found closed: nothing ran on it."""


def inline_url(url: str) -> str:
    """The public ``sqlite+aiosqlite://`` URL on the inline driver; other URLs unchanged."""
    if url.startswith(_AIOSQLITE):
        return f"sqlite+{sqlite_inline.DRIVER}:" + url[len(_AIOSQLITE) :]
    return url


def _json_dumps(value: Any) -> str:
    """JSON columns' text: orjson (several times faster than the standard library, about 25
    values written per payment), the standard library for what orjson refuses (an integer
    past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, OverflowError):
        return json.dumps(value)


# A run of 19 ASCII digits or more: an integer that may not fit in 64 bits, which orjson would
# read as a float (the standard library keeps it an integer). 19 digits, not 20: a negative
# one of 19 digits can be past the smallest 64-bit integer. Found by mapping the digits to NUL
# (JSON text holds no raw NUL) and looking for 19 of them in a row: a byte search, where a
# regular expression tried a match at every position (14 us for a decision's 1.3 KB record,
# read with every intent; 0.8 us this way).
_DIGITS_AS_NUL: Final = bytes.maketrans(b"0123456789", bytes(10))
_LONG_RUN: Final = bytes(19)


def _json_loads(text: str | bytes) -> Any:
    """A JSON column's value: orjson, but the standard library for text holding a long run of
    digits (orjson reads an integer past 64 bits as a float) or text orjson refuses."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    # (Not text: the standard library's TypeError, which SQLAlchemy's SQLite JSON type
    # catches to give back a number SQLite returned as one.)
    if isinstance(raw, bytes | bytearray) and _LONG_RUN not in raw.translate(_DIGITS_AS_NUL):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# Both engines' JSON columns (SQLAlchemy's JSON type on SQLite, asyncpg's json codec that
# SQLAlchemy installs on PostgreSQL; storage/driver.py binds with the same types).
_JSON_CODEC: Final = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}


def _refuse_in_memory(url: str) -> None:
    """An in-memory SQLite database cannot hold paymux's data: each connection (the writer,
    the readers, the migrations') would open an empty database of its own. Refused with what
    to give instead, where SQLAlchemy's pool for it raised a TypeError about pool arguments."""
    database = make_url(url).database or ""
    if database in ("", ":memory:") or "mode=memory" in url:
        raise ValueError(
            f"database URL {url!r}: an in-memory SQLite database is not supported (each of "
            "paymux's connections would see an empty database of its own); give a file, "
            "e.g. sqlite+aiosqlite:///./paymux.db"
        )


def _sqlite_engine(url: str, begin: str, pool_size: int) -> AsyncEngine:
    url = inline_url(url)
    inline = url.startswith(f"sqlite+{sqlite_inline.DRIVER}:")
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=60, **_JSON_CODEC
    )
    # Inline, SQLite must not sleep in its busy handler (that would block the loop): it
    # answers SQLITE_BUSY at once and the driver waits on the loop (sqlite_inline).
    busy_timeout = 0 if inline else 30000

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(_ONE_STATEMENT):
            return
        if inline:
            # On the connection itself (its lock waits included: sqlite_inline), not through
            # SQLAlchemy's execution layer (a cursor, a context and events for one BEGIN:
            # three per payment, issue 10).
            try:
                conn.connection.driver_connection.execute(begin)
            except sqlite3.Error as error:  # as SQLAlchemy raises it (the API's 503)
                raise exc.DBAPIError.instance(begin, None, error, sqlite3.Error) from error
        else:
            conn.exec_driver_sql(begin)

    return engine


def _hand_writer_slot(writer: AsyncEngine) -> None:
    """Give the writer's connections a way to hold the one writer connection: the background
    WAL checkpoint copies its last pages holding it, so that this process's writers wait in
    the pool's queue for that moment instead of polling SQLite's lock
    (``sqlite_inline._checkpoint_in_turn``)."""
    slot = writer.connect  # entered: the pool's one connection is checked out

    @event.listens_for(writer.sync_engine, "connect")
    def _slot(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        if isinstance(dbapi_conn, sqlite_inline.InlineConnection):
            dbapi_conn.writer_slot = slot


def _first_row(engine: Engine, statement: Executable, params: Mapping[str, Any]) -> Row[Any] | None:
    with engine.connect() as conn:
        return conn.execute(statement, params).first()


# Set while ``Database.one_row`` checks a connection out for its first try: no ping (it
# retries on a fresh, pinged connection if that one turns out closed).
_UNPINGED: ContextVar[bool] = ContextVar("paymux_unpinged_checkout", default=False)
# SQLSTATEs of a connection that is gone: connection exceptions (class 08) and the server
# ending it (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
_GONE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


# Set while ``Database.write`` / ``read`` check their session's connection out on
# PostgreSQL: the pool's ping is the transaction's BEGIN (``_ping_once``).
_BEGIN_AS_PING: ContextVar[bool] = ContextVar("paymux_begin_as_ping", default=False)


@contextmanager
def _set(flag: ContextVar[bool]) -> Iterator[None]:
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def _connection_gone(engine: AsyncEngine, error: exc.DBAPIError) -> bool:
    """Whether ``error`` says the connection was closed (by the server, or found closed by
    the driver) rather than anything about the statement."""
    orig: Any = error.orig
    if error.connection_invalidated or engine.dialect.is_disconnect(orig, None, None):
        return True
    state = getattr(error.orig, "sqlstate", None)
    if isinstance(state, str) and state.startswith(_GONE_SQLSTATES):
        return True
    # asyncpg's own "connection was closed in the middle of operation" (no SQLSTATE).
    return isinstance(error, exc.InterfaceError)


def _ping_once(dbapi_connection: Any) -> bool:
    """The pool's pre-ping of an asyncpg connection in one round trip: ``SELECT 1`` in the
    simple query protocol (no statement to prepare). SQLAlchemy's own sends three (BEGIN,
    ``;``, ROLLBACK) for PgBouncer's transaction pooling, which paymux does not support
    (docs/operations.md); every checkout paid them: a GET of one object four round trips
    instead of two (issue 10). None for ``Database.one_row``'s first try (``_UNPINGED``).

    A session's checkout (``Database.write`` / ``read``, ``_BEGIN_AS_PING``) sends its
    transaction's BEGIN instead, which the session would send before its first statement
    anyway: it checks the connection as well (a closed one fails it, as it fails the
    ``SELECT 1``: the pool replaces the connection and the session's first statement sends
    the BEGIN on the new one), in one round trip where the ping and the BEGIN took two."""
    if _UNPINGED.get():
        return True
    if _BEGIN_AS_PING.get():
        await_only(dbapi_connection._start_transaction())  # raises the DBAPI's error itself
        return True
    try:
        await_only(dbapi_connection._connection.execute("SELECT 1"))
    except Exception as error:
        dbapi_connection._handle_exception(error)  # the DBAPI's error, for is_disconnect
    return True


# How long a PostgreSQL checkout that would open an overflow connection first waits for a
# pooled one to come back (seconds): under a load of short statements one comes back well
# within it; opening a connection costs more (about 1.4 ms of this process's CPU and 5-13 ms
# of wall time on the 2-CPU bench host, and PostgreSQL starts a server process for it).
OVERFLOW_WAIT = 0.02


class _HandOff(asyncio.Queue[Any]):
    """A queue that hands an item put while someone waits straight to the one waiting
    longest, so that no later ``get`` takes it first.

    Why: ``asyncio.Queue`` puts a checked-in connection in the queue and wakes the first
    waiter, which takes it when it next runs. Before it does, a request whose task is running
    (one that has just checked its connection in and starts its next transaction, say) finds
    it there and takes it; the waiter finds the queue empty and waits again, at the back. At
    16 clients and 10 connections some requests waited their turn several times over: the
    p99 of PostgreSQL's payments was 108-121 ms, 98 ms of it before the first BEGIN
    (issue 10; docs/benchmarks.md). Items are queued only while nobody waits.

    It uses ``asyncio.Queue``'s own waiters (``_getters``, ``_get_loop``), unchanged from
    Python 3.10 to 3.13; tests/integration/test_pool_fairness.py fails if they change."""

    def put_nowait(self, item: Any) -> None:
        while self._getters:  # type: ignore[attr-defined]
            getter = self._getters.popleft()  # type: ignore[attr-defined]
            if not getter.done():
                getter.set_result(item)
                return
        super().put_nowait(item)

    async def get(self) -> Any:
        if not self.empty():  # (nobody waits while an item is queued)
            return self.get_nowait()
        getter = self._get_loop().create_future()  # type: ignore[attr-defined]
        self._getters.append(getter)  # type: ignore[attr-defined]
        try:
            return await getter
        except BaseException:
            if getter.done() and not getter.cancelled():
                self.put_nowait(getter.result())  # handed one, then cancelled: pass it on
            else:
                getter.cancel()
                with suppress(ValueError):
                    self._getters.remove(getter)  # type: ignore[attr-defined]
            raise


class _FairQueue(sqla_queue.AsyncAdaptedQueue[Any]):
    """SQLAlchemy's queue of pooled connections on a ``_HandOff`` queue: checkouts are
    served in the order they came."""

    @functools.cached_property
    def _queue(self) -> asyncio.Queue[Any]:  # (made on first use: on the running loop)
        return _HandOff(maxsize=self.maxsize)


class _PatientPool(AsyncAdaptedQueuePool):
    """The PostgreSQL pool: a checkout that finds every pooled connection out waits up to
    ``overflow_wait`` for one to come back before it opens an overflow connection.

    Why: an overflow connection is closed at check-in when the pool is full again. Under a
    load of short statements with more requests in flight than the pool holds (GET of one
    object at 16 connections, pool 5 + 5), every such checkout opened a connection that the
    next check-in closed: 350-650 connects in 5 s of GETs (44-110 with the wait), each with
    SQLAlchemy's set-up queries and every statement prepared again (issue 10;
    tests/integration/test_get_pool_wait.py). A checkout that still finds none
    opens the overflow connection as before (up to ``max_overflow``), so code that holds one
    connection while it asks for another waits at most ``overflow_wait`` more."""

    overflow_wait = OVERFLOW_WAIT
    _queue_class = _FairQueue  # checkouts served in the order they came

    def _do_get(self) -> ConnectionPoolEntry:
        if 0 <= self._overflow < self._max_overflow:
            try:
                return self._pool.get(True, self.overflow_wait)
            except sqla_queue.Empty:
                pass
        return super()._do_get()


class _Kept(NamedTuple):
    """A reader connection ``one_row`` keeps, detached from the pool: SQLAlchemy's adapter
    (its codecs as the pool's connections have them) and its asyncpg connection."""

    dbapi_connection: Any
    driver_connection: Any


def _commit_and_close(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        # As ``session.begin()``'s block does: a COMMIT that failed (a held write's error,
        # sent just before it) leaves the connection's transaction open on the server, and
        # the pool would take the connection back without its ROLLBACK.
        session.rollback()
        raise
    session.close()


@asynccontextmanager
async def _transaction(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """SQLite: ``session``'s transaction, committed and its connection returned to the pool
    when the block ends, in ONE greenlet call (``async with session, session.begin()`` made
    four: the begin, the checkout, the commit, the close, and a task for the close; 0.08-0.1
    ms of CPU per transaction, two per payment; issue 10). On error (a cancellation included)
    the session is closed, which rolls the transaction back, in a task shielded from the
    cancellation, as ``AsyncSession.__aexit__`` closes it: the connection always goes back.
    The session's transaction is begun without a statement: its connection and BEGIN
    IMMEDIATE come with the first statement. (PostgreSQL's: ``_lean_transaction``.)"""
    try:
        session.sync_session.begin()
        yield session
        await session.run_sync(_commit_and_close)
    except BaseException:
        await asyncio.shield(asyncio.create_task(session.close()))
        raise


class _LeanSession(AsyncSession):
    """PostgreSQL: the session of a ``Database.write()`` / ``read()`` transaction, which is an
    ORM session only once code uses it as one.

    Why: SQLAlchemy's session, its transaction and connection objects, their events and
    state machines cost about 160 us of CPU a transaction around the checkout, the BEGIN and
    the COMMIT (a transaction of one driver statement: 380 us as an ORM session, 223 us lean,
    191 us for the pool's checkout and check-in around asyncpg's own transaction;
    bench/transactions.py), two transactions a payment (issue 10). The payment's statements
    are the driver's (storage/driver.py), which need only the pooled connection.

    So the transaction starts as the pooled connection checked out (the BEGIN its ping,
    ``_ping_once``), the driver's statements run on it (``driver.LEAN_DRIVEN``), and the
    COMMIT (``driver.commit_lean``) and the check-in end it. The first use of anything of
    ``AsyncSession`` (``execute``, ``add``, ``flush``, ``begin_nested``, ``info``...) reaches
    ``sync_session``, which makes the ORM session then, bound to a SQLAlchemy connection
    on the SAME pooled connection, inside the same transaction: the ORM's statements, the
    driver's and their held writes (``driver.adopt``) are one transaction; the session's
    COMMIT (or ROLLBACK) ends it."""

    def __init__(self, engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
        # Not AsyncSession.__init__: that is ``_orm``'s, at the first use as a session.
        self.__dict__[driver.LEAN_DRIVEN] = driver.lean_connection(
            pooled.dbapi_connection, pooled.driver_connection, engine.dialect
        )
        self.__dict__[driver.LEAN_ORM] = None
        self.__dict__["_lean_engine"] = engine
        self.__dict__["_lean_pooled"] = pooled
        self.__dict__["_lean_connection"] = None

    def _orm(self) -> Session:
        made: Session | None = self.__dict__[driver.LEAN_ORM]
        if made is None:
            engine: AsyncEngine = self.__dict__["_lean_engine"]
            pooled: PoolProxiedConnection = self.__dict__["_lean_pooled"]
            # The pooled connection's transaction is open (its BEGIN sent, or sent by the
            # adapter before the next statement); SQLAlchemy's connection "begins" it
            # without a statement (the dialect's do_begin sends nothing).
            connection = Connection(engine.sync_engine, connection=pooled)
            self.__dict__["_lean_connection"] = connection
            driver.adopt(self.__dict__[driver.LEAN_DRIVEN], connection)
            AsyncSession.__init__(
                self, bind=AsyncConnection(engine, connection), expire_on_commit=False
            )
            made = self.__dict__[driver.LEAN_ORM]
            assert made is not None
            # The session's transaction begun and holding the connection now (no I/O: the
            # dialect's do_begin sends nothing), so that its COMMIT commits what the driver's
            # statements wrote even if the ORM runs no statement of its own.
            made.begin()
            made.connection()
        return made

    def _set_orm(self, session: Session) -> None:
        self.__dict__[driver.LEAN_ORM] = session

    sync_session = property(_orm, _set_orm)
    _proxied = property(_orm, _set_orm)

    @property
    def used_as_session(self) -> bool:
        return self.__dict__[driver.LEAN_ORM] is not None


def orm_untouched(session: AsyncSession) -> bool:
    """``session`` is a lean transaction's not yet used as an ORM session: it holds no ORM
    object, no pending change (nothing to flush)."""
    return isinstance(session, _LeanSession) and not session.used_as_session


def _end_lean_orm(session: Session, connection: Connection, commit: bool) -> None:
    """The ORM session's end (in a greenlet): COMMIT (its pending changes flushed, the held
    writes sent by the connection's ``commit`` event) or ROLLBACK, then the connection back
    to the pool."""
    try:
        if commit:
            _commit_and_close(session)
        else:
            session.close()
    finally:
        connection.close()  # the pooled connection checked in (reset: ROLLBACK if open)


@asynccontextmanager
async def _lean_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A PostgreSQL transaction of ``Database.write()`` / ``read()`` (``_LeanSession``)."""
    with _set(_BEGIN_AS_PING):
        pooled = await engine.raw_connection()
    lean = _LeanSession(engine, pooled)
    driver.boundary("BEGIN")
    try:
        yield lean
        if lean.used_as_session:
            # The session's COMMIT (its changes flushed, the held writes sent before it by
            # the connection's event); the connection back to the pool.
            await greenlet_spawn(
                _end_lean_orm, lean.sync_session, lean.__dict__["_lean_connection"], True
            )
        else:
            driven = lean.__dict__[driver.LEAN_DRIVEN]
            await driver.send_held(driven)  # an error here: rolled back below
            try:
                await driver.commit_lean(driven)
            except BaseException:
                pooled.invalidate()  # a failed COMMIT: the connection is not used again
                raise
            await greenlet_spawn(pooled.close)
        driver.boundary("COMMIT")
    except BaseException:
        # As the ORM's ``_transaction``: the transaction rolled back and the connection
        # returned, shielded from a cancellation (the pool's reset sends the ROLLBACK; a
        # connection it fails on is invalidated).
        await asyncio.shield(asyncio.create_task(_abandon_lean(lean)))
        raise


async def _abandon_lean(lean: _LeanSession) -> None:
    driver.boundary("ROLLBACK")
    pooled: PoolProxiedConnection = lean.__dict__["_lean_pooled"]
    if pooled.dbapi_connection is None:
        return  # invalidated (a failed COMMIT), or already checked in
    lean.__dict__[driver.LEAN_DRIVEN].held = []  # never sent
    if lean.used_as_session:
        await greenlet_spawn(
            _end_lean_orm, lean.sync_session, lean.__dict__["_lean_connection"], False
        )
    else:
        await greenlet_spawn(pooled.close)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        overflow_wait: float = OVERFLOW_WAIT,
        read_connections: int = READ_CONNECTIONS,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _refuse_in_memory(url)
            # SQLite has one writer at a time: one connection, so this process's writers
            # queue in the pool (FIFO) instead of sleeping in SQLite's busy handler, which
            # polls with backoff and made tail latency balloon under concurrency. So never
            # open a write transaction inside another: it would wait for the one it holds.
            self.writer = _sqlite_engine(url, "BEGIN IMMEDIATE", 1)
            self.reader = _sqlite_engine(url, "BEGIN", pool_size)
            _hand_writer_slot(self.writer)
        else:
            # pool_pre_ping: a connection the server closed while it sat in the pool (a
            # restart, pg_terminate_backend) is replaced before use. Checking it for free at
            # checkout (asyncpg's is_closed) was tried and let one through: the close had not
            # reached the client yet, and the next BEGIN failed (tests/integration/
            # test_db_checkout.py); the ping's round trips are the price of never failing there.
            # (``one_row`` skips it: its statement alone is the check, retried if it finds the
            # connection closed.)
            self.writer = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                poolclass=_PatientPool,  # waits a moment before an overflow connection
                **_JSON_CODEC,
            )
            cast(_PatientPool, self.writer.pool).overflow_wait = overflow_wait
            # The ping in one round trip (``_ping_once``), not three.
            self.writer.dialect.do_ping = _ping_once  # type: ignore[method-assign]
            # ``driver.later``'s writes held and sent together (one round trip for the event,
            # the audit entry and the intent's UPDATE of a settle).
            driver.send_writes_together(self.writer)
            self.reader = self.writer
        # One-statement reads (GET of one object): the statement is its own snapshot, without
        # a BEGIN before it and a ROLLBACK after it; the same pool. On PostgreSQL in autocommit
        # (two round trips of three); on SQLite no BEGIN is sent (the connections are in
        # sqlite3's autocommit mode, so a lone SELECT reads one snapshot of the WAL, and the
        # ROLLBACK at check-in is a no-op without a transaction).
        self.single_reader: AsyncEngine = (
            self.reader.execution_options(**{_ONE_STATEMENT: True})
            if self.is_sqlite
            else self.reader.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._held: PoolProxiedConnection | None = None  # SQLite: ``_held_read``
        # PostgreSQL: ``one_row``'s kept reader connections, idle ones and how many in all
        # (at most ``read_connections``).
        self._idle: list[_Kept] = []
        self._kept = 0
        self._read_connections = 0 if self.is_sqlite else read_connections
        self._write_sessions = async_sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.reader, expire_on_commit=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back on error."""
        if not self.is_sqlite:
            async with _lean_transaction(self.writer) as lean:
                yield lean
            return
        async with _transaction(self._write_sessions()) as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        if not self.is_sqlite:
            async with _lean_transaction(self.reader) as lean:
                yield lean
            return
        async with _transaction(self._read_sessions()) as session:
            yield session

    async def first_row(self, statement: Executable, params: Mapping[str, Any]) -> Row[Any] | None:
        """The first row of a one-statement read on ``single_reader``, or None. Checkout,
        statement, fetch and check-in run as sync code in ONE greenlet (``AsyncConnection``
        would switch into one for each: connect, execute, close)."""
        return await greenlet_spawn(_first_row, self.single_reader.sync_engine, statement, params)

    async def one_row(
        self, statement: driver.Statement, params: Mapping[str, Any], *, write: bool = False
    ) -> driver.Row | None:
        """``driver.first_row`` of ``statement`` on the reader (``write``: the writer), a
        statement that is its own transaction (a read, or one atomic write such as the rate
        limit's upsert), in ONE round trip on PostgreSQL where a pinged checkout takes two.

        Why it may skip the pool's ping: the ping is there so that a connection the server
        closed while it sat in the pool is never used (tests/integration/
        test_db_checkout.py). For a statement alone, the statement itself is the check: if
        the connection turns out closed (nothing ran on it: the server had ended it), it is
        invalidated (``driver.first_row``) and the statement runs again once, on a pinged
        connection, so the caller never sees that failure. Any other error is the caller's.
        A write retried after a connection lost MID-statement may have run twice: only for
        statements where that errs on the safe side (a count that refuses early). A read
        runs on a connection kept for reads if one is free or may be opened
        (``_kept_read``), else on the pool. SQLite's pool has no ping: a read runs on the
        held reader connection (``_held_read``), a write on the writer's pool
        (``driver.first_row``)."""
        engine = self.writer if write else self.reader
        if self.is_sqlite:
            if write:
                return await driver.first_row(engine, statement, params)
            return await self._held_read(statement, params)
        if not write and (self._idle or self._kept < self._read_connections):
            try:
                return await self._kept_read(statement, params)
            except _KeptGone:
                pass  # read on the pool instead
        try:
            with _set(_UNPINGED):
                return await driver.first_row(engine, statement, params)
        except exc.DBAPIError as error:
            if not _connection_gone(engine, error):
                raise
        return await driver.first_row(engine, statement, params)

    async def _kept_read(
        self, statement: driver.Statement, params: Mapping[str, Any]
    ) -> driver.Row | None:
        """PostgreSQL: ``one_row``'s read on a connection kept for reads, outside the pool
        (``read_connections`` of them at most, opened as concurrent reads need them):
        no checkout, no check-in, no ping (GET of one intent 2,500-2,600 -> 2,900-3,000
        requests/s at 16 connections, CPU per GET 0.38 -> 0.33 ms; issue 10). Between reads
        a kept connection is idle in no transaction (asyncpg's autocommit). A read that
        raises ends its connection (its statement may have been cut off); ``_KeptGone`` if
        the server had closed it (nothing ran: ``one_row`` reads on the pool instead)."""
        if self._idle:
            held = self._idle.pop()
        else:
            self._kept += 1
            try:
                pooled = await self.reader.raw_connection()  # pinged: a live connection
            except BaseException:
                self._kept -= 1
                raise
            adapter: Any = pooled.dbapi_connection
            pooled.detach()  # out of the pool, which may open another in its place
            held = _Kept(adapter, adapter._connection)
        try:
            row = await driver.first_row_on(held, self.reader.dialect, statement, params)
        except BaseException as error:
            self._kept -= 1
            held.driver_connection.terminate()
            if isinstance(error, exc.DBAPIError) and _connection_gone(self.reader, error):
                raise _KeptGone from error
            raise
        self._idle.append(held)
        return row

    async def _held_read(
        self, statement: driver.Statement, params: Mapping[str, Any]
    ) -> driver.Row | None:
        """SQLite: ``one_row``'s read on this process's held reader connection, one of the
        reader pool's taken once and kept (``_held``), not checked out and in again for each
        read: two greenlet calls and the pool's bookkeeping, a quarter of a GET's CPU
        (0.32 -> 0.24 ms; issue 10). In autocommit, each statement is its own snapshot of the
        WAL, and no transaction is left open between reads (all rows are read before the next
        await), so the connection holds no read lock while idle. Reads on it never overlap but
        while one waits out a lock (``sqlite_inline``'s waits are awaited): then they share
        it, each on its own cursor, as sqlite3 allows. If a read raises (its statement may
        have been cut off), the connection is invalidated and the next read takes another."""
        held = self._held
        if held is None:
            held = await self.reader.raw_connection()
            if self._held is None:
                self._held = held
            else:  # another read took one meanwhile: keep that one
                await greenlet_spawn(held.close)
                held = self._held
        try:
            return await driver.first_row_on(held, self.reader.dialect, statement, params)
        except BaseException:
            if self._held is held:
                self._held = None
            held.invalidate()
            raise

    async def dispose(self) -> None:
        while self._idle:
            self._kept -= 1
            await self._idle.pop().driver_connection.close(timeout=2)
        if self._held is not None:
            held, self._held = self._held, None
            await greenlet_spawn(held.close)
        if self.is_sqlite:
            await sqlite_inline.finish_checkpoints()
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
