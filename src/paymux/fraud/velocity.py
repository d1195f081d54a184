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
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import (
    bindparam,
    case,
    delete,
    func,
    literal_column,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.fraud.attributes import VELOCITY_WINDOWS
from paymux.fraud.rules import rules_version
from paymux.storage.models import FraudVelocityBucket as B
from paymux.storage.models import FraudVelocityCard as C

__all__ = [
    "GATEWAY_RISK_LEVELS",
    "KEY_KINDS",
    "PENDING_MINUTES",
    "counts",
    "counts_and_version",
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


async def lock(s: AsyncSession, keys: Iterable[str], *, is_sqlite: bool) -> None:
    """Serialize deciders of the same keys until the transaction ends: a PostgreSQL
    transaction-scoped advisory lock per key (in a fixed order: no deadlock); SQLite's write
    transaction is already the only writer."""
    if is_sqlite:
        return
    for key in sorted(set(keys)):
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(key[:15], 16)})


def _upsert(is_sqlite: bool) -> Any:
    return sqlite_insert if is_sqlite else pg_insert


async def reserve(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    card: str | None,
    *,
    now_us: int,
    is_sqlite: bool,
) -> int:
    """Count one attempt for each key (kind -> digest) in the current minute, and the card
    for each key but the card's own; returns the minute (for ``settle``)."""
    minute = minute_of(now_us)
    if not keys:
        return minute
    insert = _upsert(is_sqlite)
    ordered = sorted(set(keys.values()))  # one row each (a statement upserts a row once)
    # Row locks in one order, the keys' (as ``settle`` takes them; one statement inserts its
    # rows in the order listed): no deadlock between a decider and a settling transaction
    # sharing keys.
    buckets = insert(B).values(
        [
            {
                "account_id": account_id,
                "livemode": livemode,
                "key": key,
                "minute": minute,
                "attempts": 1,
                "declines": 0,
                "settled": 0,
            }
            for key in ordered
        ]
    )
    counted = await s.execute(
        buckets.on_conflict_do_update(
            index_elements=["account_id", "livemode", "key", "minute"],
            set_={"attempts": B.attempts + 1},
        ).returning(B.key, B.attempts)
    )
    # A key's first attempt of a minute prunes its rows older than a day (the counts ignore
    # them): once a minute per key at most, not on every attempt of a hammered key.
    new_minute = sorted(key for key, attempts in counted.all() if attempts == 1)
    seen = [key for kind, key in keys.items() if kind != "card_fingerprint"] if card else []
    if seen:
        cards = insert(C).values(
            [
                {
                    "account_id": account_id,
                    "livemode": livemode,
                    "key": key,
                    "card": card,
                    "minute": minute,
                }
                for key in sorted(set(seen))
            ]
        )
        await s.execute(
            cards.on_conflict_do_update(
                index_elements=["account_id", "livemode", "key", "card"],
                set_={"minute": minute},
            )
        )
    if new_minute:
        old = minute - _DAY_MINUTES
        for model in (B, C):
            await s.execute(
                delete(model).where(
                    model.account_id == account_id,
                    model.livemode == livemode,
                    model.key.in_(new_minute),
                    model.minute < old,
                )
            )
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
) -> None:
    """The answer to an attempt reserved in ``minute``: settled, an issuer decline, and the
    gateway's risk level for it (``normal``, ``elevated``, ``highest``; another or None
    records nothing)."""
    rank = _RISK_RANK.get(gateway_risk or "")
    values: dict[str, Any] = {
        "settled": B.settled + 1,
        "declines": B.declines + (1 if declined else 0),
    }
    if rank is not None:
        values["gateway_risk"] = case(
            (func.coalesce(B.gateway_risk, 0) < rank, rank), else_=B.gateway_risk
        )
    # One row at a time in the keys' order (as ``reserve`` takes them): an UPDATE of several
    # rows locks them in whatever order its plan reads them, and two settling transactions
    # sharing keys deadlocked on PostgreSQL.
    for key in sorted(keys.values()):
        await s.execute(
            update(B)
            .where(
                B.account_id == account_id,
                B.livemode == livemode,
                B.key == key,
                B.minute == minute,
            )
            .values(values)
        )


_WIDTH: Final = 2 + 2 * len(VELOCITY_WINDOWS)  # the widest part's figures (buckets')


def _figures(columns: list[Any]) -> list[Any]:
    """A part's figures, padded with NULLs to the union's width, labelled ``f0``, ``f1``..."""
    padded = columns + [null()] * (_WIDTH - len(columns))
    return [column.label(f"f{i}") for i, column in enumerate(padded)]


def _buckets_part() -> Any:
    """Per key: the attempts in flight (``pending``), attempts and declines per window, then
    the highest gateway risk of the day."""
    columns: list[Any] = [
        func.sum(case((B.minute >= bindparam("pending_since"), B.attempts - B.settled), else_=0))
    ]
    for window in VELOCITY_WINDOWS:
        recent = B.minute >= bindparam(f"since_{window}")
        columns += [
            func.sum(case((recent, B.attempts), else_=0)),
            func.sum(case((recent, B.declines), else_=0)),
        ]
    columns.append(func.max(B.gateway_risk))
    return (
        select(literal_column("'b'").label("part"), B.key.label("key"), *_figures(columns))
        .where(
            B.account_id == bindparam("account_id"),
            B.livemode == bindparam("livemode"),
            B.key.in_(bindparam("keys", expanding=True)),
            B.minute >= bindparam("since_day"),
        )
        .group_by(B.key)
    )


def _cards_part() -> Any:
    """Per key: the distinct cards tried with it per window."""
    columns = [
        func.sum(case((C.minute >= bindparam(f"since_{window}"), 1), else_=0))
        for window in VELOCITY_WINDOWS
    ]
    return (
        select(literal_column("'c'").label("part"), C.key.label("key"), *_figures(columns))
        .where(
            C.account_id == bindparam("account_id"),
            C.livemode == bindparam("livemode"),
            C.key.in_(bindparam("keys", expanding=True)),
            C.minute >= bindparam("since_day"),
        )
        .group_by(C.key)
    )


def _version_part() -> Any:
    """The account's rules' version (``rules.rules_version``, the statement
    ``FraudRules.loaded`` checks): how many, the latest change; one row."""
    return rules_version(literal_column("'v'").label("part"), null().label("key"), shape=_figures)


# The velocity read, one statement (both parts over the keys' rows); and with the rules'
# version as a third part, so a decision reads its counts and checks its rules in one round
# trip (``counts_and_version``). Built once.
_COUNTS: Final = union_all(_buckets_part(), _cards_part())
_COUNTS_AND_VERSION: Final = union_all(_buckets_part(), _cards_part(), _version_part())


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


def _facts(keys: Mapping[str, str], rows: Iterable[Any]) -> dict[str, int | str]:
    buckets: dict[str, dict[str, int]] = {}
    cards: dict[str, dict[str, int]] = {}
    for row in rows:
        part, key, figures = row[0], row[1], [int(v or 0) for v in row[2:]]
        if part == "b":
            named = {"pending": figures[0]}
            for i, window in enumerate(VELOCITY_WINDOWS):
                named[f"payments_{window}"] = figures[1 + 2 * i]
                named[f"declines_{window}"] = figures[2 + 2 * i]
            named["gateway_risk"] = figures[1 + 2 * len(VELOCITY_WINDOWS)]
            buckets[key] = named
        elif part == "c":
            cards[key] = {
                f"cards_{window}": figures[i] for i, window in enumerate(VELOCITY_WINDOWS)
            }
    facts: dict[str, int | str] = {}
    for kind, key in keys.items():
        row, seen = buckets.get(key), cards.get(key)
        if kind == "card_fingerprint" and row and 0 < row["gateway_risk"] <= len(_RISK_RANK):
            facts["gateway_risk_level"] = GATEWAY_RISK_LEVELS[row["gateway_risk"] - 1]
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
