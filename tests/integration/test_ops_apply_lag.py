"""``paymux_webhook_apply_lag_seconds``: the time from an inbound webhook's receipt to its
apply (issue 16's "lag from receipt to apply"), observed once per applied event, by
gateway, on both apply paths (``apply``, one event; ``apply_many``, the worker's batch).

paymux's real services and inbound pipeline on a migrated SQLite file (the metric is the
process's, not the database's), the scripted fake provider at the connector seam, and a
frozen clock moved by hand so each lag is known exactly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.services import Paymux
from paymux.services.payments import CreateParams
from support.dbtemplate import migrated_sqlite_file
from support.fake_gateway import Outcome, ScriptedGateway

T0 = 1_796_000_000_000_000
GATEWAY = "lagprobe"  # a name no other test uses: the registry is the process's


def lag(kind: str, le: str | None = None) -> float:
    labels = {"gateway": GATEWAY} if le is None else {"gateway": GATEWAY, "le": le}
    value = REGISTRY.get_sample_value(f"paymux_webhook_apply_lag_seconds_{kind}", labels)
    return value or 0.0


def test_each_applied_webhook_is_observed_once_with_its_lag(tmp_path: Path) -> None:
    url = migrated_sqlite_file(tmp_path / "paymux.db")
    clock = FrozenClock(T0)
    gw = ScriptedGateway(GATEWAY, clock=clock)
    gw.script("authorize", Outcome.requires_action(), Outcome.requires_action())
    settings = Settings(database_url=url, sandbox_db=str(tmp_path / "sandbox.db"))

    async def scenario() -> None:
        app = Paymux(settings, gateways=gw.registry(), clock=clock)
        try:
            account = (await app.accounts.create_key()).account_id
            events = []
            for _ in range(2):
                pi = await app.payments.create(
                    account, CreateParams(amount=2000, currency="usd", capture_method="manual")
                )
                confirmed = await app.payments.confirm(account, pi["id"], payment_method="tok_visa")
                assert confirmed["status"] == "requires_action"
                gw.complete_action(pi["id"])
                events.append(gw.take_webhooks()[-1])
            first = await gw.deliver_webhook(app.webhooks, events[0], apply=False)
            second = await gw.deliver_webhook(app.webhooks, events[1], apply=False)
            count, total = lag("count"), lag("sum")
            under_30, under_60 = lag("bucket", "30.0"), lag("bucket", "60.0")

            clock.advance(42)  # one event applied alone, 42 s after it came
            await app.webhooks.apply(first.inbox_id)
            assert (lag("count") - count, lag("sum") - total) == (1, 42.0)
            await app.webhooks.apply(first.inbox_id)  # applied already: not observed again
            assert (lag("count") - count, lag("sum") - total) == (1, 42.0)

            clock.advance(7)  # the other in a worker's batch, 49 s after it came
            async with app.ctx.db.write() as s:
                failed = await app.webhooks.apply_many(s, [second.inbox_id])
            assert failed == {}
            assert (lag("count") - count, lag("sum") - total) == (2, 91.0)
            # 42 s and 49 s: both in the 60 s bucket, neither in the 30 s one
            assert (lag("bucket", "30.0") - under_30, lag("bucket", "60.0") - under_60) == (0, 2)
        finally:
            await app.close()

    asyncio.run(scenario())
