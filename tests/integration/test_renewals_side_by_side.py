"""A worker runs the renewals of a claimed batch side by side (``RENEWAL_CONCURRENCY`` at a
time, ``Worker.run_once``), and a kill anywhere in such a batch still bills each
(subscription, period) once.

The new crash window: several renewals of one batch in flight at once, some with their
invoice committed and their payment not made, when the worker dies. The batch's jobs are
taken over once their leases run out, and each period ends with one invoice, paid by its
first try's intent, charged once at the sandbox.

In process, on both databases: the real services, worker and sandbox gateway; the death is
``support.renewal_crash.dying`` (every statement from the chosen one on raises)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_crash_recovery import sandbox_charges

from conftest import migrated_database_url
from paymux.billing.invoice_payments import attempt_intent_id
from paymux.billing.scheduler import RENEWAL_CONCURRENCY
from paymux.jobs.worker import Worker
from support.pgcluster import PgCluster
from support.renewal_crash import FEB_1, HOUR, Billing, Crash, billing, dying, starts

N_SUBS = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(
        request.param, tmp_path, pg_cluster, f"side_{uuid.uuid4().hex[:12]}"
    )


async def renewals(b: Billing, subs: list[dict[str, Any]]) -> dict[str, str]:
    """Each subscription's renewal invoice for February: {sub id: invoice id}; exactly one
    each (asserted)."""
    rows = await b.sql(
        "select subscription_id, id from invoices where billing_reason = 'subscription_cycle' "
        "and period_start_us = :p",
        p=FEB_1 * 1_000_000,
    )
    found: dict[str, list[str]] = {}
    for sub_id, invoice_id in rows:
        found.setdefault(str(sub_id), []).append(str(invoice_id))
    assert sorted(found) == sorted(s["id"] for s in subs)
    assert all(len(ids) == 1 for ids in found.values()), found
    return {sub_id: ids[0] for sub_id, ids in found.items()}


def test_the_renewals_of_a_claimed_batch_run_side_by_side(tmp_path: Path) -> None:
    """Forced, not timed: each renewal waits at its start until two have started. Run one
    after another, the first would wait for ever (the bound below fails the test). The
    worker's claim is the same on both databases: SQLite only."""
    url = migrated_database_url("sqlite", tmp_path, None, "side_by_side")
    assert RENEWAL_CONCURRENCY >= 2

    async def main() -> None:
        async with billing(url, tmp_path) as b:
            subs = [await b.subscribe(1200) for _ in range(3)]
            b.advance_to(FEB_1 + HOUR)
            worker = Worker(b.app, worker_id="w1")
            real = worker.handlers["subscription_due"]
            started = 0
            both = asyncio.Event()

            async def gated(payload: dict[str, Any], finish: Callable[..., Any]) -> None:
                nonlocal started
                started += 1
                if started >= 2:
                    both.set()
                await asyncio.wait_for(both.wait(), timeout=30)
                await real(payload, finish)

            worker.handlers["subscription_due"] = gated
            await worker.sweep()
            assert await worker.run_once() == 3
            assert started == 3
            invoices = await renewals(b, subs)
            for invoice_id in invoices.values():
                status, attempts, paid, pi_id = await b.invoice(invoice_id)
                assert (status, attempts, paid) == ("paid", 1, 1200)
                assert pi_id == attempt_intent_id(invoice_id, 1)

    asyncio.run(main())


# (when the worker dies, after that statement's commit?)
CRASH_POINTS = {
    # The first payment of the batch about to be made: every renewal whose step ran by then
    # has its invoice committed (finalized, numbered), and none is charged.
    "first_payment": (starts("INSERT INTO PAYMENT_INTENTS"), False),
    # The first charge settled and committed: the batch half done.
    "first_settled": (starts("INSERT INTO GATEWAY_ATTEMPTS"), True),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_worker_killed_in_a_batch_of_renewals_bills_each_period_once(
    url: str, tmp_path: Path, point: str
) -> None:
    when, after_commit = CRASH_POINTS[point]

    async def main() -> None:
        async with billing(url, tmp_path) as b:
            subs = [await b.subscribe(1200) for _ in range(N_SUBS)]
            b.advance_to(FEB_1 + HOUR)
            w1 = Worker(b.app, worker_id="w1")
            await w1.sweep()
            async with dying(b.app, when, after_commit=after_commit):
                with pytest.raises(Crash):
                    await w1.run_once()
                # The renewals still running in the dead batch die at their next statement.
                for _ in range(100):
                    await asyncio.sleep(0)
            jobs = await b.sql("select status, locked_by from jobs where kind = 'subscription_due'")
            assert len(jobs) == N_SUBS
            assert ("running", "w1") in [tuple(j) for j in jobs]

            b.clock.advance(b.app.settings.job_lease_seconds + 1)
            await b.drain("w2")
            invoices = await renewals(b, subs)
            for invoice_id in invoices.values():
                status, attempts, paid, pi_id = await b.invoice(invoice_id)
                assert (status, attempts, paid) == ("paid", 1, 1200), invoice_id
                assert pi_id == attempt_intent_id(invoice_id, 1)
                assert await b.intents(invoice_id) == [(pi_id, "succeeded")]
                assert sandbox_charges(tmp_path / "sandbox.db", pi_id) == ["succeeded"]
            left = await b.sql(
                "select count(*) from jobs where kind = 'subscription_due' and status <> 'done'"
            )
            assert left[0][0] == 0
            per_sub = await b.sql(
                "select subscription_id, count(*) from invoices group by subscription_id"
            )
            assert sorted(n for _, n in per_sub) == [2] * N_SUBS  # the first and February's

    asyncio.run(main())
