"""New events are looked for once a poll interval, unless the last look took a full batch
(issue 10, what a sequential payment waits on).

The outbound loop (``DeliveryRunner.step``, in the worker of ``paymux serve``) turns new
events into deliveries. Looking again at once after every look that found any meant, under
a steady trickle of payments, one dispatch round (a read, a write transaction, the claim
of deliveries) per payment: about four more round trips per payment on PostgreSQL, and the
write lock once more per payment on SQLite. A look that took a full batch (a backlog) is
still followed by another at once, so a backlog drains at full speed; fewer wait for the
next poll interval and are dispatched together.

In process (``support.harness``: the real services and outbound loop on a real database):
what each look found (the dispatcher wrapped, its batch made small), and the events' rows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paymux.outbound import delivery
from paymux.outbound.delivery import DeliveryRunner
from paymux.services.context import Context
from support.databases import migrated_database_fixture
from support.harness import Harness

db = migrated_database_fixture("outbound_pace")
BATCH = 3  # events per look here (DISPATCH_BATCH: 500)


async def undispatched(h: Harness) -> int:
    rows = await h.sql("select count(*) from event_outbox")
    return int(rows[0][0])


async def new_event(h: Harness) -> None:
    r = await h.post("/v1/customers", {"email": "a@example.com"})  # customer.created
    assert r.status_code == 200, r.text


def test_events_are_looked_for_once_a_poll_unless_a_full_batch(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[int] = []  # events each look dispatched
    dispatch = delivery.dispatch_once

    async def counted(ctx: Context) -> int:
        n = await dispatch(ctx, limit=BATCH)
        looks.append(n)
        return n

    monkeypatch.setattr(delivery, "dispatch_once", counted)
    monkeypatch.setattr(delivery, "DISPATCH_BATCH", BATCH, raising=False)

    async def main() -> None:
        async with Harness.open(db, tmp_path, webhook_poll_interval=3600) as h:
            runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            try:
                before = await undispatched(h)
                for _ in range(2 * BATCH + 1 - before):  # a backlog of 7 events
                    await new_event(h)
                for _ in range(5):
                    await runner.step()
                # Full, full, then one: no look after that until the poll interval.
                assert looks == [BATCH, BATCH, 1]
                assert await undispatched(h) == 0

                await new_event(h)  # a trickle: left for the next poll interval
                for _ in range(3):
                    await runner.step()
                assert looks == [BATCH, BATCH, 1]
                assert await undispatched(h) == 1

                runner.poll = 0.0  # the poll interval has passed
                await runner.step()
                assert looks[3:] == [1]
                assert await undispatched(h) == 0
            finally:
                await runner.client.aclose()

    asyncio.run(main())
