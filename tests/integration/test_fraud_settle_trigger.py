"""An answered attempt's velocity settle rides on the intent's own UPDATE (issue 13's added
latency per payment; migration 0038).

``on_settled`` (fraud/decisions.py) marks the attempt's ``fraud_outcome`` record counted
and writes the settle into it (``settle``: declined, the gateway's risk rank and score);
the UPDATE of the intent that the settling transaction sends anyway (``attempts._store`` on
the driver, or the ORM's flush for an invoice's intent) writes it, and a trigger applies it
to the minute's bucket row of each of the record's keys. It was a statement of its own
(``paymux_fraud_settle`` on PostgreSQL, one UPDATE per key on SQLite). What is checked, on
both databases: the statements the settle sends (the intent's UPDATE only), the rows it
leaves (numbers worked out by hand: settled and declines counted, the highest gateway risk
rank and score kept, a lower or missing one changing neither, other minutes' and other
keys' rows untouched), the UPDATEs that must count nothing (a block's record, which has no
minute; a new confirm's uncounted record; the counted record written again; a record
without its settle; another column), and the migration each way.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from alembic import command
from sqlalchemy import event, text

from paymux.fraud import decisions, velocity
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.migrate import alembic_config, upgrade
from paymux.storage.models import Account, PaymentIntent
from support.databases import migrated_database_fixture

db = migrated_database_fixture("fraud_settle")

ACCOUNT = "acct_settle"
PI = "pi_settle"
MINUTE = 29_100_000
NOW_US = MINUTE * 60_000_000 + 30_000_000
CARD = velocity.digest("card_fingerprint", "card-S")
IP = velocity.digest("ip", "203.0.113.90")
EMAIL = velocity.digest("email", "settle@example.org")
OTHER = velocity.digest("ip", "203.0.113.91")  # a key of another payment
KEYS = {"card_fingerprint": CARD, "ip": IP, "email": EMAIL}
# A confirm's record as the decision writes it (``_decide``), the attempt counted in MINUTE.
UNCOUNTED = {
    "outcome": {"type": "authorized"},
    "keys": KEYS,
    "card": CARD,
    "minute": MINUTE,
    "counted": False,
    "hold": False,
}
# The intent's UPDATE of its record, as ``attempts._store`` writes a changed column.
STORE = driver.Statement(
    "UPDATE payment_intents SET fraud_outcome = :v_fraud_outcome WHERE id = :b_id",
    binds={"v_fraud_outcome": PaymentIntent.__table__.c.fraud_outcome.type},
)


async def _set_up(database: Database) -> None:
    """The account, its intent (record not counted yet) and bucket rows: three attempts of
    each of the payment's keys in MINUTE, one of the card the minute before, one of another
    key in MINUTE; none settled."""
    async with database.write() as s:
        s.add(Account(id=ACCOUNT, name="settle", created_us=1))
        await s.flush()
        s.add(
            PaymentIntent(
                id=PI,
                account_id=ACCOUNT,
                status="processing",
                amount=1000,
                currency="usd",
                capture_method="automatic",
                gateway="sandbox",
                livemode=False,
                fraud_outcome=UNCOUNTED,
                created_us=1,
                updated_us=1,
            )
        )
        await s.flush()
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


async def _rows(database: Database) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(key, minute) -> (attempts, settled, declines, gateway_risk, gateway_risk_score)."""
    async with database.read() as s:
        rows = await s.execute(
            text(
                'SELECT "key", minute, attempts, settled, declines, gateway_risk,'
                " gateway_risk_score FROM fraud_velocity_buckets WHERE account_id = :a"
            ),
            {"a": ACCOUNT},
        )
        return {(r[0], int(r[1])): tuple(r[2:]) for r in rows}


async def _store(database: Database, record: dict[str, Any] | None) -> None:
    async with database.write() as s:
        await driver.execute(s, STORE, {"v_fraud_outcome": record, "b_id": PI})


def _answer(status: str, code: str | None, level: str | None, score: int | None) -> dict[str, Any]:
    """The intent as its settle emits it (what ``on_settled`` reads)."""
    error = {"code": code} if code else None
    return {
        "id": PI,
        "status": status,
        "last_payment_error": error,
        "risk_level": level,
        "gateway_risk_score": score,
    }


class _Sent:
    """Every statement sent meanwhile: the driver's (``observe``) and SQLAlchemy's."""

    def __init__(self, database: Database) -> None:
        self.sql: list[str] = []
        self.engine = database.writer.sync_engine
        event.listen(self.engine, "before_cursor_execute", self._seen)
        self._stop = driver.observe(lambda sql, _took: self.sql.append(sql))

    def _seen(self, _conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        self.sql.append(sql)

    def stop(self) -> list[str]:
        event.remove(self.engine, "before_cursor_execute", self._seen)
        self._stop()
        return [" ".join(sql.split()) for sql in self.sql]


# Three answers to the same attempt, each settled by a confirm's record of its own: an issuer
# decline with Stripe's "elevated" (rank 2) and 70; a success "normal" (1) and 20, lower:
# kept out; a success with no risk from the gateway.
ANSWERS = [
    _answer("requires_payment_method", "card_declined", "elevated", 70),
    _answer("succeeded", None, "normal", 20),
    _answer("succeeded", None, None, None),
]
# (attempts, settled, declines, gateway_risk, gateway_risk_score) after the three: 3
# settled, 1 decline, rank 2 and 70 on each of the payment's keys; the card's other minute
# and the other key as they were.
AFTER_THREE = {
    (CARD, MINUTE): (3, 3, 1, 2, 70),
    (IP, MINUTE): (3, 3, 1, 2, 70),
    (EMAIL, MINUTE): (3, 3, 1, 2, 70),
    (CARD, MINUTE - 1): (1, 0, 0, None, None),
    (OTHER, MINUTE): (1, 0, 0, None, None),
}


def test_a_settle_of_a_plain_intent_row_is_its_update_alone(db: str) -> None:
    """The settle's path (``settle_payment``: a plain row, written by ``_store``): the
    reaction sends nothing, the intent's UPDATE settles every key."""

    async def main() -> tuple[dict[tuple[str, int], tuple[Any, ...]], list[list[str]]]:
        database = Database(db)
        sent: list[list[str]] = []
        try:
            await _set_up(database)
            for n, answer in enumerate(ANSWERS):
                if n:
                    await _store(database, UNCOUNTED)  # the next confirm's record
                row = SimpleNamespace(id=PI, livemode=False, fraud_outcome=dict(UNCOUNTED))
                watch = _Sent(database)
                try:
                    async with database.write() as s:
                        await decisions.on_settled(s, ACCOUNT, answer, NOW_US, row)
                        await driver.execute(
                            s, STORE, {"v_fraud_outcome": row.fraud_outcome, "b_id": PI}
                        )
                finally:
                    sent.append(watch.stop())
            return await _rows(database), sent
        finally:
            await database.dispose()

    rows, sent = asyncio.run(main())
    # each settle: the intent's UPDATE, nothing else (no BEGIN/COMMIT is a cursor statement
    # on PostgreSQL; SQLite's BEGIN IMMEDIATE is the transaction's own)
    for statements in sent:
        assert [sql for sql in statements if not sql.upper().startswith(("BEGIN", "COMMIT"))] == [
            " ".join(STORE.sql.split())
        ], statements
    assert rows == AFTER_THREE


def test_a_settle_of_an_orm_intent_is_the_flush_of_its_update(db: str) -> None:
    """An invoice's intent (the session's object, flushed by the ORM): the reaction reads
    the intent (it has no row from its emitter here) and sends nothing else; the ORM's
    UPDATE settles every key."""

    async def main() -> tuple[dict[tuple[str, int], tuple[Any, ...]], list[list[str]]]:
        database = Database(db)
        sent: list[list[str]] = []
        try:
            await _set_up(database)
            for n, answer in enumerate(ANSWERS):
                if n:
                    await _store(database, UNCOUNTED)
                watch = _Sent(database)
                try:
                    async with database.write() as s:
                        await decisions.on_settled(s, ACCOUNT, answer, NOW_US)
                        await s.flush()
                finally:
                    sent.append(watch.stop())
            return await _rows(database), sent
        finally:
            await database.dispose()

    rows, sent = asyncio.run(main())
    for statements in sent:
        kept = [sql for sql in statements if not sql.upper().startswith(("BEGIN", "COMMIT"))]
        assert len(kept) == 2, statements
        assert kept[0].startswith("SELECT payment_intents.id"), kept
        assert kept[1].startswith("UPDATE payment_intents SET fraud_outcome="), kept
    assert rows == AFTER_THREE


def test_only_a_record_becoming_counted_with_a_minute_and_its_settle_counts(db: str) -> None:
    """UPDATEs of the intent that count nothing, around the one that counts once."""
    declined = {"declined": 1, "rank": 3, "score": 90}
    counted = {**UNCOUNTED, "counted": True, "settle": declined}
    untouched = {
        (CARD, MINUTE): (3, 0, 0, None, None),
        (IP, MINUTE): (3, 0, 0, None, None),
        (EMAIL, MINUTE): (3, 0, 0, None, None),
        (CARD, MINUTE - 1): (1, 0, 0, None, None),
        (OTHER, MINUTE): (1, 0, 0, None, None),
    }
    once = {
        **untouched,
        (CARD, MINUTE): (3, 1, 1, 3, 90),
        (IP, MINUTE): (3, 1, 1, 3, 90),
        (EMAIL, MINUTE): (3, 1, 1, 3, 90),
    }

    async def main() -> list[dict[tuple[str, int], tuple[Any, ...]]]:
        database = Database(db)
        seen = []
        try:
            await _set_up(database)
            # A block's record: counted, no minute (it counted no attempt), even with a settle.
            await _store(database, {**counted, "minute": None})
            # A new confirm's record: not counted yet.
            await _store(database, UNCOUNTED)
            # Counted without its settle (code from before migration 0038 settled itself).
            await _store(database, {**UNCOUNTED, "counted": True})
            await _store(database, None)  # no decision at all
            async with database.write() as s:  # another column of the intent
                await s.execute(text("UPDATE payment_intents SET amount = 2000"))
            seen.append(await _rows(database))
            await _store(database, UNCOUNTED)
            await _store(database, counted)  # from not counted to counted: once
            seen.append(await _rows(database))
            # The counted record written again (a late webhook, another change of the intent).
            await _store(database, {**counted, "settle": {**declined, "rank": 1}})
            async with database.write() as s:
                await s.execute(text("UPDATE payment_intents SET amount = 3000"))
            seen.append(await _rows(database))
            return seen
        finally:
            await database.dispose()

    assert asyncio.run(main()) == [untouched, once, once]


async def _trigger_count(url: str) -> int:
    database = Database(url)
    try:
        async with database.read() as s:
            if database.is_sqlite:
                sql = (
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                    " AND name = 'paymux_intent_fraud_settle'"
                )
            else:
                sql = (
                    "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                    " WHERE NOT t.tgisinternal AND p.proname = 'paymux_intent_fraud_settle'"
                )
            return int((await s.execute(text(sql))).scalar_one())
    finally:
        await database.dispose()


async def _functions(url: str) -> list[str]:
    database = Database(url)
    try:
        async with database.read() as s:
            rows = await s.execute(
                text(
                    "SELECT proname FROM pg_proc WHERE proname IN"
                    " ('paymux_intent_fraud_settle', 'paymux_fraud_settle') ORDER BY proname"
                )
            )
            return [str(name) for (name,) in rows]
    finally:
        await database.dispose()


def test_migration_0038_s_downgrade_drops_the_trigger_and_the_upgrade_puts_it_back(
    db: str,
) -> None:
    """Down to 0037: no trigger (and on PostgreSQL no trigger function; 0037's
    ``paymux_fraud_settle`` stays), a record becoming counted counts nothing; up again: it
    counts."""
    counted = {**UNCOUNTED, "counted": True, "settle": {"declined": 0, "rank": None, "score": 5}}
    postgres = not db.startswith("sqlite")
    assert asyncio.run(_trigger_count(db)) == 1
    if postgres:
        assert asyncio.run(_functions(db)) == ["paymux_fraud_settle", "paymux_intent_fraud_settle"]
    command.downgrade(alembic_config(db), "0037")
    assert asyncio.run(_trigger_count(db)) == 0
    if postgres:
        assert asyncio.run(_functions(db)) == ["paymux_fraud_settle"]

    async def flip() -> dict[tuple[str, int], tuple[Any, ...]]:
        database = Database(db)
        try:
            await _store(database, UNCOUNTED)
            await _store(database, counted)
            return await _rows(database)
        finally:
            await database.dispose()

    async def set_up() -> None:
        database = Database(db)
        try:
            await _set_up(database)
        finally:
            await database.dispose()

    asyncio.run(set_up())
    assert asyncio.run(flip())[(CARD, MINUTE)] == (3, 0, 0, None, None)
    upgrade(db)
    assert asyncio.run(_trigger_count(db)) == 1
    assert asyncio.run(flip())[(CARD, MINUTE)] == (3, 1, 0, None, 5)
