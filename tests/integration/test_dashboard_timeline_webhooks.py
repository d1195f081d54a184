"""Inbound webhooks on a payment's timeline (issue 15): the inbox row of an event applied to a
payment intent records that intent (``webhook_inbox.object_id``, migration 0031), and the
payment's detail (``PaymentReads.detail``, the dashboard's payment page) lists those rows with
their type, received time, status and gateway, read in SQL and scoped to the account.

paymux's real services and inbound pipeline on a migrated SQLite file and on PostgreSQL, the
scripted fake provider at the connector seam (a deployment gateway: its rows have no account),
and a frozen clock, so each received time is known exactly.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from conftest import migrated_database_url
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.services import Paymux
from paymux.services.payment_reads import PaymentReads, TimelineEntry
from paymux.services.payments import CreateParams
from paymux.storage.models import WebhookInbox
from support.fake_gateway import Outcome, ScriptedGateway
from support.pgcluster import PgCluster

T0 = 1_796_100_000_000_000
GATEWAY = "tlprobe"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def inbound(timeline: list[TimelineEntry]) -> list[TimelineEntry]:
    return [t for t in timeline if t.kind == "inbound webhook"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_applied_webhook_shows_on_its_payment_timeline_scoped_and_dead_as_dead(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"tl_wh_{secrets.token_hex(4)}")
    clock = FrozenClock(T0)
    gw = ScriptedGateway(GATEWAY, clock=clock)
    gw.script("authorize", Outcome.requires_action())
    settings = Settings(database_url=url, sandbox_db=str(tmp_path / "sandbox.db"))

    async def scenario() -> None:
        app = Paymux(settings, gateways=gw.registry(), clock=clock)
        reads = PaymentReads(app.ctx)
        try:
            account = (await app.accounts.create_key()).account_id
            other = (await app.accounts.create_key()).account_id
            pi = await app.payments.create(account, CreateParams(amount=2000, currency="usd"))
            confirmed = await app.payments.confirm(account, pi["id"], payment_method="tok_visa")
            assert confirmed["status"] == "requires_action"
            before = await reads.detail(account, pi["id"])
            assert inbound(before.timeline) == []

            gw.complete_action(pi["id"])
            event = gw.take_webhooks()[-1]  # the payment's end, after 3-D Secure
            clock.advance(5)  # the event comes in at T0 + 5 s
            received = await gw.deliver_webhook(app.webhooks, event)
            async with app.ctx.db.read() as s:
                row = await s.get(WebhookInbox, received.inbox_id)
                assert row is not None
                assert (row.status, row.object_id, row.account_id) == ("applied", pi["id"], None)

            # Another account's row naming the same object id (ids are unique, so only a
            # hand-made row can): never on this account's timeline.
            async with app.ctx.db.write() as s:
                await s.execute(
                    insert(WebhookInbox).values(
                        id="wh_other_account",
                        gateway=GATEWAY,
                        account_id=other,
                        event_id="evt_other_account",
                        type="payment.other_account",
                        payload="{}",
                        status="applied",
                        received_us=T0 + 6_000_000,
                        object_id=pi["id"],
                    )
                )

            shown = inbound((await reads.detail(account, pi["id"])).timeline)
            assert len(shown) == 1
            (entry,) = shown
            assert entry.at_us == T0 + 5_000_000
            assert entry.title == f"{GATEWAY} {event.type}: applied"
            assert event.id in entry.detail
            assert "payment.other_account" not in repr(shown)

            # The same event replayed and buried by the worker (its retries spent): dead.
            assert await app.webhooks.replay(event_id=received.inbox_id) == [received.inbox_id]
            async with app.ctx.db.write() as s:
                await app.webhooks.mark_dead(s, received.inbox_id, "UnknownObjectYet: gone")
            (dead,) = inbound((await reads.detail(account, pi["id"])).timeline)
            assert dead.title == f"{GATEWAY} {event.type}: dead"
            assert "UnknownObjectYet: gone" in dead.detail
            async with app.ctx.db.read() as s:
                ids = (await s.scalars(select(WebhookInbox.id).order_by(WebhookInbox.id))).all()
            assert sorted(ids) == sorted([received.inbox_id, "wh_other_account"])
        finally:
            await app.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("backend", BACKENDS)
def test_refund_and_dispute_events_applied_in_a_batch_show_on_the_payment_timeline(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"tl_wb_{secrets.token_hex(4)}")
    clock = FrozenClock(T0)
    gw = ScriptedGateway(GATEWAY, clock=clock)
    settings = Settings(database_url=url, sandbox_db=str(tmp_path / "sandbox.db"))

    async def scenario() -> None:
        app = Paymux(settings, gateways=gw.registry(), clock=clock)
        reads = PaymentReads(app.ctx)
        try:
            account = (await app.accounts.create_key()).account_id
            pi = await app.payments.create(account, CreateParams(amount=3000, currency="eur"))
            paid = await app.payments.confirm(account, pi["id"], payment_method="tok_visa")
            assert paid["status"] == "succeeded"
            gw.take_webhooks()  # what the confirm itself told us already
            gw.dashboard_refund(pi["id"], amount=500)  # a refund made at the provider
            refund_event = gw.take_webhooks()[-1]
            dispute_event = gw.open_dispute(pi["id"])
            gw.take_webhooks()
            clock.advance(1)
            refund_in = await gw.deliver_webhook(app.webhooks, refund_event, apply=False)
            clock.advance(1)
            dispute_in = await gw.deliver_webhook(app.webhooks, dispute_event, apply=False)
            # the worker's two batch paths: without savepoints, then with them
            async with app.ctx.db.write() as s:
                assert await app.webhooks.apply_many(s, [refund_in.inbox_id], isolate=False) == {}
            async with app.ctx.db.write() as s:
                assert await app.webhooks.apply_many(s, [dispute_in.inbox_id]) == {}
            async with app.ctx.db.read() as s:
                rows = {
                    r.id: (r.status, r.object_id)
                    for r in (await s.scalars(select(WebhookInbox))).all()
                }
            assert rows == {
                refund_in.inbox_id: ("applied", pi["id"]),
                dispute_in.inbox_id: ("applied", pi["id"]),
            }
            shown = inbound((await reads.detail(account, pi["id"])).timeline)
            assert [(t.at_us, t.title) for t in shown] == [
                (T0 + 1_000_000, f"{GATEWAY} {refund_event.type}: applied"),
                (T0 + 2_000_000, f"{GATEWAY} {dispute_event.type}: applied"),
            ]
        finally:
            await app.close()

    asyncio.run(scenario())
