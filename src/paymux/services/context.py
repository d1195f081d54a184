"""What every service needs: the database, the gateways, settings, a clock; and small helpers
shared by all of them (events, lookups scoped to an account, cursor pagination)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Select, inspect, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from paymux.config import Settings
from paymux.domain.clock import Clock, SystemClock
from paymux.domain.errors import PaymuxError
from paymux.domain.events import EVENT_TYPES, changed_attributes
from paymux.domain.ids import new_id
from paymux.gateways.base import Gateway
from paymux.gateways.registry import GatewayRegistry
from paymux.storage.db import Database, orm_untouched
from paymux.storage.driver import Statement, later
from paymux.storage.models import Event

__all__ = [
    "Context",
    "GatewayDirectory",
    "Routed",
    "columns_of",
    "current_livemode",
    "emit",
    "flush_pending",
    "get_owned",
    "merge_metadata",
    "page_of",
    "paginate",
    "react_to",
    "react_to_row",
    "ref_key",
    "request_livemode",
    "row_of",
    "scoped",
]

T = TypeVar("T")

# The mode (test or live) of the key a request came with; set by api/deps.py ``caller``.
# None outside a request (workers, the CLI, library use): no mode is imposed there, and what
# they make takes the mode of the object it derives from.
current_livemode: ContextVar[bool | None] = ContextVar("paymux_livemode", default=None)


def request_livemode() -> bool:
    """The mode new objects of this request get: the key's (test outside a request)."""
    return bool(current_livemode.get())


def _mode_hides(obj: Any) -> bool:
    """A live object is invisible to a test key and a test object to a live key."""
    mode = current_livemode.get()
    return mode is not None and bool(getattr(obj, "livemode", mode)) != mode


@dataclass(frozen=True, slots=True)
class Routed:
    """The gateway a new payment goes to, and the connection it goes through."""

    gateway: Gateway
    connection_id: str


class GatewayDirectory(Protocol):
    """Which gateway runs an account's objects: services/connections.py."""

    async def gateway(
        self,
        name: str | None,
        *,
        account_id: str | None = None,
        connection_id: str | None = None,
        livemode: bool = False,
        param: str = "gateway",
    ) -> Gateway: ...

    def cached(self, name: str, connection_id: str | None) -> Gateway | None: ...

    async def named(
        self,
        account_id: str | None,
        name: str | None,
        *,
        livemode: bool = False,
        param: str = "gateway",
    ) -> Routed: ...

    async def route(
        self,
        account_id: str,
        requested: str | None,
        currency: str,
        *,
        livemode: bool = False,
        payment_method_types: Sequence[str] | None = None,
        needs: frozenset[str] = frozenset(),
    ) -> Routed: ...

    async def fallback(
        self,
        account_id: str,
        failed: str,
        currency: str,
        *,
        livemode: bool = False,
        payment_method_types: Sequence[str] | None = None,
        needs: frozenset[str] = frozenset(),
        tried: frozenset[str] = frozenset(),
    ) -> Routed | None: ...


def ref_key(gateway: str, connection_id: str | None) -> str:
    """Where a customer's gateway-side id is kept in ``Customer.gateway_refs``: per stored
    connection (two Stripe accounts know the customer under two ids), else per gateway."""
    if connection_id and not connection_id.startswith("conn_env_"):
        return connection_id
    return gateway


class _Routed(Protocol):
    account_id: str
    gateway: str
    connection_id: str | None


@dataclass
class Context:
    db: Database
    gateways: GatewayRegistry  # the deployment's: environment variables or Paymux(gateways=)
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    directory: GatewayDirectory | None = None

    def now_us(self) -> int:
        return self.clock.now_us()

    async def gateway(
        self,
        name: str | None,
        *,
        account_id: str | None = None,
        connection_id: str | None = None,
        param: str = "gateway",
    ) -> Gateway:
        """The gateway by name for an account (its own connection, or the deployment's it may
        use), or by the connection an object went through."""
        if self.directory is not None:
            return await self.directory.gateway(
                name, account_id=account_id, connection_id=connection_id, param=param
            )
        key = name or self.gateways.default
        gateway = self.gateways.get(key)
        if gateway is None:
            raise PaymuxError.of(
                "gateway_unknown", f"No gateway named {key!r} is configured.", param=param
            )
        return gateway

    async def gateway_of(self, obj: _Routed) -> Gateway:
        """The gateway that runs an object: the connection it went through."""
        return await self.gateway(
            obj.gateway, account_id=obj.account_id, connection_id=obj.connection_id
        )

    async def named(self, account_id: str, name: str | None, *, param: str = "gateway") -> Routed:
        """The connection an account's new object takes for a gateway name."""
        if self.directory is not None:
            return await self.directory.named(
                account_id, name, livemode=request_livemode(), param=param
            )
        gateway = await self.gateway(name, param=param)
        return Routed(gateway, "conn_env_" + gateway.name)

    def cached_gateway(self, obj: _Routed) -> Gateway | None:
        """The gateway of an object if it is at hand without I/O (for views), else None."""
        if self.directory is not None:
            return self.directory.cached(obj.gateway, obj.connection_id)
        return self.gateways.get(obj.gateway)


def columns_of(model: Any) -> tuple[tuple[str, str], ...]:
    """(attribute, column) of a model's columns (``metadata_`` is the column ``metadata``)."""
    return tuple((attr.key, attr.columns[0].name) for attr in inspect(model).column_attrs)


def row_of(obj: Any, columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A new (transient) object's row for a Core INSERT: the attributes it was given, as the
    ORM would insert them (the others get their column defaults). No unit of work needed."""
    given = inspect(obj).dict
    return {column: given[key] for key, column in columns if key in given}


# The event's INSERT, on the database driver (storage/driver.py) in the caller's transaction:
# an event is only ever inserted here, so it needs no unit of work, and a statement whose SQL
# never changes needs none of SQLAlchemy's execution layers either (a payment emits two:
# created, succeeded). JSON columns are bound as the ORM binds them (their types' bind
# processors: None as JSON ``null``), and ``livemode`` as each database's boolean.
# ``dispatched_us`` 0: the event has its row in the outbox (``_OUTBOX_INSERT``); the
# previous release's dispatcher, during a rolling upgrade, takes none (migration 0040).
_EVENT_COLUMNS = (
    "id, account_id, type, object_id, livemode, data, created_us, request_id, "
    "idempotency_key, previous_attributes, dispatched_us, object_seq"
)
_EVENT_VALUES = (
    ":id, :account_id, :type, :object_id, :livemode, :data, :created_us, :request_id, "
    ":idempotency_key, :previous_attributes, 0"
)
_EVENT_BINDS: dict[str, TypeEngine[Any]] = {
    name: Event.__table__.c[name].type for name in ("livemode", "data", "previous_attributes")
}
_EVENT_INSERT = Statement(
    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES}, :object_seq)",  # noqa: S608
    binds=_EVENT_BINDS,
)
# An event that needs no previous snapshot (any but ``*.updated``) takes its place in its
# object's sequence in its own INSERT: the sequence's top (the (object_id, object_seq)
# index's last entry of the object) read by a scalar subquery, plus 1. One statement where
# a SELECT of the top and the INSERT were two; the same read, under the same row lock.
_EVENT_INSERT_NEXT = Statement(
    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES}, "  # noqa: S608
    "(SELECT coalesce(max(events.object_seq), 0) + 1 FROM events "
    "WHERE events.object_id = :seq_object_id AND events.account_id = :seq_account_id))",
    binds=_EVENT_BINDS,
)

# The event's row of the outbox (models.EventOutbox): held with the event's INSERT on
# PostgreSQL and sent with it, so it costs no round trip of its own.
_OUTBOX_INSERT = Statement("INSERT INTO event_outbox (event_id) VALUES (:event_id)")


async def flush_pending(session: AsyncSession) -> None:
    """What the ORM's autoflush did before a statement through ``session.execute``, before a
    driver statement (which never autoflushes): pending changes of the session's objects are
    written first, so the transaction's writes (and PostgreSQL's row locks) come in the order
    they did. Nothing to do (no I/O) when the session holds no change."""
    if orm_untouched(session):
        return  # a lean transaction not used as an ORM session holds no change
    sync = session.sync_session
    if sync.autoflush and not sync._is_clean():
        await session.flush()


# What reacts to an event in the transaction that emits it: (session, account id, the
# event's object, now_us). Registered by the package that reacts (checkout completes its
# session when the session's intent succeeds, whichever path settled the intent: the API,
# a webhook, a recovery job), so the reaction commits, or not, with the change itself.
Reaction = Callable[[AsyncSession, str, dict[str, Any], int], Awaitable[None]]
# Whether a reaction has anything to do, from what the emitter already holds (no query):
# (the event's object, the emitter's row of it or None). A gate must be a necessary
# condition of the reaction doing anything: it only saves the reaction's own queries.
Gate = Callable[[dict[str, Any], Any], bool]
# A reaction that also takes the emitter's row of the object (``react_to_row``).
RowReaction = Callable[[AsyncSession, str, dict[str, Any], int, Any], Awaitable[None]]
# By event type, in registration order: (reaction, gate, whether it takes the row, when it
# runs no statement: ``react_to_row``'s ``without_statements``).
_REACTIONS: dict[str, list[tuple[Reaction | RowReaction, Gate | None, bool, Gate | None]]] = {}
_log = logging.getLogger(__name__)


def react_to(type_: str, reaction: Reaction, *, when: Gate | None = None) -> None:
    """Run ``reaction`` whenever an event of ``type_`` is emitted (once per function).

    ``when``: run it only if ``when(obj, subject)`` holds, ``subject`` being the row the
    emitter passed to ``emit`` (None when it passed none: the gate must then decide from the
    object alone). A gate that raises is logged and the reaction runs."""
    _register(type_, reaction, when, None, with_row=False)


def react_to_row(
    type_: str,
    reaction: RowReaction,
    *,
    when: Gate | None = None,
    without_statements: Gate | None = None,
) -> None:
    """As ``react_to``, for a reaction that also takes the emitter's row of the object (the
    ``subject`` passed to ``emit``, None when it passed none), so it need not read it.

    A row the session does not hold (the settle's plain row object, services/attempts.py)
    is written by its emitter after ``emit`` returns: what the reaction changes on it is
    written with the emitter's own changes, outside the reaction's savepoint, so the
    reaction changes it last, once nothing else of it can fail. A row the session holds
    is flushed as any of the session's objects.

    ``without_statements``: when ``without_statements(obj, subject)`` holds, the reaction
    runs no statement (it only changes the emitter's plain row), so it runs without the
    savepoint, which would undo nothing: a savepoint makes the transaction an ORM session's
    on PostgreSQL (storage/db.py ``_LeanSession``), about 0.1 ms of CPU a settle. An error
    is logged as any reaction's."""
    _register(type_, reaction, when, without_statements, with_row=True)


def _register(
    type_: str,
    reaction: Reaction | RowReaction,
    when: Gate | None,
    without_statements: Gate | None,
    *,
    with_row: bool,
) -> None:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}: add it to paymux.domain.events")
    found = _REACTIONS.setdefault(type_, [])
    if all(reaction is not known for known, _, _, _ in found):
        found.append((reaction, when, with_row, without_statements))


async def emit(
    session: AsyncSession,
    account_id: str,
    type_: str,
    obj: dict[str, Any],
    now_us: int,
    *,
    subject: Any = None,
) -> None:
    """Write an event in the caller's transaction, with the object as it is now (a
    snapshot), and its row of the outbox (``event_outbox``, for the outbound dispatcher): two
    INSERTs, held on PostgreSQL and sent as one statement with the transaction's next
    statement or its COMMIT (``driver.later``). The type must be in the catalog (domain/events.py).
    Also recorded: the API request that caused it, the event's place among its object's
    events (``object_seq``: the last one's plus 1, read under the object's row lock, which
    its change took) and, on ``*.updated``, the changed fields' previous values against
    that last event (services/events.py). Only an ``*.updated`` event reads the last
    event's snapshot first; any other is one INSERT, which reads the sequence's top itself
    (an indexed aggregate in a scalar subquery).

    ``subject``: the emitter's row of the object (an intent being settled), for the
    reactions' gates (``react_to``'s ``when``)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}: add it to paymux.domain.events")
    from paymux.services.events import last_event_of, request_of_now  # a cycle

    request_id, idempotency_key = request_of_now()
    object_id = str(obj["id"])
    row: dict[str, Any] = {
        "id": new_id("evt"),
        "account_id": account_id,
        "type": type_,
        "object_id": object_id,
        "livemode": bool(obj.get("livemode", False)),
        "data": obj,
        "created_us": now_us,
        "request_id": request_id,
        "idempotency_key": idempotency_key,
    }
    if type_.endswith(".updated"):
        last, last_seq = await last_event_of(session, account_id, object_id)
        row["previous_attributes"] = None if last is None else changed_attributes(last, obj)
        row["object_seq"] = last_seq + 1
        await flush_pending(session)
        await later(session, _EVENT_INSERT, row)
    else:
        row["previous_attributes"] = None
        row["seq_object_id"], row["seq_account_id"] = object_id, account_id
        await flush_pending(session)
        await later(session, _EVENT_INSERT_NEXT, row)
    await later(session, _OUTBOX_INSERT, {"event_id": row["id"]})
    for reaction, when, with_row, without_statements in _REACTIONS.get(type_, ()):
        if when is not None and not _gate_allows(when, obj, subject, type_):
            continue  # nothing for it to do (no query, no savepoint)
        # Each in a savepoint: a reaction that fails is undone alone and logged, never the
        # change that emitted the event (a settled payment stays settled; checkout's sweep
        # repairs a session its reaction left open). One that runs no statement needs none
        # (``react_to_row``'s ``without_statements``).
        plain = without_statements is not None and _gate_allows(
            without_statements, obj, subject, type_, default=False
        )
        try:
            async with nullcontext() if plain else session.begin_nested():
                if with_row:
                    await cast(RowReaction, reaction)(session, account_id, obj, now_us, subject)
                else:
                    await cast(Reaction, reaction)(session, account_id, obj, now_us)
        except Exception:
            _log.exception("reaction %s to %s failed", getattr(reaction, "__name__", "?"), type_)


def _gate_allows(
    when: Gate, obj: dict[str, Any], subject: Any, type_: str, *, default: bool = True
) -> bool:
    """A reaction's gate, which never aborts the emitting transaction: one that raises is
    logged and answers ``default`` (a ``when`` gate: the reaction runs, since a gate only
    saves the reaction's own queries and the reaction decides for itself; a
    ``without_statements`` one: the reaction runs in its savepoint)."""
    try:
        return bool(when(obj, subject))
    except Exception:
        _log.exception("gate %s of a reaction to %s failed", getattr(when, "__name__", "?"), type_)
        return default


async def get_owned(
    session: AsyncSession,
    model: type[T],
    object_id: str,
    account_id: str,
    *,
    param: str = "id",
    include_deleted: bool = False,
    lock: bool = False,
) -> T:
    """The object if it exists and belongs to the account; 404 otherwise (never a leak).

    A deleted object (a customer) is found only when asked for with ``include_deleted``.
    ``lock``: FOR UPDATE on PostgreSQL (SQLite's writer holds the database anyway)."""
    obj = await session.get(model, object_id, with_for_update=lock or None)
    if (
        obj is None
        or getattr(obj, "account_id", None) != account_id
        or _mode_hides(obj)
        or (getattr(obj, "deleted", False) and not include_deleted)
    ):
        kind = model.__name__.replace("PaymentIntent", "payment_intent").lower()
        raise PaymuxError.of("resource_missing", f"No such {kind}: '{object_id}'", param=param)
    return obj


async def paginate(
    session: AsyncSession,
    model: Any,
    query: Select[Any],
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[list[Any], bool]:
    """Newest first, by (created_us, id); cursors are object ids."""
    key = tuple_(model.created_us, model.id)
    if starting_after:
        cursor = await get_owned(session, model, starting_after, account_id, param="starting_after")
        query = query.where(key < tuple_(cursor.created_us, cursor.id))
    if ending_before:
        cursor = await get_owned(session, model, ending_before, account_id, param="ending_before")
        query = query.where(key > tuple_(cursor.created_us, cursor.id))
        rows = list(
            (
                await session.execute(
                    query.order_by(model.created_us.asc(), model.id.asc()).limit(limit + 1)
                )
            ).scalars()
        )
        has_more = len(rows) > limit
        return list(reversed(rows[:limit])), has_more
    rows = list(
        (
            await session.execute(
                query.order_by(model.created_us.desc(), model.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    return rows[:limit], len(rows) > limit


@dataclass(frozen=True, slots=True)
class CreatedRange:
    """Stripe's ``created[gt|gte|lt|lte]`` list filter, in epoch seconds."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    def clauses(self, column: Any) -> list[Any]:
        """SQL clauses on a ``*_us`` column (microseconds): a created time of whole second
        N covers [N, N+1) seconds, as Stripe's seconds do."""
        out = []
        if self.gt is not None:
            out.append(column >= (self.gt + 1) * 1_000_000)
        if self.gte is not None:
            out.append(column >= self.gte * 1_000_000)
        if self.lt is not None:
            out.append(column < self.lt * 1_000_000)
        if self.lte is not None:
            out.append(column < (self.lte + 1) * 1_000_000)
        return out


async def page_of(
    ctx: Context,
    model: Any,
    account_id: str,
    view: Callable[[Any], dict[str, Any]],
    *filters: Any,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    created: CreatedRange | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of an account's objects, newest first, as API views. ``filters`` are SQL
    clauses; None entries (an absent query parameter) are skipped."""
    clauses = [f for f in filters if f is not None]
    if created is not None:
        clauses += created.clauses(model.created_us)
    query = scoped(model, account_id).where(*clauses)
    async with ctx.db.read() as s:
        rows, more = await paginate(
            s,
            model,
            query,
            account_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
        return [view(row) for row in rows], more


def merge_metadata(current: dict[str, Any] | None, update: dict[str, str]) -> dict[str, Any]:
    """Stripe's metadata update: keys given are set, a key given as "" is removed, others
    stay."""
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def scoped(model: Any, account_id: str) -> Select[Any]:
    """The account's objects (of the request key's mode, for models that have one)."""
    query = select(model).where(model.account_id == account_id)
    mode = current_livemode.get()
    if mode is not None and hasattr(model, "livemode"):
        query = query.where(model.livemode.is_(mode))
    return query
