"""The fraud decision of a confirm is made on the intent it starts, in the transaction that
starts it (services/payments.py ``_start_authorize``): an amount changed after the
confirm's first read is the amount decided on, and a confirm that loses the race to
start counts nothing. Both backends; the interleaving is forced by a gate in the
confirm between its read and its start (the real function, run first)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.fraud import decisions, velocity
from paymux.services import context
from paymux.services import payments as payments_module
from paymux.storage import driver
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
# Which of two concurrent confirms a request is, in its own context: the gates hold a role,
# never "whichever came second" (an order the scheduler picks).
role: ContextVar[str] = ContextVar("role", default="")


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fdstart_{next(_names)}")


def test_an_amount_raised_during_the_confirm_is_the_amount_decided_on(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.http.post("/v1/fraud/rules", json={"rule": "block if :amount: > 5000"})
            assert r.status_code == 200, r.text
            r = await h.http.post("/v1/payment_intents", json={"amount": 1000, "currency": "usd"})
            pi_id = r.json()["id"]
            real = payments_module.resolve_payment_method

            async def resolve(*a: Any, **k: Any) -> Any:
                out = await real(*a, **k)
                # between the confirm's read and its start: the merchant raises the amount
                u = await h.http.post(f"/v1/payment_intents/{pi_id}", json={"amount": 9000})
                assert u.status_code == 200, u.text
                return out

            monkeypatch.setattr(payments_module, "resolve_payment_method", resolve)
            calls: list[str] = []  # the fraud functions called (PostgreSQL), in order
            stop = driver.observe(
                lambda sql, _took: calls.extend(re.findall(r"(paymux_fraud_\w+)\(", sql))
            )
            try:
                c = await h.http.post(
                    f"/v1/payment_intents/{pi_id}/confirm", json={"payment_method": "tok_visa"}
                )
            finally:
                stop()
            assert c.status_code == 402, c.text
            assert c.json()["error"]["decline_code"] == "fraudulent"
            assert h.gw.calls["authorize"] == 0
            if not h.app.ctx.db.is_sqlite:
                # The decision's call locks the intent only as the confirm read it (migration
                # 0039): refused, the transaction rolled back, then decided again under the
                # intent's own lock (0037's call), and the block's undo.
                assert calls == [
                    "paymux_fraud_confirm_start",
                    "paymux_fraud_decision_start",
                    "paymux_fraud_decision_undo",
                ]
            # Nothing of either decision is kept: the first rolled back, the block undone.
            assert await h.sql("SELECT attempts FROM fraud_velocity_buckets") == []
            got = (await h.http.get(f"/v1/payment_intents/{pi_id}")).json()
            assert (got["status"], got["amount"], got["amount_received"]) == (
                "requires_payment_method",
                9000,
                0,
            )

    asyncio.run(main())


def test_a_confirm_that_loses_the_race_to_start_counts_nothing(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two confirms with two cards both read the intent; one starts, the other is a 400.
    Only the one that started is counted: the loser's decision was in its start's
    transaction, rolled back with it. A decision made before that transaction (ec47a3e's
    code, or a mutant of this one that decides in a write transaction of its own) leaves
    the loser's card counted, an attempt never settled: ``[(1, 1), (1, 0)]``."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.http.post("/v1/payment_intents", json={"amount": 1000, "currency": "usd"})
            pi_id = r.json()["id"]
            barrier = asyncio.Barrier(2)
            real = payments_module.resolve_payment_method

            async def resolve(*a: Any, **k: Any) -> Any:
                out = await real(*a, **k)
                await asyncio.wait_for(barrier.wait(), 30)  # both have read the intent
                return out

            monkeypatch.setattr(payments_module, "resolve_payment_method", resolve)

            async def confirm(card: str) -> Any:
                return await h.http.post(
                    f"/v1/payment_intents/{pi_id}/confirm", json={"payment_method": card}
                )

            a, b = await asyncio.gather(confirm("tok_cardA"), confirm("tok_cardB"))
            assert sorted([a.status_code, b.status_code]) == [200, 400], (a.text, b.text)
            buckets = await h.sql("select attempts, settled from fraud_velocity_buckets")
            # one attempt reached the gateway: one card key counted once, settled once
            assert [tuple(row) for row in buckets] == [(1, 1)], buckets
            assert h.gw.calls["authorize"] == 1

    asyncio.run(main())


def test_a_double_confirm_decided_while_the_first_is_applied_is_refused(
    tmp_path: Path, pg_cluster: PgCluster | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double submit on PostgreSQL: both confirms read the intent; the second goes on once
    the first's answer is being applied, and the first settles its velocity buckets only
    once the second has reserved them or waits for a lock. The second takes the intent's
    row first (lock order: intent, then velocity keys and buckets): the first's answer
    stands, the second is a 400, each key counted once and settled once, nothing waits on
    the other for ever (review R1's deadlock scenario). Which request is held is its role
    (a context variable of its own), not the order the scheduler let them resolve in. A
    decision made before the start's transaction (ec47a3e's code, or a mutant of this one
    deciding in a write transaction of its own) counts the second's attempt on every key
    before its start is refused: ``(2, 1)`` each."""
    db = migrated_database_url("postgres", tmp_path, pg_cluster, f"fdstart_{next(_names)}")

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.http.post("/v1/payment_intents", json={"amount": 1000, "currency": "usd"})
            pi_id = r.json()["id"]
            barrier = asyncio.Barrier(2)
            settling, reserved = asyncio.Event(), asyncio.Event()
            real_resolve, real_reserve = payments_module.resolve_payment_method, velocity.reserve
            real_settle = decisions.on_settled
            reserves = 0

            async def resolve(*a: Any, **k: Any) -> Any:
                out = await real_resolve(*a, **k)
                assert role.get() in ("first", "second")  # the request's own, not the order
                await asyncio.wait_for(barrier.wait(), 30)  # both have read the intent
                if role.get() == "second":  # it goes on while the first's answer is applied
                    await asyncio.wait_for(settling.wait(), 30)
                return out

            async def reserve(*a: Any, **k: Any) -> int:
                nonlocal reserves
                out = await real_reserve(*a, **k)
                reserves += 1
                if reserves == 2:
                    reserved.set()
                return int(out)

            async def someone_waits_for_a_lock() -> None:
                while not reserved.is_set():
                    waiting = await h.sql(
                        "select count(*) from pg_stat_activity"
                        " where wait_event_type = 'Lock' and datname = current_database()"
                    )
                    if waiting[0][0]:
                        return
                    await asyncio.sleep(0.01)

            async def settle(*a: Any, **k: Any) -> None:
                settling.set()  # in the first's apply: it holds the intent's row
                await asyncio.wait_for(someone_waits_for_a_lock(), 30)
                await real_settle(*a, **k)

            monkeypatch.setattr(payments_module, "resolve_payment_method", resolve)
            monkeypatch.setattr(velocity, "reserve", reserve)
            # The settle's reaction held (the buckets are settled after it, by the intent's
            # UPDATE: migration 0038's trigger), in the first's settling transaction.
            for type_, reactions in list(context._REACTIONS.items()):
                held = [(settle if r is real_settle else r, *rest) for r, *rest in reactions]
                monkeypatch.setitem(context._REACTIONS, type_, held)

            async def confirm(name: str) -> Any:
                role.set(name)  # this request's task (and the app's, which copy its context)
                return await h.http.post(
                    f"/v1/payment_intents/{pi_id}/confirm",
                    json={"payment_method": "tok_visa"},
                    headers={"Paymux-Payer-Ip": "198.51.100.7"},
                )

            first, second = await asyncio.gather(confirm("first"), confirm("second"))
            assert first.status_code == 200, first.text
            assert first.json()["status"] == "succeeded"
            assert second.status_code == 400, second.text
            assert second.json()["error"]["code"] == "payment_intent_unexpected_state"
            assert h.gw.calls["authorize"] == 1
            # Each velocity key counted one attempt, settled once.
            buckets = await h.sql("select attempts, settled from fraud_velocity_buckets")
            assert buckets and {tuple(row) for row in buckets} == {(1, 1)}, buckets

    asyncio.run(main())
