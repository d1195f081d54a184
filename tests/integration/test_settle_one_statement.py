"""The settle's first statement on PostgreSQL (issue 10, services/attempts.py
``_LOCK_AND_SETTLE``): the intent's lock and the attempt's conditional UPDATE in one round
trip, where they took two. What it must keep of the two statements it replaces:

- the lock order: the intent's row, then the attempt's. While the settle waits for the
  intent (another transaction holds it), it holds no lock on the attempt: that transaction
  can still update the attempt, then commit, and nothing deadlocks;
- the attempt's condition on its latest version: an attempt that the transaction it waited
  for settled is left alone (the answer settles nothing twice), though the settle's
  statement began before that commit;
- the payment's own settle: the statement is one round trip and the payment succeeds.

Through the HTTP app (create with ``confirm=true``) with the scripted gateway at the
connector seam, its answer held until the other transaction holds the intent's lock; the
other transaction is a plain asyncpg connection."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conftest import migrated_database_url
from paymux.storage import driver
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
BODY = {"amount": 2000, "currency": "usd", "payment_method": "tok_visa", "confirm": True}


@pytest.fixture
def pg(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL only: SQLite's settle is two statements under its writer")
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"settle1_{next(_names)}")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _waiting_for_a_lock(other: asyncpg.Connection) -> None:
    """Until a backend of this database (the settle's) waits for a row lock."""
    for _ in range(500):
        waiting = await other.fetchval(
            "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
            "where not l.granted and a.datname = current_database()"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the settle never waited for the intent's lock")


async def _held_settle(
    h: Harness, other: asyncpg.Connection, meanwhile: str
) -> tuple[Any, dict[str, Any], float]:
    """A payment whose settle finds the intent locked by ``other``: the gateway's answer is
    held until ``other`` holds that lock; then, once the settle waits for it, ``other``
    runs ``meanwhile`` on the payment's attempt (with a lock timeout) and commits. Returns
    the answer, the intent's id and what ``meanwhile`` took (seconds)."""
    answer = asyncio.Event()
    original = h.gw.authorize

    async def authorize(*args: Any, **kwargs: Any) -> Any:
        await answer.wait()
        return await original(*args, **kwargs)

    h.gw.authorize = authorize  # type: ignore[method-assign]
    request = asyncio.create_task(h.post("/v1/payment_intents", BODY))
    for _ in range(500):  # the attempt started (committed), the call waiting
        started = await other.fetchval(
            "select object_id from gateway_attempts where status = 'pending'"
        )
        if started is not None:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the attempt never started")
    tx = other.transaction()
    await tx.start()
    await other.execute("select 1 from payment_intents where id = $1 for update", started)
    answer.set()
    await _waiting_for_a_lock(other)
    # Beyond the deadlock detector's 1 s: a lock the settle held on the attempt would make
    # this wait fail with lock_timeout (or a deadlock), not pass.
    await other.execute("set local lock_timeout = '3s'")
    t0 = asyncio.get_running_loop().time()
    await other.execute(meanwhile, started)
    took = asyncio.get_running_loop().time() - t0
    await tx.commit()
    return await request, started, took


def test_the_settle_waits_for_the_intent_holding_no_lock_on_the_attempt(
    pg: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[int, str, float, list[Any], list[str]]:
        async with Harness.open(pg, tmp_path, gw=ScriptedGateway()) as h:
            assert (await h.post("/v1/payment_intents", BODY)).status_code == 200  # warm
            other = await asyncpg.connect(_dsn(pg))
            sent: list[str] = []
            stop = driver.observe(lambda sql, _: sent.append(" ".join(sql.split())))
            try:
                r, pi_id, took = await _held_settle(
                    h,
                    other,
                    "update gateway_attempts set updated_us = updated_us + 1 where object_id = $1",
                )
            finally:
                stop()
                await other.close()
            rows = await h.sql(
                "select a.status, i.status, i.amount_received from gateway_attempts a "
                "join payment_intents i on i.id = a.object_id where a.object_id = :o",
                o=pi_id,
            )
            return r.status_code, r.text, took, rows, sent

    status, text, took, rows, sent = asyncio.run(scenario())
    assert status == 200, text
    assert took < 0.9  # no wait on the attempt (the deadlock detector runs after 1 s)
    assert rows == [("settled", "succeeded", 2000)]
    settles = [sql for sql in sent if "UPDATE gateway_attempts" in sql]
    # One statement: the intent's lock and the attempt's UPDATE together.
    assert len(settles) == 1 and settles[0].startswith("WITH i AS MATERIALIZED (SELECT")
    assert "FROM payment_intents WHERE id = :b_pi_id FOR UPDATE), a AS (UPDATE" in settles[0]
    assert not any(sql.endswith("FOR UPDATE") for sql in sent if sql not in settles)


def test_an_attempt_settled_while_the_settle_waited_is_not_settled_again(
    pg: str, tmp_path: Path
) -> None:
    """The other transaction settles the attempt itself (its result marked) and commits
    while the settle waits: the settle's UPDATE finds it no longer pending, so the result
    stays the other's and the intent is not moved by this answer (no second apply)."""

    async def scenario() -> tuple[int, list[Any]]:
        async with Harness.open(pg, tmp_path, gw=ScriptedGateway()) as h:
            assert (await h.post("/v1/payment_intents", BODY)).status_code == 200  # warm
            other = await asyncpg.connect(_dsn(pg))
            try:
                r, pi_id, _ = await _held_settle(
                    h,
                    other,
                    "update gateway_attempts set status = 'settled', "
                    """result = '{"by": "other"}' where object_id = $1""",
                )
            finally:
                await other.close()
            rows = await h.sql(
                "select a.status, a.result, i.status, i.amount_received from gateway_attempts a"
                " join payment_intents i on i.id = a.object_id where a.object_id = :o",
                o=pi_id,
            )
            return r.status_code, rows

    status, rows = asyncio.run(scenario())
    assert status == 200
    [(attempt_status, result, intent_status, received)] = rows
    assert attempt_status == "settled"
    assert result == {"by": "other"}  # not overwritten by the late answer
    assert (intent_status, received) == ("processing", 0)  # nothing applied twice
