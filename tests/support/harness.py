"""paymux in-process against the scripted fake gateway: the services, the worker and the HTTP
app (through ASGI, no socket), on a real database, with a clock the test moves.

    async with Harness.open(url, tmp) as h:         # url: a migrated database
        h.gw.script("authorize", Outcome.lose_response())
        r = await h.post("/v1/payment_intents", {...}, key="k1")
        await h.drain()                                 # sweep + run every due job

The fake is the only thing faked, at the connector seam; everything of ours is real.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from paymux.api.app import create_app
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.jobs.worker import Worker
from paymux.services import Paymux
from support.fake_gateway import ScriptedGateway

__all__ = ["START_US", "Harness"]

START_US = 1_800_000_000 * 1_000_000


class Harness:
    def __init__(self, app: Paymux, gw: ScriptedGateway, clock: FrozenClock, key: str) -> None:
        self.app = app
        self.gw = gw
        self.clock = clock
        self.key = key
        self.account = ""
        self.worker = Worker(app, worker_id="harness")
        self._asgi = create_app(app.settings, paymux=app)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._asgi),
            # As a deployment serves it, over TLS (live-mode keys are refused over plain HTTP).
            base_url="https://paymux.test",
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls, database_url: str, tmp: Path, gw: ScriptedGateway | None = None, **overrides: Any
    ) -> AsyncIterator[Harness]:
        clock = FrozenClock(START_US)
        gateway = gw or ScriptedGateway(clock=clock)
        if gw is not None:
            gateway.now = lambda: clock.now_us() / 1_000_000
        values: dict[str, Any] = {
            "database_url": database_url,
            "sandbox_enabled": False,
            "sandbox_db": str(tmp / "sandbox.db"),
            "default_gateway": gateway.name,
            "gateway_retries": 3,
            "gateway_retry_base_delay": 0.0,
            "gateway_retry_max_delay": 0.0,
            "attempt_settle_after_seconds": 60,
            "reconcile_after_seconds": 600,
            "run_worker": False,
            "log_json": False,
        }
        values.update(overrides)
        settings = Settings(**values)
        app = Paymux(settings, gateways=gateway.registry(), clock=clock)
        new = await app.accounts.create_key()
        harness = cls(app, gateway, clock, new.key)
        harness.account = new.account_id
        try:
            async with harness._asgi.router.lifespan_context(harness._asgi):
                try:
                    yield harness
                finally:
                    await harness.http.aclose()
        finally:
            await app.close()

    # -- HTTP -------------------------------------------------------------------------------
    async def post(
        self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None
    ) -> httpx.Response:
        headers = {"idempotency-key": key} if key else {}
        return await self.http.post(path, json=body or {}, headers=headers)

    async def get(self, path: str) -> dict[str, Any]:
        r = await self.http.get(path)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    # -- time and the worker ----------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def drain(self, rounds: int = 20) -> int:
        """Sweep, then run due jobs until none is left (bounded). Returns how many ran."""
        ran = 0
        await self.worker.sweep()
        for _ in range(rounds):
            done = await self.worker.run_once()
            ran += done
            if done == 0:
                break
        return ran

    async def deliver_all(self, *, reverse: bool = False, twice: bool = False) -> None:
        """Deliver every pending provider webhook through the real inbound pipeline."""
        events = self.gw.take_webhooks()
        if reverse:
            events.reverse()
        for event in events * (2 if twice else 1):
            await self.gw.deliver_webhook(self.app.webhooks, event)

    # -- our records ------------------------------------------------------------------------
    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with self.app.ctx.db.read() as s:
            return list((await s.execute(text(statement), params)).all())

    async def intents(self) -> list[dict[str, Any]]:
        rows = await self.sql(
            "select id, status, amount, amount_received, amount_capturable, amount_refunded, "
            "amount_refund_pending from payment_intents where account_id = :a order by id",
            a=self.account,
        )
        keys = ("id", "status", "amount", "received", "capturable", "refunded", "pending")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    async def events(self, object_id: str) -> list[str]:
        rows = await self.sql(
            "select type from events where object_id = :o order by created_us, id", o=object_id
        )
        return [r[0] for r in rows]

    async def inbox_statuses(self) -> list[str]:
        return [r[0] for r in await self.sql("select status from webhook_inbox order by id")]

    @staticmethod
    def body(response: httpx.Response) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.text)
        return data
