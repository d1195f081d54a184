"""Several workers claiming due deliveries at once (PostgreSQL, where writers run in parallel).

Each worker reads its claim window without locks, so two racing workers read the same head
rows; the one whose claim comes second loses them to SKIP LOCKED. It must claim past them
(not come back empty while deliveries are due), and a round that lost every row it chose is
still busy (the loop looks again at once instead of sleeping a poll interval)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from paymux.outbound.delivery import DeliveryRunner
from paymux.outbound.dispatch import dispatch_once
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness

db = migrated_database_fixture("outbound_claims", ["postgres"])

DELIVERIES = 40
SLOTS = 5


async def _pending_backlog(h: Harness) -> None:
    r = await h.post(
        "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]}
    )
    assert r.status_code == 200, r.text
    for i in range(DELIVERIES):
        r = await h.post("/v1/customers", {"email": f"a{i}@example.com"})
        assert r.status_code == 200, r.text
    while await dispatch_once(h.app.ctx):
        pass
    [[due]] = await h.sql("select count(*) from webhook_deliveries where status = 'pending'")
    assert due == DELIVERIES  # one customer.created per customer, one endpoint


def test_concurrent_claims_fill_both_workers(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            await _pending_backlog(h)
            r1 = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            r2 = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            try:
                seen: set[str] = set()
                for _ in range(DELIVERIES // (2 * SLOTS)):  # 4 rounds: 40 rows, 10 a round
                    a, b = await asyncio.gather(r1._claim(SLOTS, 100), r2._claim(SLOTS, 100))
                    ids_a = {j.delivery_id for j in a}
                    ids_b = {j.delivery_id for j in b}
                    assert (len(a), len(b)) == (SLOTS, SLOTS)
                    assert ids_a & ids_b == set()
                    assert (ids_a | ids_b) & seen == set()  # a lease is not claimed again
                    seen |= ids_a | ids_b
                assert len(seen) == DELIVERIES
                [[leased]] = await h.sql(
                    "select count(*) from webhook_deliveries where lease_until_us is not null"
                )
                assert leased == DELIVERIES
            finally:
                await r1.client.aclose()
                await r2.client.aclose()

    asyncio.run(main())


def test_round_that_lost_every_due_row_is_busy(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            await _pending_backlog(h)
            runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            runner._more_events = False  # nothing left to dispatch: this round only claims
            runner._looked_at = time.monotonic()
            try:
                # Another worker holds every due row (its claim not yet committed).
                async with h.app.ctx.db.write() as other:
                    await other.execute(text("select id from webhook_deliveries for update"))
                    assert await runner._claim(SLOTS, 100) == []
                    assert await runner.step() is True  # due work: look again, don't sleep
                    assert not runner.tasks
                # Released: the same runner claims them.
                assert len(await runner._claim(SLOTS, 100)) == SLOTS
            finally:
                await runner.client.aclose()

    asyncio.run(main())
