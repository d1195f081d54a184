"""Velocity counters over sliding windows (10 minutes, an hour, a day), kept in the database
so every API process on a PostgreSQL database counts the same.

Storage per key: one row per minute (``fraud_velocity_buckets``: attempts, issuer declines,
attempts settled, and the distinct cards last tried in the minute), at most a day of them
however many attempts come, and one row per distinct card tried with the key
(``fraud_velocity_cards``: the minute it was last tried). Reading a key's counts reads its
minute rows only (at most 1,440), never one row per card or per payment: a card-testing flood
of 100,000 cards on one address costs each decision of that address what a quiet key costs
(bench/fraud.py prints the read).

Distinct cards, exact: each card tried with a key counts once, in the bucket of the minute it
was last tried (``cards``). When a card is tried again in a later minute it moves: -1 in the
bucket of its last minute, +1 in the current one, in the attempt's own upsert (the card's last
minute is read by the decision's statement, under the keys' lock). So the distinct cards of a
window are the sum of its minutes' ``cards``: the same figure as counting the card rows
tried since the window's start, at any size.

- ``reserve``: an attempt allowed to reach the gateway counts at once (``attempts`` + 1), in
  the write transaction that decided it under a per-key lock (``lock``), so parallel
  confirms see each other: an attempt whose answer isn't known yet counts as a decline in the
  ``declines_per_ip_*`` facts for ``PENDING_MINUTES``, which keeps a burst of parallel card
  tests from one address to the threshold (the first 5 reach the gateway, not 11). Only the
  address's: a server confirming many payments of one card or customer at once is not
  declined for answers that have not come yet.
- settle: the answer is known (``settled`` + 1); an issuer decline adds to ``declines``;
  the gateway's risk level for it, if it gave one, raises the minute's ``gateway_risk`` (the
  highest of the minute), read back as ``:gateway_risk_level:`` (the card's highest in the
  last day) by the same statement as the counts. No statement of its own: the settling
  transaction's UPDATE of the intent carries it in the intent's small ``fraud_settle``
  column (``settle_record``: keys, minute, answer), and a trigger (migration 0038) applies
  it, as the column is set, to the minute's row of each key, in the keys' order (as
  ``reserve`` takes them: no deadlock).
- A block records nothing: a key stops being recorded past its block, and blocks are not
  declines (an address blocked once is not kept blocked by its own blocked attempts).

On PostgreSQL a decision is one round trip (``locked_decision_read(reserve=True)``: the
function of migrations 0036 and 0037): the keys' lock, then the read in a statement of its
own (a fresh snapshot, taken with the lock held), then the attempt reserved as ``reserve`` would,
before the rules decide; a block takes it back in its transaction (``unreserve``), so
nothing of it is ever committed. SQLite reads, then ``reserve``s once the rules allow.

A key is a digest of its kind and value (``digest``): HMAC-SHA-256 under
``PAYMUX_FRAUD_VELOCITY_KEY`` when set, else plain SHA-256, so the tables hold no card
number, no raw email and no raw IP.
Windows are counted in whole minutes (a 10-minute window is the current minute and the 9
before it).

The statements are SQL text built once per shape (how many keys, list names, values, rows)
and kept: the same SQL on SQLite and PostgreSQL, run on the driver connection of the caller's
transaction (``storage/driver.py``: no SQLAlchemy execution layers, which were half of a
decision's CPU; bench/fraud.py prints the figures). Every function here runs in the caller's
``Database.write()``/``read()`` transaction.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.fraud.attributes import VELOCITY_WINDOWS
from paymux.storage.driver import Statement, execute, fetch, fetch_with_held

__all__ = [
    "GATEWAY_RISK_LEVELS",
    "KEY_KINDS",
    "PENDING_MINUTES",
    "DecisionRead",
    "IntentAsDecided",
    "counts",
    "counts_and_version",
    "decision_read",
    "digest",
    "lock",
    "locked_decision_read",
    "prune_old",
    "reserve",
    "settle_record",
    "unreserve",
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


_LOCK: Final = Statement(
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS BIGINT[])) AS k"
)
# The statements built per shape (see the module's docstring), by shape.
_BUILT: dict[tuple[Any, ...], Statement] = {}


def _placeholders(name: str, count: int) -> str:
    return ", ".join(f":{name}{i}" for i in range(count))


def _buckets_sql(rows: tuple[tuple[bool, int, int], ...]) -> str:
    """Count an attempt in the current minute's bucket of each key (``v_k0``...), with the
    distinct cards moved: ``rows`` are (in the current minute, attempts added, cards added)
    per row, a key's row in another minute (``v_m<i>``) taking back the card that moved
    from it. RETURNING each row's key, minute and attempts. The same SQL on SQLite and
    PostgreSQL (both have the clause and RETURNING)."""
    values = ", ".join(
        f"(:v_account, :v_mode, :v_k{i}, {':v_minute' if now else f':v_m{i}'}, "
        f"{attempts}, 0, 0, {cards})"
        for i, (now, attempts, cards) in enumerate(rows)
    )
    # Every part is a constant of this module (names, placeholders, small integers).
    return (
        "INSERT INTO fraud_velocity_buckets "  # noqa: S608
        '(account_id, livemode, "key", minute, attempts, declines, settled, cards) '
        f"VALUES {values} "
        'ON CONFLICT (account_id, livemode, "key", minute) DO UPDATE SET '
        "attempts = fraud_velocity_buckets.attempts + excluded.attempts, "
        "cards = fraud_velocity_buckets.cards + excluded.cards "
        'RETURNING "key", minute, attempts'
    )


def _cards_sql(rows: int) -> str:
    """The card (``v_card``) tried with ``rows`` keys (``v_c0``...) in a minute."""
    values = ", ".join(f"(:v_account, :v_mode, :v_c{i}, :v_card, :v_minute)" for i in range(rows))
    return (
        "INSERT INTO fraud_velocity_cards "  # noqa: S608
        f'(account_id, livemode, "key", card, minute) VALUES {values} '
        'ON CONFLICT (account_id, livemode, "key", card) DO UPDATE SET '
        "minute = excluded.minute"
    )


def _upserts(
    buckets: tuple[tuple[bool, int, int], ...] | None, cards: int, *, one: bool
) -> Statement:
    """The attempt's write as text built once per shape (SQLAlchemy doesn't cache a compiled
    ``on_conflict_do_update``, and compiling it at each attempt cost more CPU than the
    database took to run it): the buckets' upsert (``buckets``), or the cards' upsert of
    ``cards`` keys, or (``one``, PostgreSQL) both in one statement, the cards' as a
    data-modifying ``WITH`` (the two tables' rows are the keys' own, under their lock)."""
    shape = ("w", buckets, cards, one)
    built = _BUILT.get(shape)
    if built is None:
        if buckets is None:
            sql = _cards_sql(cards)
        elif one and cards:
            sql = f"WITH moved AS ({_cards_sql(cards)}) {_buckets_sql(buckets)}"
        else:
            sql = _buckets_sql(buckets)
        built = _BUILT[shape] = Statement(sql)
    return built


def _prune(table: str, keys: int) -> Statement:
    """Delete ``keys`` keys' rows of ``table`` older than ``v_older``; built once per count."""
    shape = ("d", table, keys)
    built = _BUILT.get(shape)
    if built is None:
        built = _BUILT[shape] = Statement(
            f"DELETE FROM {table} "  # noqa: S608 (a constant of this module)
            "WHERE account_id = :v_account AND livemode = :v_mode"
            f' AND "key" IN ({_placeholders("v_k", keys)}) AND minute < :v_older'
        )
    return built


async def lock(s: AsyncSession, keys: Iterable[str], *, is_sqlite: bool) -> None:
    """Serialize deciders of the same keys until the transaction ends: a PostgreSQL
    transaction-scoped advisory lock per key, taken in a fixed order (the keys sorted, one
    statement over them: no deadlock); SQLite's write transaction is already the only
    writer."""
    if is_sqlite:
        return
    ordered = sorted({int(key[:15], 16) for key in keys})
    if ordered:
        await fetch(s, _LOCK, {"keys": ordered})


def _card_keys(keys: Mapping[str, str], card: str | None) -> list[str]:
    """The keys a card is recorded with: every key but the card's own."""
    if not card:
        return []
    return sorted({key for kind, key in keys.items() if kind != "card_fingerprint"})


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
    previous: Mapping[str, int] | None = None,
) -> int:
    """Count one attempt for each key (kind -> digest) in the current minute, and the card
    for each key but the card's own; returns the minute (the record's ``minute``, which the
    settle applies to: migration 0038). ``previous``: the minute the card was last tried
    with each key (``DecisionRead.cards``, read under the keys' lock; read here when not
    given). The keys' rows older than a day are deleted: of
    ``prune``'s keys when given (the keys the decision's read found such rows for:
    ``DecisionRead.stale``), else on each key's first attempt of a minute."""
    minute = minute_of(now_us)
    if not keys:
        return minute
    ordered = sorted(set(keys.values()))  # one row each (a statement upserts a row once)
    seen = _card_keys(keys, card)
    if seen and previous is None:
        previous = await _previous(s, account_id, livemode, seen, card or "")
    last = previous or {}
    moved = [key for key in seen if last.get(key) != minute]  # not yet counted this minute
    since_day = minute - _DAY_MINUTES + 1
    rows: list[tuple[str, int, bool, int, int]] = []  # key, minute, now, attempts, cards
    for key in ordered:
        new_card = key in moved
        rows.append((key, minute, True, 1, 1 if new_card else 0))
        old = last.get(key)
        if new_card and old is not None and old >= since_day:
            rows.append((key, old, False, 0, -1))  # the card leaves its last minute
    # Row locks in one order, (key, minute) (the settle's trigger takes a minute's rows in
    # the keys' order; one statement inserts its rows in the order listed): no deadlock between a
    # decider and a settling transaction sharing keys.
    rows.sort(key=lambda row: (row[0], row[1]))
    params: dict[str, Any] = {"v_account": account_id, "v_mode": livemode, "v_minute": minute}
    for i, (key, at, now, _, _) in enumerate(rows):
        params[f"v_k{i}"] = key
        if not now:
            params[f"v_m{i}"] = at
    shape = tuple((now, attempts, cards) for _, _, now, attempts, cards in rows)
    params.update((f"v_c{i}", key) for i, key in enumerate(moved))
    params["v_card"] = card
    # PostgreSQL: the card's upsert rides on the buckets' (one statement); SQLite has no
    # data-modifying WITH: two.
    together = not is_sqlite
    counted = await fetch(s, _upserts(shape, len(moved), one=together), params)
    # A key's first attempt of a minute prunes its rows older than a day (the counts ignore
    # them): once a minute per key at most, not on every attempt of a hammered key.
    new_minute = sorted(key for key, at, attempts in counted if at == minute and attempts == 1)
    if prune is not None:
        new_minute = sorted(set(prune) & set(ordered))
    if moved and not together:
        await execute(s, _upserts(None, len(moved), one=False), params)
    await prune_old(s, account_id, livemode, new_minute, minute)
    return minute


async def _previous(
    s: AsyncSession, account_id: str, livemode: bool, keys: list[str], card: str
) -> dict[str, int]:
    """The minute ``card`` was last tried with each of ``keys`` (the keys it was tried with)."""
    sql = _read(len(keys), 0, 0, parts=("p",))
    params = {"account_id": account_id, "livemode": livemode, "card": card}
    params.update((f"k{i}", key) for i, key in enumerate(keys))
    return {row[1]: int(row[2]) for row in await fetch(s, sql, params)}


def settle_record(
    keys: Iterable[str],
    minute: int,
    *,
    declined: bool,
    gateway_risk: str | None = None,
    gateway_risk_score: int | None = None,
) -> dict[str, Any]:
    """An answered attempt's settle, as the intent's ``fraud_settle`` column carries it (the
    database applies it when the intent's UPDATE sets the column: migration 0038's trigger):
    ``keys`` the attempt's digests, sorted (the order its rows are settled in: no deadlock);
    ``minute`` the minute it was counted in; ``declined`` 1 for an issuer decline else 0;
    ``rank`` the gateway's risk level for it (``normal``, ``elevated``, ``highest``: 1-3;
    another or None: null, records nothing); ``score`` its numeric risk score (0-100; null
    records nothing). Small on purpose (about 300 bytes with four keys): the trigger reads
    it, not the decision's 1-2 KB record."""
    return {
        "keys": sorted(keys),
        "minute": minute,
        "declined": 1 if declined else 0,
        "rank": _RISK_RANK.get(gateway_risk or ""),
        "score": gateway_risk_score,
    }


# The read's columns, every part: part, key, f0..f<_WIDTH - 1>, item. The widest part's
# figures (buckets'): pending; attempts, declines and distinct cards per window; the highest
# gateway risk level and score of the day; the key's oldest minute.
_WIDTH: Final = 1 + 3 * len(VELOCITY_WINDOWS) + 3
_OLDEST: Final = 1 + _WIDTH  # the oldest minute's column


def _part(name: str, key: str, figures: list[str], item: str = "NULL") -> str:
    padded = figures + ["NULL"] * (_WIDTH - len(figures))
    columns = ", ".join(f"{figure} AS f{i}" for i, figure in enumerate(padded))
    return f"SELECT '{name}' AS part, {key} AS \"key\", {columns}, {item} AS item"


def _buckets_part(keys: int) -> str:
    """Per key: the attempts in flight (``pending``), attempts, declines and distinct cards
    per window, the highest gateway risk level and score of the day, and the oldest minute
    (the rows older than a day are read too, not counted, so that the decision knows which
    keys have some to prune, ``reserve``'s ``prune``, without a statement of its own)."""
    figures = ["sum(CASE WHEN minute >= :pending_since THEN attempts - settled ELSE 0 END)"]
    for window in VELOCITY_WINDOWS:
        figures += [
            f"sum(CASE WHEN minute >= :since_{window} THEN {column} ELSE 0 END)"
            for column in ("attempts", "declines", "cards")
        ]
    figures += [
        "max(CASE WHEN minute >= :since_day THEN gateway_risk END)",
        "max(CASE WHEN minute >= :since_day THEN gateway_risk_score END)",
        "min(minute)",
    ]
    return (
        _part("b", '"key"', figures) + " FROM fraud_velocity_buckets"
        " WHERE account_id = :account_id AND livemode = :livemode"
        f' AND "key" IN ({_placeholders("k", keys)}) GROUP BY "key"'
    )


def _version_part() -> str:
    """The account's rules' version (``rules.rules_version``: how many, the latest change,
    the pair ``FraudRules.loaded`` compares); one row."""
    return (
        _part("v", "NULL", ["count(*)", "coalesce(max(updated_us), 0)"])
        + " FROM fraud_rules WHERE account_id = :account_id AND livemode = :livemode"
    )


def _lists_part(aliases: int, values: int) -> str:
    """Which of the payment's values (``v0``..., as rules compare them) the account's lists
    (``a0``...) hold: a row (alias, value) each; the indexed IN query of
    ``lists.lists_matching``, whatever the lists' size."""
    return (
        _part("l", "l.alias", [], item="i.match_value")
        + " FROM radar_value_lists l JOIN radar_value_list_items i ON i.value_list_id = l.id"
        " WHERE l.account_id = :account_id AND l.livemode = :livemode"
        f" AND l.alias IN ({_placeholders('a', aliases)})"
        f" AND i.match_value IN ({_placeholders('v', values)})"
    )


def _cards_part(keys: int) -> str:
    """The minute the payment's card (``card``) was last tried with each key: ``reserve``
    moves it from there (primary-key look-ups)."""
    return (
        _part("p", '"key"', ["minute"]) + " FROM fraud_velocity_cards"
        " WHERE account_id = :account_id AND livemode = :livemode AND card = :card"
        f' AND "key" IN ({_placeholders("k", keys)})'
    )


def _read(keys: int, aliases: int, values: int, *, parts: tuple[str, ...]) -> Statement:
    """The read of ``parts`` (``b`` counts, ``v`` the rules' version, ``l`` the lists'
    matches, ``p`` the card's last minutes) as one ``UNION ALL``, for that many keys,
    list names and values; built once per shape."""
    shape = ("r", keys, aliases, values, parts)
    built = _BUILT.get(shape)
    if built is None:
        sql = []
        for part in parts:
            if part == "b" and keys:
                sql.append(_buckets_part(keys))
            elif part == "v":
                sql.append(_version_part())
            elif part == "l" and aliases and values:
                sql.append(_lists_part(aliases, values))
            elif part == "p" and keys:
                sql.append(_cards_part(keys))
        built = _BUILT[shape] = Statement(" UNION ALL ".join(sql))
    return built


def _params(account_id: str, livemode: bool, keys: Iterable[str], now_us: int) -> dict[str, Any]:
    minute = minute_of(now_us)
    params: dict[str, Any] = {
        "account_id": account_id,
        "livemode": livemode,
        "since_day": minute - _DAY_MINUTES + 1,
        "pending_since": minute - PENDING_MINUTES + 1,
    }
    params.update((f"k{i}", key) for i, key in enumerate(keys))
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
    ordered = sorted(set(keys.values()))
    read = _read(len(ordered), 0, 0, parts=("b",))
    rows = await fetch(s, read, _params(account_id, livemode, ordered, now_us))
    return _facts(keys, rows)


async def counts_and_version(
    s: AsyncSession, account_id: str, livemode: bool, keys: Mapping[str, str], now_us: int
) -> tuple[dict[str, int | str], tuple[int, int]]:
    """``counts`` and the account's rules' version (``rules.rules_version``), in one
    statement."""
    ordered = sorted(set(keys.values()))
    read = _read(len(ordered), 0, 0, parts=("b", "v"))
    rows = await fetch(s, read, _params(account_id, livemode, ordered, now_us))
    version = next((int(r[2]), int(r[3])) for r in rows if r[0] == "v")
    return (_facts(keys, rows) if keys else {}), version


class DecisionRead(NamedTuple):
    """What a decision reads in one statement (``decision_read``)."""

    facts: dict[str, int | str]  # the velocity facts (``counts``)
    version: tuple[int, int]  # the account's rules' version (``rules.rules_version``)
    lists: dict[str, set[str]]  # alias -> which of the payment's values the list holds
    stale: frozenset[str]  # the keys with rows older than a day: ``reserve``'s ``prune``
    cards: dict[str, int]  # key -> the minute the card was last tried with it: ``previous``
    # The minute the attempt was counted in by the read's own call (PostgreSQL,
    # ``locked_decision_read(reserve=True)``), else None.
    reserved: int | None = None


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
    (built-in lists are not in the database: ``lists.py``), which keys have rows older
    than a day, and the minute the payment's card (``keys["card_fingerprint"]``) was last
    tried with each other key, in one statement: all a decision reads when its rules are
    already loaded."""
    ordered = sorted(set(keys.values()))
    card = keys.get("card_fingerprint")
    names = sorted(aliases)
    wanted = sorted(values) if names else []  # no list to look in: no value sent
    parts = ("b", "v", "l", "p") if _card_keys(keys, card) else ("b", "v", "l")
    read = _read(len(ordered), len(names), len(wanted), parts=parts)
    params = _params(account_id, livemode, ordered, now_us)
    params.update((f"a{i}", name) for i, name in enumerate(names))
    params.update((f"v{i}", value) for i, value in enumerate(wanted))
    params["card"] = card
    return _decision_of(keys, await fetch(s, read, params), now_us)


# The tables ``paymux_fraud_decision_start`` reads or writes (migration 0037's function).
_DECISION_TABLES: Final = frozenset(
    {
        "fraud_rules",
        "fraud_velocity_buckets",
        "fraud_velocity_cards",
        "radar_value_lists",
        "radar_value_list_items",
    }
)
# The keys' advisory locks, the decision's read and (``reserve_minute`` not NULL) the attempt
# counted, in one round trip on PostgreSQL: the function of migrations 0036 and 0037 (its
# windows are VELOCITY_WINDOWS' three, in this order); and its undo, for a block.
_LOCKED_READ: Final = Statement(
    "SELECT * FROM paymux_fraud_decision_start(CAST(:lock_keys AS BIGINT[]), :account_id,"
    " :livemode, CAST(:keys AS TEXT[]), :pending_since, :since_10m, :since_hourly,"
    " :since_daily, :since_day, CAST(:aliases AS TEXT[]), CAST(:values AS TEXT[]), :card,"
    " CAST(:reserve_minute AS BIGINT), CAST(:card_keys AS TEXT[]))"
)
_UNDO: Final = Statement(
    "SELECT paymux_fraud_decision_undo(:account_id, :livemode, CAST(:keys AS TEXT[]), :card,"
    " CAST(:card_keys AS TEXT[]), CAST(:reserve_minute AS BIGINT), :since_day,"
    " CAST(:last_keys AS TEXT[]), CAST(:last_minutes AS BIGINT[]))"
)
_FUNCTION_WINDOWS: Final = ("10m", "hourly", "daily")
# The same call behind the confirm's intent lock (migration 0039): the intent locked only if
# it still holds what the decision was made on (``IntentAsDecided``), else one row, part
# ``m``, and nothing else done.
_GUARD_PARAMS: Final = (
    "g_intent",
    "g_status",
    "g_confirm_count",
    "g_amount",
    "g_currency",
    "g_customer",
    "g_receipt_email",
    "g_off_session",
    "g_shipping_country",
)
_GUARDED_READ: Final = Statement(
    "SELECT * FROM paymux_fraud_confirm_start(:g_intent, :g_status,"  # noqa: S608 (constants)
    " CAST(:g_confirm_count AS INTEGER), CAST(:g_amount AS BIGINT), :g_currency, :g_customer,"
    " :g_receipt_email, CAST(:g_off_session AS BOOLEAN), :g_shipping_country,"
    + _LOCKED_READ.sql.removeprefix("SELECT * FROM paymux_fraud_decision_start(")
)
# The lock of the same intent as a statement of its own, where the call is not used.
_GUARD: Final = Statement(
    "SELECT 1 FROM payment_intents WHERE id = :g_intent AND status = :g_status"
    " AND confirm_count = :g_confirm_count AND amount = :g_amount AND currency = :g_currency"
    " AND customer_id IS NOT DISTINCT FROM :g_customer"
    " AND receipt_email IS NOT DISTINCT FROM :g_receipt_email"
    " AND off_session IS NOT DISTINCT FROM CAST(:g_off_session AS BOOLEAN)"
    " AND (shipping -> 'address' ->> 'country') IS NOT DISTINCT FROM :g_shipping_country"
    " FOR UPDATE"
)


class IntentAsDecided(NamedTuple):
    """A confirm's intent as its decision saw it (an earlier transaction's read): what
    ``locked_decision_read(guard=...)`` locks it on, unchanged, on PostgreSQL. The status
    and confirmation count the attempt starts from, and every value of it the facts read
    (fraud/decisions.py ``FraudEngine.facts``)."""

    intent: str
    status: str
    confirm_count: int
    amount: int
    currency: str
    customer: str | None
    receipt_email: str | None
    off_session: bool | None
    shipping_country: str | None


async def locked_decision_read(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    now_us: int,
    aliases: Iterable[str],
    values: Iterable[str],
    *,
    is_sqlite: bool,
    reserve: bool = False,
    guard: IntentAsDecided | None = None,
) -> DecisionRead | None:
    """``lock`` then ``decision_read``, as a decision needs them: on PostgreSQL in ONE
    round trip, a call of the ``VOLATILE`` PL/pgSQL function ``paymux_fraud_decision_start``
    (migrations 0036 and 0037), which takes the keys' locks and then reads in a statement of
    its own. The read must not share the lock's statement: a statement's snapshot (READ COMMITTED)
    is taken when it starts, before it waits for the lock, and would miss the attempt the
    lock's previous holder committed meanwhile; a volatile function's statements each take
    a fresh one. On SQLite (its write transaction is the only writer), the read alone.

    ``reserve`` (PostgreSQL; ignored on SQLite, where the caller ``reserve``s after
    deciding): the same call also counts the attempt as ``reserve`` would, after the read
    (which does not see it), before the rules decide; ``DecisionRead.reserved`` is then its
    minute. A decision that blocks must take it back in its transaction (``unreserve``):
    nothing of it is ever committed, and no one else sees it meanwhile (other deciders of
    the keys wait for their lock; other readers see committed rows only).

    ``guard`` (PostgreSQL; a confirm that has not locked its intent yet): the intent is
    locked first, in the same round trip (``paymux_fraud_confirm_start``, migration 0039),
    if it still is as ``guard`` says; if not, None, and nothing else was done (the caller
    rolls back, reads the intent again under its lock and decides on that)."""
    if is_sqlite or tuple(VELOCITY_WINDOWS) != _FUNCTION_WINDOWS:
        if guard is not None and not is_sqlite and not await fetch(s, _GUARD, _guarded(guard)):
            return None
        await lock(s, keys.values(), is_sqlite=is_sqlite)
        return await decision_read(s, account_id, livemode, keys, now_us, aliases, values)
    ordered = sorted(set(keys.values()))
    card = keys.get("card_fingerprint")
    minute = minute_of(now_us) if reserve and ordered else None
    params = _params(account_id, livemode, (), now_us)
    params["lock_keys"] = sorted({int(key[:15], 16) for key in ordered})
    params["keys"] = ordered
    params["aliases"] = sorted(aliases)
    params["values"] = sorted(values) if params["aliases"] else []  # no list to look in
    params["card"] = card
    params["reserve_minute"] = minute
    params["card_keys"] = _card_keys(keys, card)
    if guard is None:
        # The writes the transaction holds (a create's intent and event, when the create
        # with confirm=true decides in its own transaction) ride on this call: none of them
        # is to a table it reads (storage/driver.py ``fetch_with_held``).
        rows = await fetch_with_held(s, _LOCKED_READ, params, reads=_DECISION_TABLES)
    else:
        params.update(_guarded(guard))
        rows = await fetch(s, _GUARDED_READ, params)
        if rows and rows[0][0] == "m":
            return None
    return _decision_of(keys, rows, now_us)._replace(reserved=minute)


def _guarded(guard: IntentAsDecided) -> dict[str, Any]:
    return dict(zip(_GUARD_PARAMS, guard, strict=True))


async def unreserve(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    keys: Mapping[str, str],
    read: DecisionRead,
) -> None:
    """Take back the attempt ``locked_decision_read(reserve=True)`` counted (``read``: what
    it returned), in the same transaction, still under the keys' lock: a block records
    nothing. The bucket rows and card rows are as the read found them again (a bucket row
    the reservation created, holding nothing then, is deleted)."""
    if read.reserved is None:
        return
    card = keys.get("card_fingerprint")
    params = undo_params(
        account_id,
        livemode,
        sorted(set(keys.values())),
        card,
        _card_keys(keys, card),
        read.reserved,
        read.cards,
    )
    await fetch(s, _UNDO, params)


def undo_params(
    account_id: str,
    livemode: bool,
    keys: list[str],
    card: str | None,
    card_keys: list[str],
    reserved: int,
    cards: Mapping[str, int],
) -> dict[str, Any]:
    """``paymux_fraud_decision_undo``'s arguments (``unreserve``; bench/fraud.py replays
    them): the decision's sorted keys, its card and card keys, the minute it reserved, and
    the card's last minute per key the decision's read found (``DecisionRead.cards``)."""
    last = sorted(cards.items())
    return {
        "account_id": account_id,
        "livemode": livemode,
        "keys": keys,
        "card": card,
        "card_keys": card_keys,
        "reserve_minute": reserved,
        "since_day": reserved - _DAY_MINUTES + 1,
        "last_keys": [key for key, _ in last],
        "last_minutes": [minute for _, minute in last],
    }


# A settled attempt's risk, raised on one key's row of its minute (``raise_risk``): as the
# settle records a risk level and score (migrations 0037 and 0038), the higher one kept.
_RAISE_RISK: Final = Statement(
    "UPDATE fraud_velocity_buckets SET"
    " gateway_risk = CASE WHEN coalesce(gateway_risk, 0) < :v_rank"
    " THEN :v_rank ELSE gateway_risk END,"
    " gateway_risk_score = CASE WHEN coalesce(gateway_risk_score, -1) < :v_score"
    " THEN :v_score ELSE gateway_risk_score END"
    ' WHERE account_id = :v_account AND livemode = :v_mode AND "key" = :v_key'
    " AND minute = :v_minute"
)


async def raise_risk(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    settled: Mapping[str, Any],
    *,
    gateway_risk: str | None,
    gateway_risk_score: int | None,
) -> None:
    """The gateway's risk for an attempt already settled without it (``settled``: its
    ``settle_record``, as the intent's ``fraud_settle`` holds it): recorded on its keys' rows
    of its minute as the settle records it, the higher level and score kept. A provider's
    webhook can settle a payment before our call's answer, which alone carries the risk
    (Stripe's ``payment_intent.succeeded`` has no charge ``outcome``). One row at a time, the
    keys sorted, as the settle takes them: no deadlock."""
    rank = _RISK_RANK.get(gateway_risk or "")
    if rank is None and gateway_risk_score is None:
        return
    for key in sorted(settled.get("keys") or ()):
        await execute(
            s,
            _RAISE_RISK,
            {
                "v_rank": rank,
                "v_score": gateway_risk_score,
                "v_account": account_id,
                "v_mode": livemode,
                "v_key": key,
                "v_minute": settled["minute"],
            },
        )


async def prune_old(
    s: AsyncSession, account_id: str, livemode: bool, keys: Iterable[str], minute: int
) -> None:
    """Delete ``keys``' rows older than a day before ``minute`` (both tables): what
    ``reserve`` does for its ``prune`` keys."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    old_rows: dict[str, Any] = {
        "v_account": account_id,
        "v_mode": livemode,
        "v_older": minute - _DAY_MINUTES,
    }
    old_rows.update((f"v_k{i}", key) for i, key in enumerate(ordered))
    for table in ("fraud_velocity_buckets", "fraud_velocity_cards"):
        await execute(s, _prune(table, len(ordered)), old_rows)


def _decision_of(keys: Mapping[str, str], rows: list[Any], now_us: int) -> DecisionRead:
    """A ``DecisionRead`` from the read's rows (part, key, figures..., item)."""
    version = next((int(r[2]), int(r[3])) for r in rows if r[0] == "v")
    found: dict[str, set[str]] = {}
    last: dict[str, int] = {}
    for row in rows:
        if row[0] == "l":
            found.setdefault(row[1], set()).add(row[-1])
        elif row[0] == "p":
            last[row[1]] = int(row[2])
    older = minute_of(now_us) - _DAY_MINUTES  # as ``reserve`` prunes
    stale = frozenset(
        r[1] for r in rows if r[0] == "b" and r[_OLDEST] is not None and r[_OLDEST] < older
    )
    return DecisionRead(_facts(keys, rows) if keys else {}, version, found, stale, last)


def _window_names(kind: str) -> tuple[tuple[int, str, str, str | None], ...]:
    """A key kind's velocity facts per window: the window's index, then its payments',
    declines' and distinct cards' fact names (a card's own key has no distinct cards)."""
    return tuple(
        (
            i,
            f"payments_per_{kind}_{window}",
            f"declines_per_{kind}_{window}",
            None if kind == "card_fingerprint" else f"distinct_cards_per_{kind}_{window}",
        )
        for i, window in enumerate(VELOCITY_WINDOWS)
    )


# Built once: the names are the same at every decision.
_WINDOW_NAMES: Final = {kind: _window_names(kind) for kind in KEY_KINDS}
_RISK: Final = 1 + 3 * len(VELOCITY_WINDOWS)  # a bucket row's highest risk rank's figure
# Its highest risk score: the next figure, as a column of the row (part and key first).
_SCORE: Final = 2 + _RISK + 1


def _facts(keys: Mapping[str, str], rows: Iterable[Any]) -> dict[str, int | str]:
    """The velocity facts of ``keys`` (kind -> digest) from the read's bucket rows (part
    ``b``: key, then pending; attempts, declines and distinct cards per window; the day's
    highest risk rank and score; see ``_buckets_part``)."""
    figures_of: dict[str, list[int]] = {}
    scores: dict[str, int] = {}
    for row in rows:
        if row[0] != "b":
            continue
        figures_of[row[1]] = [int(v or 0) for v in row[2 : 2 + _WIDTH]]
        score = row[_SCORE]  # 0 is a score: NULL is none
        if score is not None:
            scores[row[1]] = int(score)
    facts: dict[str, int | str] = {}
    for kind, key in keys.items():
        figures = figures_of.get(key)
        if kind == "card_fingerprint":
            if figures and 0 < figures[_RISK] <= len(_RISK_RANK):
                facts["gateway_risk_level"] = GATEWAY_RISK_LEVELS[figures[_RISK] - 1]
            if key in scores:
                facts["gateway_risk_score"] = scores[key]
        names = _WINDOW_NAMES[kind]
        if figures is None:
            for _, payments, declines, cards in names:
                facts[payments] = facts[declines] = 0
                if cards is not None:
                    facts[cards] = 0
            continue
        # Only an address's attempts in flight count as its declines: that holds a burst of
        # parallel card tests from one address to the threshold, while a merchant's server
        # confirming many payments of one card, email or customer at once (or one intent
        # confirmed twice) is never declined for answers that have not come yet.
        pending = max(0, figures[0]) if kind in _PENDING_KINDS else 0
        for i, payments, declines, cards in names:
            facts[payments] = figures[1 + 3 * i]
            facts[declines] = figures[2 + 3 * i] + pending
            if cards is not None:
                facts[cards] = max(0, figures[3 + 3 * i])
    return facts
