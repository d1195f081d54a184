"""Job leases are kept alive and fenced, on SQLite and PostgreSQL.

- The queue: every claim gets a new fencing token (``lease_id``); ``complete``,
  ``complete_many``, ``fail`` and ``extend`` of a claim that lost its lease (another worker
  claimed the job after it ran out) write nothing and say so; job ids are never reused after
  finished jobs are pruned (SQLite's table is AUTOINCREMENT since migration 0017).
- The worker: a job that runs longer than its lease is not taken over while its worker's
  heartbeat extends the lease; a worker that stalled past its lease (no heartbeat) cannot
  overwrite the outcome of the worker that took the job over, and the money job is not run
  again because of it (the scripted fake provider at the connector seam counts the calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import database_url
from paymux.jobs import queue
from paymux.jobs.worker import Worker, outbound_stop_seconds
from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

T0 = 1_700_000_000_000_000
SECOND = 1_000_000
LEASE = 60.0


db_url = migrated_database_fixture("leases")


def run(url: str, scenario: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = Database(url, pool_size=4)
        try:
            await scenario(db)
        finally:
            await db.dispose()

    asyncio.run(main())


async def enqueue(db: Database, kind: str = "k", **kw: Any) -> int:
    async with db.write() as s:
        job_id = await queue.enqueue(s, kind, {}, now_us=T0, **kw)
    assert job_id is not None
    return job_id


async def claim(db: Database, at: int, worker: str, lease: float = 1.0) -> list[queue.ClaimedJob]:
    async with db.write() as s:
        return await queue.claim(s, worker, now_us=at, limit=10, lease=lease)


async def row(db: Database, job_id: int) -> tuple[Any, ...]:
    async with db.read() as s:
        found = (
            await s.execute(
                text(
                    "select status, locked_by, locked_until_us, attempts, last_error, run_at_us "
                    "from jobs where id = :i"
                ),
                {"i": job_id},
            )
        ).one()
    return tuple(found)


# -- the queue's fencing ---------------------------------------------------------------------
def test_a_claim_that_lost_its_lease_cannot_finish_fail_or_extend_the_job(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        job_id = await enqueue(db, max_attempts=5)
        [stalled] = await claim(db, T0, "w1", lease=1.0)  # w1's lease runs to T0 + 1 s
        [owner] = await claim(db, T0 + 2 * SECOND, "w2", lease=60.0)  # ran out: w2 takes it
        assert (stalled.locked_by, owner.locked_by) == ("w1", "w2")
        assert owner.lease_id == stalled.lease_id + 1
        w2_lease = (T0 + 2 * SECOND) + 60 * SECOND
        running_w2 = ("running", "w2", w2_lease, 2, None, T0)
        assert await row(db, job_id) == running_w2
        # While w2 runs it, w1's late words change nothing.
        async with db.write() as s:
            assert await queue.complete(s, stalled, now_us=T0 + 3 * SECOND) is False
            assert await queue.fail(s, stalled, "late", now_us=T0 + 3 * SECOND, delay=5) is None
            assert await queue.extend(s, [stalled], now_us=T0 + 3 * SECOND, lease=600) == {
                job_id
            }
            assert await queue.complete_many(s, [stalled], now_us=T0 + 3 * SECOND) == {job_id}
        assert await row(db, job_id) == running_w2
        # w2 finishes; w1's failure, arriving after, does not requeue the finished job.
        async with db.write() as s:
            assert await queue.complete(s, owner, now_us=T0 + 4 * SECOND) is True
        async with db.write() as s:
            assert await queue.fail(s, stalled, "late", now_us=T0 + 5 * SECOND, delay=0) is None
        assert await row(db, job_id) == ("done", None, None, 2, None, T0)
        assert await claim(db, T0 + 3600 * SECOND, "w3") == []

    run(db_url, scenario)


def test_the_same_worker_claiming_a_job_again_holds_only_its_newest_claim(db_url: str) -> None:
    """The fencing token is the claim, not the worker's name: a worker whose first run
    stalled and that claimed the job again cannot finish it with the first run's claim."""

    async def scenario(db: Database) -> None:
        job_id = await enqueue(db)
        [first] = await claim(db, T0, "w1", lease=1.0)
        [second] = await claim(db, T0 + 2 * SECOND, "w1", lease=1.0)
        assert (first.id, second.id) == (job_id, job_id)
        async with db.write() as s:
            assert await queue.fail(s, first, "first run", now_us=T0 + 2 * SECOND) is None
            assert await queue.complete(s, first, now_us=T0 + 2 * SECOND) is False
        assert (await row(db, job_id))[:2] == ("running", "w1")
        async with db.write() as s:
            assert await queue.complete(s, second, now_us=T0 + 2 * SECOND) is True
        assert (await row(db, job_id))[:2] == ("done", None)

    run(db_url, scenario)


def test_extending_a_lease_keeps_the_job_from_other_claimers(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        job_id = await enqueue(db)
        [job] = await claim(db, T0, "w1", lease=1.0)
        async with db.write() as s:  # a heartbeat at T0 + 0.5 s: the lease runs to T0 + 1.5 s
            assert await queue.extend(s, [job], now_us=T0 + SECOND // 2, lease=1.0) == set()
        assert (await row(db, job_id))[:3] == ("running", "w1", T0 + 3 * SECOND // 2)
        assert await claim(db, T0 + 6 * SECOND // 5, "w2") == []  # at T0 + 1.2 s
        [taken] = await claim(db, T0 + 2 * SECOND, "w2")  # at T0 + 2 s it ran out
        assert (taken.id, taken.locked_by, taken.attempts) == (job_id, "w2", 2)

    run(db_url, scenario)


def test_a_batch_completion_skips_only_the_jobs_whose_lease_was_lost(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        kept_id = await enqueue(db, "a")
        lost_id = await enqueue(db, "b")
        claimed = await claim(db, T0, "w1", lease=1.0)
        assert sorted(j.id for j in claimed) == [kept_id, lost_id]
        async with db.write() as s:  # w1 keeps a alive; b's lease runs out
            kept = [j for j in claimed if j.id == kept_id]
            assert await queue.extend(s, kept, now_us=T0 + SECOND // 2, lease=10.0) == set()
        [other] = await claim(db, T0 + 2 * SECOND, "w2")
        assert other.id == lost_id
        async with db.write() as s:
            assert await queue.complete_many(s, claimed, now_us=T0 + 3 * SECOND) == {lost_id}
        assert (await row(db, kept_id))[:2] == ("done", None)
        assert (await row(db, lost_id))[:2] == ("running", "w2")

    run(db_url, scenario)


# -- job ids ---------------------------------------------------------------------------------
def test_job_ids_are_never_reused_after_pruning(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ids = [await enqueue(db, f"k{i}") for i in range(3)]
        for job in await claim(db, T0, "w1"):
            async with db.write() as s:
                assert await queue.complete(s, job, now_us=T0)
        async with db.write() as s:
            assert await queue.prune_done(s, before_us=T0 + SECOND, limit=10) == 3
        new = await enqueue(db, "after")
        assert new > max(ids), f"job id {new} was given before (to one of {ids})"

    run(db_url, scenario)


def test_migration_0017_keeps_the_jobs_and_stops_reusing_ids_on_sqlite(tmp_path: Path) -> None:
    url = database_url("sqlite", tmp_path, None, "jobs_0017")
    upgrade(url, "0016")

    async def before(db: Database) -> None:
        async with db.write() as s:
            for i, status in enumerate(("queued", "running", "done", "done"), start=1):
                await s.execute(
                    text(
                        "insert into jobs (id, kind, payload, status, run_at_us, attempts, "
                        "max_attempts, locked_by, created_us, updated_us) values "
                        "(:i, 'k', '{}', :s, :t, 1, 10, :w, :t, :t)"
                    ),
                    {"i": i, "s": status, "t": T0, "w": "w1" if status == "running" else None},
                )

    run(url, before)
    upgrade(url)

    async def after(db: Database) -> None:
        async with db.read() as s:
            rows = (
                await s.execute(text("select id, status, locked_by, lease_id from jobs order by id"))
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, "queued", None, 0),
            (2, "running", "w1", 0),
            (3, "done", None, 0),
            (4, "done", None, 0),
        ]
        async with db.write() as s:  # the newest jobs are pruned: their ids stay used
            assert await queue.prune_done(s, before_us=T0 + SECOND, limit=10) == 2
        assert await enqueue(db, "new") == 5
        # The partial unique index came through the rebuild: a live key is held.
        assert await enqueue(db, "d1", dedupe_key="x") == 6
        async with db.write() as s:
            assert await queue.enqueue(s, "d2", {}, now_us=T0, dedupe_key="x") is None

    run(url, after)


# -- the worker: heartbeat, and a stalled worker's late outcome ------------------------------
async def paid_intent(h: Harness, amount: int = 2000) -> str:
    r = await h.post(
        "/v1/payment_intents",
        {"amount": amount, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
    )
    assert r.status_code == 200, r.text
    return str(h.body(r)["id"])


async def queue_return(h: Harness, pi_id: str, amount: int) -> int:
    """The money job: give back ``amount`` of the payment (a refund at the provider)."""
    async with h.app.ctx.db.write() as s:
        job_id = await queue.enqueue(
            s,
            "return_invoice_payment",
            {"account_id": h.account, "pi_id": pi_id, "amount": amount},
            now_us=h.app.ctx.now_us(),
            account_id=h.account,
        )
    assert job_id is not None
    return job_id


async def job_row(h: Harness, job_id: int) -> tuple[Any, ...]:
    [found] = await h.sql(
        "select status, locked_by, locked_until_us, attempts, last_error from jobs "
        "where id = :i",
        i=job_id,
    )
    return tuple(found)


def run_harness(url: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(url, tmp, job_lease_seconds=LEASE) as h:
            await test(h)

    asyncio.run(main())


def test_a_long_job_whose_lease_is_kept_alive_is_not_taken_over(
    db_url: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        job_id = await queue_return(h, pi_id, 700)
        busy = Worker(h.app, worker_id="busy", heartbeat_interval=0.02)
        other = Worker(h.app, worker_id="other", heartbeat_interval=0.02)
        gate = h.gw.hold("refund")  # the refund call hangs, before the provider acts
        running = asyncio.create_task(busy.run_once())
        await gate.wait_reached()
        h.advance(LEASE + 1)  # the job has now run for longer than its lease
        now = h.app.ctx.now_us()
        for _ in range(500):  # the heartbeat extends it (bounded wait: 5 s)
            locked_until = (await job_row(h, job_id))[2]
            if locked_until is not None and locked_until > now:
                break
            await asyncio.sleep(0.01)
        assert (await job_row(h, job_id))[:2] == ("running", "busy")
        assert await other.run_once() == 0  # nothing to claim: the lease is held
        gate.release()
        assert await running == 1
        assert await job_row(h, job_id) == ("done", None, None, 1, None)
        assert h.gw.calls["refund"] == 1
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert h.gw.money_refunded(pi_id) == 700

    run_harness(db_url, tmp_path, test)


def test_a_worker_that_stalled_past_its_lease_cannot_undo_the_new_owners_outcome(
    db_url: str, tmp_path: Path
) -> None:
    """``stalled`` (no heartbeat) makes the refund at the provider, then hangs before the
    answer; its lease runs out and ``owner`` claims the job, resumes that refund and
    finishes. Then ``stalled`` wakes up to a failure (the answer lost to an unmapped
    connection error): the queue refuses it, so the finished job is not requeued and run
    a third time."""

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        job_id = await queue_return(h, pi_id, 700)
        stalled = Worker(h.app, worker_id="stalled", heartbeat_interval=0)
        owner = Worker(h.app, worker_id="owner", heartbeat_interval=0)
        gate = h.gw.hold("refund", after=True)
        first = asyncio.create_task(stalled.run_once())
        await gate.wait_reached()
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]  # made, answer held
        h.advance(LEASE + 1)
        assert await owner.run_once() == 1  # claimed after the lease ran out, and finished
        owner_done = ("done", None, None, 2, None)
        assert await job_row(h, job_id) == owner_done
        calls_by_owner = list(h.gw.log)
        gate.release(ConnectionResetError("connection reset by peer"))
        assert await first == 1
        assert await job_row(h, job_id) == owner_done  # not requeued with stalled's error
        h.advance(3600)  # past any backoff stalled's failure could have asked for
        assert await h.drain() == 0  # the job is not run a third time; nothing else is due
        assert await job_row(h, job_id) == owner_done
        assert h.gw.log == calls_by_owner  # no gateway call after owner's run
        [status] = [r[0] for r in await h.sql(
            "select status from refunds where payment_intent_id = :p", p=pi_id
        )]
        assert status == "succeeded"
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert h.gw.money_refunded(pi_id) == 700
        got = await h.get(f"/v1/payment_intents/{pi_id}")
        assert (got["amount_refunded"], got["amount_received"]) == (700, 2000)

    run_harness(db_url, tmp_path, test)


def test_a_handler_finishing_in_its_own_transaction_after_its_lease_was_lost_commits_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """apply_webhook marks its job done in the transaction that applies the event
    (``finish``). A worker whose lease is lost after its handler started (past the check
    before the start) has its whole transaction rolled back (``LeaseLost``): the event is
    applied once, by the job's new owner."""

    async def test(h: Harness) -> None:
        await paid_intent(h)
        event = h.gw.take_webhooks()[-1]
        received = await h.gw.deliver_webhook(h.app.webhooks, event, apply=False)
        [(job_id,)] = await h.sql("select id from jobs where kind = 'apply_webhook'")
        now = h.app.ctx.now_us()
        async with h.app.ctx.db.write() as s:
            [stalled] = await queue.claim(s, "stalled", now_us=now, limit=10, lease=1.0)
        owners: list[queue.ClaimedJob] = []
        worker = Worker(h.app, worker_id="stalled", heartbeat_interval=0)
        apply = worker.handlers["apply_webhook"]

        async def stalls_then_applies(payload: dict[str, Any], finish: Any) -> None:
            h.advance(LEASE + 1)  # started, stalled: the lease (extended at the start) ran
            # out and owner claims the job
            async with h.app.ctx.db.write() as s:
                owners.extend(
                    await queue.claim(s, "owner", now_us=h.app.ctx.now_us(), limit=10, lease=LEASE)
                )
            await apply(payload, finish)

        worker.handlers["apply_webhook"] = stalls_then_applies
        await worker._run(stalled)
        [owner] = owners
        assert stalled.id == owner.id == job_id
        [(inbox_status,)] = await h.sql(
            "select status from webhook_inbox where id = :i", i=received.inbox_id
        )
        assert inbox_status == "received"  # stalled's application was rolled back
        assert (await job_row(h, job_id))[:2] == ("running", "owner")
        await Worker(h.app, worker_id="owner", heartbeat_interval=0)._run(owner)
        [(inbox_status,)] = await h.sql(
            "select status from webhook_inbox where id = :i", i=received.inbox_id
        )
        assert inbox_status == "applied"
        assert await job_row(h, job_id) == ("done", None, None, 2, None)

    run_harness(db_url, tmp_path, test)


# -- the whole claimed batch keeps its leases; lost claims are not run, or are cut short ------
def probe(runs: list[tuple[str, int]], worker: str, gate: asyncio.Event | None = None) -> Any:
    """A handler recording (worker, payload n) when it starts; job n=1 waits on ``gate``."""

    async def handler(payload: dict[str, Any], _finish: Any) -> None:
        runs.append((worker, payload["n"]))
        if payload["n"] == 1 and gate is not None:
            await gate.wait()

    return handler


async def lease_until(h: Harness, job_id: int) -> int | None:
    [(until,)] = await h.sql("select locked_until_us from jobs where id = :i", i=job_id)
    return None if until is None else int(until)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0) -> None:
    """Poll ``check`` until true (bounded)."""
    for _ in range(int(seconds / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_money_job_waiting_behind_a_long_job_in_its_batch_keeps_its_lease(
    db_url: str, tmp_path: Path
) -> None:
    """Worker A claims a long job and, in the same batch, a refund job that waits its turn.
    Past the lease, the heartbeat has extended BOTH leases, so worker B claims nothing; the
    refund runs once, by A. (Before the fix only the running job was heartbeated: B claimed
    the refund and made it, then A made it again with its stale claim.)"""

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        runs: list[tuple[str, int]] = []
        gate = asyncio.Event()
        a = Worker(h.app, worker_id="A", heartbeat_interval=0.02)
        b = Worker(h.app, worker_id="B", heartbeat_interval=0.02)
        a.handlers["probe"] = probe(runs, "A", gate)
        b.handlers["probe"] = probe(runs, "B")
        now = h.app.ctx.now_us()
        async with h.app.ctx.db.write() as s:  # the long job is due first
            long_id = await queue.enqueue(s, "probe", {"n": 1}, now_us=now - 10)
        refund_id = await queue_return(h, pi_id, 700)
        first = asyncio.create_task(a.run_once())
        await wait_for(lambda: asyncio.sleep(0, ("A", 1) in runs), "A to start the long job")
        h.advance(LEASE + 1)
        later = h.app.ctx.now_us()

        async def extended() -> bool:  # a heartbeat tick after the clock moved
            until = await lease_until(h, long_id)
            return until is not None and until > later

        await wait_for(extended, "the heartbeat to extend the long job's lease")
        taken_by_b = await b.run_once()
        gate.set()
        assert await asyncio.wait_for(first, 30) == 2
        assert h.gw.calls["refund"] == 1
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert h.gw.money_refunded(pi_id) == 700
        assert taken_by_b == 0  # both leases held by A: nothing to claim
        assert runs == [("A", 1)]
        assert await job_row(h, refund_id) == ("done", None, None, 1, None)
        assert (await lease_until(h, long_id)) is None

    run_harness(db_url, tmp_path, test)


def test_a_job_whose_claim_was_lost_while_it_waited_is_not_started(
    db_url: str, tmp_path: Path
) -> None:
    """Worker A (no heartbeat: it stalls) claims two jobs; the first runs past the lease and B
    claims both and runs them. When A's first job ends, A checks its claim on the second
    before starting it, finds it lost, and does not run it (before the fix it ran it again)."""

    async def test(h: Harness) -> None:
        runs: list[tuple[str, int]] = []
        gate = asyncio.Event()
        a = Worker(h.app, worker_id="A", heartbeat_interval=0)
        b = Worker(h.app, worker_id="B", heartbeat_interval=0)
        a.handlers["probe"] = probe(runs, "A", gate)
        b.handlers["probe"] = probe(runs, "B")
        now = h.app.ctx.now_us()
        async with h.app.ctx.db.write() as s:
            first_id = await queue.enqueue(s, "probe", {"n": 1}, now_us=now - 2)
            second_id = await queue.enqueue(s, "probe", {"n": 2}, now_us=now - 1)
        running = asyncio.create_task(a.run_once())
        await wait_for(lambda: asyncio.sleep(0, ("A", 1) in runs), "A to start job 1")
        h.advance(LEASE + 1)
        assert await b.run_once() == 2
        gate.set()
        assert await asyncio.wait_for(running, 30) == 2
        assert sorted(runs) == [("A", 1), ("B", 1), ("B", 2)]  # never ("A", 2)
        for job_id in (first_id, second_id):
            assert await job_row(h, job_id) == ("done", None, None, 2, None)

    run_harness(db_url, tmp_path, test)


def test_a_running_handler_whose_lease_is_lost_is_cancelled(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A's heartbeat finds that B holds the job now (A's lease ran out while A could not reach
    the database, say): A's handler, held at the provider before it acts, is cancelled, as
    if A had crashed there. B then makes the refund, once. (Before the fix A's handler ran on
    and run_once never returned while its call hung.)"""

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        job_id = await queue_return(h, pi_id, 700)
        a = Worker(h.app, worker_id="A", heartbeat_interval=0.02)
        gate = h.gw.hold("refund")  # A's refund call waits here, before the provider acts
        running = asyncio.create_task(a.run_once())
        await gate.wait_reached()
        async with h.app.ctx.db.write() as s:  # A's lease ran out; B claims the job
            await s.execute(text("update jobs set locked_until_us = 0 where id = :i"), {"i": job_id})
            [taken] = await queue.claim(
                s, "B", now_us=h.app.ctx.now_us(), limit=10, lease=LEASE
            )
        assert taken.id == job_id
        assert await asyncio.wait_for(running, 30) == 1  # A's handler was cancelled
        assert (await job_row(h, job_id))[:2] == ("running", "B")
        assert h.gw.refunds_for(pi_id) == []  # A's call never reached the provider
        gate.release()
        await Worker(h.app, worker_id="B", heartbeat_interval=0)._run(taken)
        assert await job_row(h, job_id) == ("done", None, None, 2, None)
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert h.gw.money_refunded(pi_id) == 700

    with caplog.at_level(logging.WARNING, logger="paymux.jobs.worker"):
        run_harness(db_url, tmp_path, test)
    cancelled = [r.getMessage() for r in caplog.records if "handler is cancelled" in r.getMessage()]
    assert len(cancelled) == 1, cancelled


def test_a_handler_cancelled_after_the_provider_refunded_is_resumed_with_the_same_key(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As above, but A's refund call reached the provider, which made the refund, and A is
    cancelled while the answer is in flight (a crash after the provider acted). B, the new
    owner, runs the job again and resumes the same refund object (whose id the refund's
    idempotency key is derived from): it finds the refund made at the provider, and exactly
    one refund exists, at the provider and with us."""

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        job_id = await queue_return(h, pi_id, 700)
        a = Worker(h.app, worker_id="A", heartbeat_interval=0.02)
        gate = h.gw.hold("refund", after=True)  # the provider acts; the answer waits here
        running = asyncio.create_task(a.run_once())
        await gate.wait_reached()
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]  # made, answer held
        async with h.app.ctx.db.write() as s:  # A's lease ran out; B claims the job
            await s.execute(text("update jobs set locked_until_us = 0 where id = :i"), {"i": job_id})
            [taken] = await queue.claim(
                s, "B", now_us=h.app.ctx.now_us(), limit=10, lease=LEASE
            )
        assert taken.id == job_id
        assert await asyncio.wait_for(running, 30) == 1  # A's handler was cancelled
        assert (await job_row(h, job_id))[:2] == ("running", "B")
        gate.release()  # nobody waits for that answer any more
        await Worker(h.app, worker_id="B", heartbeat_interval=0)._run(taken)
        assert await job_row(h, job_id) == ("done", None, None, 2, None)
        [[refund_id]] = await h.sql(
            "select id from refunds where payment_intent_id = :p", p=pi_id
        )
        # A's call made the refund under the key of our refund object; B resumed that same
        # refund (not a new one): it asked the provider about it, found it made, and did
        # not send it again (it would have, with the same key, had the provider not had it).
        calls = [(c.operation, c.idempotency_key, c.replay) for c in h.gw.log]
        assert calls[-2:] == [
            ("refund", f"{refund_id}:refund", False),
            ("retrieve_refund", None, False),
        ]
        assert h.gw.calls["refund"] == 1
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]  # exactly one refund
        assert h.gw.money_refunded(pi_id) == 700
        rows = await h.sql(
            "select amount, status from refunds where payment_intent_id = :p", p=pi_id
        )
        assert [tuple(r) for r in rows] == [(700, "succeeded")]
        got = await h.get(f"/v1/payment_intents/{pi_id}")
        assert (got["amount_refunded"], got["amount_received"]) == (700, 2000)
        h.advance(3600)
        assert await h.drain() == 0  # nothing left to run (no second refund job)
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]

    with caplog.at_level(logging.WARNING, logger="paymux.jobs.worker"):
        run_harness(db_url, tmp_path, test)
    cancelled = [r.getMessage() for r in caplog.records if "handler is cancelled" in r.getMessage()]
    assert len(cancelled) == 1, cancelled


def test_no_lost_lease_warning_for_a_job_that_finished_while_a_heartbeat_waited(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler marks its job done in its own transaction (``finish``, as apply_webhook does)
    and holds that transaction open while heartbeat ticks wait on it. The ticks then find the
    job done by this very claim: that is not a lost lease, and nothing says so."""

    async def test(h: Harness) -> None:
        w = Worker(h.app, worker_id="A", heartbeat_interval=0.05)

        async def handler(payload: dict[str, Any], finish: Any) -> None:
            async with h.app.ctx.db.write() as s:
                await finish(s)
                await asyncio.sleep(0.3)  # the rest of the transaction (a slow commit)

        w.handlers["probe"] = handler
        async with h.app.ctx.db.write() as s:
            job_id = await queue.enqueue(s, "probe", {}, now_us=h.app.ctx.now_us())
        assert job_id is not None
        assert await w.run_once() == 1
        assert await job_row(h, job_id) == ("done", None, None, 1, None)

    with caplog.at_level(logging.WARNING, logger="paymux.jobs.worker"):
        run_harness(db_url, tmp_path, test)
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert lost == [], lost


def test_extend_tells_a_claim_that_finished_its_job_from_one_that_lost_it(db_url: str) -> None:
    """A heartbeat's ``extend`` reports lost only the jobs another claim holds now; the jobs
    this claim already finished (done, or failed and queued again) are not lost."""

    async def scenario(db: Database) -> None:
        done_id = await enqueue(db, "a")
        failed_id = await enqueue(db, "b")
        taken_id = await enqueue(db, "c")
        claims = await claim(db, T0, "w1", lease=1.0)
        by_id = {j.id: j for j in claims}
        async with db.write() as s:
            assert await queue.complete(s, by_id[done_id], now_us=T0)
            assert await queue.fail(s, by_id[failed_id], "x", now_us=T0, delay=3600) == "queued"
        [other] = await claim(db, T0 + 2 * SECOND, "w2")  # c's lease ran out; b is not due
        assert other.id == taken_id
        async with db.write() as s:
            assert await queue.extend(s, claims, now_us=T0 + 3 * SECOND, lease=5) == {taken_id}
        assert (await row(db, done_id))[:2] == ("done", None)
        assert (await row(db, failed_id))[:2] == ("queued", None)
        assert (await row(db, taken_id))[:3] == ("running", "w2", T0 + 3 * SECOND)

    run(db_url, scenario)


# -- shutdown releases exactly its claims; the health row; the outbound sender --------------
def test_release_held_releases_only_its_own_claims_and_gives_back_unstarted_attempts(
    db_url: str,
) -> None:
    """A shutdown releases the claims it names, fenced: not a job whose lease ran out and that
    was claimed again (here by a worker of the same name); an unstarted job gets its attempt
    back, one cut short keeps it (as after a crash)."""

    async def scenario(db: Database) -> None:
        unstarted_id = await enqueue(db, "a")
        started_id = await enqueue(db, "b")
        retaken_id = await enqueue(db, "c")
        claims = {j.id: j for j in await claim(db, T0, "w", lease=1.0)}
        async with db.write() as s:  # a and b are kept alive; c's lease runs out
            kept = [claims[unstarted_id], claims[started_id]]
            assert await queue.extend(s, kept, now_us=T0 + SECOND // 2, lease=10.0) == set()
        [again] = await claim(db, T0 + 2 * SECOND, "w", lease=60.0)
        assert (again.id, again.attempts) == (retaken_id, 2)
        at = T0 + 3 * SECOND
        async with db.write() as s:
            released = await queue.release_held(
                s, list(claims.values()), now_us=at, started={started_id}
            )
        assert released == 2
        assert await row(db, unstarted_id) == ("queued", None, None, 0, None, at)
        assert await row(db, started_id) == ("queued", None, None, 1, None, at)
        assert await row(db, retaken_id) == ("running", "w", T0 + 62 * SECOND, 2, None, T0)

    run(db_url, scenario)


def test_a_worker_shut_down_mid_job_keeps_the_attempt_of_the_job_cut_short(
    db_url: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        runs: list[tuple[str, int]] = []
        w = Worker(h.app, worker_id="w", heartbeat_interval=0.02)
        w.handlers["probe"] = probe(runs, "w", asyncio.Event())  # job 1 never ends by itself
        now = h.app.ctx.now_us()
        async with h.app.ctx.db.write() as s:
            first_id = await queue.enqueue(s, "probe", {"n": 1}, now_us=now - 2)
            second_id = await queue.enqueue(s, "probe", {"n": 2}, now_us=now - 1)
        running = asyncio.create_task(w.run_once())
        await wait_for(lambda: asyncio.sleep(0, ("w", 1) in runs), "job 1 to start")
        running.cancel()  # the shutdown timeout ran out
        with pytest.raises(asyncio.CancelledError):
            await running
        await w.shut_down()
        later = h.app.ctx.now_us()
        assert await job_row(h, first_id) == ("queued", None, None, 1, None)  # it ran
        assert await job_row(h, second_id) == ("queued", None, None, 0, None)  # it never did
        assert [r[0] for r in await h.sql("select run_at_us from jobs order by id")] == [
            later,
            later,
        ]
        assert runs == [("w", 1)]

    run_harness(db_url, tmp_path, test)


def test_the_health_row_is_written_during_a_long_batch(db_url: str, tmp_path: Path) -> None:
    """/health/ready reads the worker's heartbeat row; a batch that runs for long (one slow
    job) must not let it go stale: the lease heartbeat writes it too."""

    async def main() -> None:
        async with Harness.open(
            db_url, tmp_path, job_lease_seconds=LEASE, worker_heartbeat_interval=0.01
        ) as h:
            runs: list[tuple[str, int]] = []
            gate = asyncio.Event()
            w = Worker(h.app, worker_id="slow", heartbeat_interval=0.02)
            w.handlers["probe"] = probe(runs, "slow", gate)
            async with h.app.ctx.db.write() as s:
                await queue.enqueue(s, "probe", {"n": 1}, now_us=h.app.ctx.now_us())
            running = asyncio.create_task(w.run_once())
            await wait_for(lambda: asyncio.sleep(0, bool(runs)), "the job to start")
            h.advance(120)  # two minutes into the job
            now = h.app.ctx.now_us()

            async def fresh() -> bool:
                rows = await h.sql(
                    "select beat_us from worker_heartbeats where worker_id = 'slow'"
                )
                return bool(rows) and int(rows[0][0]) >= now

            await wait_for(fresh, "a heartbeat row written at the new time")
            gate.set()
            assert await asyncio.wait_for(running, 30) == 1

    asyncio.run(main())


def outbound_senders() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "DeliveryRunner.run" and not t.done()
    ]


def test_a_worker_cut_short_stops_its_outbound_sender(db_url: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        w = Worker(h.app, worker_id="w", heartbeat_interval=0.02)
        assert outbound_senders() == []
        loop = asyncio.create_task(w.run())

        async def started() -> bool:
            return len(outbound_senders()) == 1

        await wait_for(started, "the outbound sender to start")
        loop.cancel()  # cut short, without stop() first
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(loop, 30)
        assert outbound_senders() == []

    run_harness(db_url, tmp_path, test)


def test_the_outbound_stop_grace_outlasts_a_send() -> None:
    """A send may take PAYMUX_WEBHOOK_TIMEOUT: the grace given at stop is longer (2 s more),
    never under OUTBOUND_STOP_SECONDS (5 s)."""
    assert outbound_stop_seconds(10.0) == 12.0
    assert outbound_stop_seconds(30.0) == 32.0
    assert outbound_stop_seconds(1.0) == 5.0


def test_an_outbound_sender_cut_short_records_the_sends_that_finished(
    db_url: str, tmp_path: Path
) -> None:
    """The sender stops with two sends in flight; one finishes, then the grace runs out and
    the sender is cancelled (as the worker's wait_for does) while the other still hangs. The
    finished one is still recorded (else the delivered event would be sent again) and the
    pool's connections closed. (Before the fix the cancellation skipped both.)"""

    async def main() -> None:
        with Receiver(hold=True) as fast, Receiver(hold=True) as slow:
            async with Harness.open(
                db_url, tmp_path, encryption_keys=generate_key_entry("k1")
            ) as h:
                for rx in (fast, slow):
                    r = await h.post(
                        "/v1/webhook_endpoints",
                        {"url": rx.url, "enabled_events": ["customer.created"]},
                    )
                    assert r.status_code == 200, r.text
                r = await h.post("/v1/customers", {"email": "a@example.com"})
                assert r.status_code == 200, r.text
                runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
                stop = asyncio.Event()
                sender = asyncio.create_task(runner.run(stop))
                await wait_for(
                    lambda: asyncio.sleep(0, bool(fast.requests() and slow.requests())),
                    "both sends to reach their receivers",
                )
                stop.set()  # both sends in flight: the sender waits for them to finish
                await asyncio.sleep(0.05)
                fast.release()
                await wait_for(lambda: asyncio.sleep(0, bool(runner.finished)), "fast's answer")
                sender.cancel()  # the grace ran out while slow's send still hangs
                with pytest.raises(asyncio.CancelledError):
                    await sender
                rows = await h.sql(
                    "select e.url, d.status from webhook_deliveries d"
                    " join webhook_endpoints e on e.id = d.endpoint_id order by e.url"
                )
                assert sorted(tuple(r) for r in rows) == sorted(
                    [(fast.url, "delivered"), (slow.url, "pending")]
                )
                assert runner.finished == []
                assert runner.client._idle == {}  # fast's kept-alive connection closed
                slow.release()

    asyncio.run(main())
