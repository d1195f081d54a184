"""The durable jobs queue on SQLite and PostgreSQL, driven directly (no server): enqueue,
claim, complete, back off, bury, dedupe, lease expiry, concurrent claimers; and the
authorization-expiry job through the library with a frozen clock.
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
from sqlalchemy import select

from conftest import database_url
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
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
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    url = database_url(request.param, tmp_path, pg_cluster, f"jobs_{uuid.uuid4().hex[:12]}")
    upgrade(url)  # outside any event loop
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
) -> None:
    async with db.write() as s:
        await queue.enqueue(s, kind, payload or {}, **{"now_us": T0, **kw})


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


def test_a_dedupe_key_makes_a_second_enqueue_a_no_op(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        await enqueue(db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a")
        await enqueue(db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a", delay=5)
        async with db.write() as s:  # twice in one transaction too
            await queue.enqueue(s, "x", {}, now_us=T0, dedupe_key="x")
            await queue.enqueue(s, "x", {}, now_us=T0, dedupe_key="x")
        await enqueue(db, "plain")
        await enqueue(db, "plain")  # no key: no dedupe
        rows = await jobs(db)
        assert [(r.kind, r.dedupe_key) for r in rows] == [
            ("settle_attempt", "settle:a"),
            ("x", "x"),
            ("plain", None),
            ("plain", None),
        ]
        assert rows[0].run_at_us == T0  # the first one stands, untouched
        claimed = await claim(db, T0)
        async with db.write() as s:
            for job in claimed:
                await queue.complete(s, job, now_us=T0)
        await enqueue(db, "settle_attempt", {"attempt_id": "a"}, dedupe_key="settle:a")
        assert len(await jobs(db)) == 4  # still a no-op once the first is done

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
    errors: list[BaseException] = []

    def drain(name: str) -> None:
        async def main(db: Database) -> None:
            barrier.wait()
            while True:
                batch = await claim(db, T0, name, limit=7)
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
