"""The end of a job's life: a job whose last attempt's worker died is buried (listed dead,
never run again, never claimed forever); a replayed webhook event takes its dead job back
to life (one job per event in the admin view); finished jobs are deleted after the retention,
a few at a time, while dead and live ones stay.

paymux's real worker and queue on a real database (SQLite and PostgreSQL), with a clock the
test moves; the gateway is the scripted fake at the connector seam.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from paymux.jobs import queue, worker
from support.databases import migrated_database_fixture
from support.harness import Harness

LEASE = 60.0


db = migrated_database_fixture("jobs")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, job_lease_seconds=LEASE, **kw) as h:
            await test(h)

    asyncio.run(main())


async def add_job(h: Harness, kind: str, payload: dict[str, Any], max_attempts: int) -> int:
    async with h.app.ctx.db.write() as s:
        job_id = await queue.enqueue(
            s, kind, payload, now_us=h.app.ctx.now_us(), max_attempts=max_attempts
        )
    assert job_id is not None
    return job_id


async def claim_and_die(h: Harness) -> list[int]:
    """A worker claims what is due, then dies (it never finishes): its lease runs out."""
    async with h.app.ctx.db.write() as s:
        claimed = await queue.claim(
            s, "doomed-worker", now_us=h.app.ctx.now_us(), limit=10, lease=LEASE
        )
    h.advance(LEASE + 1)
    return [job.id for job in claimed]


async def job_row(h: Harness, job_id: int) -> tuple[str, int, str | None]:
    [(status, attempts, error)] = await h.sql(
        "select status, attempts, last_error from jobs where id = :i", i=job_id
    )
    return str(status), int(attempts), error


# -- (a) a job whose last attempt's worker died ------------------------------------------------
def test_a_job_whose_worker_died_on_its_last_attempt_is_buried_not_run_again(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        ran: list[dict[str, Any]] = []

        async def probe(payload: dict[str, Any], _: Any) -> None:
            ran.append(payload)

        h.worker.handlers["probe"] = probe
        job_id = await add_job(h, "probe", {"n": 1}, max_attempts=2)
        assert await claim_and_die(h) == [job_id]  # attempt 1: the worker died
        assert await claim_and_die(h) == [job_id]  # attempt 2 (the last): died again
        assert await h.worker.run_once() == 1  # claimed once more, only to be buried
        assert ran == []
        status, _, error = await job_row(h, job_id)
        assert status == "dead" and error is not None and "lease expired" in error
        # Not claimed again, however long we wait; and not lost: listed among the dead.
        h.advance(10 * 24 * 3600)
        assert await h.worker.run_once() == 0
        async with h.app.ctx.db.read() as s:
            dead = await queue.list_jobs(s, status="dead")
        assert [j["id"] for j in dead] == [job_id]
        # An operator's retry runs it.
        async with h.app.ctx.db.write() as s:
            await queue.retry_job(s, job_id, now_us=h.app.ctx.now_us())
        assert await h.worker.run_once() == 1
        assert ran == [{"n": 1}]
        assert (await job_row(h, job_id))[0] == "done"

    run(db, tmp_path, test)


def test_a_job_that_fails_on_its_last_attempt_is_dead_and_never_claimed_again(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        calls = 0

        async def boom(payload: dict[str, Any], _: Any) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("boom")

        h.worker.handlers["boom"] = boom
        job_id = await add_job(h, "boom", {}, max_attempts=2)
        for _ in range(5):
            await h.worker.run_once()
            h.advance(3600 + LEASE)  # past any backoff and any lease
        assert calls == 2
        status, attempts, error = await job_row(h, job_id)
        assert (status, attempts) == ("dead", 2) and error == "RuntimeError: boom"

    run(db, tmp_path, test)


async def stored_event(h: Harness) -> str:
    """A gateway event about a payment of ours, stored in the inbox with its job queued and
    not applied yet (``received``); returns the inbox id."""
    r = await h.post(
        "/v1/payment_intents",
        {"amount": 1500, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
    )
    assert r.status_code == 200, r.text
    for event in h.gw.take_webhooks():
        await h.gw.deliver_webhook(h.app.webhooks, event, apply=False)
    rows = await h.sql("select id, status from webhook_inbox order by received_us, id")
    assert rows, "the fake emitted no event"
    assert rows[0][1] == "received"
    return str(rows[0][0])


async def jobs_of(h: Harness, inbox_id: str) -> list[tuple[int, str]]:
    rows = await h.sql("select id, status, payload from jobs where kind = 'apply_webhook'")
    found = []
    for job_id, status, payload in rows:
        data = payload if isinstance(payload, dict) else json.loads(payload)
        if data.get("inbox_id") == inbox_id:
            found.append((int(job_id), str(status)))
    return sorted(found)


def test_an_event_whose_worker_died_on_its_last_attempt_is_marked_dead_for_a_replay(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        inbox_id = await stored_event(h)
        [(job_id, _)] = await jobs_of(h, inbox_id)
        claimed = await claim_and_die(h)
        assert job_id in claimed
        await h.worker.run_once()
        assert await jobs_of(h, inbox_id) == [(job_id, "dead")]
        [(status,)] = await h.sql("select status from webhook_inbox where id = :i", i=inbox_id)
        assert status == "dead"

    run(db, tmp_path, test, webhook_apply_max_attempts=1)


def test_an_event_applied_by_a_worker_that_outran_its_lease_stays_applied_when_buried(
    db: str, tmp_path: Path
) -> None:
    """The worker holding the last attempt was slow, not dead: it applied the event after its
    lease ran out. Another worker buries the job; the event's outcome stays ``applied``
    (it is not listed dead for a replay that would apply it again)."""
    async def test(h: Harness) -> None:
        inbox_id = await stored_event(h)
        [(job_id, _)] = await jobs_of(h, inbox_id)
        assert job_id in await claim_and_die(h)
        await h.app.webhooks.apply(inbox_id)  # the slow worker's own apply, after its lease
        await h.worker.run_once()  # another worker claims the job again: spent, buried
        assert await jobs_of(h, inbox_id) == [(job_id, "dead")]
        [(status,)] = await h.sql("select status from webhook_inbox where id = :i", i=inbox_id)
        assert status == "applied"

    run(db, tmp_path, test, webhook_apply_max_attempts=1)


# -- (b) replaying a dead event revives its job ----------------------------------------------
def test_replaying_a_dead_event_revives_its_job_and_leaves_no_dead_one(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        inbox_id = await stored_event(h)
        [(job_id, _)] = await jobs_of(h, inbox_id)
        # Its job failed its last attempt: the worker buried it and marked the event dead.
        async with h.app.ctx.db.write() as s:
            claimed = await queue.claim(s, "w", now_us=h.app.ctx.now_us(), limit=10)
            [job] = [j for j in claimed if j.id == job_id]
            await queue.fail(s, job, "RuntimeError: boom", now_us=h.app.ctx.now_us())
            await h.app.webhooks.mark_dead(s, inbox_id, "RuntimeError: boom")
        assert await jobs_of(h, inbox_id) == [(job_id, "dead")]
        assert await h.app.webhooks.replay(event_id=inbox_id) == [inbox_id]
        assert await jobs_of(h, inbox_id) == [(job_id, "queued")]
        await h.drain()
        assert await jobs_of(h, inbox_id) == [(job_id, "done")]
        [(status,)] = await h.sql("select status from webhook_inbox where id = :i", i=inbox_id)
        assert status == "applied"
        async with h.app.ctx.db.read() as s:
            assert await queue.list_jobs(s, status="dead") == []

    run(db, tmp_path, test, webhook_apply_max_attempts=1)


def test_replaying_an_applied_event_queues_one_new_job(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        inbox_id = await stored_event(h)
        await h.drain()
        [(first, status)] = await jobs_of(h, inbox_id)
        assert status == "done"
        assert await h.app.webhooks.replay(event_id=inbox_id) == [inbox_id]
        await h.drain()
        jobs = await jobs_of(h, inbox_id)
        assert [s for _, s in jobs] == ["done", "done"] and jobs[0][0] == first

    run(db, tmp_path, test)


# -- (c) finished jobs are deleted after the retention -------------------------------------------
RETENTION = 3600.0


def test_finished_jobs_are_pruned_after_the_retention_in_small_batches(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "PRUNE_BATCH", 3)
    monkeypatch.setattr(worker, "PRUNE_BATCHES", 2)

    async def test(h: Harness) -> None:
        async def nothing(payload: dict[str, Any], _: Any) -> None:
            return None

        async def boom(payload: dict[str, Any], _: Any) -> None:
            raise RuntimeError("boom")

        h.worker.handlers["nothing"] = nothing
        h.worker.handlers["boom"] = boom
        old_done = [await add_job(h, "nothing", {"i": i}, max_attempts=3) for i in range(7)]
        dead = await add_job(h, "boom", {}, max_attempts=1)
        assert await h.worker.run_once() == 8
        async with h.app.ctx.db.write() as s:  # waiting a long time: never pruned
            waiting = await queue.enqueue(
                s, "nothing", {}, now_us=h.app.ctx.now_us(), delay=100 * RETENTION
            )
        h.advance(RETENTION - 1)
        recent = await add_job(h, "nothing", {"recent": True}, max_attempts=3)
        assert await h.worker.run_once() == 1
        assert await h.worker.prune_jobs() == 0  # nothing is past the retention yet

        h.advance(2)
        assert await h.worker.prune_jobs() == 6  # two batches of three, then the next sweep
        assert await h.worker.prune_jobs() == 1
        assert await h.worker.prune_jobs() == 0
        left = {int(i): str(s) for i, s in await h.sql("select id, status from jobs")}
        assert not set(old_done) & set(left)
        assert left == {dead: "dead", waiting: "queued", recent: "done"}
        # The sweep does it too.
        h.advance(RETENTION)
        await h.worker.sweep()
        left_now = await h.sql("select kind, status, payload from jobs where kind <> :k",
                               k="purge_idempotency_keys")  # the sweep queues a purge
        assert sorted((str(k), str(s)) for k, s, _ in left_now) == [
            ("boom", "dead"), ("nothing", "queued")
        ]

    run(db, tmp_path, test, job_retention_seconds=RETENTION)
