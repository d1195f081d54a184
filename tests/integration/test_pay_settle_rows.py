"""A confirmed payment's attempt and events, written on the database driver, are stored as
the ORM stored them (issue 10: the start's and the settle's statements run on
storage/driver.py, services/attempts.py and services/context.py ``emit``).

Two claims, on SQLite and PostgreSQL, through the HTTP app with paymux's real services and
the scripted gateway at the connector seam:

- the rows' stored form, stated here column by column: the attempt (its JSON request and
  result, SQL NULL error, the key of its step, the state it started from), the events
  (types, their place in the intent's sequence, the request and Idempotency-Key that caused
  them, ``livemode`` as the database's boolean, ``previous_attributes`` as the JSON
  ``null`` that SQLAlchemy's JSON type binds for None, the snapshot of the intent);
- where they were written: the attempt's INSERT and UPDATE and both events' INSERTs are
  driver statements (``storage.driver.observe``), and SQLAlchemy's execution layer runs no
  statement on ``gateway_attempts`` or ``events`` during the payment.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import event

from paymux.storage import driver
from support.databases import migrated_database_fixture
from support.driver_sql import all_parts, parts
from support.harness import START_US, Harness

AMOUNT = 4200
KEY = "settle-rows-1"

db = migrated_database_fixture("pay_settle_rows")


def _plain(value: Any) -> Any:
    """A JSON column as a value (SQLite's driver returns its text, asyncpg the object)."""
    return json.loads(value) if isinstance(value, str) else value


def _table_of(sql: str) -> str | None:
    """``gateway_attempts`` or ``events`` if the statement writes or reads that table."""
    words = " ".join(sql.split()).lower() + " "
    for table in ("gateway_attempts", "events"):
        if f"into {table} " in words or f"update {table} " in words or f"from {table}" in words:
            return table
    return None


def test_a_confirmed_payment_stores_its_attempt_and_events_as_the_orm_did(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            postgres = h.app.ctx.db.writer.dialect.name == "postgresql"
            on_driver: list[str] = []
            on_sqlalchemy: list[str] = []
            engines = {h.app.ctx.db.writer, h.app.ctx.db.reader}

            def orm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
                table = _table_of(sql)
                if table is not None:
                    on_sqlalchemy.append(table)

            for engine in engines:
                event.listen(engine.sync_engine, "before_cursor_execute", orm)
            stop = driver.observe(lambda sql, _: on_driver.append(" ".join(sql.split())))
            try:
                r = await h.post(
                    "/v1/payment_intents",
                    {
                        "amount": AMOUNT,
                        "currency": "usd",
                        "payment_method": "tok_visa",
                        "confirm": True,
                    },
                    key=KEY,
                )
            finally:
                stop()
                for engine in engines:
                    event.remove(engine.sync_engine, "before_cursor_execute", orm)
            assert r.status_code == 200, r.text
            pi = h.body(r)
            assert pi["status"] == "succeeded"
            pi_id = str(pi["id"])
            [payment] = h.gw.payments_for(pi_id)

            # Where: the payment's attempt and event statements, all on the driver.
            assert on_sqlalchemy == []
            mine = [
                sql.split(" (")[0].split(" SET")[0]
                for sql in all_parts(on_driver)
                if _table_of(sql) is not None
            ]
            # On PostgreSQL the settle's event, its row of the outbox, the intent's UPDATE and
            # the audit entry (driver.later) are one statement, one round trip (on SQLite four); so are the start's
            # intent UPDATE and its attempt's INSERT (a create with confirm=true).
            together = [
                [p.split(" (")[0].split(" SET")[0] for p in parts(sql)] for sql in on_driver
            ]
            settle = [
                "INSERT INTO events",
                "INSERT INTO event_outbox",
                "UPDATE payment_intents",
                "INSERT INTO audit_log",
            ]
            assert (settle in together) == postgres, together
            start = ["UPDATE payment_intents", "INSERT INTO gateway_attempts"]
            assert (start in together) == postgres, together
            assert mine == [
                "INSERT INTO events",
                "INSERT INTO gateway_attempts",
                # PostgreSQL: the intent's lock and the attempt's UPDATE in one statement
                # (services/attempts.py _LOCK_AND_SETTLE); SQLite: the UPDATE alone.
                "WITH i AS MATERIALIZED" if postgres else "UPDATE gateway_attempts",
                "INSERT INTO events",
            ]

            # What: the attempt's row.
            [attempt] = await h.sql(
                "select operation, object_id, idempotency_key, status, from_status, target, "
                "request, result, error is null, created_us, updated_us, gateway "
                "from gateway_attempts where object_id = :o",
                o=pi_id,
            )
            assert (
                attempt[0],
                attempt[1],
                attempt[2],
                attempt[3],
                attempt[4],
                attempt[5],
                attempt[8],
                attempt[9],
                attempt[10],
                attempt[11],
            ) == (
                "authorize",
                pi_id,
                f"{pi_id}:authorize:1",
                "settled",
                "requires_confirmation",
                "succeeded",
                True,
                START_US,
                START_US,
                "fake",
            )
            request = _plain(attempt[6])
            assert request == {
                "token": "tok_visa",
                "customer_token": None,
                "verification_token": None,
                "network_transaction_id": None,
            }
            assert _plain(attempt[7]) == {
                "status": "succeeded",
                "reference": payment.id,
                "amount_authorized": AMOUNT,
                "amount_captured": AMOUNT,
                "decline": None,
            }

            # What: the events' rows.
            livemode = "livemode::int" if postgres else "livemode"
            kind = "'json'" if postgres else "typeof(previous_attributes)"
            previous = "previous_attributes::text" if postgres else "previous_attributes"
            rows = await h.sql(
                f"select type, object_seq, {livemode}, {kind}, {previous}, "
                "previous_attributes is null, request_id, idempotency_key, created_us, data "
                "from events where object_id = :o order by object_seq",
                o=pi_id,
            )
            assert [tuple(row[:6]) for row in rows] == [
                ("payment_intent.created", 1, 0, "json" if postgres else "text", "null", False),
                ("payment_intent.succeeded", 2, 0, "json" if postgres else "text", "null", False),
            ]
            assert [row[7] for row in rows] == [KEY, KEY]
            assert [str(row[6])[:4] for row in rows] == ["req_", "req_"]
            assert rows[0][6] == rows[1][6]  # one request caused both
            assert [row[8] for row in rows] == [START_US, START_US]
            created, succeeded = (_plain(row[9]) for row in rows)
            assert (created["id"], created["status"], created["amount"]) == (
                pi_id,
                "requires_confirmation",
                AMOUNT,
            )
            assert (succeeded["id"], succeeded["status"], succeeded["amount_received"]) == (
                pi_id,
                "succeeded",
                AMOUNT,
            )
            assert succeeded["livemode"] is False
            assert succeeded == pi  # the snapshot is the answer

    asyncio.run(main())
