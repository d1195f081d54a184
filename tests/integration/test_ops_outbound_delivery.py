"""Outbound deliveries seen by the operator (issue 16): a delivery a real endpoint on
127.0.0.1 answered 2xx raises ``paymux_webhook_deliveries_delivered_total`` in the metrics
exposition; and a live endpoint stored with an ``http://`` URL (registered before live
endpoints had to be https, simulated by changing the stored row) is never sent to in the
clear: its delivery fails at once, saying why, and is not retried. paymux in-process
(support/harness.py), the delivery loop run by hand, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from paymux.observability.metrics import render
from paymux.outbound.delivery import DeliveryRunner
from paymux.outbound.http1 import ConnectionPool
from paymux.outbound.ssrf import Blocked
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

db = migrated_database_fixture("ops_outbound")
DELIVERED = "paymux_webhook_deliveries_delivered_total"


def delivered(mode: str) -> float:
    """The counter as the /metrics text shows it (0 before its first delivery)."""
    for family in text_string_to_metric_families(render([]).decode()):
        for sample in family.samples:
            if sample.name == DELIVERED and sample.labels == {"mode": mode}:
                return sample.value
    return 0.0


@asynccontextmanager
async def paymux(url: str, tmp: Path) -> AsyncIterator[tuple[Harness, DeliveryRunner]]:
    # Loopback is reachable in live mode too (allow_private): only the https rule can keep
    # the live delivery below from reaching the receiver.
    keys = generate_key_entry("k1")
    async with Harness.open(url, tmp, encryption_keys=keys, webhook_allow_private=True) as h:
        runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
        async with contextlib.aclosing(runner.client):
            yield h, runner


async def made(h: Harness, path: str, body: dict[str, Any], key: str | None = None) -> str:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = await h.http.post(path, json=body, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_a_delivery_answered_2xx_is_counted_as_delivered(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        with Receiver() as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await made(
                    h, "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]}
                )
                test_before, live_before = delivered("test"), delivered("live")
                for n in range(3):
                    await made(h, "/v1/customers", {"email": f"d{n}@example.com"})
                await runner.drain()
                assert len(rx.delivered_ids()) == 3
                assert delivered("test") == test_before + 3
                assert delivered("live") == live_before
                # Delivered once: a later round sends and counts nothing again.
                await runner.drain()
                assert (len(rx.requests()), delivered("test")) == (3, test_before + 3)
                exposition = render([]).decode()
                assert rx.url not in exposition and ep not in exposition  # bounded labels

    asyncio.run(main())


def test_a_live_endpoint_stored_with_http_gets_nothing_and_fails_at_once(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        with Receiver() as rx:
            async with paymux(db, tmp_path) as (h, runner):
                live, _ = await h.app.keys.create(h.account, livemode=True)
                # Registered as https (the rule today), then stored as http, as a row made
                # before the rule would be.
                ep = await made(
                    h,
                    "/v1/webhook_endpoints",
                    {"url": f"https://localhost:{rx.port}/hooks", "enabled_events": ["*"]},
                    live.key,
                )
                async with h.app.ctx.db.write() as s:
                    await s.execute(
                        text("update webhook_endpoints set url = :u where id = :i"),
                        {"u": rx.url, "i": ep},
                    )
                before = delivered("live")
                await made(h, "/v1/customers", {"email": "live@example.com"}, live.key)
                await runner.drain()
                assert rx.requests() == []  # not a byte went over plain HTTP
                rows = await h.sql(
                    "select status, attempts from webhook_deliveries where endpoint_id = :e",
                    e=ep,
                )
                assert rows == [("failed", 1)]  # given up at once, not left to retry
                attempts = await h.sql(
                    "select status, http_status, error from webhook_attempts "
                    "where endpoint_id = :e",
                    e=ep,
                )
                assert len(attempts) == 1, attempts
                status, http_status, error = attempts[0]
                assert (status, http_status) == ("failed", None)
                assert "must use https" in error and "nothing was sent" in error
                # A day later: still nothing sent, no further attempt, nothing delivered.
                h.advance(24 * 3600)
                await runner.drain()
                assert rx.requests() == []
                again = await h.sql(
                    "select count(*) from webhook_attempts where endpoint_id = :e", e=ep
                )
                assert again == [(1,)]
                assert delivered("live") == before

    asyncio.run(main())


def test_the_connection_pool_never_opens_a_live_connection_in_the_clear() -> None:
    """The layer under ``post_signed`` refuses too: a live request over http raises before
    any connection is made (a receiver on loopback, reachable with allow_private)."""

    async def main() -> None:
        with Receiver() as rx:
            pool = ConnectionPool(connect_timeout=5, allow_private=True)
            async with contextlib.aclosing(pool):
                with pytest.raises(Blocked, match="https"):
                    await pool.post(
                        "http",
                        "127.0.0.1",
                        rx.port,
                        "/hooks",
                        [],
                        b"{}",
                        livemode=True,
                        max_body=1024,
                    )
                assert (pool.opened, rx.requests()) == (0, [])
                # The same request in test mode goes through (the receiver answers 200).
                answer = await pool.post(
                    "http",
                    "127.0.0.1",
                    rx.port,
                    "/hooks",
                    [],
                    b"{}",
                    livemode=False,
                    max_body=1024,
                )
                assert (answer.status, len(rx.requests())) == (200, 1)

    asyncio.run(main())
