"""Distinct cards per key are counted exactly from the minute rows (issue 13: a card-testing
flood must not make every decision of its key read one row per card), on SQLite and
PostgreSQL: a card tried again in a later minute moves to it (counted once, in the windows
its last attempt falls in), a card tried twice in a minute counts once, a card last tried
more than a day ago counts again as new; two processes deciding the same cards at once count
each card once. The figures are stated by hand and checked against the card rows themselves
(the last minute each card was tried with the key)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_names = itertools.count()
ACCOUNT = "acct_distinct"
M = 29_000_000  # the minute "now" of these tests
IP = velocity.digest("ip", "203.0.113.77")
EMAIL = velocity.digest("email", "tester@example.org")


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fdist_{next(_names)}")


def _us(minute: int) -> int:
    return minute * 60_000_000 + 1_000_000


def _keys(card: str) -> dict[str, str]:
    return {"card_fingerprint": velocity.digest("card_fingerprint", card), "ip": IP, "email": EMAIL}


async def _attempt(db: Database, card: str, minute: int) -> None:
    """An allowed attempt as the confirm decides it: the keys' lock and the one read, the
    attempt counted with what the read found (on PostgreSQL all in the read's one call,
    migration 0036; on SQLite by ``reserve`` after it)."""
    keys = _keys(card)
    async with db.write() as s:
        read = await velocity.locked_decision_read(
            s, ACCOUNT, False, keys, _us(minute), (), (), is_sqlite=db.is_sqlite, reserve=True
        )
        if read.reserved is not None:
            await velocity.prune_old(s, ACCOUNT, False, read.stale, read.reserved)
            return
        await velocity.reserve(
            s,
            ACCOUNT,
            False,
            keys,
            keys["card_fingerprint"],
            now_us=_us(minute),
            is_sqlite=db.is_sqlite,
            prune=read.stale,
            previous=read.cards,
        )


async def _distinct(db: Database, minute: int) -> dict[str, int | str]:
    async with db.read() as s:
        facts = await velocity.counts(s, ACCOUNT, False, {"ip": IP, "email": EMAIL}, _us(minute))
    return {name: value for name, value in facts.items() if name.startswith("distinct_cards")}


async def _card_rows(db: Database, key: str, since: int) -> int:
    """The cards last tried with ``key`` since ``since``, counted from the card rows."""
    async with db.read() as s:
        rows = await s.execute(
            text('SELECT count(*) FROM fraud_velocity_cards WHERE "key" = :k AND minute >= :m'),
            {"k": key, "m": since},
        )
        return int(rows.scalar_one())


def _expected(ten: int, hour: int, day: int) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    for kind in ("ip", "email"):
        out |= {
            f"distinct_cards_per_{kind}_10m": ten,
            f"distinct_cards_per_{kind}_hourly": hour,
            f"distinct_cards_per_{kind}_daily": day,
        }
    return out


def test_distinct_cards_stay_exact_as_cards_move_between_minutes(db: str) -> None:
    async def main() -> None:
        database = Database(db)
        try:
            await _attempt(database, "G", M - 1500)  # more than a day before M
            for card in ("A", "B", "E"):
                await _attempt(database, card, M - 100)
            await _attempt(database, "F", M - 30)
            for card in ("B", "C"):
                await _attempt(database, card, M - 5)  # B moves from M - 100
            for card in ("A", "D", "A", "G"):  # A moves from M - 100, twice in M; G is new
                await _attempt(database, card, M)
            # Last tried: A M, B M-5, C M-5, D M, E M-100, F M-30, G M.
            assert await _distinct(database, M) == _expected(ten=5, hour=6, day=7)
            # 40 minutes later: the 10 minutes hold none; the hour (from M-19) A, B, C, D, G.
            assert await _distinct(database, M + 40) == _expected(ten=0, hour=5, day=7)
            # The card rows say the same (their last minutes).
            assert [await _card_rows(database, IP, since) for since in (M - 9, M - 59)] == [5, 6]
            # A day after M - 100: E has left the day; the rest are still in it.
            assert (await _distinct(database, M + 1340))["distinct_cards_per_ip_daily"] == 6
        finally:
            await database.dispose()

    asyncio.run(main())


def test_two_processes_deciding_the_same_cards_at_once_count_each_card_once(db: str) -> None:
    """Two engines on one database (two API processes) try the same ten cards with one
    address at once, in different orders, then five of them again a minute later: each card
    is counted once, in the minute of its last attempt, whatever the interleaving."""

    async def main() -> None:
        first, second = Database(db), Database(db)
        try:
            cards = [f"card{i}" for i in range(10)]
            for minute, tried in ((M, cards), (M + 1, cards[:5])):
                orders = [random.Random(seed).sample(tried, len(tried)) for seed in (1, 2)]
                await asyncio.gather(
                    *(
                        asyncio.gather(*(_attempt(database, card, minute) for card in order))
                        for database, order in zip((first, second), orders, strict=True)
                    )
                )
            assert await _distinct(first, M + 1) == _expected(ten=10, hour=10, day=10)
            async with first.read() as s:
                rows = await s.execute(
                    text(
                        "SELECT minute, cards, attempts FROM fraud_velocity_buckets"
                        ' WHERE "key" = :k ORDER BY minute'
                    ),
                    {"k": IP},
                )
                # M: 20 attempts, 5 cards left (5 moved on); M + 1: 10 attempts, 5 cards.
                assert [tuple(r) for r in rows] == [(M, 5, 20), (M + 1, 5, 10)]
        finally:
            await first.dispose()
            await second.dispose()

    asyncio.run(main())
