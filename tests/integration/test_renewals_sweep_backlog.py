"""The scheduler's sweep queues renewals only while fewer than its ``backlog`` wait in the
queue (``BillingScheduler.sweep``): the rest are queued by later sweeps as the workers take
jobs, and every due subscription is still renewed exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.billing.scheduler import BillingScheduler
from support.pgcluster import PgCluster
from support.renewal_crash import FEB_1, HOUR, billing


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(
        request.param, tmp_path, pg_cluster, f"backlog_{uuid.uuid4().hex[:12]}"
    )


def test_a_sweep_queues_no_more_than_its_backlog_and_the_rest_follow(
    url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with billing(url, tmp_path) as b:
            subs = [await b.subscribe(1200) for _ in range(5)]
            b.advance_to(FEB_1 + HOUR)
            scheduler = BillingScheduler(b.app.ctx, batch=2, backlog=3)

            async def waiting() -> list[str]:
                rows = await b.sql(
                    "select dedupe_key from jobs where kind = 'subscription_due' "
                    "and status = 'queued' order by id"
                )
                return [str(r[0]).split(":")[1] for r in rows]

            assert await scheduler.sweep() == 3
            assert len(set(await waiting())) == 3
            assert await scheduler.sweep() == 0  # full: nothing more, whatever is due
            assert len(await waiting()) == 3
            # A worker took one (done here by hand, its subscription renewed by nobody):
            # room for one more, and no job beside a live one.
            async with b.app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "update jobs set status = 'done' where id = (select min(id) from jobs "
                        "where kind = 'subscription_due')"
                    )
                )
            assert await scheduler.sweep() == 1
            assert len(set(await waiting())) == 3
            # A job waiting out a retry's delay (a failing renewal) is not counted: the
            # sweep queues another subscription beside it (thousands failing must not stop
            # the others being renewed).
            async with b.app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "update jobs set run_at_us = run_at_us + 86400000000 where id = "
                        "(select max(id) from jobs where kind = 'subscription_due' "
                        "and status = 'queued')"
                    )
                )
            assert await scheduler.sweep() == 1
            assert len(set(await waiting())) == 4
            async with b.app.ctx.db.write() as s:  # its delay over: the workers take it
                await s.execute(
                    text("update jobs set run_at_us = 0 where kind = 'subscription_due'")
                )

            # The workers' own sweeps (the default backlog) queue the rest: each renewed once.
            await b.drain("w2")
            rows = await b.sql(
                "select subscription_id, count(*), min(status) from invoices "
                "where period_start_us = :p group by subscription_id",
                p=FEB_1 * 1_000_000,
            )
            assert sorted((str(r[0]), r[1], r[2]) for r in rows) == sorted(
                (s["id"], 1, "paid") for s in subs
            )

    asyncio.run(main())
