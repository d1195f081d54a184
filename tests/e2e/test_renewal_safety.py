"""Renewals and inline subscription charges survive a process dying at any point between a
commit and the charge that should follow it (issue 11). In process: paymux's real services,
worker and sandbox gateway on a real database (SQLite and PostgreSQL), a frozen clock the
test moves. The process dying is an exception no handler catches (``Crash``, a
BaseException), raised from a SQLAlchemy statement hook at a chosen point, as in
tests/integration/test_batched_apply.py: what was committed before stays, nothing after runs.

1. A worker dies after a renewal's draft committed, before its charge; by the time its job
   runs again the next period is due too. Both periods' invoices are finalized and charged,
   each once (before the fix only the latest was: the first stayed a draft).
2. The API commits a subscription's first invoice, a proration invoice
   (``proration_behavior=always_invoice``) or a cancellation's final invoice
   (``invoice_now``), then dies before the inline charge: a job queued in the same commit
   charges it, once (before the fix nothing ever did). Dying after the first try reserved its
   intent id, the job makes the payment with that same id.
3. That job is harmless when the inline charge did happen, paid or declined: no second try,
   no second intent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.billing.invoice_payments import attempt_intent_id
from paymux.billing.scheduler import BillingScheduler
from paymux.billing.subscription_due import SAFETY_JOB_DELAY_S
from paymux.billing.subscriptions import UpdateParams
from paymux.jobs.worker import Worker
from support.pgcluster import PgCluster
from support.renewal_crash import (
    FEB_1,
    HOUR,
    JAN_1,
    MAR_1,
    Billing,
    Crash,
    billing,
    dying,
    starts,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    backend = str(request.param)
    db_url = migrated_database_url(backend, tmp_path, pg_cluster, f"renewsafe_{uuid.uuid4().hex[:12]}")
    return db_url


# -- 1. a worker dies between a renewal's draft and its finalization ---------------------------
def test_an_orphaned_period_draft_is_finalized_and_charged_once(url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with billing(url, tmp_path) as b:
            sub = await b.subscribe(1200)
            assert sub["status"] == "active"
            b.advance_to(FEB_1 + HOUR)
            # The worker dies right after the Feb renewal's commit (its draft, finalized or
            # not), before its charge: the job stays claimed until the lease runs out.
            async with dying(b.app, starts("INSERT INTO INVOICES"), after_commit=True):
                worker = Worker(b.app, worker_id="w1")
                await worker.sweep()
                with pytest.raises(Crash):
                    await worker.run_once()
            feb = await b.sql(
                "select id, status, attempt_count from invoices where subscription_id = :s "
                "and billing_reason = 'subscription_cycle'",
                s=sub["id"],
            )
            assert len(feb) == 1 and feb[0][1] in ("draft", "open") and feb[0][2] == 0
            assert await b.intents(str(feb[0][0])) == []  # the crash point: before the charge
            due_job = await b.sql(
                "select id, status, locked_by from jobs where kind = 'subscription_due'"
            )
            assert [tuple(r[1:]) for r in due_job] == [("running", "w1")]

            # The job runs again only once March is due as well (the worker was down).
            b.advance_to(MAR_1 + HOUR)
            await b.drain("w2")
            rows = await b.sql(
                "select id, period_start_us, status, attempt_count, amount_paid, "
                "payment_intent_id, number from invoices where subscription_id = :s "
                "and billing_reason = 'subscription_cycle' order by period_start_us",
                s=sub["id"],
            )
            assert [r[1] // 1_000_000 for r in rows] == [FEB_1, MAR_1]
            assert rows[0][0] == feb[0][0]
            for invoice_id, _, status, attempts, paid, pi_id, _ in rows:
                assert (status, attempts, paid) == ("paid", 1, 1200), invoice_id
                assert pi_id == attempt_intent_id(invoice_id, 1)
                assert await b.intents(invoice_id) == [(pi_id, "succeeded")]
            assert rows[0][6] < rows[1][6]  # numbered in period order
            # The dead worker's job was taken over and finished by the other.
            assert await b.sql(
                "select status, attempts, locked_by from jobs where id = :j", j=due_job[0][0]
            ) == [("done", 2, None)]

    asyncio.run(main())


# -- 2. the API dies between its commit and the inline charge --------------------------------
async def _create(b: Billing) -> str:
    async with dying(b.app, starts("INSERT INTO INVOICES"), after_commit=True):
        with pytest.raises(Crash):
            await b.subscribe(1500)
    rows = await b.sql("select id from invoices where billing_reason = 'subscription_create'")
    return str(rows[0][0])


async def _create_reserved(b: Billing) -> str:
    """Dies later: the first try's intent id reserved on the invoice, the intent not made."""
    async with dying(b.app, starts("INSERT INTO PAYMENT_INTENTS")):
        with pytest.raises(Crash):
            await b.subscribe(1500)
    rows = await b.sql("select id from invoices where billing_reason = 'subscription_create'")
    return str(rows[0][0])


async def _always_invoice(b: Billing) -> str:
    sub = await b.subscribe(1000)
    b.advance_to(JAN_1 + 15 * 86_400)
    bigger = await b.price(4000)
    item = sub["items"]["data"][0]["id"]
    async with dying(b.app, starts("INSERT INTO INVOICES"), after_commit=True):
        with pytest.raises(Crash):
            await b.app.subscriptions.update(
                b.account,
                sub["id"],
                UpdateParams(
                    items=[{"id": item, "price": bigger}],
                    proration_behavior="always_invoice",
                ),
            )
    rows = await b.sql("select id from invoices where billing_reason = 'subscription_update'")
    return str(rows[0][0])


async def _cancel_invoice_now(b: Billing) -> str:
    sub = await b.subscribe(1000)
    b.advance_to(JAN_1 + 15 * 86_400)
    bigger = await b.price(4000)
    item = sub["items"]["data"][0]["id"]
    await b.app.subscriptions.update(  # prorations pending: the final invoice bills them
        b.account, sub["id"], UpdateParams(items=[{"id": item, "price": bigger}])
    )
    async with dying(b.app, starts("INSERT INTO INVOICES"), after_commit=True):
        with pytest.raises(Crash):
            await b.app.subscriptions.cancel(b.account, sub["id"], invoice_now=True)
    rows = await b.sql(
        "select id from invoices where subscription_id = :s and billing_reason = "
        "'subscription_cycle'",
        s=sub["id"],
    )
    return str(rows[0][0])


@pytest.mark.parametrize(
    "make",
    [_create, _create_reserved, _always_invoice, _cancel_invoice_now],
    ids=lambda f: f.__name__[1:],
)
def test_an_inline_charge_cut_off_after_the_commit_is_made_by_its_job(
    url: str, tmp_path: Path, make: Callable[[Billing], Any]
) -> None:
    async def main() -> None:
        async with billing(url, tmp_path) as b:
            invoice_id = await make(b)
            # Nothing was tried before the crash.
            assert await b.intents(invoice_id) == []
            assert (await b.invoice(invoice_id))[1] == 0
            b.clock.advance(SAFETY_JOB_DELAY_S + 1)
            assert "invoice_pay" in await b.drain()
            status, attempts, paid, pi_id = await b.invoice(invoice_id)
            assert (status, attempts) == ("paid", 1)
            assert paid > 0
            assert await b.intents(invoice_id) == [(attempt_intent_id(invoice_id, 1), "succeeded")]
            assert pi_id == attempt_intent_id(invoice_id, 1)
            if make in (_create, _create_reserved):
                subs = await b.sql("select status from subscriptions")
                assert [r[0] for r in subs] == ["active"]

    asyncio.run(main())


# -- 3. the job is harmless after the inline charge -----------------------------------------
@pytest.mark.parametrize(
    ("token", "expected"),
    [("pm_card_visa", ("paid", 1, "succeeded")), ("pm_card_chargeCustomerFail", ("open", 1, None))],
    ids=["paid", "declined"],
)
def test_the_job_makes_no_second_try_after_the_inline_one(
    url: str, tmp_path: Path, token: str, expected: tuple[str, int, str | None]
) -> None:
    async def main() -> None:
        async with billing(url, tmp_path, token) as b:
            sub = await b.subscribe(1500)
            invoice_id = str(sub["latest_invoice"])
            first = await b.invoice(invoice_id)
            intents = await b.intents(invoice_id)
            assert first[:2] == expected[:2]
            assert [i for i, _ in intents] == [attempt_intent_id(invoice_id, 1)]
            b.clock.advance(SAFETY_JOB_DELAY_S + 1)
            await b.drain()
            b.clock.advance(SAFETY_JOB_DELAY_S + 1)
            await b.drain()
            assert await b.invoice(invoice_id) == first  # no second try, no second count
            assert await b.intents(invoice_id) == intents
            if expected[2] is not None:
                assert intents[0][1] == expected[2]
            # The job run anyway (the process died between the inline try and dropping the
            # job): its try number is past, so it does nothing.
            await b.app.invoices.attempt(b.account, invoice_id, from_job=True, only_try=1)
            assert await b.invoice(invoice_id) == first
            assert await b.intents(invoice_id) == intents

    asyncio.run(main())


# -- 4. the sweep: one INSERT ... SELECT per batch ------------------------------------------
def test_the_sweep_queues_each_due_subscription_once(url: str, tmp_path: Path) -> None:
    """Five subscriptions due, in batches of two: five jobs (the right keys and payloads);
    swept again, none more. Not yet due, or on a test clock: none."""

    async def main() -> None:
        async with billing(url, tmp_path) as b:
            subs = [str((await b.subscribe(1000))["id"]) for _ in range(7)]
            due, later, on_clock = subs[:5], subs[5], subs[6]
            now = b.clock.now_us()
            async with b.app.ctx.db.write() as s:
                for i, sub_id in enumerate(due):  # due at distinct and at equal times
                    await s.execute(
                        text("update subscriptions set next_due_us = :t where id = :i"),
                        {"t": now - 1000 * (i // 2), "i": sub_id},
                    )
                await s.execute(
                    text("update subscriptions set next_due_us = :t where id = :i"),
                    {"t": now + 1, "i": later},
                )
                await s.execute(
                    text(
                        "update subscriptions set next_due_us = :t, test_clock_id = 'clock_x' "
                        "where id = :i"
                    ),
                    {"t": now - 5000, "i": on_clock},
                )
            scheduler = BillingScheduler(b.app.ctx, batch=2)
            assert await scheduler.sweep() == 5
            rows = await b.sql(
                "select s.id, s.next_due_us, j.payload, j.dedupe_key, j.status, j.account_id "
                "from jobs j join subscriptions s on j.dedupe_key = 'renew:' || s.id || ':' "
                "|| s.next_due_us where j.kind = 'subscription_due'"
            )
            assert sorted(r[0] for r in rows) == sorted(due)
            for sub_id, next_due, payload, key, status, account in rows:
                body = payload if isinstance(payload, dict) else json.loads(payload)
                assert body == {"sub_id": sub_id}
                assert (key, status, account) == (f"renew:{sub_id}:{next_due}", "queued", b.account)
            assert await scheduler.sweep() == 0  # held by the live jobs
            count = await b.sql("select count(*) from jobs where kind = 'subscription_due'")
            assert count[0][0] == 5

    asyncio.run(main())
