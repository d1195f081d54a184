"""Meter event ingest: usage reports checked and stored in batches, all or nothing.

A product reports usage as fast as it happens, so this path is built for throughput:

- ``parse_stream`` checks the shape of a ``/v2/billing/meter_event_stream`` body (up to
  ``MAX_BATCH`` events) with plain dict and type checks, no model object per event: at a
  hundred events a request, pydantic's per-event cost showed up in the profile. The single
  ``POST /v1/billing/meter_events`` has a pydantic model (it is form-encoded by the SDKs) and
  becomes a batch of one.
- ``MeterIngest.record`` resolves the batch's meters with ONE query (by event name) and its
  customers with ONE query (``id IN (...)``), then stores every event with ONE
  ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite: multi-row VALUES; PostgreSQL: ``SELECT FROM
  unnest(...)`` of one array per column, far cheaper to bind). On PostgreSQL the look-ups and the
  insert share one transaction; on SQLite the look-ups read outside the single writer, so it
  is held only for the insert.
- All or nothing: every event is checked before anything is written; the first bad event
  (by index) is the error, and its ``param`` names it (``events[3][payload][value]``).
- Idempotent by ``identifier`` (per account and mode): an event whose identifier is stored
  already is accepted and ignored, as are repeats within a batch (the first one counts).

Timestamps must lie within ``MAX_AGE_S`` (35 days) before now and ``MAX_AHEAD_S`` (5 minutes)
after it, as Stripe requires; "now" is the customer's test clock's frozen time when it has
one. ``created_us`` is the time of the request plus the event's index in its batch (in
microseconds), so a ``last`` meter breaks a tie on ``timestamp`` by the order events were sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, Insert, Select, Table, bindparam, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.services.audit import audit_in
from paymux.storage.db import Database
from paymux.storage.keyed import among
from paymux.storage.models import Customer, Meter, MeterEvent, TestClock

__all__ = [
    "MAX_AGE_S",
    "MAX_AHEAD_S",
    "MAX_BATCH",
    "Accepted",
    "MeterIngest",
    "RawEvent",
    "meter_event_view",
    "parse_stream",
    "single_event",
]

MAX_BATCH = 100  # Stripe's meter event stream takes up to 100 events a request
MAX_AGE_S = 35 * 86_400
MAX_AHEAD_S = 5 * 60
_MAX_NAME = 100
_MAX_PAYLOAD_KEYS = 50
_MAX_PAYLOAD_VALUE = 500
# An integer as a string, as Stripe's SDKs send it, that fits the BIGINT column with room for
# sums: at most 15 digits.
_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")
_EVENT_KEYS = frozenset({"event_name", "payload", "identifier", "timestamp"})
_METERS = cast(Table, Meter.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)
_EVENTS = cast(Table, MeterEvent.__table__)
_CLOCKS = cast(Table, TestClock.__table__)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One meter event as sent, its shape checked; ``where`` prefixes its params
    (``""`` for the single endpoint, ``"events[3]"`` in a stream)."""

    event_name: str
    payload: Mapping[str, str]
    identifier: str | None
    timestamp_s: int | None
    where: str = ""

    def param(self, *names: str) -> str:
        head = [self.where] if self.where else []
        parts = [*head, *names]
        return parts[0] + "".join(f"[{n}]" for n in parts[1:])


def meter_event_view(
    event: RawEvent, identifier: str, timestamp_s: int, created_s: int, livemode: bool
) -> dict[str, Any]:
    """Stripe's ``billing.meter_event``: the event as it was sent (Stripe answers before it
    processes the event; a repeated identifier is answered the same way and ignored)."""
    return {
        "object": "billing.meter_event",
        "created": created_s,
        "event_name": event.event_name,
        "identifier": identifier,
        "livemode": livemode,
        "payload": dict(event.payload),
        "timestamp": timestamp_s,
    }


# -- the stream's shape -------------------------------------------------------------------------
def _invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


def _missing(param: str) -> PaymuxError:
    return PaymuxError.of("parameter_missing", f"Missing required param: {param}.", param=param)


def _text(value: Any, param: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _invalid(f"Invalid {param}: must be a string.", param)
    if (not value and not empty) or len(value) > limit or "\x00" in value:
        raise _invalid(f"Invalid {param}: must be 1 to {limit} characters, no NUL.", param)
    return value


def _stream_timestamp(value: Any, param: str) -> int:
    """The v2 stream's timestamp: an RFC 3339 date-time (Stripe's), or unix seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and 0 < len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp())
    raise _invalid(
        f"Invalid {param}: use an RFC 3339 date-time with a zone (2026-01-31T12:00:00Z) "
        "or unix seconds.",
        param,
    )


def _payload(value: Any, param: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _invalid(f"Invalid {param}: must be an object of strings.", param)
    if len(value) > _MAX_PAYLOAD_KEYS:
        raise _invalid(f"Invalid {param}: at most {_MAX_PAYLOAD_KEYS} keys.", param)
    for key, item in value.items():
        if not key or len(key) > _MAX_NAME or "\x00" in key:
            raise _invalid(f"Invalid {param}: keys must be 1 to {_MAX_NAME} characters.", param)
        _text(item, f"{param}[{key}]", _MAX_PAYLOAD_VALUE, empty=True)
    return value


def _stream_event(raw: Any, where: str) -> RawEvent:
    if not isinstance(raw, dict):
        raise _invalid(f"Invalid {where}: each event must be an object.", where)
    for key in raw:
        if key not in _EVENT_KEYS:
            name = f"{where}[{key}]" if len(str(key)) <= _MAX_NAME else where
            raise PaymuxError.of(
                "parameter_unknown", f"Received unknown parameter: {name}.", param=name
            )
    if "event_name" not in raw:
        raise _missing(f"{where}[event_name]")
    if "payload" not in raw:
        raise _missing(f"{where}[payload]")
    identifier = raw.get("identifier")
    timestamp = raw.get("timestamp")
    return RawEvent(
        event_name=_text(raw["event_name"], f"{where}[event_name]", _MAX_NAME),
        payload=_payload(raw["payload"], f"{where}[payload]"),
        identifier=None
        if identifier is None
        else _text(identifier, f"{where}[identifier]", _MAX_NAME),
        timestamp_s=None
        if timestamp is None
        else _stream_timestamp(timestamp, f"{where}[timestamp]"),
        where=where,
    )


def single_event(
    event_name: str, payload: dict[str, str], identifier: str | None, timestamp: int | None
) -> RawEvent:
    """``POST /v1/billing/meter_events``' event (its model checked the types)."""
    return RawEvent(event_name, _payload(payload, "payload"), identifier, timestamp)


def parse_stream(body: Any) -> list[RawEvent]:
    """A ``/v2/billing/meter_event_stream`` body's events, shapes checked (400 naming the
    first bad one)."""
    if not isinstance(body, dict):
        raise PaymuxError.of("parameter_invalid", "The body must be a JSON object.")
    for key in body:
        if key != "events":
            name = str(key) if len(str(key)) <= _MAX_NAME else None
            raise PaymuxError.of(
                "parameter_unknown", f"Received unknown parameter: {name}.", param=name
            )
    events = body.get("events")
    if events is None:
        raise _missing("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
        raise _invalid(f"Invalid events: a list of 1 to {MAX_BATCH} meter events.", "events")
    return [_stream_event(raw, f"events[{i}]") for i, raw in enumerate(events)]


# -- checking against the account and storing --------------------------------------------------
@dataclass(frozen=True, slots=True)
class _MeterRule:
    status: str
    formula: str
    customer_key: str
    value_key: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``record`` stored: the batch's rows (in the order sent) and how many were new
    (not a repeated identifier)."""

    rows: list[dict[str, Any]]
    new: int

    def views(
        self, events: Sequence[RawEvent], livemode: bool, now_us: int
    ) -> list[dict[str, Any]]:
        """The answers: the events as sent, with their identifier and timestamp (a stream
        answers ``{}`` and skips making them)."""
        return [
            meter_event_view(
                event,
                row["identifier"],
                row["timestamp_us"] // 1_000_000,
                now_us // 1_000_000,
                livemode,
            )
            for event, row in zip(events, self.rows, strict=True)
        ]


def _statements(is_sqlite: bool) -> tuple[Select[Any], Select[Any], Insert]:
    """Built once per service: SQLAlchemy caches their compiled form."""
    meters = select(
        _METERS.c.event_name,
        _METERS.c.status,
        _METERS.c.aggregation,
        _METERS.c.customer_mapping_key,
        _METERS.c.value_key,
    ).where(
        _METERS.c.account_id == bindparam("account_id"),
        _METERS.c.livemode == bindparam("livemode", type_=Boolean),
        _METERS.c.event_name.in_(bindparam("names", expanding=True)),
    )
    # Each customer with the frozen time of its test clock, if it has one: its events are
    # timed by that clock (one query either way). By the customers' ids alone (their primary
    # key), the account, mode and deletion checked on the rows (``_clocks_of``): PostgreSQL
    # keeps a generic plan for a statement asyncpg prepared once it has run five times, and
    # the plan kept without statistics for ``account_id = $1 AND ... AND id IN (...)`` walked
    # every customer of the account through (account_id, created_us)
    # (tests/integration/test_key_lookup_plans.py). The ids as one array on PostgreSQL
    # (``among``): as an IN list of a batch's size, that plan read the whole table.
    customers = (
        select(
            _CUSTOMERS.c.id,
            _CUSTOMERS.c.account_id,
            _CUSTOMERS.c.livemode,
            _CUSTOMERS.c.deleted,
            _CLOCKS.c.frozen_time_us,
        )
        .select_from(_CUSTOMERS.outerjoin(_CLOCKS, _CLOCKS.c.id == _CUSTOMERS.c.test_clock_id))
        .where(among(_CUSTOMERS.c.id, "ids", is_sqlite=is_sqlite))
    )
    dialect_insert = sqlite_insert if is_sqlite else pg_insert
    insert = (
        dialect_insert(_EVENTS)
        .on_conflict_do_nothing(index_elements=["account_id", "livemode", "identifier"])
        .returning(_EVENTS.c.identifier)
    )
    return meters, customers, insert


def _clocks_of(rows: Iterable[Any], account_id: str, livemode: bool) -> dict[str, int | None]:
    """Customer id -> its test clock's frozen time (µs), if any, of the rows (``_statements``'
    customers) that are the account's, in the mode, and not deleted: another account's
    customer, or a deleted one, is no customer here."""
    return {
        row.id: row.frozen_time_us
        for row in rows
        if row.account_id == account_id and bool(row.livemode) == bool(livemode) and not row.deleted
    }


class MeterIngest:
    """Checks and stores batches of meter events; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._meters, self._customers, self._insert = _statements(db.is_sqlite)

    async def record(
        self, account_id: str, livemode: bool, events: Sequence[RawEvent], now_us: int
    ) -> Accepted:
        if self.db.is_sqlite:
            async with self.db.read() as s:
                rows = await self._check(s, account_id, livemode, events, now_us)
            async with self.db.write() as s:
                return await self._store(s, rows, now_us)
        async with self.db.write() as s:
            rows = await self._check(s, account_id, livemode, events, now_us)
            return await self._store(s, rows, now_us)

    async def _check(
        self,
        s: AsyncSession,
        account_id: str,
        livemode: bool,
        events: Sequence[RawEvent],
        now_us: int,
    ) -> list[dict[str, Any]]:
        """Every event's row, or the error of the first bad one (by index)."""
        names = sorted({e.event_name for e in events})
        found = await s.execute(
            self._meters, {"account_id": account_id, "livemode": livemode, "names": names}
        )
        rules = {row[0]: _MeterRule(row[1], row[2], row[3], row[4]) for row in found}
        now_s = now_us // 1_000_000
        rows: list[dict[str, Any]] = []
        first_error: PaymuxError | None = None
        for i, event in enumerate(events):
            try:
                rows.append(
                    _row(
                        event, rules.get(event.event_name), account_id, livemode, now_s, now_us + i
                    )
                )
            except PaymuxError as exc:
                first_error = exc
                break
        # Customers of the events before the first bad one: the earliest bad event wins.
        ids = sorted({row["customer_id"] for row in rows})
        clock_of: dict[str, int | None] = {}  # customer -> its test clock's time (µs), if any
        if ids:
            found = await s.execute(self._customers, {"ids": ids})
            clock_of = _clocks_of(found, account_id, livemode)
        for event, row in zip(events, rows, strict=False):
            if row["customer_id"] not in clock_of:
                rule = rules[event.event_name]
                raise _invalid(
                    f"No such customer: '{row['customer_id']}'.",
                    event.param("payload", rule.customer_key),
                )
            clock_us = clock_of[row["customer_id"]]
            row["timestamp_us"] = _timed(
                event, now_s if clock_us is None else clock_us // 1_000_000
            )
        if first_error is not None:
            raise first_error
        return rows

    async def _store(self, s: AsyncSession, rows: list[dict[str, Any]], now_us: int) -> Accepted:
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:
            unique.setdefault(row["identifier"], row)  # a repeat within the batch: the first
        batch = list(unique.values())
        if self.db.is_sqlite:
            stored = await s.execute(self._insert, batch)
        else:
            stored = await s.execute(_PG_INSERT, _columns(batch))
        new = len(stored.all())
        await audit_in(s, {"object": "billing.meter_event", "id": rows[0]["identifier"]}, now_us)
        return Accepted(rows, new)


# PostgreSQL: the batch as one array per column, unnested: one statement whose parameters
# are encoded per column (by asyncpg, in C) rather than per value (SQLAlchemy's multi-row
# VALUES builds and binds 8 parameters an event).
_PG_INSERT = text(
    "INSERT INTO meter_events (account_id, livemode, identifier, event_name, customer_id, "
    "value, timestamp_us, created_us) "
    "SELECT CAST(:account_id AS VARCHAR), CAST(:livemode AS BOOLEAN), u.* FROM unnest("
    "CAST(:identifier AS VARCHAR[]), CAST(:event_name AS VARCHAR[]), "
    "CAST(:customer_id AS VARCHAR[]), CAST(:value AS BIGINT[]), "
    "CAST(:timestamp_us AS BIGINT[]), CAST(:created_us AS BIGINT[])) AS u "
    "ON CONFLICT (account_id, livemode, identifier) DO NOTHING RETURNING identifier"
)
_ARRAYS = ("identifier", "event_name", "customer_id", "value", "timestamp_us", "created_us")


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``_PG_INSERT``'s parameters: the rows' account and mode, then a list per column."""
    params: dict[str, Any] = {name: [row[name] for row in rows] for name in _ARRAYS}
    params["account_id"] = rows[0]["account_id"]
    params["livemode"] = rows[0]["livemode"]
    return params


def _row(
    event: RawEvent,
    rule: _MeterRule | None,
    account_id: str,
    livemode: bool,
    now_s: int,
    created_us: int,
) -> dict[str, Any]:
    """The ``meter_events`` row of one event, checked against its meter (pure)."""
    if rule is None:
        raise _invalid(
            f"No active meter was found matching event_name '{event.event_name}'.",
            event.param("event_name"),
        )
    if rule.status != "active":
        raise _invalid(
            f"The meter for event_name '{event.event_name}' is inactive: reactivate it "
            "(POST /v1/billing/meters/{id}/reactivate) to record usage.",
            event.param("event_name"),
        )
    customer = event.payload.get(rule.customer_key)
    if not customer:
        raise _missing(event.param("payload", rule.customer_key))
    raw_value = event.payload.get(rule.value_key)
    if raw_value is None:
        if rule.formula != "count":
            raise _missing(event.param("payload", rule.value_key))
        value = 1
    elif _INTEGER.fullmatch(raw_value):
        value = int(raw_value)
    else:
        param = event.param("payload", rule.value_key)
        raise _invalid(f'Invalid {param}: must be an integer, as a string ("25").', param)
    return {
        "account_id": account_id,
        "livemode": livemode,
        "identifier": event.identifier or str(uuid.uuid4()),
        "event_name": event.event_name,
        "customer_id": customer,
        "value": value,
        "timestamp_us": None,  # set by _timed once the customer's clock is known
        "created_us": created_us,
    }


def _timed(event: RawEvent, now_s: int) -> int:
    """The event's time (µs): as sent, or now. ``now_s``: the customer's test clock's frozen
    time if it has one (as on Stripe: usage reported for a clock's customer is timed by the
    clock), else the wall clock. At most 35 days before it and 5 minutes after."""
    timestamp_s = now_s if event.timestamp_s is None else event.timestamp_s
    if timestamp_s < now_s - MAX_AGE_S:
        raise _invalid(
            "The event's timestamp is more than 35 days in the past.", event.param("timestamp")
        )
    if timestamp_s > now_s + MAX_AHEAD_S:
        raise _invalid(
            "The event's timestamp is more than 5 minutes in the future.",
            event.param("timestamp"),
        )
    return timestamp_s * 1_000_000
