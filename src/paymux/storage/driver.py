"""Statements on the database driver, inside our SQLAlchemy transactions.

Why: a statement through ``await session.execute`` costs a greenlet switch and 100-180 Python
calls of SQLAlchemy's execution layers (compiled cache look-up, execution context, cursor
result metadata), about half of a fraud decision's CPU (docs/benchmarks.md, issue 13). A hot
statement whose SQL never changes needs none of it: this module runs it directly on the DBAPI
driver connection that the session's transaction already holds, so driver statements and ORM
statements of one transaction are ONE transaction on ONE connection (they commit and roll
back together).

How::

    _COUNT = Statement(
        "SELECT count(*), max(created_us) FROM charges "
        "WHERE account_id = :account AND livemode = :livemode",
    )

    async with db.write() as s:  # or db.read()
        total, latest = await fetchrow(s, _COUNT, {"account": acct, "livemode": False})

- :class:`Statement`: the SQL written once (module level) with ``:name`` parameters, rendered
  to ``$1..$n`` for asyncpg and ``?1..?n`` for SQLite; a name used twice is one parameter.
  ``binds`` (name -> SQLAlchemy type) and ``results`` (one type or None per column) convert
  values as the ORM does on that dialect (the types' own bind and result processors: JSON
  serialized in and parsed out, SQLite's booleans and datetimes); without them values go as
  the driver takes and gives them (int, str, float, bytes, None; PostgreSQL's booleans).
  Rows are plain tuples. Casts the driver needs are written in the SQL
  (``CAST(:keys AS BIGINT[])``): asyncpg infers a parameter's type from its context.
- :meth:`Statement.of`: a Core ``select`` (named ``bindparam``s) rendered once per dialect,
  with its parameters' and columns' types; its rows are named tuples with the Core row's
  names (``row.status``).
- :func:`fetch` (all rows), :func:`fetchrow` (the first or None), :func:`execute` (the
  row count), inside a transaction; :func:`first_row`: a one-statement read outside any
  transaction (``Database.first_row`` on the driver: ``first_row(db.reader, ...)``).
- :func:`later`: a write whose result nobody reads, held on PostgreSQL and sent with the
  writes held after it as one statement (data-modifying WITHs) before the transaction's next
  statement or its COMMIT (``send_writes_together``, which ``Database`` sets up): a settle's
  event, intent UPDATE and audit entry in one round trip, not three. At once on SQLite.
- A ``begin_nested()`` block's driver statements are inside its SAVEPOINT: the driver sends
  the SAVEPOINT if SQLAlchemy has not yet (it waits for the block's first ORM statement).
- The ORM does not see driver writes of rows it has loaded (its identity map keeps their
  old values), and a driver statement does not autoflush the session: flush first when a
  driver statement must see pending ORM changes.
- Only inside a transaction opened by ``Database.write()``/``read()`` (a session with an
  active transaction, not the autocommit ``single_reader``): anything else raises
  ``RuntimeError``. On SQLite the transaction's BEGIN (``BEGIN IMMEDIATE`` in ``write()``)
  is SQLAlchemy's, sent when the session takes its connection, which the first driver
  statement makes it do; on PostgreSQL SQLAlchemy's asyncpg adapter begins lazily, at the
  first statement: a driver statement that comes first begins the adapter's transaction
  itself (so the ORM's later statements, its COMMIT and ROLLBACK are in it).
- PostgreSQL: asyncpg's ``fetch``/``execute`` with asyncpg's own prepared-statement cache,
  under the adapter's ``_execute_mutex`` (a connection never runs two statements at once).
  The type codecs are the connection's, as SQLAlchemy set them on connect (JSON and JSONB
  decoded with ``json.loads``; so a JSON parameter is bound as its text: ``binds``).
- SQLite: the inline driver's sqlite3 connection (``sqlite_inline``), on the loop, with its
  lock rules (``sqlite_inline.execute_async``): SQLITE_BUSY is waited out on the loop where
  SQLite's busy handler would have retried (the first statement after a deferred BEGIN),
  and raised at once elsewhere. Inside ``write()`` it cannot happen: ``BEGIN IMMEDIATE``
  already waited for (and holds) the write lock.
- Errors: the driver's exception wrapped as SQLAlchemy wraps it on the ORM path
  (``sqlalchemy.exc.DBAPIError.instance``): a unique violation is
  ``sqlalchemy.exc.IntegrityError`` on both databases, as the services catch it. The
  statement's parameters are never in the message (``hide_parameters``). A connection the
  server closed is not invalidated here: the session's rollback at the block's end finds it
  closed and the pool replaces it.
- Not here: ``executemany``, server-side cursors, SQLAlchemy's statement events (bench and
  tests see driver statements through :func:`observe`).
"""

from __future__ import annotations

import re
import sqlite3
import time
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from sqlalchemy import event, exc, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.pool import Pool
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import await_only, greenlet_spawn

from paymux.storage import sqlite_inline

__all__ = [
    "Row",
    "Statement",
    "execute",
    "fetch",
    "fetchrow",
    "first_row",
    "later",
    "observe",
    "send_writes_together",
]

Row = tuple[Any, ...]
_Processor = Callable[[Any], Any]

# A string literal, a quoted name, a cast (``::``) or a ``:name`` parameter.
_TOKENS: Final = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|::|(?<![:\w]):([A-Za-z_]\w*)")
# A command tag's row count: "INSERT 0 3", "UPDATE 2", "DELETE 1", "SELECT 4".
_TAG_COUNT: Final = re.compile(r"(\d+)$")
# ``fetch_with_held``'s statement: a plain SELECT (a WITH of its own could not take more).
_SELECT: Final = re.compile(r"\s*SELECT\s", re.I)
# The table a plain write writes (``later``): none for anything else (a WITH, a SELECT).
_WRITTEN: Final = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\"[^\"]+\"|\w+)", re.I)


class _Dialected:
    """A statement's processors on one dialect: (argument index, bind processor) pairs, and
    one result processor or None per column (None: no column needs one)."""

    __slots__ = ("binds", "results")

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        binds = []
        for name, type_ in statement.binds.items():
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds.append((statement.names.index(name), process))
        self.binds: tuple[tuple[int, _Processor], ...] = tuple(binds)
        results = tuple(
            None if type_ is None else type_.dialect_impl(dialect).result_processor(dialect, None)
            for type_ in statement.results
        )
        # The columns that need one, as (index, processor): a row converts only those.
        self.results: tuple[tuple[int, _Processor], ...] | None = (
            tuple((i, p) for i, p in enumerate(results) if p is not None) or None
        )


class Statement:
    """SQL with ``:name`` parameters, rendered once for asyncpg (``$n``) and SQLite (``?n``).

    ``binds``: SQLAlchemy types of parameters that need the ORM's conversion (JSON,
    booleans and datetimes on SQLite); ``results``: one SQLAlchemy type (or None) per
    column, converted as the ORM reads it."""

    __slots__ = ("_on", "binds", "names", "postgres", "results", "row", "sql", "sqlite", "writes")

    def __init__(
        self,
        sql: str,
        *,
        binds: Mapping[str, TypeEngine[Any]] | None = None,
        results: Sequence[TypeEngine[Any] | None] = (),
        columns: Sequence[str] = (),
        sqlite: str | None = None,
    ) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)
            if name not in names:
                names.append(name)
            return f"\0{names.index(name) + 1}"

        self.sql = sql
        written = _WRITTEN.match(sql)
        # The table of a plain INSERT, UPDATE or DELETE (``later``), else None.
        self.writes: str | None = written.group(1).strip('"').lower() if written else None
        self.postgres = _TOKENS.sub(number, sql).replace("\0", "$")
        own = list(names)
        self.sqlite = _TOKENS.sub(number, sql if sqlite is None else sqlite).replace("\0", "?")
        if names != own:
            raise ValueError(f"the SQLite text names other parameters: {names[len(own) :]}")
        self.names: tuple[str, ...] = tuple(names)
        self.binds: dict[str, TypeEngine[Any]] = dict(binds or {})
        unknown = set(self.binds) - set(names)
        if unknown:
            raise ValueError(f"binds name no parameter of the statement: {sorted(unknown)}")
        self.results = tuple(results)
        # ``columns``: rows as named tuples (attribute access by column name).
        named: Any = namedtuple("Row", columns, rename=True) if columns else None
        self.row: Callable[..., Row] | None = None if named is None else named._make
        # By dialect name and the JSON codec its engine was made with (the bind and result
        # processors serialize with it: storage/db.py's engines use orjson, another engine,
        # e.g. a migration's, the standard library).
        self._on: dict[tuple[str, Any, Any], _Dialected] = {}

    @classmethod
    def of(cls, select: Select[Any]) -> Statement:
        """A Core ``select`` (named ``bindparam``s) rendered once for each driver: its text
        as each dialect compiles it, its bound parameters' and columns' types, and rows with
        its columns' names."""
        texts = [
            str(select.compile(dialect=dialect))
            for dialect in (
                PGDialect_asyncpg(paramstyle="named"),  # type: ignore[no-untyped-call]
                sqlite_inline.SQLiteDialect_paymux(paramstyle="named"),
            )
        ]
        compiled = select.compile()
        binds = {name: bind.type for name, bind in compiled.binds.items()}
        columns = list(select.selected_columns)
        return cls(
            texts[0],
            sqlite=texts[1],
            binds=binds,
            results=[column.type for column in columns],
            columns=[str(column.key) for column in columns],
        )

    def args(self, params: Mapping[str, Any] | None, on: _Dialected) -> list[Any]:
        """The parameters in the rendered order, converted for the dialect."""
        if params is None:
            params = {}
        try:
            values = [params[name] for name in self.names]
        except KeyError as missing:
            raise ValueError(f"statement parameter {missing} not given") from None
        for index, process in on.binds:
            values[index] = process(values[index])
        return values

    def on(self, dialect: Dialect) -> _Dialected:
        key = (
            dialect.name,
            getattr(dialect, "_json_serializer", None),
            getattr(dialect, "_json_deserializer", None),
        )
        found = self._on.get(key)
        if found is None:
            found = self._on[key] = _Dialected(self, dialect)
        return found

    def __repr__(self) -> str:
        return f"Statement({self.sql!r})"


_QUOTE: Final = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]


def attribute_columns(model: Any) -> tuple[Any, ...]:
    """A mapped ``model``'s columns, each labelled with its attribute's name (``metadata_``
    for the column ``metadata``): a ``select`` of them (``Statement.of``) gives rows whose
    names are the model's attributes, read as the model is read."""
    return tuple(attr.columns[0].label(attr.key) for attr in inspect(model).column_attrs)


def insert_of(model: Any, keys: Sequence[str], *, conflict: str | None = None) -> Statement:
    """An INSERT into a mapped ``model``'s table of ``keys`` (its attribute names, which are
    the statement's parameters: ``metadata_`` for the column ``metadata``), with the
    columns' types' bind processors (JSON serialized as the ORM serializes it, SQLite's
    booleans). A column not among ``keys`` is left out: it gets its column default, as the
    ORM leaves it (pass Python-side defaults yourself). ``conflict``: ``ON CONFLICT (...)
    DO NOTHING RETURNING id`` (a row back only if it was inserted). Built once per shape by
    the caller; the same SQL on SQLite and PostgreSQL."""
    columns = {attr.key: attr.columns[0] for attr in inspect(model).column_attrs}
    names = ", ".join(_QUOTE(columns[key].name) for key in keys)
    params = ", ".join(f":{key}" for key in keys)
    sql = f"INSERT INTO {model.__tablename__} ({names}) VALUES ({params})"  # noqa: S608 (ours)
    if conflict is not None:
        sql += f" ON CONFLICT ({conflict}) DO NOTHING RETURNING id"
    return Statement(sql, binds={key: columns[key].type for key in keys})


class _Connection:
    """The driver connection of one session transaction."""

    __slots__ = ("adapter", "dialect", "driver", "held", "postgres")

    def __init__(
        self, adapter: Any, driver: Any, dialect: Dialect, *, holds_writes: bool = False
    ) -> None:
        self.adapter = adapter  # asyncpg: SQLAlchemy's adapter (its mutex and transaction)
        self.driver = driver  # the asyncpg Connection, or the sqlite_inline connection
        self.dialect = dialect
        self.postgres = dialect.name == "postgresql"
        # ``later``'s writes not sent yet, in order; None: ``later`` runs each at once.
        self.held: list[tuple[Statement, list[Any]]] | None = [] if holds_writes else None


_CONNECTIONS: Final[weakref.WeakKeyDictionary[SessionTransaction, _Connection]] = (
    weakref.WeakKeyDictionary()
)
# ``observe``'s callbacks, each called with the statement's SQL, its seconds and its arguments.
_OBSERVERS: list[Callable[[str, float, Sequence[Any]], None]] = []
# ``later``: the pools whose engines send held writes before their statements and COMMIT
# (``send_writes_together``), and each transaction's held writes by its SQLAlchemy
# connection (the one the engine's events name).
_TOGETHER: Final[weakref.WeakSet[Pool]] = weakref.WeakSet()
_HOLDING: Final[weakref.WeakKeyDictionary[Connection, _Connection]] = weakref.WeakKeyDictionary()


_BOUNDARY_OBSERVERS: list[Callable[[str], None]] = []


def observe_transactions(callback: Callable[[str], None]) -> Callable[[], None]:
    """Call ``callback("BEGIN" | "COMMIT" | "ROLLBACK")`` at the boundaries of each lean
    transaction (PostgreSQL's ``Database.write()`` / ``read()``, storage/db.py
    ``_LeanSession``), which SQLAlchemy's engine events do not see (benches, tests); returns
    the function that stops it. A lean transaction made an ORM session also shows its
    SQLAlchemy connection's ``begin`` and ``commit`` events, from the moment it was made one."""
    _BOUNDARY_OBSERVERS.append(callback)
    return lambda: _BOUNDARY_OBSERVERS.remove(callback)


def boundary(name: str) -> None:
    """A lean transaction's boundary, for ``observe_transactions``'s callbacks."""
    for callback in _BOUNDARY_OBSERVERS:
        callback(name)


def observe(callback: Callable[[str, float], None]) -> Callable[[], None]:
    """Call ``callback(sql, seconds)`` after each driver statement (benches, tests); returns
    the function that stops it."""
    return observe_arguments(lambda sql, seconds, arguments: callback(sql, seconds))


def observe_arguments(callback: Callable[[str, float, Sequence[Any]], None]) -> Callable[[], None]:
    """``observe``, the callback also given the arguments the statement was sent with (in
    the order of its parameters, converted for the database): ``callback(sql, seconds,
    arguments)`` (tests that count the statements naming a value)."""
    _OBSERVERS.append(callback)
    return lambda: _OBSERVERS.remove(callback)


# The attribute of a lean transaction's session (storage/db.py ``_LeanSession``) holding its
# driver connection; its ORM session, once made, is ``LEAN_ORM``'s.
LEAN_DRIVEN: Final = "_paymux_driven"
LEAN_ORM: Final = "_paymux_orm"
_COMMIT: Final = Statement("COMMIT")  # named in a failed COMMIT's error


def lean_connection(adapter: Any, driver_connection: Any, dialect: Dialect) -> _Connection:
    """The driver connection of a lean transaction (PostgreSQL, storage/db.py): its writes
    held (``later``) until its next statement or COMMIT, and, once the transaction is used as
    an ORM session, its SQLAlchemy connection's (``adopt``)."""
    return _Connection(adapter, driver_connection, dialect, holds_writes=True)


def adopt(c: _Connection, sync_connection: Connection) -> None:
    """``sync_connection`` (the SQLAlchemy connection a lean transaction's ORM session runs
    on) sends ``c``'s held writes before its statements and COMMIT, and drops them at its
    ROLLBACK (``send_writes_together``'s events)."""
    _HOLDING[sync_connection] = c


async def send_held(c: _Connection) -> None:
    """``c``'s held writes sent now (a lean transaction's, before its COMMIT)."""
    await _send_held(c)


async def commit_lean(c: _Connection) -> None:
    """A lean transaction's COMMIT (nothing when nothing began; its held writes sent first
    by ``send_held``). An error is SQLAlchemy's, as the ORM's COMMIT raises it
    (``DBAPIError``)."""
    adapter = c.adapter
    if adapter._transaction is None:
        return
    try:
        await adapter._call_and_discard(adapter._transaction.commit)
    except Exception as error:
        try:
            adapter._handle_exception(error)
        except Exception as translated:
            raise _wrapped(_COMMIT, translated, adapter.dbapi.Error) from error
        raise  # pragma: no cover (_handle_exception always raises)


async def _connection(session: AsyncSession) -> _Connection:
    lean: _Connection | None = session.__dict__.get(LEAN_DRIVEN)
    if lean is not None:
        if session.__dict__.get(LEAN_ORM) is not None:
            # Used as an ORM session: a ``begin_nested()`` block's SAVEPOINT, if not sent.
            current = session.sync_session._transaction
            if current is not None and current.nested and not current._connections:
                await session.connection()
        return lean
    transaction = session.sync_session.get_transaction()
    if transaction is None or not transaction.is_active:
        raise RuntimeError(
            "storage.driver runs inside a transaction of Database.write() or read() only"
        )
    current = session.sync_session._transaction
    if current is not None and current.nested and not current._connections:
        # In a ``begin_nested()`` block whose SAVEPOINT SQLAlchemy has not sent yet (it
        # sends it lazily, at the block's first ORM statement): sent now, so the block's
        # rollback undoes this statement too.
        await session.connection()
    found = _CONNECTIONS.get(transaction)
    if found is not None:
        return found
    # The connection the transaction already holds (SQLAlchemy's ``_connections``: its
    # checked-out connections, keyed by engine and by connection) costs no greenlet call;
    # else the session takes one (the pool checkout, SQLite's BEGIN).
    held = transaction._connections
    connection: Connection | None
    if held:
        connection = next(iter(held.values()))[0]
    else:
        connection = (await session.connection()).sync_connection
    assert connection is not None
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT" or options.get("paymux_one_statement"):
        raise RuntimeError("storage.driver runs in a transaction, not on an autocommit reader")
    pooled = connection.connection
    holds = connection.dialect.name == "postgresql" and connection.engine.pool in _TOGETHER
    found = _CONNECTIONS[transaction] = _Connection(
        pooled.dbapi_connection, pooled.driver_connection, connection.dialect, holds_writes=holds
    )
    if holds:
        _HOLDING[connection] = found
    return found


def _wrapped(statement: Statement, error: Exception, dbapi_error: type[Exception]) -> Exception:
    wrapped = exc.DBAPIError.instance(statement.sql, None, error, dbapi_error, hide_parameters=True)
    assert isinstance(wrapped, Exception)
    return wrapped


async def _postgres(
    c: _Connection, statement: Statement, args: list[Any], rows: bool, *, begin: bool = True
) -> Any:
    adapter = c.adapter
    async with adapter._execute_mutex:
        if begin and adapter._transaction is None:
            await adapter._start_transaction()
        try:
            if rows:
                return await c.driver.fetch(statement.postgres, *args)
            return await c.driver.execute(statement.postgres, *args)
        except Exception as error:
            try:
                adapter._handle_exception(error)  # asyncpg's error as the DBAPI's (raises)
            except Exception as translated:
                raise _wrapped(statement, translated, adapter.dbapi.Error) from error
            raise  # pragma: no cover (_handle_exception always raises)


async def _sqlite(c: _Connection, statement: Statement, args: list[Any]) -> sqlite3.Cursor:
    try:
        return await sqlite_inline.execute_async(c.driver, statement.sqlite, args)
    except sqlite3.Error as error:
        raise _wrapped(statement, error, sqlite3.Error) from error


def _observed(statement: Statement, started: float, args: Sequence[Any]) -> None:
    took = time.perf_counter() - started
    for callback in _OBSERVERS:
        callback(statement.sql, took, args)


async def fetch(
    session: AsyncSession, statement: Statement, params: Mapping[str, Any] | None = None
) -> list[Row]:
    """All rows of ``statement`` in ``session``'s transaction, as tuples."""
    c = await _connection(session)
    if c.held:
        await _send_held(c)
    on = statement.on(c.dialect)
    args = statement.args(params, on)
    started = time.perf_counter() if _OBSERVERS else 0.0
    if c.postgres:
        rows: list[Row] = [tuple(r) for r in await _postgres(c, statement, args, True)]
    else:
        rows = (await _sqlite(c, statement, args)).fetchall()
    if _OBSERVERS:
        _observed(statement, started, args)
    return _typed(statement, on, rows)


async def fetch_with_held(
    session: AsyncSession,
    statement: Statement,
    params: Mapping[str, Any] | None = None,
    *,
    reads: frozenset[str],
) -> list[Row]:
    """``fetch`` of one SELECT that carries the writes ``later`` holds: on PostgreSQL they
    are its data-modifying WITHs, one round trip for them and the SELECT (issue 10). The
    SELECT sees none of their effects (one snapshot for all of a statement's parts), so
    ``reads`` names every table it reads or writes (through its functions too): a held
    write to one of them is sent first, on its own, and the SELECT then runs alone. Without
    held writes (SQLite, or nothing held), ``fetch``."""
    if _SELECT.match(statement.sql) is None:
        raise ValueError(f"fetch_with_held takes one SELECT, not {statement!r}")
    c = await _connection(session)
    held = c.held
    if not held or any(part.writes in reads for part, _ in held):
        return await fetch(session, statement, params)
    c.held = []
    on = statement.on(c.dialect)
    together, args = _joined([*held, (statement, statement.args(params, on))])
    started = time.perf_counter() if _OBSERVERS else 0.0
    rows: list[Row] = [tuple(r) for r in await _postgres(c, together, args, True)]
    if _OBSERVERS:
        _observed(together, started, args)
    return _typed(statement, on, rows)


def _typed(statement: Statement, on: _Dialected, rows: list[Row]) -> list[Row]:
    if on.results is not None:
        processors = on.results
        converted = []
        for row in rows:
            values = list(row)
            for index, process in processors:
                if index < len(values):
                    values[index] = process(values[index])
            converted.append(tuple(values))
        rows = converted
    make = statement.row
    return rows if make is None else [make(row) for row in rows]


async def fetchrow(
    session: AsyncSession, statement: Statement, params: Mapping[str, Any] | None = None
) -> Row | None:
    """The first row of ``statement`` (the others are discarded), or None."""
    rows = await fetch(session, statement, params)
    return rows[0] if rows else None


async def execute(
    session: AsyncSession, statement: Statement, params: Mapping[str, Any] | None = None
) -> int:
    """Run ``statement`` (no rows wanted); returns the rows it changed (-1 when unknown)."""
    c = await _connection(session)
    if c.held:
        await _send_held(c)
    args = statement.args(params, statement.on(c.dialect))
    started = time.perf_counter() if _OBSERVERS else 0.0
    if c.postgres:
        tag = await _postgres(c, statement, args, False)
        found = _TAG_COUNT.search(tag or "")
        count = int(found.group(1)) if found else -1
    else:
        cursor = await _sqlite(c, statement, args)
        if cursor.description is not None:
            cursor.fetchall()  # a RETURNING's rows: no statement left half-read
        count = cursor.rowcount
    if _OBSERVERS:
        _observed(statement, started, args)
    return count


async def later(
    session: AsyncSession, statement: Statement, params: Mapping[str, Any] | None = None
) -> None:
    """A write of ``session``'s transaction whose result nobody reads (an event's or an audit
    entry's INSERT, the UPDATE of a row the transaction has locked), sent with the writes
    after it: on an engine set up by ``send_writes_together`` (PostgreSQL), it is held, and
    the writes held are sent as ONE statement (each but the last a data-modifying WITH) just
    before the transaction's next statement of any kind (driver, ORM, SAVEPOINT) or its
    COMMIT. Two writes or more cost one round trip (issue 10); a ROLLBACK drops them.
    Anywhere else (SQLite, which has no round trip to save) it runs at once, as ``execute``.

    - ``statement``: one plain INSERT, UPDATE or DELETE (no WITH of its own: PostgreSQL
      takes a data-modifying WITH at the top level only), built once (module level, or
      cached by shape) as every driver statement is: the statements sent together are
      built once per sequence of them and kept.
    - Its parameters are converted now: a dict the caller changes afterwards changes
      nothing.
    - The writes sent together see the same snapshot, not one another's effects (PostgreSQL's
      data-modifying WITH): a write to a table already held sends the held ones first, so
      no two of one statement write one table. A write whose triggers read a table that
      another held write changes must use ``execute``.
    - An error of a held write (a constraint) is raised where the writes are sent: at the
      next statement or at the COMMIT (``Database.write()``'s block end), not at this call.
      A write whose error the caller catches must use ``execute``, unless the caller lets
      the whole transaction roll back and makes it again (services/payments.py ``create``:
      a held payment method's token the account had already)."""
    c = await _connection(session)
    if c.held is None:
        await execute(session, statement, params)
        return
    table = statement.writes
    if table is None:
        raise ValueError(f"later() takes one INSERT, UPDATE or DELETE, not {statement!r}")
    if any(held.writes == table for held, _ in c.held):
        await _send_held(c)
    c.held.append((statement, statement.args(params, statement.on(c.dialect))))


# Held writes sent together, by their statements: one Statement whose SQL names each part's
# parameters apart (``w0_id``), so its arguments are the parts' converted arguments in order.
_TOGETHER_SQL: dict[tuple[Statement, ...], Statement] = {}


def _together(parts: tuple[Statement, ...]) -> Statement:
    found = _TOGETHER_SQL.get(parts)
    if found is None:
        texts = []
        for i, part in enumerate(parts):

            def named(match: re.Match[str], i: int = i) -> str:
                name = match.group(1)
                return match.group(0) if name is None else f":w{i}_{name}"

            texts.append(_TOKENS.sub(named, part.sql))
        *withs, last = texts
        sql = "WITH " + ", ".join(f"w{i} AS ({text})" for i, text in enumerate(withs))
        found = _TOGETHER_SQL[parts] = Statement(f"{sql} {last}")
    return found


def _joined(parts: list[tuple[Statement, list[Any]]]) -> tuple[Statement, list[Any]]:
    """Statements and their converted arguments as one statement (``_together``) and its
    arguments; one alone as it is."""
    if len(parts) == 1:
        return parts[0]
    return _together(tuple(part for part, _ in parts)), [v for _, args in parts for v in args]


async def _send_held(c: _Connection) -> None:
    """Send ``c``'s held writes (one statement), emptied first: a write that fails is not
    sent again (its error aborts the transaction)."""
    held = c.held
    if not held:
        return
    c.held = []
    statement, args = _joined(held)
    started = time.perf_counter() if _OBSERVERS else 0.0
    await _postgres(c, statement, args, False)
    if _OBSERVERS:
        _observed(statement, started, args)


def _before_statement(conn: Connection, *args: Any) -> None:
    """An ORM or Core statement (a SAVEPOINT too) on a connection holding writes: they go
    first, in the greenlet SQLAlchemy's asyncio layer runs the statement in."""
    c = _HOLDING.get(conn)
    if c is not None and c.held:
        await_only(_send_held(c))


def _drop_held(conn: Connection, *args: Any) -> None:
    """A ROLLBACK TO SAVEPOINT: the held writes were made after the last statement, so after
    any savepoint it undoes; they are dropped, never sent. (A whole ROLLBACK too: the next
    transaction has writes of its own, ``_connection``'s per transaction, but a connection
    SQLAlchemy went on using must not keep them.)"""
    c = _HOLDING.get(conn)
    if c is not None and c.held:
        c.held = []


def send_writes_together(engine: AsyncEngine) -> None:
    """Make ``later`` hold writes on ``engine`` (PostgreSQL): its connections send them before
    each statement (``before_cursor_execute``, SAVEPOINTs included) and before COMMIT, and
    drop them at ROLLBACK and ROLLBACK TO SAVEPOINT."""
    sync = engine.sync_engine
    if sync.dialect.name != "postgresql" or sync.pool in _TOGETHER:
        return
    event.listen(sync, "before_cursor_execute", _before_statement)
    event.listen(sync, "commit", _before_statement)
    event.listen(sync, "rollback", _drop_held)
    event.listen(sync, "rollback_savepoint", _drop_held)
    _TOGETHER.add(sync.pool)


async def first_row(
    engine: AsyncEngine, statement: Statement, params: Mapping[str, Any] | None = None
) -> Row | None:
    """The first row of a one-statement read OUTSIDE any transaction (``Database.first_row``
    on the driver), or of one write that is atomic alone (an upsert ``RETURNING``, run on
    ``db.writer``: services/ratelimit.py): a connection of ``engine``'s pool (``db.reader``;
    checked out in one greenlet call, with the pool's ping on PostgreSQL), the statement
    alone (PostgreSQL: asyncpg without a transaction, the statement its own snapshot;
    SQLite: sqlite3's autocommit, no BEGIN), the connection back to the pool. A connection
    whose statement was cut off (an error, a cancellation) is invalidated, not pooled."""
    pooled = await engine.raw_connection()
    try:
        row = await first_row_on(pooled, engine.dialect, statement, params)
    except BaseException:
        pooled.invalidate()
        raise
    await greenlet_spawn(pooled.close)  # an overflow connection is closed: I/O
    return row


class DriverConnection(Protocol):
    """A connection ``first_row_on`` runs on: a pooled one, or one the caller keeps."""

    @property
    def dbapi_connection(self) -> Any: ...

    @property
    def driver_connection(self) -> Any: ...


async def first_row_on(
    pooled: DriverConnection,
    dialect: Dialect,
    statement: Statement,
    params: Mapping[str, Any] | None = None,
) -> Row | None:
    """``first_row`` on a connection the caller holds, outside any transaction (the caller
    invalidates it if this raises: its statement may have been cut off)."""
    c = _Connection(pooled.dbapi_connection, pooled.driver_connection, dialect)
    on = statement.on(dialect)
    args = statement.args(params, on)
    started = time.perf_counter() if _OBSERVERS else 0.0
    if c.postgres:
        rows: list[Row] = [tuple(r) for r in await _postgres(c, statement, args, True, begin=False)]
    else:
        rows = (await _sqlite(c, statement, args)).fetchall()  # no half-read statement
    if _OBSERVERS:
        _observed(statement, started, args)
    return _typed(statement, on, rows[:1])[0] if rows else None
