"""A confirm's intent lock taken by the fraud decision's own call on PostgreSQL (issues 13
and 10; migration 0039, services/payments.py ``_start_authorize``).

The decision must be made on the intent as it is when its attempt starts. The confirm used
to read the intent again under its lock (``SELECT ... FOR UPDATE``, a round trip of its own)
before the decision's call; the call (``paymux_fraud_confirm_start``) now locks it, only if
it is still as the confirm's first read saw it. If it moved, nothing of the decision is kept
(the transaction is rolled back) and the confirm decides again on the intent read under its
lock. What is checked, on a real PostgreSQL cluster:

- a confirm sends one statement that locks its intent (the settle's) where it sent two;
- the call locks the intent as read, and refuses (no lock kept, nothing counted) an intent
  whose status, confirmation count or any value the facts read differs, each one alone;
- (an amount raised between the read and the start is the amount decided on, the first
  decision rolled back: tests/integration/test_fraud_decision_start.py.)
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage import driver
from paymux.storage.migrate import alembic_config, upgrade
from paymux.storage.models import PaymentIntent
from support.harness import Harness
from support.pgcluster import PgCluster
from support.pgfunctions import function_names

_names = itertools.count()
CARD_KEY = velocity.digest("card_fingerprint", "fp-lock")


@pytest.fixture
def db(tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    if pg_cluster is None:
        pytest.skip("PostgreSQL is not available")
    return migrated_database_url("postgres", tmp_path, pg_cluster, f"fdlock_{next(_names)}")


class Sent:
    """Every statement a Harness's process sends (SQLAlchemy's and the driver's), flattened."""

    def __init__(self, h: Harness) -> None:
        self.seen: list[str] = []

        def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            self.seen.append(" ".join(sql.split()))

        event.listen(h.app.ctx.db.writer.sync_engine, "before_cursor_execute", record)
        self.stop = driver.observe(lambda sql, _took: record(None, None, sql))

    def intent_locks(self) -> list[str]:
        return [
            sql
            for sql in self.seen
            if "payment_intents" in sql and "FOR UPDATE" in sql and "SELECT" in sql
        ]


def test_a_confirm_locks_its_intent_in_the_decision_s_call(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.http.post("/v1/payment_intents", json={"amount": 1500, "currency": "usd"})
            pi_id = r.json()["id"]
            sent = Sent(h)
            c = await h.http.post(
                f"/v1/payment_intents/{pi_id}/confirm",
                json={"payment_method": "tok_visa"},
            )
            sent.stop()
            assert (c.status_code, c.json()["status"]) == (200, "succeeded"), c.text
            calls = [sql for sql in sent.seen if "paymux_fraud_" in sql]
            assert [sql.split("(")[0] for sql in calls] == [
                "SELECT * FROM paymux_fraud_confirm_start"
            ]
            # One statement locks the intent: the settling transaction's. The attempt's lock
            # is the call's (it was a SELECT ... FOR UPDATE of its own before it: two).
            assert len(sent.intent_locks()) == 1, sent.intent_locks()
            assert sent.seen.index(sent.intent_locks()[0]) > sent.seen.index(calls[0])
            assert h.gw.calls["authorize"] == 1

    asyncio.run(main())


def _as_read(row: Any, **changed: Any) -> velocity.IntentAsDecided:
    values = {
        "intent": row.id,
        "status": row.status,
        "confirm_count": row.confirm_count,
        "amount": row.amount,
        "currency": row.currency,
        "customer": row.customer_id,
        "receipt_email": row.receipt_email,
        "off_session": row.off_session,
        "shipping_country": "FR",
    }
    values.update(changed)
    return velocity.IntentAsDecided(**values)


# Each value the guard holds, changed alone: the call must refuse every one.
_CHANGED = [
    ("status", "requires_confirmation"),
    ("confirm_count", 1),
    ("amount", 4001),
    ("currency", "eur"),
    ("customer", "cus_other"),
    ("receipt_email", "other@example.org"),
    ("off_session", True),
    ("shipping_country", "DE"),
    ("shipping_country", None),
    ("intent", "pi_missing"),
]


@pytest.mark.parametrize("call", ["function", "statements"])
def test_the_call_locks_the_intent_as_read_and_refuses_any_other(
    db: str, tmp_path: Path, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``function``: the call of migration 0039. ``statements``: the path that does not use
    the functions (another set of windows than theirs): the guard's own statement first."""
    if call == "statements":
        monkeypatch.setattr(velocity, "_FUNCTION_WINDOWS", ("other",))

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.http.post(
                "/v1/payment_intents",
                json={
                    "amount": 4000,
                    "currency": "usd",
                    "receipt_email": "payer@example.org",
                    "shipping": {"name": "P", "address": {"line1": "1 rue", "country": "FR"}},
                },
            )
            assert r.status_code == 200, r.text
            pi_id = r.json()["id"]
            database = h.app.ctx.db
            async with database.read() as s:
                row = await s.get(PaymentIntent, pi_id)
                assert row is not None
            assert (row.status, row.confirm_count, row.customer_id) == (
                "requires_payment_method",
                0,
                None,
            )

            async def decide(guard: velocity.IntentAsDecided) -> Any:
                async with database.write() as s:
                    read = await velocity.locked_decision_read(
                        s,
                        h.account,
                        False,
                        {"card_fingerprint": CARD_KEY},
                        h.clock.now_us(),
                        (),
                        (),
                        is_sqlite=False,
                        reserve=call == "function",
                        guard=guard,
                    )
                    return read

            # As read (the row's real values): locked, decided.
            assert await decide(_as_read(row)) is not None
            for name, value in _CHANGED:
                assert await decide(_as_read(row, **{name: value})) is None, (name, value)
            # Only the first decision counted its attempt (the call's reservation), and the
            # refused ones reserved nothing.
            buckets = await h.sql("SELECT attempts FROM fraud_velocity_buckets")
            assert [tuple(b) for b in buckets] == ([(1,)] if call == "function" else [])

    asyncio.run(main())


async def _function_names(url: str) -> list[str]:
    return await function_names(url, "paymux_fraud_")


def test_migration_0039_s_downgrade_drops_the_call_alone(db: str) -> None:
    at_head = asyncio.run(_function_names(db))
    assert "paymux_fraud_confirm_start" in at_head
    command.downgrade(alembic_config(db), "0038")
    assert asyncio.run(_function_names(db)) == [
        name for name in at_head if name != "paymux_fraud_confirm_start"
    ]
    upgrade(db)
    assert asyncio.run(_function_names(db)) == at_head
