"""Migration 0035 on a database that already holds velocity rows: the distinct cards counted
before it keep counting (each card row counts once in its minute's bucket; a minute with
cards and no bucket row gets one), the other counters keep their values, and down and up
again gives the same. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage.db import Database
from paymux.storage.migrate import alembic_config, upgrade
from support.pgcluster import PgCluster
from support.served import run_sql

M = 29_000_000
IP = velocity.digest("ip", "198.51.100.31")


def _bucket(minute: int, attempts: int) -> str:
    return (
        "INSERT INTO fraud_velocity_buckets (account_id, livemode, key, minute, attempts, "
        f"declines, settled) VALUES ('a', false, '{IP}', {minute}, {attempts}, 1, {attempts})"
    )


def _card(card: str, minute: int) -> str:
    return (
        "INSERT INTO fraud_velocity_cards (account_id, livemode, key, card, minute) "
        f"VALUES ('a', false, '{IP}', '{card}', {minute})"
    )


# Before 0035: minute M has 3 attempts and cards c1, c2; M - 30 two attempts and c3;
# M - 50 an attempt and no card row (c4's moved on to M - 2, a minute with no bucket row).
_SEED = (
    _bucket(M, 3),
    _bucket(M - 30, 2),
    _bucket(M - 50, 1),
    _card("c1", M),
    _card("c2", M),
    _card("c3", M - 30),
    _card("c4", M - 2),
)


def _counts(url: str) -> dict[str, int | str]:
    async def main() -> dict[str, int | str]:
        db = Database(url)
        try:
            async with db.read() as s:
                return await velocity.counts(s, "a", False, {"ip": IP}, M * 60_000_000)
        finally:
            await db.dispose()

    return asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_distinct_cards_counted_before_0035_keep_counting(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"migration_0035_{backend}")
    command.downgrade(alembic_config(url), "0034")  # the schema before 0035
    run_sql(url, *_SEED)
    upgrade(url, "0035")

    (rows,) = run_sql(
        url, "SELECT minute, attempts, cards FROM fraud_velocity_buckets ORDER BY minute"
    )
    assert [tuple(r) for r in rows] == [(M - 50, 1, 0), (M - 30, 2, 1), (M - 2, 0, 1), (M, 3, 2)]
    facts = _counts(url)
    assert (
        facts["distinct_cards_per_ip_10m"],
        facts["distinct_cards_per_ip_hourly"],
        facts["distinct_cards_per_ip_daily"],
        facts["payments_per_ip_hourly"],
    ) == (3, 4, 4, 6)

    command.downgrade(alembic_config(url), "0034")
    (cards,) = run_sql(url, "SELECT count(*) FROM fraud_velocity_cards")
    assert cards[0][0] == 4
    upgrade(url, "0035")  # and forward again: the same counts
    assert _counts(url)["distinct_cards_per_ip_hourly"] == 4
