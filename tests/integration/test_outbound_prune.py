"""Pruning old outbound delivery attempts (paymux.outbound.prune): on a real database with a
clock the test moves, attempts older than the retention go, newer ones and every delivery
stay; the batches (of 1 here) delete all the old ones, not only the first batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from paymux.outbound.delivery import DeliveryRunner
from paymux.outbound.prune import prune_attempts
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

DAY = 24 * 3600


db = migrated_database_fixture("outbound_prune")


def test_attempts_older_than_the_retention_are_deleted_and_others_kept(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        with Receiver() as rx:
            async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
                runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
                try:
                    r = await h.post(
                        "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]}
                    )
                    ep = h.body(r)["id"]
                    for email in ("a@example.com", "b@example.com"):  # day 0: two attempts
                        assert (await h.post("/v1/customers", {"email": email})).status_code == 200
                    await runner.drain()
                    h.advance(20 * DAY)
                    assert (
                        await h.post("/v1/customers", {"email": "c@example.com"})
                    ).status_code == 200
                    await runner.drain()
                    h.advance(11 * DAY)  # day 31: the first two are 31 days old, the last 11
                    attempts = await h.get(f"/v1/webhook_endpoints/{ep}/attempts")
                    assert len(attempts["data"]) == 3
                    newest = attempts["data"][0]["id"]
                    assert await prune_attempts(h.app.ctx, 30, batch=1) == 2
                    left = await h.get(f"/v1/webhook_endpoints/{ep}/attempts")
                    assert [a["id"] for a in left["data"]] == [newest]
                    assert await prune_attempts(h.app.ctx, 30) == 0
                    assert await prune_attempts(h.app.ctx, 10) == 1
                    rows = await h.sql("select count(*) from webhook_deliveries")
                    assert rows[0][0] == 3  # deliveries are kept
                finally:
                    await runner.client.aclose()

    asyncio.run(main())
