"""The durable jobs queue on SQLite and PostgreSQL, driven directly (no server): enqueue,
claim, complete, back off, bury, dedupe (held only by live jobs), lease expiry, concurrent
claimers, the claim's query plan, listing and retrying jobs, the 0003 migration on existing
rows; and the authorization-expiry job through the library with a frozen clock.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import database_url, migrated_database_url
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.domain.errors import PaymuxError
from paymux.jobs import queue
from paymux.jobs.worker import Worker
from paymux.services import Paymux
from paymux.services.payments import CreateParams
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import GatewayAttempt, Job
from support.pgcluster import PgCluster

T0 = 1_700_000_000_000_000  # a fixed "now", in microseconds
SECOND = 1_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"jobs_{uuid.uuid4().hex[:12]}")
    return url


def run(url: str, scenario: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = Database(url, pool_size=4)
        try:
            await scenario(db)
        finally:
            await db.dispose()

    asyncio.run(main())


async def enqueue(
    db: Database, kind: str = "k", payload: dict[str, Any] | None = None, **kw: Any
) -> int | None:
    async with db.write() as s:
        return await queue.enqueue(s, kind, payload or {}, **{"now_us": T0, **kw})


async def claim(
    db: Database, at: int, worker: str = "w1", limit: int = 10, lease: float = 60.0
) -> list[queue.ClaimedJob]:
    async with db.write() as s:
        return await queue.claim(s, worker, now_us=at, limit=limit, lease=lease)


async def jobs(db: Database) -> list[Job]:
    async with db.read() as s:
        return list((await s.execute(select(Job).order_by(Job.id))).scalars())


def test_enqueue_claim_complete(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        await enqueue(db, "settle_attempt", {"attempt_id": "att_1"})
        await enqueue(db, "later", delay=10)
        assert await claim(db, T0 - 1) == []  # not due yet
        [job] = await claim(db, T0)
        assert (job.kind, job.payload, job.attempts) == (
            "settle_attempt",
            {"attempt_id": "att_1"},
            1,
        )
        assert job.max_attempts == 10
        [row, _] = await jobs(db)
        assert (row.status, row.locked_by, row.locked_until_us) == (
            "running",
            "w1",
            T0 + 60 * SECOND,
        )
        assert await claim(db, T0 + SECOND, "w2") == []  # running, lease still held
        async with db.write() as s:
            await queue.complete(s, job, now_us=T0 + SECOND)
        [row, later] = await jobs(db)
        assert (row.status, row.locked_by, row.locked_until_us) == ("done", None, None)
        assert later.status == "queued" and later.run_at_us == T0 + 10 * SECOND
        [due] = await claim(db, T0 + 10 * SECOND)
        assert due.kind == "later"
        async with db.write() as s:
            await queue.complete(s, due, now_us=T0 + 11 * SECOND)
        assert await claim(db, T0 + 3600 * SECOND) == []  # done jobs are never claimed again

    run(db_url, scenario)


def test_a_failed_job_backs_off_and_is_buried_after_max_attempts(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        await enqueue(db, "flaky", max_attempts=3)
        now = T0
        for attempt in (1, 2, 3):
            [job] = await claim(db, now)
            assert job.attempts == attempt
            async with db.write() as s:
                status = await queue.fail(s, job, f"boom {attempt}", now_us=now)
            [row] = await jobs(db)
            assert row.attempts == attempt and row.last_error == f"boom {attempt}"
            assert row.locked_by is None and row.locked_until_us is None
            if attempt < 3:
                assert status == row.status == "queued"
                ceiling = 2 ** (attempt - 1) * SECOND  # backoff_seconds(attempt) <= 2^(n-1) s
                assert now <= row.run_at_us <= now + ceiling
                if row.run_at_us > now:
                    assert await claim(db, row.run_at_us - 1) == []
                now = row.run_at_us
            else:
                assert status == row.status == "dead"
        assert await claim(db, now + 10**6 * SECOND) == []  # the dead stay buried

    run(db_url, scenario)


def test_an_explicit_delay_overrides_the_backoff(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        await enqueue(db)
        [job] = await claim(db, T0)
        async with db.write() as s:
            await queue.fail(s, job, "rate limited", now_us=T0, delay=30)
        [row] = await jobs(db)
        assert row.run_at_us == T0 + 30 * SECOND
        assert await claim(db, T0 + 29 * SECOND) == []
        [again] = await claim(db, T0 + 30 * SECOND)
        assert again.attempts == 2

    run(db_url, scenario)


def test_a_dedupe_key_makes_a_second_enqueue_a_no_op_while_its_job_is_queued(
    db_url: str,
) -> None:
    async def scenario(db: Database) -> None:
        first = await enqueue(db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a")
        again = await enqueue(
            db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a", delay=5
        )
        assert isinstance(first, int) and again is None
        async with db.write() as s:  # again and again in one transaction, on one connection
            assert await queue.enqueue(s, "x", {}, now_us=T0, dedupe_key="x") is not None
            # PostgreSQL plans a prepared statement generically from its sixth run: the
            # ON CONFLICT target must still name the partial index then.
            for _ in range(8):
                assert await queue.enqueue(s, "x", {}, now_us=T0, dedupe_key="x") is None
        await enqueue(db, "plain")
        await enqueue(db, "plain")  # no key: no dedupe
        rows = await jobs(db)
        assert [(r.kind, r.dedupe_key) for r in rows] == [
            ("settle_attempt", "settle:a"),
            ("x", "x"),
            ("plain", None),
            ("plain", None),
        ]
        assert rows[0].id == first and rows[0].run_at_us == T0  # the first one stands

    run(db_url, scenario)


def test_a_dedupe_key_is_free_again_once_its_job_is_done(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        first = await enqueue(db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a")
        [job] = await claim(db, T0)
        assert job.id == first
        # running: the key is still held
        assert await enqueue(db, "settle_attempt", dedupe_key="settle:a") is None
        async with db.write() as s:
            await queue.complete(s, job, now_us=T0 + SECOND)
        second = await enqueue(
            db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a", now_us=T0 + 2
        )
        assert second is not None and second != first
        assert await enqueue(db, "settle_attempt", dedupe_key="settle:a") is None
        rows = await jobs(db)
        assert [(r.id, r.status, r.dedupe_key) for r in rows] == [
            (first, "done", "settle:a"),
            (second, "queued", "settle:a"),
        ]
        [again] = await claim(db, T0 + 2)
        assert (again.id, again.attempts, again.payload) == (second, 1, {"attempt_id": "a"})

    run(db_url, scenario)


def test_a_dead_job_does_not_block_a_new_one_with_its_key(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        dead = await enqueue(db, "expire_authorization", dedupe_key="expire:pi_1", max_attempts=1)
        [job] = await claim(db, T0)
        async with db.write() as s:
            assert await queue.fail(s, job, "gateway down", now_us=T0) == "dead"
        fresh = await enqueue(db, "expire_authorization", dedupe_key="expire:pi_1")
        assert fresh is not None and fresh != dead
        statuses = {r.id: r.status for r in await jobs(db)}
        assert statuses == {dead: "dead", fresh: "queued"}

    run(db_url, scenario)


def test_two_transactions_enqueueing_one_key_at_once_make_one_job(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        results: list[int | None] = []

        async def one(pause: float) -> None:
            async with db.write() as s:
                results.append(await queue.enqueue(s, "k", {}, now_us=T0, dedupe_key="same"))
                await asyncio.sleep(pause)  # hold the transaction open

        await asyncio.gather(one(0.3), one(0.0))
        assert len(results) == 2 and results.count(None) == 1
        assert [(r.kind, r.dedupe_key) for r in await jobs(db)] == [("k", "same")]

    run(db_url, scenario)


def test_a_job_whose_lease_expired_is_claimed_again(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        await enqueue(db, "long")
        [first] = await claim(db, T0, "dead-worker", lease=1.0)
        assert await claim(db, T0 + SECOND - 1, "w2") == []
        assert await claim(db, T0 + SECOND, "w2") == []  # the lease runs until T0 + 1 s
        [second] = await claim(db, T0 + SECOND + 1, "w2")
        assert second.id == first.id and second.attempts == 2
        [row] = await jobs(db)
        assert row.locked_by == "w2" and row.status == "running"

    run(db_url, scenario)


def test_two_concurrent_claimers_never_claim_a_job_twice(db_url: str) -> None:
    total = 500

    async def fill(db: Database) -> None:
        async with db.write() as s:
            for i in range(total):
                await queue.enqueue(s, "n", {"i": i}, now_us=T0)

    run(db_url, fill)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)
    # Both claimers hold a first batch before either drains the rest: on SQLite one writer can
    # otherwise take every batch while the other waits for the lock (CI saw that once).
    first_batches = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def drain(name: str) -> None:
        async def main(db: Database) -> None:
            barrier.wait()
            first = True
            while True:
                batch = await claim(db, T0, name, limit=7)
                if first:
                    first = False
                    first_batches.wait()
                if not batch:
                    return
                claimed[name].extend(job.id for job in batch)
                async with db.write() as s:
                    for job in batch:
                        await queue.complete(s, job, now_us=T0)

        try:
            run(db_url, main)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    a, b = claimed["a"], claimed["b"]
    assert len(a) == len(set(a)) and len(b) == len(set(b))
    assert not set(a) & set(b)
    assert len(a) + len(b) == total
    assert a and b, "both claimers should have taken part"

    async def check(db: Database) -> None:
        rows = await jobs(db)
        assert {r.status for r in rows} == {"done"}
        assert {r.attempts for r in rows} == {1}
        assert sorted(a + b) == [r.id for r in rows]

    run(db_url, check)


@settings(max_examples=300, deadline=None)
@given(
    attempts=st.integers(min_value=-5, max_value=5000),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=1e6),
)
def test_backoff_stays_within_its_bounds(attempts: int, base: float, cap: float) -> None:
    wait = queue.backoff_seconds(attempts, base=base, cap=cap)
    assert 0.0 <= wait <= cap
    if attempts <= 1:
        assert wait <= base
    elif attempts < 60:
        assert wait <= base * 2 ** (attempts - 1)


def test_backoff_defaults_grow_to_an_hour_at_most() -> None:
    assert queue.backoff_seconds(1) <= 1.0
    assert all(queue.backoff_seconds(n) <= 3600.0 for n in range(0, 2000, 7))


# -- the claim: ordered, bounded, indexed ----------------------------------------------------


def test_a_claim_takes_expired_leases_first_then_due_jobs_in_run_at_order(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        lost = await enqueue(db, "lost", now_us=T0)
        busy = await enqueue(db, "busy", now_us=T0 + 1)
        buried = await enqueue(db, "buried", now_us=T0 + 2)
        async with db.write() as s:
            [j1] = await queue.claim(s, "w0", now_us=T0 + 2, limit=1, lease=1.0)
            [j2] = await queue.claim(s, "w0", now_us=T0 + 2, limit=1, lease=60.0)
            await s.execute(update(Job).where(Job.id == buried).values(status="dead"))
        assert (j1.id, j2.id) == (lost, busy)
        done = await enqueue(db, "done", now_us=T0 + 3)
        [d] = await claim(db, T0 + 3)
        assert d.id == done
        async with db.write() as s:
            await queue.complete(s, d, now_us=T0 + 3)
        due = {offset: await enqueue(db, f"due+{offset}", delay=offset) for offset in (5, 3, 4, 50)}
        early = await enqueue(db, "early", now_us=T0 - 5 * SECOND)  # due before lost's run_at
        # At T0 + 10 s: lost's lease (to T0 + 1 s) ran out, busy's (to T0 + 60 s) holds.
        now = T0 + 10 * SECOND
        [first] = await claim(db, now, "w1", limit=1)
        assert (first.id, first.attempts) == (lost, 2)  # an expired lease before any due job
        second = await claim(db, now, "w1", limit=2)
        assert {j.id: j.attempts for j in second} == {early: 1, due[3]: 1}
        third = await claim(db, now, "w1", limit=2)
        assert {j.id for j in third} == {due[4], due[5]}
        assert await claim(db, now, "w1", limit=10) == []  # busy, dead, done, not due yet
        [late] = await claim(db, T0 + 50 * SECOND, "w1", limit=10)
        assert late.id == due[50]
        assert await claim(db, T0 + 63 * SECOND, "w1", limit=0) == []
        # busy's lease ran out at T0 + 60 s; w1's leases (from T0 + 10 s) hold until T0 + 70 s
        [again] = await claim(db, T0 + 63 * SECOND, "w2", limit=10)
        assert (again.id, again.attempts) == (busy, 2)

    run(db_url, scenario)


def test_the_claim_reads_an_index_range_and_never_sorts_the_backlog(db_url: str) -> None:
    """The plan of every statement a claim sends: each condition is one range of
    ix_jobs_status_run_at read in order and cut at the limit, so the cost does not grow with
    the number of due jobs (the former single query OR-ed both conditions: PostgreSQL sorted
    every due job, SQLite merged two index searches with MULTI-INDEX OR before sorting)."""
    postgres = db_url.startswith("postgresql")

    async def scenario(db: Database) -> None:
        async with db.write() as s:  # 6,000 jobs: half queued and due, half done
            await s.execute(
                insert(Job),
                [
                    {
                        "kind": "n", "payload": {}, "status": "done" if i % 2 else "queued",
                        "run_at_us": T0 + i, "attempts": 0, "max_attempts": 10,
                        "created_us": T0, "updated_us": T0,
                    }
                    for i in range(6000)
                ],
            )
            await s.execute(text("ANALYZE jobs" if postgres else "ANALYZE"))
        sent: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "jobs" in statement and not statement.lstrip().upper().startswith("EXPLAIN"):
                sent.append((statement, parameters))

        event.listen(db.writer.sync_engine, "before_cursor_execute", capture)
        try:
            claimed = await claim(db, T0 + 10 * SECOND, limit=10)
        finally:
            event.remove(db.writer.sync_engine, "before_cursor_execute", capture)
        assert sorted(j.id for j in claimed) == list(range(1, 20, 2))  # the 10 oldest due
        async with db.read() as s:
            conn = await s.connection()
            if postgres:
                selects = [(q, p) for q, p in sent if q.lstrip().upper().startswith("SELECT")]
                for statement, params in selects:
                    plan = (await conn.exec_driver_sql("EXPLAIN " + statement, params)).all()
                    lines = [row[0] for row in plan]
                    assert lines[0].startswith("Limit"), lines
                    assert not any("Sort" in line for line in lines), lines
                    assert any("Index Scan using ix_jobs_status_run_at" in ln for ln in lines), lines
                assert len(selects) == 2  # one per condition
            else:
                [(statement, params)] = sent
                plan = (
                    await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                ).all()
                details = [row[3] for row in plan]
                assert "MULTI-INDEX OR" not in details, details
                assert not any(d.startswith("SCAN jobs") for d in details), details
                searches = [d for d in details if d.startswith("SEARCH jobs USING")]
                assert len(searches) == 3, details  # the UPDATE by rowid + one per condition
                assert sum("ix_jobs_status_run_at" in d for d in searches) == 2, details

    run(db_url, scenario)


# -- operating: list and retry -------------------------------------------------------------


async def make_dead(db: Database, kind: str, error: str = "boom", **kw: Any) -> int:
    """A job that failed its last attempt (as fail() leaves it: attempts 1 of 1, at T0 + 1 s)."""
    job_id = await enqueue(db, kind, {"n": 1}, max_attempts=1, **kw)
    assert job_id is not None
    async with db.write() as s:
        await s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="dead", attempts=1, last_error=error, updated_us=T0 + SECOND)
        )
    return job_id


def test_list_jobs_filters_by_status_and_kind_newest_change_first(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        a = await make_dead(db, "settle_attempt", "first failure")
        b = await make_dead(db, "expire_authorization", "second failure")
        c = await enqueue(db, "settle_attempt")
        async with db.write() as s:  # b changed last: it comes first
            await s.execute(update(Job).where(Job.id == b).values(updated_us=T0 + 9 * SECOND))
        async with db.read() as s:
            dead = await queue.list_jobs(s, status="dead")
            settle = await queue.list_jobs(s, kind="settle_attempt")
            dead_settle = await queue.list_jobs(s, status="dead", kind="settle_attempt")
            everything = await queue.list_jobs(s)
            one = await queue.list_jobs(s, limit=1)
            none = await queue.list_jobs(s, status="running")
        assert [j["id"] for j in dead] == [b, a]
        assert [j["id"] for j in settle] == [a, c]  # updated at T0 + 1 s and at T0
        assert [j["id"] for j in dead_settle] == [a]
        assert [j["id"] for j in everything] == [b, a, c]
        assert [j["id"] for j in one] == [b] and none == []
        async with db.read() as s:
            page = await queue.list_jobs_page(s, status="dead", limit=2)
            more = await queue.list_jobs_page(s, status="dead", limit=1)
        assert ([j["id"] for j in page[0]], page[1]) == ([b, a], False)
        assert ([j["id"] for j in more[0]], more[1]) == ([b], True)
        assert dead[1] == {
            "id": a, "object": "job", "kind": "settle_attempt", "status": "dead",
            "payload": {"n": 1}, "dedupe_key": None, "attempts": 1, "max_attempts": 1,
            "last_error": "first failure", "locked_by": None, "run_at": T0 // SECOND,
            "locked_until": None, "created": T0 // SECOND, "updated": T0 // SECOND + 1,
        }
        async with db.read() as s:
            for bad in ({"status": "buried"}, {"limit": 0}, {"limit": 1001}):
                with pytest.raises(PaymuxError) as err:
                    await queue.list_jobs(s, **bad)
                assert err.value.code == "parameter_invalid"
                assert err.value.param == next(iter(bad))

    run(db_url, scenario)


def test_a_job_buried_by_the_queue_is_listed_and_retried(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        job_id = await enqueue(db, "settle_attempt", {"attempt_id": "att_1"}, max_attempts=2)
        now = T0
        for _ in range(2):
            [job] = await claim(db, now)
            async with db.write() as s:
                status = await queue.fail(s, job, "gateway timeout", now_us=now, delay=1)
            now += 2 * SECOND
        assert status == "dead"
        async with db.read() as s:
            [listed] = await queue.list_jobs(s, status="dead")
        assert (listed["id"], listed["attempts"], listed["last_error"]) == (
            job_id, 2, "gateway timeout"
        )
        at = T0 + 3600 * SECOND
        async with db.write() as s:
            view = await queue.retry_job(s, job_id, now_us=at)
        assert (view["id"], view["status"], view["attempts"], view["run_at"]) == (
            job_id, "queued", 0, at // SECOND
        )
        assert view["last_error"] == "gateway timeout"  # kept until the next attempt
        [row] = await jobs(db)
        assert (row.status, row.attempts, row.run_at_us, row.updated_us) == (
            "queued", 0, at, at
        )
        assert (row.locked_by, row.locked_until_us) == (None, None)
        assert await claim(db, at - 1) == []
        [again] = await claim(db, at)
        assert (again.id, again.attempts, again.max_attempts) == (job_id, 1, 2)
        async with db.write() as s:
            await queue.complete(s, again, now_us=at)
        assert [(r.status, r.attempts) for r in await jobs(db)] == [("done", 1)]

    run(db_url, scenario)


def test_retry_refuses_what_is_not_a_dead_job(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        queued = await enqueue(db, "k", delay=60)
        running = await enqueue(db, "k", delay=60)
        done = await enqueue(db, "k", delay=60)
        webhook = await make_dead(db, "apply_webhook", "not stored yet")
        async with db.write() as s:
            await s.execute(
                update(Job)
                .where(Job.id == running)
                .values(status="running", locked_by="w", locked_until_us=T0 + 60 * SECOND)
            )
            await s.execute(update(Job).where(Job.id == done).values(status="done"))
            await s.execute(
                update(Job).where(Job.id == webhook).values(payload={"inbox_id": "we_123"})
            )
        before = [(j.id, j.status, j.attempts, j.run_at_us) for j in await jobs(db)]
        cases = [
            (queued, "job_unexpected_state", 400, f"Job {queued} is queued, not dead"),
            (running, "job_unexpected_state", 400, f"Job {running} is running, not dead"),
            (done, "job_unexpected_state", 400, f"Job {done} is done, not dead"),
            (webhook, "job_not_retryable", 400, "paymux webhooks replay we_123"),
            (424242, "resource_missing", 404, "No such job: 424242"),
            (0, "resource_missing", 404, "No such job: 0"),
            (-1, "resource_missing", 404, "No such job: -1"),
            (2**63, "resource_missing", 404, f"No such job: {2**63}"),  # past BIGINT
        ]
        for job_id, code, http_status, message in cases:
            with pytest.raises(PaymuxError) as err:
                async with db.write() as s:
                    await queue.retry_job(s, job_id, now_us=T0 + 99 * SECOND)
            assert (err.value.code, err.value.http_status, err.value.param) == (
                code, http_status, "id"
            )
            assert message in err.value.message
        after = [(j.id, j.status, j.attempts, j.run_at_us) for j in await jobs(db)]
        assert after == before
        retried = await make_dead(db, "k")
        async with db.write() as s:
            await queue.retry_job(s, retried, now_us=T0)
        with pytest.raises(PaymuxError) as twice:
            async with db.write() as s:
                await queue.retry_job(s, retried, now_us=T0)
        assert twice.value.code == "job_unexpected_state"
        assert f"Job {retried} is queued, not dead" in twice.value.message

    run(db_url, scenario)


def test_retry_refuses_a_dead_job_whose_key_a_live_job_holds(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        dead = await make_dead(db, "settle_attempt", "gave up", dedupe_key="settle:att_9")
        live = await enqueue(db, "settle_attempt", dedupe_key="settle:att_9", delay=60)
        assert live is not None
        with pytest.raises(PaymuxError) as err:
            async with db.write() as s:
                await queue.retry_job(s, dead, now_us=T0 + 2 * SECOND)
        assert (err.value.code, err.value.http_status) == ("job_dedupe_conflict", 409)
        assert f"job {live} " in err.value.message and "settle:att_9" in err.value.message
        rows = {r.id: (r.status, r.attempts) for r in await jobs(db)}
        assert rows == {dead: ("dead", 1), live: ("queued", 0)}
        # once the live one is done, the dead one can be retried
        [job] = await claim(db, T0 + 60 * SECOND)
        assert job.id == live
        async with db.write() as s:
            await queue.complete(s, job, now_us=T0 + 61 * SECOND)
            view = await queue.retry_job(s, dead, now_us=T0 + 62 * SECOND)
        assert (view["status"], view["attempts"]) == ("queued", 0)

    run(db_url, scenario)


# -- the migration on a database with jobs in it ----------------------------------------------


def test_migration_0003_keeps_the_jobs_and_frees_the_keys_of_finished_ones(
    tmp_path: Path, pg_cluster: PgCluster | None, backend: str
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"jobs_mig_{uuid.uuid4().hex[:12]}")
    upgrade(url, "0002")
    rows = [
        ("done", "expire:pi_done"),
        ("dead", "settle:att_dead"),
        ("queued", "settle:att_queued"),
        ("running", "expire:pi_running"),
        ("queued", None),
        ("queued", None),
    ]

    async def seed() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            for i, (status, key) in enumerate(rows):
                await conn.execute(
                    text(
                        "INSERT INTO jobs (kind, payload, dedupe_key, status, run_at_us, "
                        "attempts, max_attempts, created_us, updated_us) VALUES "
                        "('k', '{}', :key, :status, :at, 1, 10, :at, :at)"
                    ),
                    {"key": key, "status": status, "at": T0 + i},
                )
        await engine.dispose()

    asyncio.run(seed())
    upgrade(url)

    async def scenario(db: Database) -> None:
        before = [(r.status, r.dedupe_key) for r in await jobs(db)]
        assert before == rows
        assert await enqueue(db, dedupe_key="expire:pi_done") is not None
        assert await enqueue(db, dedupe_key="settle:att_dead") is not None
        assert await enqueue(db, dedupe_key="settle:att_queued") is None
        assert await enqueue(db, dedupe_key="expire:pi_running") is None
        assert len(await jobs(db)) == len(rows) + 2

    run(url, scenario)


# -- the authorization-expiry job -----------------------------------------------------------


def test_an_uncaptured_authorization_is_canceled_after_the_expiry(
    db_url: str, tmp_path: Path
) -> None:
    config = Settings(
        database_url=db_url,
        sandbox_db=str(tmp_path / "sandbox.db"),
        run_worker=False,
        log_json=False,
    )
    expiry = config.authorization_expiry_seconds
    clock = FrozenClock(T0)

    async def scenario() -> None:
        app = Paymux(config, clock=clock)
        try:
            account = (await app.accounts.create_key()).account_id
            pi = await app.payments.create(
                account,
                CreateParams(
                    amount=5000,
                    currency="usd",
                    capture_method="manual",
                    payment_method="pm_card_visa",
                    confirm=True,
                ),
            )
            assert pi["status"] == "requires_capture"
            sandbox = app.ctx.gateways.sandbox()
            assert sandbox is not None
            [charge] = sandbox.processor.charges_for(pi["id"])
            assert charge["status"] == "requires_capture"
            worker = Worker(app, worker_id="test-worker")

            clock.advance(expiry - 1)  # not yet
            await worker.sweep()
            await worker.run_once()
            still = await app.payments.retrieve(account, pi["id"])
            assert still["status"] == "requires_capture"

            clock.advance(2)  # past the expiry
            await worker.sweep()
            assert await worker.run_once() >= 1
            done = await app.payments.retrieve(account, pi["id"])
            assert done["status"] == "canceled"
            assert done["cancellation_reason"] == "automatic"
            assert done["amount_capturable"] == 0 and done["amount_received"] == 0
            [charge] = sandbox.processor.charges_for(pi["id"])
            assert charge["status"] == "canceled"
            async with app.ctx.db.read() as s:
                ops = (
                    await s.execute(
                        select(GatewayAttempt.operation, GatewayAttempt.status)
                        .where(GatewayAttempt.object_id == pi["id"])
                        .order_by(GatewayAttempt.created_us)
                    )
                ).all()
                expire_jobs = (
                    (await s.execute(select(Job.status).where(Job.kind == "expire_authorization")))
                    .scalars()
                    .all()
                )
            assert [tuple(o) for o in ops] == [("authorize", "settled"), ("cancel", "settled")]
            assert list(expire_jobs) == ["done"]
            events, _ = await app.events.list_page(
                account, limit=100, starting_after=None, ending_before=None, object_id=pi["id"]
            )
            assert [e["type"] for e in events].count("payment_intent.canceled") == 1

            clock.advance(3600)  # later sweeps find nothing more to do
            await worker.sweep()
            await worker.run_once()
            assert len(sandbox.processor.charges_for(pi["id"])) == 1
            async with app.ctx.db.read() as s:
                count = len(
                    (
                        await s.execute(select(Job.id).where(Job.kind == "expire_authorization"))
                    ).all()
                )
            assert count == 1
        finally:
            await app.close()

    asyncio.run(scenario())
