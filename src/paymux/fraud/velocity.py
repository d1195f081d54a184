"""Velocity counters over sliding windows (10 minutes, an hour, a day), kept in the database
so every API process on a PostgreSQL database counts the same.

Storage per key: one row per minute (``fraud_velocity_buckets``: attempts, issuer declines,
attempts settled), at most a day of them however many attempts come, and one row per
distinct card tried with the key (``fraud_velocity_cards``: the minute it was last tried),
which grows with the cards until the key is blocked (``card_testing_cards``) and a
blocked key records nothing more. Reading a key's counts reads those rows, not one row per
payment (bench/fraud.py prints the read's cost).

- ``reserve``: an attempt allowed to reach the gateway counts at once (``attempts`` + 1), in
  the write transaction that decided it under a per-key lock (``lock``), so parallel
  confirms see each other: an attempt whose answer isn't known yet counts as a decline in the
  ``declines_per_ip_*`` facts for ``PENDING_MINUTES``, which keeps a burst of parallel card
  tests from one address to the threshold (the first 5 reach the gateway, not 11). Only the
  address's: a server confirming many payments of one card or customer at once is not
  declined for answers that have not come yet.
- ``settle``: the answer is known (``settled`` + 1); an issuer decline adds to ``declines``;
  the gateway's risk level for it, if it gave one, raises the minute's ``gateway_risk`` (the
  highest of the minute), read back as ``:gateway_risk_level:`` (the card's highest in the
  last day) by the same statement as the counts.
- A block records nothing: a key stops being recorded past its block, and blocks are not
  declines (an address blocked once is not kept blocked by its own blocked attempts).

A key is a digest of its kind and value (``digest``): HMAC-SHA-256 under
``PAYMUX_FRAUD_VELOCITY_KEY`` when set, else plain SHA-256, so the tables hold no card
number, no raw email and no raw IP.
Windows are counted in whole minutes (a 10-minute window is the current minute and the 9
before it).
"""

from __future__ import annotations

import hashlib
import hmac
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    Boolean,
    String,
    Table,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.fraud.attributes import VELOCITY_WINDOWS
from paymux.fraud.rules import rules_version
from paymux.storage.models import FraudVelocityBucket as B
from paymux.storage.models import FraudVelocityCard as C
from paymux.storage.models import RadarValueList, RadarValueListItem

__all__ = [
    "GATEWAY_RISK_LEVELS",
    "KEY_KINDS",
    "PENDING_MINUTES",
    "DecisionRead",
    "counts",
    "counts_and_version",
    "decision_read",
    "digest",
    "lock",
    "reserve",
    "settle",
]

KEY_KINDS: Final = ("card_fingerprint", "ip", "email", "customer")
# How long an attempt with no answer yet counts as a decline (an authorization takes
# seconds; one that never settles, e.g. its start failed after the reservation, stops
# counting after this).
PENDING_MINUTES: Final = 2
_DAY_MINUTES: Final = 1440
# The key kinds whose attempts in flight count as declines (``counts``).
_PENDING_KINDS: Final = frozenset({"ip"})
# A gateway's risk levels (Stripe's words; the connectors map theirs to them), lowest first:
# stored as their rank (1..3), so the highest of a day is a MAX.
GATEWAY_RISK_LEVELS: Final = ("normal", "elevated", "highest")
_RISK_RANK: Final = {level: rank for rank, level in enumerate(GATEWAY_RISK_LEVELS, start=1)}


def minute_of(now_us: int) -> int:
    return now_us // 60_000_000


def digest(kind: str, value: str, key: bytes = b"") -> str:
    """The stored form of a velocity key: HMAC-SHA-256 under the deployment's key (so the
    digest of a known IP or email can't be looked up without it), SHA-256 without one."""
    message = f"{kind}:{value.casefold()}".encode()
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


# The decision's write statements, built once per (dialect, number of rows) and compiled once
# (Core over the tables, bound parameters only): building them per attempt with the ORM cost
# more CPU than the database spent running them (bench/fraud.py).
_BT: Final = typing.cast(Table, B.__table__)
_CT: Final = typing.cast(Table, C.__table__)
_LOCK: Final = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS BIGINT[])) AS k"
)
_BUILT: dict[tuple[str, int], Any] = {}


def _upsert(table: str, columns: str, row: str, rows: int, conflict: str, then: str) -> Any:
    """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET then`` of ``rows`` rows (``row``
    with the keys ``v_k0``...), as text: one SQL for SQLite and PostgreSQL (both have the
    clause and RETURNING). Text, not Core's dialect inserts: SQLAlchemy doesn't cache a
    compiled ``on_conflict_do_update``, and compiling it at each attempt cost more CPU than
    the database took to run it."""
    values = ", ".join(row.format(k=f":v_k{i}") for i in range(rows))
    # Every part is a constant of this module (table and column names, placeholders).
    sql = f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT ({conflict}) "  # noqa: S608
    return text(sql + f"DO UPDATE SET {then}").bindparams(bindparam("v_mode", type_=Boolean))


def _buckets_upsert(rows: int) -> Any:
    """Count one attempt of ``rows`` keys (``v_k0``...) in a minute; RETURNING each key's
    attempts."""
    built = _BUILT.get(("b", rows))
    if built is None:
        built = _BUILT[("b", rows)] = _upsert(
            "fraud_velocity_buckets",
            'account_id, livemode, "key", minute, attempts, declines, settled',
            "(:v_account, :v_mode, {k}, :v_minute, 1, 0, 0)",
            rows,
            'account_id, livemode, "key", minute',
            'attempts = fraud_velocity_buckets.attempts + 1 RETURNING "key", attempts',
        )
    return built


def _cards_upsert(rows: int) -> Any:
    """The card (``v_card``) tried with ``rows`` keys (``v_k0``...) in a minute."""
    built = _BUILT.get(("c", rows))
    if built is None:
        built = _BUILT[("c", rows)] = _upsert(
            "fraud_velocity_cards",
            'account_id, livemode, "key", card, minute',
            "(:v_account, :v_mode, {k}, :v_card, :v_minute)",
            rows,
            'account_id, livemode, "key", card',
            "minute = excluded.minute",
        )
    return built


def _prune(table: Any) -> Any:
    return delete(table).where(
        table.c.account_id == bindparam("v_account"),
        table.c.livemode == bindparam("v_mode"),
        table.c.key.in_(bindparam("v_keys", expanding=True)),
        table.c.minute < bindparam("v_older"),
    )


_PRUNE: Final = (_prune(_BT), _prune(_CT))
# An attempt's answer: settled, an issuer decline (``declined`` 1 or 0), and the gateway's risk
# rank for it raising the minute's highest (``rank`` NULL: records nothing, as NULL < x is
# not true).
_SETTLE: Final = (
    update(_BT)
    .where(
        _BT.c.account_id == bindparam("v_account"),
        _BT.c.livemode == bindparam("v_mode"),
        _BT.c.key == bindparam("v_key"),
        _BT.c.minute == bindparam("v_minute"),
    )
    .values(
        settled=_BT.c.settled + 1,
        declines=_BT.c.declines + bindparam("v_declined"),
        gateway_risk=case(
            (func.coalesce(_BT.c.gateway_risk, 0) < bindparam("v_rank"), bindparam("v_rank")),
            else_=_BT.c.gateway_risk,
        ),
        gateway_risk_score=case(
            (
                func.coalesce(_BT.c.gateway_risk_score, -1) < bindparam("v_score"),
                bindparam("v_score"),
            ),
            else_=_BT.c.gateway_risk_score,
        ),
    )
)


async def lock(s: AsyncSession, keys: Iterable[str], *, is_sqlite: bool) -> None:
    """Serialize deciders of the same keys until the transaction ends: a PostgreSQL
    transaction-scoped advisory lock per key, taken in a fixed order (the keys sorted, one
    statement over them: no deadlock); SQLite's write transaction is already the only
    writer."""
    if is_sqlite:
        return
    ordered = sorted({int(key[:15], 16) for key in keys})
    if ordered:
        await s.execute(_LOCK, {"keys": ordered})


async def reserve(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    card: str | None,
    *,
    now_us: int,
    is_sqlite: bool,
    prune: Iterable[str] | None = None,
) -> int:
    """Count one attempt for each key (kind -> digest) in the current minute, and the card
    for each key but the card's own; returns the minute (for ``settle``). The keys' rows
    older than a day are deleted: of ``prune``'s keys when given (the keys the decision's
    read found such rows for: ``DecisionRead.stale``), else on each key's first attempt of a
    minute."""
    minute = minute_of(now_us)
    if not keys:
        return minute
    ordered = sorted(set(keys.values()))  # one row each (a statement upserts a row once)
    # Row locks in one order, the keys' (as ``settle`` takes them; one statement inserts its
    # rows in the order listed): no deadlock between a decider and a settling transaction
    # sharing keys.
    params: dict[str, Any] = {"v_account": account_id, "v_mode": livemode, "v_minute": minute}
    params.update((f"v_k{i}", key) for i, key in enumerate(ordered))
    counted = await s.execute(_buckets_upsert(len(ordered)), params)
    # A key's first attempt of a minute prunes its rows older than a day (the counts ignore
    # them): once a minute per key at most, not on every attempt of a hammered key.
    new_minute = sorted(key for key, attempts in counted.all() if attempts == 1)
    if prune is not None:
        new_minute = sorted(set(prune) & set(ordered))
    seen = sorted({key for kind, key in keys.items() if kind != "card_fingerprint"}) if card else []
    if seen:
        card_params: dict[str, Any] = {
            "v_account": account_id,
            "v_mode": livemode,
            "v_minute": minute,
            "v_card": card,
        }
        card_params.update((f"v_k{i}", key) for i, key in enumerate(seen))
        await s.execute(_cards_upsert(len(seen)), card_params)
    if new_minute:
        old = {
            "v_account": account_id,
            "v_mode": livemode,
            "v_keys": new_minute,
            "v_older": minute - _DAY_MINUTES,
        }
        for pruning in _PRUNE:
            await s.execute(pruning, old)
    return minute


async def settle(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    minute: int,
    *,
    declined: bool,
    gateway_risk: str | None = None,
    gateway_risk_score: int | None = None,
) -> None:
    """The answer to an attempt reserved in ``minute``: settled, an issuer decline, and the
    gateway's risk level for it (``normal``, ``elevated``, ``highest``; another or None
    records nothing) and its numeric risk score (0-100; None records nothing)."""
    rank = _RISK_RANK.get(gateway_risk or "")
    # One row at a time in the keys' order (as ``reserve`` takes them): an UPDATE of several
    # rows locks them in whatever order its plan reads them, and two settling transactions
    # sharing keys deadlocked on PostgreSQL. One statement each, built once.
    for key in sorted(keys.values()):
        await s.execute(
            _SETTLE,
            {
                "v_account": account_id,
                "v_mode": livemode,
                "v_key": key,
                "v_minute": minute,
                "v_declined": 1 if declined else 0,
                "v_rank": rank,
                "v_score": gateway_risk_score,
            },
        )


# The widest part's figures (buckets'): pending, attempts and declines per window, the highest
# gateway risk level and score; then, last in every part, the key's oldest minute.
_WIDTH: Final = 4 + 2 * len(VELOCITY_WINDOWS)


def _figures(columns: list[Any], item: Any = None) -> list[Any]:
    """A part's figures, padded with NULLs to the union's width, labelled ``f0``, ``f1``...,
    then its ``item`` (a list item's value; NULL but in the lists' part)."""
    padded = columns + [null()] * (_WIDTH - len(columns))
    return [column.label(f"f{i}") for i, column in enumerate(padded)] + [
        (cast(null(), String) if item is None else item).label("item")
    ]


def _oldest(columns: list[Any], minute: Any) -> list[Any]:
    """``columns`` padded to the union's width, the key's oldest minute last: the rows older
    than a day are read too (not counted), so that the decision knows which keys have some
    to prune (``reserve``'s ``prune``) without a statement of its own."""
    return columns + [null()] * (_WIDTH - 1 - len(columns)) + [func.min(minute)]


def _buckets_part() -> Any:
    """Per key: the attempts in flight (``pending``), attempts and declines per window, the
    highest gateway risk level and score of the day, and the oldest minute."""
    columns: list[Any] = [
        func.sum(case((B.minute >= bindparam("pending_since"), B.attempts - B.settled), else_=0))
    ]
    for window in VELOCITY_WINDOWS:
        recent = B.minute >= bindparam(f"since_{window}")
        columns += [
            func.sum(case((recent, B.attempts), else_=0)),
            func.sum(case((recent, B.declines), else_=0)),
        ]
    today = B.minute >= bindparam("since_day")
    columns.append(func.max(case((today, B.gateway_risk), else_=None)))
    columns.append(func.max(case((today, B.gateway_risk_score), else_=None)))
    return (
        select(
            literal_column("'b'").label("part"),
            B.key.label("key"),
            *_figures(_oldest(columns, B.minute)),
        )
        .where(
            B.account_id == bindparam("account_id"),
            B.livemode == bindparam("livemode"),
            B.key.in_(bindparam("keys", expanding=True)),
        )
        .group_by(B.key)
    )


def _cards_part() -> Any:
    """Per key: the distinct cards tried with it per window, and the oldest minute."""
    columns = [
        func.sum(case((C.minute >= bindparam(f"since_{window}"), 1), else_=0))
        for window in VELOCITY_WINDOWS
    ]
    return (
        select(
            literal_column("'c'").label("part"),
            C.key.label("key"),
            *_figures(_oldest(columns, C.minute)),
        )
        .where(
            C.account_id == bindparam("account_id"),
            C.livemode == bindparam("livemode"),
            C.key.in_(bindparam("keys", expanding=True)),
        )
        .group_by(C.key)
    )


def _version_part() -> Any:
    """The account's rules' version (``rules.rules_version``, the statement
    ``FraudRules.loaded`` checks): how many, the latest change; one row."""
    return rules_version(literal_column("'v'").label("part"), null().label("key"), shape=_figures)


def _lists_part() -> Any:
    """Which of the payment's values (bound ``values``, as rules compare them) the account's
    lists ``aliases`` hold: a row (alias, value) each; the indexed IN query of
    ``lists.lists_matching``, whatever the lists' size."""
    L, item = RadarValueList, RadarValueListItem
    return (
        select(
            literal_column("'l'").label("part"),
            L.alias.label("key"),
            *_figures([], item=item.match_value),
        )
        .join(item, item.value_list_id == L.id)
        .where(
            L.account_id == bindparam("account_id"),
            L.livemode == bindparam("livemode"),
            L.alias.in_(bindparam("aliases", expanding=True)),
            item.match_value.in_(bindparam("values", expanding=True)),
        )
    )


# The velocity read, one statement (both parts over the keys' rows); with the rules' version
# as a third part, so a decision reads its counts and checks its rules in one round trip
# (``counts_and_version``); and with the lists' matches as a fourth, for a decision whose
# rules (the lists they name) are already known (``decision_read``). Built once.
_COUNTS: Final = union_all(_buckets_part(), _cards_part())
_COUNTS_AND_VERSION: Final = union_all(_buckets_part(), _cards_part(), _version_part())
_DECISION_READ: Final = union_all(_buckets_part(), _cards_part(), _version_part(), _lists_part())


def _params(account_id: str, livemode: bool, keys: Mapping[str, str], now_us: int) -> Any:
    minute = minute_of(now_us)
    params: dict[str, Any] = {
        "account_id": account_id,
        "livemode": livemode,
        "keys": list(keys.values()),
        "since_day": minute - _DAY_MINUTES + 1,
        "pending_since": minute - PENDING_MINUTES + 1,
    }
    for window, seconds in VELOCITY_WINDOWS.items():
        params[f"since_{window}"] = minute - seconds // 60 + 1
    return params


async def counts(
    s: AsyncSession, account_id: str, livemode: bool, keys: Mapping[str, str], now_us: int
) -> dict[str, int | str]:
    """The velocity facts for ``keys`` (kind -> digest): ``payments_per_ip_hourly`` and so
    on, 0 where nothing was seen; a kind not in ``keys`` has no facts (missing).
    ``declines_per_ip_*`` include the address's attempts still waiting for their answer
    (``PENDING_MINUTES``). One statement."""
    if not keys:
        return {}
    rows = await s.execute(_COUNTS, _params(account_id, livemode, keys, now_us))
    return _facts(keys, rows)


async def counts_and_version(
    s: AsyncSession, account_id: str, livemode: bool, keys: Mapping[str, str], now_us: int
) -> tuple[dict[str, int | str], tuple[int, int]]:
    """``counts`` and the account's rules' version (``rules.rules_version``), in one
    statement."""
    params = _params(account_id, livemode, keys, now_us)
    rows = list(await s.execute(_COUNTS_AND_VERSION, params))
    version = next((int(r[2]), int(r[3])) for r in rows if r[0] == "v")
    return (_facts(keys, rows) if keys else {}), version


class DecisionRead(NamedTuple):
    """What a decision reads in one statement (``decision_read``)."""

    facts: dict[str, int | str]  # the velocity facts (``counts``)
    version: tuple[int, int]  # the account's rules' version (``rules.rules_version``)
    lists: dict[str, set[str]]  # alias -> which of the payment's values the list holds
    stale: frozenset[str]  # the keys with rows older than a day: ``reserve``'s ``prune``


async def decision_read(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    now_us: int,
    aliases: Iterable[str],
    values: Iterable[str],
) -> DecisionRead:
    """``counts_and_version``, which of ``values`` the account's lists ``aliases`` hold
    (built-in lists are not in the database: ``lists.py``), and which keys have rows older
    than a day, in one statement: all a decision reads when its rules are already loaded."""
    params = _params(account_id, livemode, keys, now_us)
    params["aliases"], params["values"] = sorted(aliases), sorted(values)
    rows = list(await s.execute(_DECISION_READ, params))
    version = next((int(r[2]), int(r[3])) for r in rows if r[0] == "v")
    found: dict[str, set[str]] = {}
    for row in rows:
        if row[0] == "l":
            found.setdefault(row[1], set()).add(row[-1])
    older = minute_of(now_us) - _DAY_MINUTES  # as ``reserve`` prunes
    stale = frozenset(
        r[1]
        for r in rows
        if r[0] in ("b", "c") and r[1 + _WIDTH] is not None and r[1 + _WIDTH] < older
    )
    return DecisionRead(_facts(keys, rows) if keys else {}, version, found, stale)


def _facts(keys: Mapping[str, str], rows: Iterable[Any]) -> dict[str, int | str]:
    buckets: dict[str, dict[str, int]] = {}
    cards: dict[str, dict[str, int]] = {}
    scores: dict[str, int] = {}
    for row in rows:
        part, key, figures = row[0], row[1], [int(v or 0) for v in row[2 : 2 + _WIDTH]]
        if part == "b":
            named = {"pending": figures[0]}
            for i, window in enumerate(VELOCITY_WINDOWS):
                named[f"payments_{window}"] = figures[1 + 2 * i]
                named[f"declines_{window}"] = figures[2 + 2 * i]
            named["gateway_risk"] = figures[1 + 2 * len(VELOCITY_WINDOWS)]
            buckets[key] = named
            score = row[4 + 2 * len(VELOCITY_WINDOWS)]  # 0 is a score: NULL is none
            if score is not None:
                scores[key] = int(score)
        elif part == "c":
            cards[key] = {
                f"cards_{window}": figures[i] for i, window in enumerate(VELOCITY_WINDOWS)
            }
    facts: dict[str, int | str] = {}
    for kind, key in keys.items():
        row, seen = buckets.get(key), cards.get(key)
        if kind == "card_fingerprint" and row and 0 < row["gateway_risk"] <= len(_RISK_RANK):
            facts["gateway_risk_level"] = GATEWAY_RISK_LEVELS[row["gateway_risk"] - 1]
        if kind == "card_fingerprint" and key in scores:
            facts["gateway_risk_score"] = scores[key]
        # Only an address's attempts in flight count as its declines: that holds a burst of
        # parallel card tests from one address to the threshold, while a merchant's server
        # confirming many payments of one card, email or customer at once (or one intent
        # confirmed twice) is never declined for answers that have not come yet.
        pending = max(0, int(row["pending"] or 0)) if row and kind in _PENDING_KINDS else 0
        for window in VELOCITY_WINDOWS:
            facts[f"payments_per_{kind}_{window}"] = (
                int(row[f"payments_{window}"] or 0) if row else 0
            )
            facts[f"declines_per_{kind}_{window}"] = (
                int(row[f"declines_{window}"] or 0) if row else 0
            ) + pending
            if kind != "card_fingerprint":
                facts[f"distinct_cards_per_{kind}_{window}"] = (
                    int(seen[f"cards_{window}"] or 0) if seen else 0
                )
    return facts
