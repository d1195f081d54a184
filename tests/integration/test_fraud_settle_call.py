"""An answered attempt's settle on every velocity key (``velocity.settle``, issue 13's added
latency per payment).

It was one UPDATE per key (up to four round trips in the settling transaction). On
PostgreSQL the same UPDATEs, in the same order (the keys sorted, one row at a time: two
settles sharing keys never deadlock), are now one call (``paymux_fraud_settle``, migration
0037); SQLite keeps one statement per key (no round trips there). What is checked: the
statements each database sends, and the rows the settles leave, stated as numbers worked
out by hand: settled and declines counted, the highest gateway risk rank and score kept
(a lower or missing one later changes neither), other minutes' and other keys' rows untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from paymux.fraud import velocity
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.models import Account
from support.databases import migrated_database_fixture

db = migrated_database_fixture("fraud_settle")

ACCOUNT = "acct_settle"
MINUTE = 29_100_000
CARD = velocity.digest("card_fingerprint", "card-S")
IP = velocity.digest("ip", "203.0.113.90")
EMAIL = velocity.digest("email", "settle@example.org")
OTHER = velocity.digest("ip", "203.0.113.91")  # a key of another payment
KEYS = {"card_fingerprint": CARD, "ip": IP, "email": EMAIL}


async def _rows(database: Database) -> dict[tuple[str, int], tuple[Any, ...]]:
    async with database.read() as s:
        rows = await s.execute(
            text(
                'SELECT "key", minute, attempts, settled, declines, gateway_risk,'
                " gateway_risk_score FROM fraud_velocity_buckets WHERE account_id = :a"
            ),
            {"a": ACCOUNT},
        )
        return {(r[0], int(r[1])): tuple(r[2:]) for r in rows}


def test_a_settle_counts_on_every_key_in_one_call_on_postgresql(db: str) -> None:
    sent: list[str] = []

    def seen(sql: str, *_: Any) -> None:
        sent.append(sql)

    async def main() -> None:
        database = Database(db)
        try:
            async with database.write() as s:
                s.add(Account(id=ACCOUNT, name="settle", created_us=1))
                await s.flush()
                # Three attempts of the payment's keys in MINUTE, one the minute before, one
                # of another key in MINUTE: none settled yet.
                for key, minute, attempts in (
                    (CARD, MINUTE, 3),
                    (IP, MINUTE, 3),
                    (EMAIL, MINUTE, 3),
                    (CARD, MINUTE - 1, 1),
                    (OTHER, MINUTE, 1),
                ):
                    await s.execute(
                        text(
                            'INSERT INTO fraud_velocity_buckets (account_id, livemode, "key",'
                            " minute, attempts, declines, settled, cards)"
                            " VALUES (:a, false, :k, :m, :n, 0, 0, 0)"
                        ),
                        {"a": ACCOUNT, "k": key, "m": minute, "n": attempts},
                    )
            stop = driver.observe(seen)
            try:
                async with database.write() as s:  # an issuer decline, Stripe's "elevated", 70
                    await velocity.settle(
                        s,
                        ACCOUNT,
                        False,
                        KEYS,
                        MINUTE,
                        declined=True,
                        gateway_risk="elevated",
                        gateway_risk_score=70,
                    )
                async with database.write() as s:  # a success, "normal", 20: lower, kept out
                    await velocity.settle(
                        s,
                        ACCOUNT,
                        False,
                        KEYS,
                        MINUTE,
                        declined=False,
                        gateway_risk="normal",
                        gateway_risk_score=20,
                    )
                async with database.write() as s:  # a success, no risk from the gateway
                    await velocity.settle(s, ACCOUNT, False, KEYS, MINUTE, declined=False)
            finally:
                stop()
            rows = await _rows(database)
        finally:
            await database.dispose()
        settles = [sql for sql in sent if "fraud_velocity_buckets" in sql or "settle" in sql]
        if database.is_sqlite:
            assert len(settles) == 9  # one UPDATE per key, three settles
        else:
            assert len(settles) == 3  # one call per settle
            assert all("paymux_fraud_settle" in sql for sql in settles)
        # (attempts, settled, declines, gateway_risk, gateway_risk_score): 3 settled, 1
        # decline, rank 2 (elevated) and 70, the highest given, on each of the three keys.
        assert rows == {
            (CARD, MINUTE): (3, 3, 1, 2, 70),
            (IP, MINUTE): (3, 3, 1, 2, 70),
            (EMAIL, MINUTE): (3, 3, 1, 2, 70),
            (CARD, MINUTE - 1): (1, 0, 0, None, None),
            (OTHER, MINUTE): (1, 0, 0, None, None),
        }

    asyncio.run(main())
