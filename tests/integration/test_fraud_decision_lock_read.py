"""Two deciders of the same velocity keys on PostgreSQL serialize on the keys' advisory locks,
and the second one's read counts the first one's attempt, committed while it waited (issue 13).

Since migration 0036 the lock and the read are one round trip: a ``VOLATILE`` PL/pgSQL
function (``velocity.locked_decision_read``). That is only right if the read takes its
snapshot after the locks are granted: a plain statement (or a ``STABLE`` function) reads the
snapshot taken when the statement started, before it waited, and would miss the attempt the
lock's previous holder committed meanwhile (two parallel card tests from one address would
both see none). The second decider is shown to be waiting on the lock (``pg_locks``) before
the first commits, so the read can only count that attempt if its snapshot is a later one.

The same call also counts the attempt (after its read, before the rules decide); a block
takes it back in its transaction (``velocity.unreserve``): every velocity row is then as it
was. And the migration's downgrade drops the two functions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage.db import Database
from paymux.storage.migrate import alembic_config, upgrade
from support.pgcluster import PgCluster
from support.pgfunctions import function_names

_names = itertools.count()
ACCOUNT = "acct_lockread"
NOW_US = 29_000_000 * 60_000_000 + 5_000_000
IP = velocity.digest("ip", "203.0.113.90")
EMAIL = velocity.digest("email", "racer@example.org")


@pytest.fixture
def db(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"flock_{next(_names)}")


def _keys(card: str) -> dict[str, str]:
    return {"card_fingerprint": velocity.digest("card_fingerprint", card), "ip": IP, "email": EMAIL}


async def _decide(database: Database, card: str, *, reserve: bool) -> velocity.DecisionRead:
    """A decision's lock and read (one round trip), and its attempt counted: by the same
    call (``reserve``, as the confirm does) or by ``velocity.reserve`` after it."""
    keys = _keys(card)
    async with database.write() as s:
        if reserve:
            return await velocity.locked_decision_read(
                s, ACCOUNT, False, keys, NOW_US, (), (), is_sqlite=False, reserve=True
            )
        return await _read_then_reserve(s, keys)


async def _read_then_reserve(s: AsyncSession, keys: dict[str, str]) -> velocity.DecisionRead:
    """The lock and the read alone, then the attempt counted by ``velocity.reserve``."""
    read = await velocity.locked_decision_read(
        s, ACCOUNT, False, keys, NOW_US, (), (), is_sqlite=False
    )
    await velocity.reserve(
        s,
        ACCOUNT,
        False,
        keys,
        keys["card_fingerprint"],
        now_us=NOW_US,
        is_sqlite=False,
        prune=read.stale,
        previous=read.cards,
    )
    return read


async def _waiting_on_advisory_locks(database: Database) -> int:
    async with database.read() as s:
        rows = await s.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        return int(rows.scalar_one())


@pytest.mark.parametrize("reserve", [True, False], ids=["read-and-reserve", "read-only"])
def test_the_second_decider_waits_and_counts_the_first_s_committed_attempt(
    db: str, reserve: bool
) -> None:
    """The first decider counts its attempt with ``velocity.reserve`` (whatever the call
    under test does); the second's call is the confirm's (``reserve``) or the lock and read
    alone."""

    async def main() -> None:
        first, second, watcher = Database(db), Database(db), Database(db)
        try:
            keys = _keys("card-A")
            release = asyncio.Event()
            holding = asyncio.Event()

            async def first_decider() -> velocity.DecisionRead:
                async with first.write() as s:
                    read = await _read_then_reserve(s, keys)
                    holding.set()
                    await release.wait()  # the locks held, the attempt not committed
                return read

            one = asyncio.create_task(first_decider())
            await holding.wait()
            # Same address and email, another card.
            two = asyncio.create_task(_decide(second, "card-B", reserve=reserve))
            # The second decider is blocked on the keys' locks while the first holds them.
            for _ in range(3000):  # 30 s at most
                if await _waiting_on_advisory_locks(watcher):
                    break
                assert not two.done(), "the second decider did not wait for the keys' locks"
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the second decider never waited for the keys' locks")
            assert not two.done()
            release.set()  # the first commits
            first_read, second_read = await one, await two

            assert first_read.facts["payments_per_ip_10m"] == 0
            facts = second_read.facts
            # The first decider's attempt, committed while the second waited: counted.
            assert facts["payments_per_ip_10m"] == 1
            assert facts["payments_per_email_10m"] == 1
            assert facts["distinct_cards_per_ip_10m"] == 1
            assert facts["declines_per_ip_10m"] == 1  # its answer not known yet: pending
            assert facts["payments_per_card_fingerprint_10m"] == 0  # another card
            # Both attempts counted.
            after = await _decide(first, "card-C", reserve=True)
            assert after.facts["payments_per_ip_10m"] == 2
            assert after.facts["distinct_cards_per_ip_10m"] == 2
        finally:
            for database in (first, second, watcher):
                await database.dispose()

    asyncio.run(main())


async def _functions(url: str) -> list[str]:
    return await function_names(url, "paymux_fraud")


# At head: 0036's two (replaced by 0037), 0037's settle and 0039's confirm start.
FUNCTIONS = [
    "paymux_fraud_confirm_start",
    "paymux_fraud_decision_start",
    "paymux_fraud_decision_undo",
    "paymux_fraud_settle",
]


def test_migration_0036_creates_the_functions_and_its_downgrade_drops_them(db: str) -> None:
    assert sorted(asyncio.run(_functions(db))) == FUNCTIONS
    command.downgrade(alembic_config(db), "0035")
    assert asyncio.run(_functions(db)) == []
    upgrade(db)
    assert sorted(asyncio.run(_functions(db))) == FUNCTIONS


_X = velocity.digest("card_fingerprint", "card-X")


async def _decide_at(database: Database, keys: dict[str, str], minute: int) -> None:
    """An attempt allowed at ``minute``, counted as the confirm counts it on PostgreSQL."""
    async with database.write() as s:
        read = await velocity.locked_decision_read(
            s, ACCOUNT, False, keys, minute * 60_000_000, (), (), is_sqlite=False, reserve=True
        )
        assert read.reserved == minute


async def _tables(database: Database) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    async with database.read() as s:
        buckets = await s.execute(
            text(
                'SELECT "key", minute, attempts, declines, settled, cards, gateway_risk,'
                ' gateway_risk_score FROM fraud_velocity_buckets ORDER BY "key", minute'
            )
        )
        cards = await s.execute(
            text('SELECT "key", card, minute FROM fraud_velocity_cards ORDER BY "key", card')
        )
        return [tuple(r) for r in buckets], [tuple(r) for r in cards]


def test_an_attempt_counted_by_the_read_and_taken_back_leaves_every_row_as_it_was(
    db: str,
) -> None:
    """What a block does on PostgreSQL: the read's call counts the attempt (the card moving
    from earlier minutes, one within the day and one older), ``unreserve`` takes it back in
    the same transaction; after the commit the two tables hold exactly the rows they held
    before. And the reservation did count (seen inside the transaction): the same figures
    a following read shows for an attempt that is kept."""

    async def main() -> None:
        database = Database(db)
        minute = NOW_US // 60_000_000
        try:
            # Card X tried with the IP 5 minutes ago, with the email more than a day ago;
            # card Y with both in this minute (its rows stay in this minute).
            await _decide_at(database, {"card_fingerprint": _X, "ip": IP}, minute - 5)
            await _decide_at(database, {"card_fingerprint": _X, "email": EMAIL}, minute - 1500)
            await _decide_at(database, _keys("card-Y"), minute)
            before = await _tables(database)
            keys = {"card_fingerprint": _X, "ip": IP, "email": EMAIL}
            async with database.write() as s:
                read = await velocity.locked_decision_read(
                    s, ACCOUNT, False, keys, NOW_US, (), (), is_sqlite=False, reserve=True
                )
                assert read.reserved == minute
                assert read.cards == {IP: minute - 5, EMAIL: minute - 1500}
                assert read.facts["payments_per_ip_10m"] == 2  # X at M - 5, Y at M
                # Inside the transaction the attempt is counted: X moved to this minute.
                counted = await velocity.counts(s, ACCOUNT, False, keys, NOW_US)
                assert counted["payments_per_ip_10m"] == 3
                assert counted["distinct_cards_per_ip_10m"] == 2  # X once, and Y
                assert counted["distinct_cards_per_email_daily"] == 2  # X back in the day
                await velocity.unreserve(s, ACCOUNT, False, keys, read)
            assert await _tables(database) == before
        finally:
            await database.dispose()

    asyncio.run(main())
