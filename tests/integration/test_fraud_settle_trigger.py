"""An answered attempt's velocity settle rides on the intent's own UPDATE (issue 13's added
latency per payment; migration 0038).

``on_settled`` (fraud/decisions.py) sets the intent's small ``fraud_settle`` column (the
attempt's keys, sorted, its minute, and the answer: declined, the gateway's risk rank and
score) and leaves the decision's record (``fraud_outcome``) as it is; the UPDATE of the
intent that the settling transaction sends anyway (``attempts._store`` on the driver, or the
ORM's flush for an invoice's intent) writes it, and a trigger applies it to the minute's
bucket row of each key as the column goes from NULL to a value. What is checked, on both
databases: the statements the settle sends (the intent's UPDATE only, of that column only),
the value it sets and the rows it leaves (numbers worked out by hand: settled and declines
counted, the highest gateway risk rank and score kept, a lower or missing one changing
neither, other minutes' and other keys' rows untouched), what must count nothing (the
column written again, reset, or not written; a block's record; a settle already set; a
record settled by code from before 0038) and that a reset lets the next confirm count, and
the migration each way.
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
# The keys in byte order (hex digests: the order of their text).
SORTED_KEYS = sorted([CARD, IP, EMAIL])
_TYPES = PaymentIntent.__table__.c
# The intent's UPDATE of its settle, as ``attempts._store`` writes a changed column.
STORE = driver.Statement(
    "UPDATE payment_intents SET fraud_settle = :v_fraud_settle WHERE id = :b_id",
    binds={"v_fraud_settle": _TYPES.fraud_settle.type},
)
# A new confirm's write: its record, and the settle reset (``FraudEngine.screen_in``).
DECIDE = driver.Statement(
    "UPDATE payment_intents SET fraud_outcome = :v_fraud_outcome,"
    " fraud_settle = :v_fraud_settle WHERE id = :b_id",
    binds={
        "v_fraud_outcome": _TYPES.fraud_outcome.type,
        "v_fraud_settle": _TYPES.fraud_settle.type,
    },
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


async def _store(database: Database, settle: dict[str, Any] | None) -> None:
    async with database.write() as s:
        await driver.execute(s, STORE, {"v_fraud_settle": settle, "b_id": PI})


async def _decide(database: Database, record: dict[str, Any] | None = UNCOUNTED) -> None:
    """A new confirm's decision written: its record, the settle reset."""
    async with database.write() as s:
        await driver.execute(
            s, DECIDE, {"v_fraud_outcome": record, "v_fraud_settle": None, "b_id": PI}
        )


def _settle(declined: int, rank: int | None, score: int | None) -> dict[str, Any]:
    return {
        "keys": SORTED_KEYS,
        "minute": MINUTE,
        "declined": declined,
        "rank": rank,
        "score": score,
    }


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
SETTLES = [_settle(1, 2, 70), _settle(0, 1, 20), _settle(0, None, None)]
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

    async def main() -> tuple[
        dict[tuple[str, int], tuple[Any, ...]], list[list[str]], list[Any], list[Any]
    ]:
        database = Database(db)
        sent: list[list[str]] = []
        settles, records = [], []
        try:
            await _set_up(database)
            for n, answer in enumerate(ANSWERS):
                if n:
                    await _decide(database)  # the next confirm's record, its settle reset
                row = SimpleNamespace(
                    id=PI, livemode=False, fraud_outcome=dict(UNCOUNTED), fraud_settle=None
                )
                watch = _Sent(database)
                try:
                    async with database.write() as s:
                        await decisions.on_settled(s, ACCOUNT, answer, NOW_US, row)
                        await driver.execute(
                            s, STORE, {"v_fraud_settle": row.fraud_settle, "b_id": PI}
                        )
                finally:
                    sent.append(watch.stop())
                settles.append(row.fraud_settle)
                records.append(row.fraud_outcome)
            return await _rows(database), sent, settles, records
        finally:
            await database.dispose()

    rows, sent, settles, records = asyncio.run(main())
    assert settles == SETTLES
    assert records == [UNCOUNTED] * 3  # the decision's record is not written again
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
                    await _decide(database)
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
        # the settle alone: the decision's record is not written again
        assert kept[1].startswith("UPDATE payment_intents SET fraud_settle="), kept
        assert "fraud_outcome" not in kept[1], kept
    assert rows == AFTER_THREE


def test_only_the_settle_set_from_null_counts_and_a_new_confirm_resets_it(db: str) -> None:
    """UPDATEs of the intent that count nothing, around the ones that count: the settle set
    while NULL counts once; written again, or any other UPDATE, nothing; reset by a new
    confirm's decision, the next settle counts again."""
    declined = _settle(1, 3, 90)
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
    # Then a success with rank 1 and score 95 (higher): the score raised, the rank kept.
    twice = {
        **untouched,
        (CARD, MINUTE): (3, 2, 1, 3, 95),
        (IP, MINUTE): (3, 2, 1, 3, 95),
        (EMAIL, MINUTE): (3, 2, 1, 3, 95),
    }

    async def main() -> list[dict[tuple[str, int], tuple[Any, ...]]]:
        database = Database(db)
        seen = []
        try:
            await _set_up(database)
            # The decision's record written again, even marked counted: not the settle.
            await _decide(database, {**UNCOUNTED, "counted": True})
            await _decide(database)
            await _store(database, None)  # NULL written over NULL
            async with database.write() as s:  # another column of the intent
                await s.execute(text("UPDATE payment_intents SET amount = 2000"))
            seen.append(await _rows(database))
            await _store(database, declined)  # from NULL to a value: once
            seen.append(await _rows(database))
            # Written again (another answer of the same confirm), the record rewritten,
            # another column: nothing.
            await _store(database, {**declined, "rank": 1, "score": 99})
            async with database.write() as s:
                await s.execute(
                    text("UPDATE payment_intents SET amount = 3000, fraud_outcome = NULL")
                )
            seen.append(await _rows(database))
            # A new confirm resets it (its decision's write); the next settle counts.
            await _decide(database)
            await _store(database, _settle(0, 1, 95))
            seen.append(await _rows(database))
            return seen
        finally:
            await database.dispose()

    assert asyncio.run(main()) == [untouched, once, once, twice]


def test_a_late_risk_raises_the_settled_rows_and_keeps_the_higher(db: str) -> None:
    """``velocity.raise_risk``: the risk of an answer that came after the webhook settled the
    attempt without any, recorded on the settle's keys' rows of its minute as the settle
    records it (services/attempts.py ``_late_three_d_secure``;
    tests/integration/test_late_three_d_secure.py): a higher rank or score raises it, a lower
    or missing one changes nothing, and nothing is counted; other minutes' and keys' rows
    untouched."""
    settled = _settle(0, None, None)  # the webhook's settle: no risk
    untouched = {
        (CARD, MINUTE - 1): (1, 0, 0, None, None),
        (OTHER, MINUTE): (1, 0, 0, None, None),
    }

    def mine(rank: int | None, score: int | None) -> dict[tuple[str, int], tuple[Any, ...]]:
        return {
            **untouched,
            **{(key, MINUTE): (3, 1, 0, rank, score) for key in (CARD, IP, EMAIL)},
        }

    async def main() -> list[dict[tuple[str, int], tuple[Any, ...]]]:
        database = Database(db)
        seen = []
        try:
            await _set_up(database)
            await _store(database, settled)
            seen.append(await _rows(database))
            for level, score in (
                ("elevated", 70),  # raised
                ("normal", 20),  # lower: nothing
                (None, 90),  # a score alone: the score
                ("highest", None),  # a level alone: the level
                ("not_assessed", None),  # no rank, no score: nothing
            ):
                async with database.write() as s:
                    await velocity.raise_risk(
                        s, ACCOUNT, False, settled, gateway_risk=level, gateway_risk_score=score
                    )
                seen.append(await _rows(database))
            return seen
        finally:
            await database.dispose()

    assert asyncio.run(main()) == [
        mine(None, None),
        mine(2, 70),
        mine(2, 70),
        mine(2, 90),
        mine(3, 90),
        mine(3, 90),
    ]


def test_on_settled_sets_nothing_for_what_counted_nothing_or_is_settled(db: str) -> None:
    """The reaction's own check (and its gate, ``_counted_unsettled``): a block's record (no
    minute), a settle already set (a late or duplicated event of the same confirm), a record
    settled by code from before migration 0038 (marked ``counted``), no record: nothing set
    on the row, nothing sent."""
    answer = ANSWERS[0]
    already = _settle(0, None, None)
    rows = [
        SimpleNamespace(
            id=PI, fraud_outcome={**UNCOUNTED, "minute": None, "counted": True}, fraud_settle=None
        ),
        SimpleNamespace(id=PI, fraud_outcome=dict(UNCOUNTED), fraud_settle=dict(already)),
        SimpleNamespace(id=PI, fraud_outcome={**UNCOUNTED, "counted": True}, fraud_settle=None),
        SimpleNamespace(id=PI, fraud_outcome=None, fraud_settle=None),
    ]

    async def main() -> list[str]:
        database = Database(db)
        try:
            await _set_up(database)
            watch = _Sent(database)
            try:
                async with database.write() as s:
                    for row in rows:
                        await decisions.on_settled(s, ACCOUNT, answer, NOW_US, row)
            finally:
                sent = watch.stop()
            return [sql for sql in sent if not sql.upper().startswith(("BEGIN", "COMMIT"))]
        finally:
            await database.dispose()

    assert asyncio.run(main()) == []
    assert [row.fraud_settle for row in rows] == [None, already, None, None]
    assert [decisions._counted_unsettled(answer, row) for row in rows] == [False] * 4
    unsettled = SimpleNamespace(id=PI, fraud_outcome=dict(UNCOUNTED), fraud_settle=None)
    assert decisions._counted_unsettled(answer, unsettled) is True


async def _schema(url: str) -> tuple[int, list[str], bool]:
    """Migration 0038's trigger (how many), the settle functions (PostgreSQL) and whether
    the intents have the ``fraud_settle`` column."""
    database = Database(url)
    try:
        async with database.read() as s:
            if database.is_sqlite:
                triggers = (
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                    " AND name = 'paymux_intent_fraud_settle'"
                )
                column = "SELECT count(*) FROM pragma_table_info('payment_intents')"
                functions: list[str] = []
            else:
                triggers = (
                    "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                    " WHERE NOT t.tgisinternal AND p.proname = 'paymux_intent_fraud_settle'"
                )
                column = (
                    "SELECT count(*) FROM information_schema.columns"
                    " WHERE table_name = 'payment_intents'"
                )
                rows = await s.execute(
                    text(
                        "SELECT proname FROM pg_proc WHERE proname IN"
                        " ('paymux_intent_fraud_settle', 'paymux_fraud_settle')"
                        " ORDER BY proname"
                    )
                )
                functions = [str(name) for (name,) in rows]
            where = (
                " WHERE name = 'fraud_settle'"
                if database.is_sqlite
                else " AND column_name = 'fraud_settle'"
            )
            count = int((await s.execute(text(triggers))).scalar_one())
            has_column = int((await s.execute(text(column + where))).scalar_one()) == 1
            return count, functions, has_column
    finally:
        await database.dispose()


def test_migration_0038_s_downgrade_drops_the_trigger_and_column_and_the_upgrade_puts_them_back(
    db: str,
) -> None:
    """Down to 0037: no trigger, no ``fraud_settle`` column (and on PostgreSQL no trigger
    function; 0037's ``paymux_fraud_settle`` stays); up again: all back, and a settle set
    counts."""
    postgres = not db.startswith("sqlite")
    both = ["paymux_fraud_settle", "paymux_intent_fraud_settle"] if postgres else []
    assert asyncio.run(_schema(db)) == (1, both, True)
    command.downgrade(alembic_config(db), "0037")
    assert asyncio.run(_schema(db)) == (0, ["paymux_fraud_settle"] if postgres else [], False)
    upgrade(db)
    assert asyncio.run(_schema(db)) == (1, both, True)

    async def settle() -> dict[tuple[str, int], tuple[Any, ...]]:
        database = Database(db)
        try:
            await _set_up(database)
            await _store(database, _settle(0, None, 5))
            return await _rows(database)
        finally:
            await database.dispose()

    assert asyncio.run(settle())[(CARD, MINUTE)] == (3, 1, 0, None, 5)
