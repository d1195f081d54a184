"""A backlog of webhook events is claimed in large batches on PostgreSQL (issue 10, the worker
drain): a claim that comes back full of apply_webhook jobs is topped up, in its transaction,
with more of them (up to ``APPLY_BATCH`` per concurrent apply transaction), whatever
PAYMUX_WORKER_BATCH_SIZE is; a claim holding another kind of job is not (a job waiting its
turn holds its lease), and SQLite is never topped up (a batch's transaction holds the one
write lock the API waits for).

In process (``support.harness``: the real services and worker on a real database, the
scripted fake provider at the connector seam): what a round claimed, and every event applied
once, its job done at its first attempt.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import migrated_database_url
from paymux.jobs import queue
from support.backlog import stored_completions
from support.harness import Harness
from support.pgcluster import PgCluster

BATCH = 5  # PAYMUX_WORKER_BATCH_SIZE here
BACKLOG = 23
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    backend = str(request.param)
    name = f"topup_{request.node.name.split('[')[0][-20:]}_{backend}".replace("-", "_")
    return migrated_database_url(backend, tmp_path, pg_cluster, name)


async def apply_jobs(h: Harness) -> Counter[tuple[str, int]]:
    """(status, attempts) of the apply_webhook jobs."""
    rows = await h.sql("select status, attempts from jobs where kind = 'apply_webhook'")
    return Counter((status, attempts) for status, attempts in rows)


async def succeeded(h: Harness) -> Counter[str]:
    rows = await h.sql("select object_id from events where type = 'payment_intent.succeeded'")
    return Counter(r[0] for r in rows)


def test_a_backlog_of_events_is_claimed_past_the_batch_size(url: str, tmp_path: Path) -> None:
    postgres = not url.startswith("sqlite")

    async def main() -> None:
        async with Harness.open(url, tmp_path, worker_batch_size=BATCH) as h:
            ids = await stored_completions(h, BACKLOG)
            assert await apply_jobs(h) == Counter({("queued", 0): BACKLOG})
            # PostgreSQL: the whole backlog in one round (23 < 2 x 100); SQLite: 5.
            first = await h.worker.run_once()
            assert first == (BACKLOG if postgres else BATCH)
            while await h.worker.run_once():
                pass
            assert await apply_jobs(h) == Counter({("done", 1): BACKLOG})
            assert await succeeded(h) == Counter({pi: 1 for pi in ids})
            statuses = await h.sql("select status from payment_intents")
            assert Counter(s for (s,) in statuses) == Counter({"succeeded": BACKLOG})

    asyncio.run(main())


def test_a_claim_with_another_kind_of_job_is_not_topped_up(url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(url, tmp_path, worker_batch_size=BATCH) as h:
            async with h.app.ctx.db.write() as s:  # due before the events: claimed with them
                await queue.enqueue(
                    s, "purge_idempotency_keys", {}, now_us=h.app.ctx.now_us() - 1_000_000
                )
            await stored_completions(h, BACKLOG)
            assert await h.worker.run_once() == BATCH  # the purge and 4 events
            kinds = await h.sql("select kind, status from jobs where status = 'done'")
            assert Counter(k for k, _ in kinds) == Counter(
                {"purge_idempotency_keys": 1, "apply_webhook": BATCH - 1}
            )
            while await h.worker.run_once():
                pass
            assert await apply_jobs(h) == Counter({("done", 1): BACKLOG})
            payloads = await h.sql("select payload from jobs where kind = 'apply_webhook'")
            inbox_ids = [
                (p if isinstance(p, dict) else json.loads(p))["inbox_id"] for (p,) in payloads
            ]
            rows = await h.sql("select id, status from webhook_inbox")
            assert {i: st for i, st in rows} == {i: "applied" for i in inbox_ids}

    asyncio.run(main())
