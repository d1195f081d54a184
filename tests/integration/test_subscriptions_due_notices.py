"""The renewal steps' notices (paymux in process on SQLite; the scripted provider at the
connector seam): ``invoice.upcoming`` is never sent late, and ``trial_will_end`` once.

Steps run at their own times (``next_due_us``) while the worker runs them at the wall's
time: a worker down past a renewal runs the notice's step dated at the notice, after the
renewal it announces. Times are stated here from the subscription's own dates, never computed
with the code under test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conftest import migrated_database_url
from support.billing_harness import customer_and_price, ok
from support.harness import Harness

DAY = 86_400 * 1_000_000


async def subscription(h: Harness, **extra: Any) -> dict[str, Any]:
    cus, price = await customer_and_price(h, 1500)
    return await ok(h, "/v1/subscriptions", {"customer": cus, "items": [{"price": price}], **extra})


async def count(h: Harness, type_: str) -> int:
    rows = await h.sql("select count(*) from events where type = :t", t=type_)
    return int(rows[0][0])


def test_an_upcoming_notice_whose_renewal_has_passed_is_not_sent_late(tmp_path: Path) -> None:
    """The worker was down from before the notice (7 days ahead) until after the renewal: the
    renewal is billed in the same run, and no ``invoice.upcoming`` dated before it is sent."""

    db = migrated_database_url("sqlite", tmp_path, None, "notices")

    async def main() -> None:
        async with Harness.open(db, tmp_path, billing_upcoming_invoice_days=7) as h:
            sub = await subscription(h)
            end = int(sub["current_period_end"]) * 1_000_000
            await h.app.subscriptions.run_due(sub["id"], end + DAY)
            assert await count(h, "invoice.upcoming") == 0
            cycles = await h.sql(
                "select count(*) from invoices where subscription_id = :s"
                " and billing_reason = 'subscription_cycle'",
                s=sub["id"],
            )
            assert cycles[0][0] == 1

    asyncio.run(main())


def test_an_upcoming_notice_run_on_time_is_sent(tmp_path: Path) -> None:
    """The control: the same notice's step run at its time sends it, once."""

    db = migrated_database_url("sqlite", tmp_path, None, "notices")

    async def main() -> None:
        async with Harness.open(db, tmp_path, billing_upcoming_invoice_days=7) as h:
            sub = await subscription(h)
            end = int(sub["current_period_end"]) * 1_000_000
            await h.app.subscriptions.run_due(sub["id"], end - 7 * DAY)
            await h.app.subscriptions.run_due(sub["id"], end - 3 * DAY)
            assert await count(h, "invoice.upcoming") == 1

    asyncio.run(main())


def test_trial_will_end_is_sent_once_when_the_upcoming_lead_is_under_3_days(
    tmp_path: Path,
) -> None:
    """Lead 1 day: the trial's notice (3 days before its end) and then ``invoice.upcoming``
    (1 day before) each wake the subscription; ``trial_will_end`` is sent at the first only."""

    db = migrated_database_url("sqlite", tmp_path, None, "notices")

    async def main() -> None:
        async with Harness.open(db, tmp_path, billing_upcoming_invoice_days=1) as h:
            sub = await subscription(h, trial_period_days=10)
            assert sub["status"] == "trialing"
            trial_end = int(sub["trial_end"]) * 1_000_000
            await h.app.subscriptions.run_due(sub["id"], trial_end - 3 * DAY)
            assert await count(h, "customer.subscription.trial_will_end") == 1
            await h.app.subscriptions.run_due(sub["id"], trial_end - DAY)
            assert await count(h, "invoice.upcoming") == 1
            await h.app.subscriptions.run_due(sub["id"], trial_end - 1)
            assert await count(h, "customer.subscription.trial_will_end") == 1

    asyncio.run(main())
