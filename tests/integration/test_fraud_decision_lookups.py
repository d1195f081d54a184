"""The PostgreSQL fraud decision's call reads the payment's own rows by key look-ups: what it
touches does not grow with the account's other velocity keys or the size of its lists
(issue 13's p99; migration 0037).

Migration 0036's function read the counts with ``"key" = ANY(keys)`` and ``GROUP BY "key"``,
the card's last minutes with ``"key" = ANY(keys) AND card = :card``, and the lists' items with
``match_value = ANY(values)``: on a database never analyzed (or analyzed while small), the
plans scanned every bucket row and every card row of the account, and every item of each
list, keeping the keys and values as filters. Migration 0037 reads one key (and one list
value) at a time, with the primary key's (or the index's) full prefix, and keeps those
plans (generic ones: no planning at each call).

The measure is the buffers the call touches (``EXPLAIN (ANALYZE, BUFFERS)`` of the same call
the decision makes, its nested statements included): a count of pages, not a time. The
account here has 4,000 other keys with a bucket row and a card row each, and a list of
4,000 items; the decision's own rows are a few, so a call that looks them up touches tens
of pages, and one that scans the account's rows or the list's items touches hundreds.

The same holds for a block's undo (``paymux_fraud_decision_undo``, the call that takes the
reservation back in the block's transaction, many of them during a card-testing attack):
0036's joined its arrays to the tables, and its card rows' DELETE named the card but not
the key (every card row of the account); 0037's takes back each row the reservation
changed by its primary key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.migrate import alembic_config, upgrade
from paymux.storage.models import Account
from support.pgcluster import PgCluster

_names = itertools.count()
ACCOUNT = "acct_lookups"
MINUTE = 29_000_000
NOW_US = MINUTE * 60_000_000 + 5_000_000
CARD = velocity.digest("card_fingerprint", "card-L")
IP = velocity.digest("ip", "203.0.113.77")
EMAIL = velocity.digest("email", "lookups@example.org")
KEYS = {"card_fingerprint": CARD, "ip": IP, "email": EMAIL}
OTHERS = 4000  # other keys of the account (a bucket row and a card row each), list items
# A look-up per key (3 keys: counts, card rows, the reservation's rows and upserts) and per
# list value (13 values: the payment's 10 and the 3 risk levels, as the decision asks) is
# 79 pages on this data (measured 2026-12-03 with migration 0037); migration 0036's
# scans of the account's 4,000 bucket rows, 4,000 card rows and the list's 4,000 items,
# 963.
MOST_PAGES = 250
VALUES = (
    "203.0.113.77",
    "lookups@example.org",
    "example.org",
    "us",
    "visa",
    "credit",
    "usd",
    "424242",
    "bench",
    "card-l",
    "normal",
    "elevated",
    "highest",
)


@pytest.fixture
def db(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"flookups_{next(_names)}")


async def _fill(database: Database) -> None:
    """The account's other keys (a bucket row in this minute and a card row each), the
    payment's own earlier attempt (its card with the IP two minutes ago), and a list of
    ``OTHERS`` addresses holding the payment's IP."""
    async with database.write() as s:
        s.add(Account(id=ACCOUNT, name="lookups", created_us=1))
        await s.flush()
        await s.execute(
            text(
                "INSERT INTO fraud_velocity_buckets"
                ' (account_id, livemode, "key", minute, attempts, declines, settled, cards)'
                " SELECT :account, false, md5('other' || g), :minute, 1, 0, 1, 1"
                " FROM generate_series(1, :others) AS g"
            ),
            {"account": ACCOUNT, "minute": MINUTE, "others": OTHERS},
        )
        await s.execute(
            text(
                'INSERT INTO fraud_velocity_cards (account_id, livemode, "key", card, minute)'
                " SELECT :account, false, md5('other' || g), md5('card' || g), :minute"
                " FROM generate_series(1, :others) AS g"
            ),
            {"account": ACCOUNT, "minute": MINUTE, "others": OTHERS},
        )
        await s.execute(
            text(
                "INSERT INTO radar_value_lists (id, account_id, livemode, alias, name,"
                " item_type, created_by, metadata, created_us)"
                " VALUES ('rsl_lookups', :account, false, 'suspect_ips', 'suspect',"
                " 'ip_address', 'test', '{}', 1)"
            ),
            {"account": ACCOUNT},
        )
        await s.execute(
            text(
                "INSERT INTO radar_value_list_items (id, account_id, livemode, value_list_id,"
                " value, match_value, created_by, created_us)"
                " SELECT 'rsli_' || g, :account, false, 'rsl_lookups', v, v, 'test', g"
                " FROM generate_series(1, :others) AS g,"
                " LATERAL (SELECT CASE WHEN g = 1 THEN '203.0.113.77'"
                " ELSE '10.1.' || (g / 250) || '.' || (g % 250) END AS v) AS item"
            ),
            {"account": ACCOUNT, "others": OTHERS},
        )
    async with database.write() as s:  # the card tried with the IP two minutes ago
        await velocity.locked_decision_read(
            s,
            ACCOUNT,
            False,
            {"card_fingerprint": CARD, "ip": IP},
            NOW_US - 120_000_000,
            (),
            (),
            is_sqlite=False,
            reserve=True,
        )


def _pages(plan: Any) -> int:
    """The pages the call touched: the plan's top node's buffers (its nested statements'
    included), found in shared buffers or read."""
    top = json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def test_the_decision_s_call_touches_the_payment_s_rows_not_the_account_s(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: list[dict[str, Any]] = []
    real_fetch = driver.fetch_with_held  # the call's (it carries any held writes)

    async def spy(
        s: Any, statement: driver.Statement, params: dict[str, Any], *, reads: frozenset[str]
    ) -> Any:
        if statement is velocity._LOCKED_READ:
            captured.append(dict(params))
        return await real_fetch(s, statement, params, reads=reads)

    async def main() -> None:
        database = Database(db)
        try:
            await _fill(database)
            monkeypatch.setattr(velocity, "fetch_with_held", spy)
            async with database.write() as s:
                read = await velocity.locked_decision_read(
                    s,
                    ACCOUNT,
                    False,
                    KEYS,
                    NOW_US,
                    ["suspect_ips"],
                    VALUES,
                    is_sqlite=False,
                    reserve=True,
                )
            monkeypatch.undo()
            # What the call read: the card with the IP two minutes ago, the IP's one attempt
            # (the email is new), the IP in the list; none of the other keys' rows.
            assert read.cards == {IP: MINUTE - 2}
            assert read.facts["payments_per_ip_10m"] == 1
            assert read.facts["payments_per_email_daily"] == 0
            assert read.facts["distinct_cards_per_ip_hourly"] == 1
            assert read.lists == {"suspect_ips": {"203.0.113.77"}}
            assert read.reserved == MINUTE
            # The same call, explained (twice on one connection: the second is what a pooled
            # connection pays, its plans cached).
            explain = driver.Statement(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + velocity._LOCKED_READ.sql
            )
            pages = []
            async with database.write() as s:
                for _ in range(2):
                    plan = (await driver.fetch(s, explain, captured[-1]))[0][0]
                    pages.append(_pages(plan))
                # The plans kept for every call (no planning at each call): the function's
                # own setting.
                settings = await s.execute(
                    text(
                        "SELECT proconfig FROM pg_proc"
                        " WHERE proname = 'paymux_fraud_decision_start'"
                    )
                )
                assert settings.scalar_one() == ["plan_cache_mode=force_generic_plan"]
            assert pages[-1] <= MOST_PAGES, pages
        finally:
            await database.dispose()

    asyncio.run(main())


async def _tables(database: Database) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    async with database.read() as s:
        buckets = await s.execute(
            text(
                'SELECT "key", minute, attempts, declines, settled, cards, gateway_risk,'
                " gateway_risk_score FROM fraud_velocity_buckets"
                ' WHERE account_id = :account ORDER BY "key", minute'
            ),
            {"account": ACCOUNT},
        )
        cards = await s.execute(
            text(
                'SELECT "key", card, minute FROM fraud_velocity_cards'
                ' WHERE account_id = :account ORDER BY "key", card'
            ),
            {"account": ACCOUNT},
        )
        return [tuple(r) for r in buckets], [tuple(r) for r in cards]


# The block's undo, on the same data: a look-up per row the reservation changed (the 3 keys'
# rows in this minute, the IP's row 2 minutes ago that the card left, the card's rows with
# the IP and the email) is 41 pages on this data (measured 2026-12-03 with migration 0037);
# migration 0036's undo, joining the arrays to the tables, 358 (its card DELETE, without the
# key, read the account's 4,000 card rows).
MOST_UNDO_PAGES = 100


def test_a_block_s_undo_touches_the_payment_s_rows_and_leaves_every_row_as_it_was(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a block does during a card-testing attack (``velocity.unreserve``, the same
    transaction as the call that counted the attempt): its undo touches the rows of the
    payment's keys, not the account's 4,000 other keys' rows, and after the commit both
    tables hold exactly the rows they held before, row for row. Two blocks in the
    transaction, each undo explained: the second is what a pooled connection pays (its
    plans cached), and the first's undo has put everything back for it."""
    pages: list[int] = []
    real_fetch = driver.fetch

    async def explained(s: Any, statement: driver.Statement, params: dict[str, Any]) -> Any:
        if statement is velocity._UNDO:
            explain = driver.Statement(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + velocity._UNDO.sql
            )
            plan = (await real_fetch(s, explain, params))[0][0]
            pages.append(_pages(plan))
            return []
        return await real_fetch(s, statement, params)

    async def main() -> None:
        database = Database(db)
        try:
            await _fill(database)
            before = await _tables(database)
            monkeypatch.setattr(velocity, "fetch", explained)
            async with database.write() as s:
                for _ in range(2):
                    read = await velocity.locked_decision_read(
                        s,
                        ACCOUNT,
                        False,
                        KEYS,
                        NOW_US,
                        ["suspect_ips"],
                        VALUES,
                        is_sqlite=False,
                        reserve=True,
                    )
                    # The card tried with the IP 2 minutes ago (a row within the day to give
                    # its card back to), never with the email (a card row to delete).
                    assert read.cards == {IP: MINUTE - 2}
                    assert read.reserved == MINUTE
                    await velocity.unreserve(s, ACCOUNT, False, KEYS, read)
            monkeypatch.undo()
            assert len(pages) == 2
            assert await _tables(database) == before
            assert pages[-1] <= MOST_UNDO_PAGES, pages
        finally:
            await database.dispose()

    asyncio.run(main())


async def _settings(url: str) -> list[tuple[str, Any]]:
    database = Database(url)
    try:
        async with database.read() as s:
            rows = await s.execute(
                text(
                    "SELECT proname, proconfig FROM pg_proc"
                    " WHERE proname LIKE 'paymux_fraud_decision_%' ORDER BY proname"
                )
            )
            return [(str(name), config) for (name, config) in rows]
    finally:
        await database.dispose()


KEPT = ["plan_cache_mode=force_generic_plan"]


def test_migration_0037_s_downgrade_puts_0036_s_functions_back(db: str) -> None:
    """The decision's function and its undo, each way (the same arguments): 0037's keep
    their plans; 0036's do not say (the database's default), and the upgrade replaces them
    again."""
    start, undo = "paymux_fraud_decision_start", "paymux_fraud_decision_undo"
    assert asyncio.run(_settings(db)) == [(start, KEPT), (undo, KEPT)]
    command.downgrade(alembic_config(db), "0036")
    assert asyncio.run(_settings(db)) == [(start, None), (undo, None)]
    upgrade(db)
    assert asyncio.run(_settings(db)) == [(start, KEPT), (undo, KEPT)]
