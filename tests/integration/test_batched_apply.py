"""The worker applies stored webhook events in batches (jobs/worker.py ``_apply_batch``,
webhooks/inbound.py ``apply_many``): several events in one transaction, an event's apply, the
events it emits, its inbox mark and its job's completion committing together. In process
(``support.harness``: paymux's real services and worker on a real database, the scripted fake
provider at the connector seam), on SQLite and PostgreSQL:

1. a batch where some events fail (one about a payment we don't have, one whose payload the
   connector cannot read; on PostgreSQL also one whose write the database refuses, which
   aborts a transaction without savepoints): the others are applied and committed; each
   failed one keeps its inbox row ``received`` with the error noted and its job queued with
   backoff, and is tried again later without the others being applied twice;
2. a crash in the middle of a batch (an exception no handler catches, raised while the
   batch's statements run, as the process dying there): nothing of the batch is written;
   once the claims' lease runs out every event is applied, once;
3. the batch's commit fails: the events are applied one at a time instead, each once;
4. PostgreSQL: two workers (two paymux instances, two connection pools) drain one shuffled
   backlog together, several events per payment (payment events locked by our reference,
   dispute events by the provider's: batches meet on the same rows in both orders): every
   event applied exactly once, one ``payment_intent.succeeded`` and one
   ``charge.dispute.created`` per payment, every job done at its first attempt.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from conftest import migrated_database_url
from paymux.jobs.worker import Worker
from paymux.services import Paymux
from paymux.storage import driver
from support.backlog import stored_completions
from support.fake_gateway import Outcome, ProviderEvent
from support.harness import Harness
from support.pgcluster import PgCluster

LEASE_S = 60  # the claim's lease (Settings.job_lease_seconds' default)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    backend = str(request.param)
    name = f"batched_{request.node.name.split('[')[0][-20:]}_{backend}".replace("-", "_")
    db_url = migrated_database_url(backend, tmp_path, pg_cluster, name)
    return db_url


async def store(h: Harness, type_: str, obj: dict[str, Any]) -> str:
    """A provider event of our own making, stored (not applied); returns its inbox id."""
    ev = ProviderEvent(f"evt_made_{random.getrandbits(48):x}", type_, h.gw.now(), obj)
    received = await h.gw.deliver_webhook(h.app.webhooks, ev, apply=False)
    return str(received.inbox_id)


async def inbox(h: Harness) -> dict[str, tuple[str, str | None]]:
    return {r[0]: (r[1], r[2]) for r in await h.sql("select id, status, error from webhook_inbox")}


async def apply_jobs(h: Harness) -> dict[str, tuple[str, int, str | None, int]]:
    """inbox id -> (status, attempts, last_error, run_at_us) of its apply_webhook job."""
    rows = await h.sql(
        "select payload, status, attempts, last_error, run_at_us from jobs "
        "where kind = 'apply_webhook'"
    )
    out = {}
    for payload, status, attempts, error, run_at in rows:
        inbox_id = (payload if isinstance(payload, dict) else json.loads(payload))["inbox_id"]
        out[inbox_id] = (status, attempts, error, run_at)
    return out


async def pi_inbox(h: Harness) -> dict[str, str]:
    """Our payment -> the inbox row of the provider's event about it (one each here)."""
    rows = await h.sql("select id, payload from webhook_inbox")
    return {json.loads(body)["data"]["object"]["reference"]: inbox_id for inbox_id, body in rows}


async def succeeded_events(h: Harness) -> Counter[str]:
    rows = await h.sql("select object_id from events where type = 'payment_intent.succeeded'")
    return Counter(r[0] for r in rows)


async def statuses(h: Harness, ids: list[str]) -> list[str]:
    return [(await h.get(f"/v1/payment_intents/{pi}"))["status"] for pi in ids]


# -- 1. failures inside a batch ---------------------------------------------------------------
def test_a_failing_event_is_rolled_back_alone_and_retried_later(url: str, tmp_path: Path) -> None:
    postgres = not url.startswith("sqlite")

    async def main() -> None:
        async with Harness.open(url, tmp_path, worker_batch_size=50) as h:
            ids = await stored_completions(h, 5)
            payment = h.gw.payments_for(ids[0])[0].snapshot()
            unknown = await store(
                h,
                "payment.updated",
                {**payment, "id": "pay_nowhere", "reference": "pi_nowhere"},
            )
            unreadable = await store(  # a dispute without its amount: the connector raises
                h, "dispute.updated", {"object": "dispute", "id": "dp_x", "payment": "pay_x"}
            )
            failing = {unknown, unreadable}
            if postgres:  # currency is VARCHAR(3): PostgreSQL refuses the dispute's INSERT
                refused = await store(
                    h,
                    "dispute.updated",
                    {
                        "object": "dispute",
                        "id": "dp_long",
                        "payment": h.gw.payments_for(ids[1])[0].id,
                        "amount": 2500,
                        "currency": "usdollars",
                        "reason": "fraudulent",
                        "status": "needs_response",
                    },
                )
                failing.add(refused)
            before = await inbox(h)
            assert len(before) == 5 + len(failing)
            now = h.clock.now_us()

            ran = await h.worker.run_once()  # one claim, one batch
            assert ran == len(before)

            rows, jobs = await inbox(h), await apply_jobs(h)
            assert await statuses(h, ids) == ["succeeded"] * 5
            assert await succeeded_events(h) == Counter({pi: 1 for pi in ids})
            for inbox_id in before.keys() - failing:
                assert rows[inbox_id] == ("applied", None)
                assert jobs[inbox_id][:3] == ("done", 1, None)
            assert rows[unknown][0] == "received"
            assert rows[unknown][1] == "waiting: payment pi_nowhere is not stored yet"
            assert rows[unreadable][0] == "received"
            assert rows[unreadable][1] is not None and rows[unreadable][1].startswith("KeyError")
            for inbox_id in failing:
                status, attempts, error, run_at = jobs[inbox_id]
                assert (status, attempts) == ("queued", 1)
                assert error == rows[inbox_id][1]
                assert run_at >= now
            if postgres:
                assert rows[refused][0] == "received"
                assert "value too long" in str(rows[refused][1])
                assert await h.sql("select count(*) from disputes") == [(0,)]

            # Later (past the longest first backoff), only the failed ones run again.
            h.advance(h.app.settings.job_backoff_base * 2 + 1)
            assert await h.worker.run_once() == len(failing)
            jobs = await apply_jobs(h)
            assert {i: jobs[i][:2] for i in failing} == {i: ("queued", 2) for i in failing}
            assert await succeeded_events(h) == Counter({pi: 1 for pi in ids})

    asyncio.run(main())


# -- 2. a crash mid-batch -----------------------------------------------------------------------
class Crash(BaseException):
    """The process dying: no ``except Exception`` catches it."""


def test_a_crash_mid_batch_leaves_nothing_half_applied(url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(url, tmp_path, worker_batch_size=50) as h:
            ids = await stored_completions(h, 6)
            inserts = 0
            dead = False

            def crash_at_the_fourth_event(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                """From the fourth event's INSERT on, every statement dies with the process."""
                nonlocal inserts, dead
                inserts += statement.count("INSERT INTO events ")  # alone or held with others
                dead = dead or inserts == 4
                if dead:
                    raise Crash

            engine = h.app.ctx.db.writer.sync_engine
            event.listen(engine, "before_cursor_execute", crash_at_the_fourth_event)
            # The events' INSERTs run on the database driver (storage/driver.py), which fires
            # no SQLAlchemy event: its observer sees each just after it ran, inside its
            # transaction, so dying there rolls the transaction back all the same.
            stop_observing = driver.observe(
                lambda sql, _took: crash_at_the_fourth_event(None, None, sql)
            )
            try:
                with pytest.raises(Crash):
                    await h.worker.run_once()
                for _ in range(500):  # the other batch (PostgreSQL) meets its end too
                    if engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
                        break
                    await asyncio.sleep(0.01)
            finally:
                stop_observing()
                event.remove(engine, "before_cursor_execute", crash_at_the_fourth_event)

            # Each event is applied whole (its intent, its event, its inbox mark, its job)
            # or not at all; the crashed batch's events (at least the fourth) are not.
            rows, jobs, emitted = await inbox(h), await apply_jobs(h), await succeeded_events(h)
            by_intent = dict(zip(ids, await statuses(h, ids), strict=True))
            inbox_of = await pi_inbox(h)
            applied = {pi for pi in ids if rows[inbox_of[pi]][0] == "applied"}
            for pi in ids:
                whole = (by_intent[pi], emitted[pi], jobs[inbox_of[pi]][:2])
                if pi in applied:
                    assert whole == ("succeeded", 1, ("done", 1))
                else:
                    assert whole == ("requires_action", 0, ("running", 1))
            assert len(applied) <= 6 - 1
            assert await h.worker.run_once() == 0  # the dead worker's claims hold (lease)

            h.advance(LEASE_S + 1)
            assert await h.worker.run_once() == 6 - len(applied)
            assert {s for s, _ in (await inbox(h)).values()} == {"applied"}
            assert await succeeded_events(h) == Counter({pi: 1 for pi in ids})
            assert await statuses(h, ids) == ["succeeded"] * 6
            jobs = await apply_jobs(h)
            assert {jobs[inbox_of[pi]][:3] for pi in applied} <= {("done", 1, None)}
            assert {jobs[inbox_of[pi]][:3] for pi in set(ids) - applied} == {("done", 2, None)}

    asyncio.run(main())


# -- 3. the batch's commit fails ----------------------------------------------------------------
def test_a_failed_batch_commit_falls_back_to_one_event_at_a_time(url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(url, tmp_path, worker_batch_size=50) as h:
            ids = await stored_completions(h, 4)
            commits = 0

            def fail_the_first_batch_commit(conn: Any) -> None:
                nonlocal commits
                commits += 1
                if commits == 2:  # the claim's commit, then a batch's
                    raise RuntimeError("connection lost at COMMIT")

            engine = h.app.ctx.db.writer.sync_engine
            event.listen(engine, "commit", fail_the_first_batch_commit)
            try:
                ran = await h.worker.run_once()
            finally:
                event.remove(engine, "commit", fail_the_first_batch_commit)
            assert ran == 4
            assert commits > 2  # the failure happened, and commits came after it
            assert {s for s, _ in (await inbox(h)).values()} == {"applied"}
            assert await succeeded_events(h) == Counter({pi: 1 for pi in ids})
            assert await statuses(h, ids) == ["succeeded"] * 4
            assert {j[:3] for j in (await apply_jobs(h)).values()} == {("done", 1, None)}

    asyncio.run(main())


# -- 4. two workers on one backlog (PostgreSQL) -------------------------------------------------
@pytest.mark.postgres
def test_two_workers_apply_a_shuffled_backlog_exactly_once(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    db_url = migrated_database_url("postgres", tmp_path, pg_cluster, "batched_two_workers")
    n = 24

    async def main() -> None:
        async with Harness.open(db_url, tmp_path, worker_batch_size=6) as h:
            ids = []
            for _ in range(n):
                h.gw.script("authorize", Outcome.requires_action())
                r = await h.post(
                    "/v1/payment_intents",
                    {
                        "amount": 4000,
                        "currency": "usd",
                        "confirm": True,
                        "payment_method": "tok_visa",
                    },
                )
                ids.append(h.body(r)["id"])
            h.gw.take_webhooks()
            for pi in ids:
                payment = h.gw.complete_action(pi)
                h.gw.emit(payment)  # the same news again, another event id
                h.gw.open_dispute(payment.id)
            backlog = h.gw.take_webhooks()
            backlog += [  # each dispute's news again
                ProviderEvent(f"evt_again_{i}", ev.type, ev.created, dict(ev.object))
                for i, ev in enumerate(backlog)
                if ev.type == "dispute.updated"
            ]
            assert len(backlog) == 4 * n
            random.Random(7).shuffle(backlog)
            for ev in backlog:
                await h.gw.deliver_webhook(h.app.webhooks, ev, apply=False)

            other = Paymux(h.app.settings, gateways=h.gw.registry(), clock=h.clock)
            try:
                workers = [h.worker, Worker(other, worker_id="second")]

                async def drain(worker: Worker) -> int:
                    ran = 0
                    for _ in range(200):
                        done = await worker.run_once()
                        ran += done
                        if done == 0:
                            break
                    return ran

                ran = await asyncio.gather(*(drain(w) for w in workers))
            finally:
                await other.close()
            assert sum(ran) >= 4 * n

            rows = await inbox(h)
            assert len(rows) == 4 * n
            assert {s for s, _ in rows.values()} == {"applied"}
            jobs = await apply_jobs(h)
            assert {j[:3] for j in jobs.values()} == {("done", 1, None)}
            assert await succeeded_events(h) == Counter({pi: 1 for pi in ids})
            disputes = await h.sql(
                "select object_id from events where type = 'charge.dispute.created'"
            )
            assert len(disputes) == n
            per_payment = await h.sql(
                "select payment_intent_id, count(*) from disputes group by payment_intent_id"
            )
            assert sorted(per_payment) == sorted((pi, 1) for pi in ids)
            assert await statuses(h, ids) == ["succeeded"] * n

    asyncio.run(main())
