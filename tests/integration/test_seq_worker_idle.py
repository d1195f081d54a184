"""An idle worker looks before it claims (issue 10, what a request waits on).

A claim is a write transaction: on SQLite it takes the one write lock the API's writes wait
for, on PostgreSQL it is five round trips. An idle worker polls every
PAYMUX_WORKER_POLL_INTERVAL (five times a second by default), so while nothing is due its
loop reads first (``queue.any_due``, one statement outside any transaction) and claims only
when the read finds a job: a queued job that is due, or a running one whose lease ran out.
A job not yet due is left alone; a backlog is claimed round after round without the read.

In process (``support.harness``: the real services and worker loop on a real database, the
scripted fake provider at the connector seam, a frozen clock): the claims the loop made,
counted round by round, and the jobs' rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.jobs import queue
from support.harness import Harness
from support.pgcluster import PgCluster

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ROUNDS = 20  # idle rounds of the loop watched at a time


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    backend = str(request.param)
    name = f"idle_{request.node.name.split('[')[0][-20:]}_{backend}".replace("-", "_")
    return migrated_database_url(backend, tmp_path, pg_cluster, name)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):  # 10 s at most
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def job_row(h: Harness, job_id: int) -> tuple[str, int]:
    rows = await h.sql("select status, attempts from jobs where id = :id", id=job_id)
    return rows[0][0], rows[0][1]


def test_an_idle_worker_claims_only_what_is_due(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[int] = []  # jobs each claim returned
    rounds = [0]  # the loop's rounds (each begins with the worker's heartbeat)
    claim = queue.claim

    async def counted_claim(*args: Any, **kwargs: Any) -> list[queue.ClaimedJob]:
        jobs = await claim(*args, **kwargs)
        claims.append(len(jobs))
        return jobs

    monkeypatch.setattr(queue, "claim", counted_claim)

    async def main() -> None:
        async with Harness.open(
            url, tmp_path, worker_poll_interval=0.01, maintenance_interval=3600
        ) as h:
            beat = h.worker.beat.beat

            async def counted_beat(*args: Any, **kwargs: Any) -> bool:
                rounds[0] += 1
                return await beat(*args, **kwargs)

            monkeypatch.setattr(h.worker.beat, "beat", counted_beat)
            db, now = h.app.ctx.db, h.app.ctx.now_us()

            async def idle_rounds() -> None:
                start = rounds[0]
                await until(lambda: _past(rounds, start + ROUNDS), f"{ROUNDS} rounds")

            async def enqueue(delay: float = 0.0) -> int:
                async with db.write() as s:
                    await queue.enqueue(s, "purge_idempotency_keys", {}, now_us=now, delay=delay)
                rows = await h.sql("select max(id) from jobs")
                return int(rows[0][0])

            task = asyncio.create_task(h.worker.run())
            try:
                # The first round claims (the sweep enqueued the hourly purge, not yet due);
                # then, with nothing due, no claim at all.
                await idle_rounds()
                assert claims == [0]

                later = await enqueue(delay=3600)  # not due: left alone
                await idle_rounds()
                assert claims == [0]
                assert await job_row(h, later) == ("queued", 0)

                due = await enqueue()  # due now: claimed and run
                await until(lambda: _status(h, due, "done"), "the due job done")
                assert claims[1:2] == [1]

                # A job whose worker's lease ran out (a worker that died claimed it two
                # minutes ago with a 60 s lease; enqueued and claimed in one transaction, so
                # this loop never saw it queued): claimed again and run, its second attempt.
                async with db.write() as s:
                    await queue.enqueue(s, "purge_idempotency_keys", {}, now_us=now - 120_000_000)
                    taken = await claim(
                        s, "dead-worker", now_us=now - 120_000_000, limit=10, lease=60
                    )
                assert len(taken) == 1
                stale = taken[0].id
                await until(lambda: _status(h, stale, "done"), "the stale job done")
                assert await job_row(h, stale) == ("done", 2)
                await idle_rounds()  # the round after a job ran claims once more (a backlog?)
                after = len(claims)
                await idle_rounds()
                assert claims[after:] == []
                assert await job_row(h, later) == ("queued", 0)
            finally:
                h.worker.stop()
                await task
                await h.worker.shut_down()

    asyncio.run(main())


async def _past(rounds: list[int], target: int) -> bool:
    return rounds[0] >= target


async def _status(h: Harness, job_id: int, status: str) -> bool:
    return (await job_row(h, job_id))[0] == status
