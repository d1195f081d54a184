"""Closing an invoice cancels its payment that waits for the payer twice over: the job queued
with the change (``release_invoice_intent``) and the call right after it (``void``, a credit
note) both run ``InvoicePayments.release``, either first. The one that finds the other's
cancel in flight returns once that cancel is answered, so the caller of the void finds the
intent canceled whichever ran first. (A rehearsal of 8f81a13 failed on it: the job's cancel
was first, and the void answered while the intent was still ``processing``:
tests/e2e/test_invoice_money_safety.py.) Both databases; the scripted fake provider at the
connector seam holds the cancel's call."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from paymux.billing import invoice_payments
from support.billing_harness import finalized_invoice, ok
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

db_url = migrated_database_fixture("release_race")


async def _waiting_invoice(h: Harness) -> tuple[str, str]:
    """An open invoice of 2,000 whose payment waits for the payer's 3-D Secure: (invoice,
    its intent)."""
    invoice = await finalized_invoice(h, {"email": "payer@example.com"})
    h.gw.script("authorize", Outcome.requires_action())
    tried = await ok(h, f"/v1/invoices/{invoice['id']}/pay", {})
    pi = await h.get(f"/v1/payment_intents/{tried['payment_intent']}")
    assert (tried["status"], pi["status"]) == ("open", "requires_action")
    return str(invoice["id"]), str(pi["id"])


def test_a_release_that_finds_the_other_ones_cancel_in_flight_returns_once_it_is_answered(
    db_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Harness.open(db_url, tmp_path) as h:
            invoice_id, pi_id = await _waiting_invoice(h)
            gate = h.gw.hold("void")
            void = asyncio.ensure_future(h.post(f"/v1/invoices/{invoice_id}/void", {}))
            await gate.wait_reached()  # the void's own release: its cancel at the provider
            assert (await h.get(f"/v1/payment_intents/{pi_id}"))["status"] == "processing"
            # The job queued with the void runs meanwhile.
            job = asyncio.ensure_future(h.app.invoices.release(h.account, pi_id))
            await asyncio.sleep(0.3)
            assert not job.done()  # it waits for the cancel in flight (it returned at once)
            gate.release()
            answered = await void
            assert answered.status_code == 200, answered.text
            await asyncio.wait_for(job, 10)
            pi = await h.get(f"/v1/payment_intents/{pi_id}")
            assert (pi["status"], pi["amount_received"]) == ("canceled", 0)
            assert h.gw.calls["void"] == 1  # one cancel at the provider, not two
            invoice = await h.get(f"/v1/invoices/{invoice_id}")
            assert invoice["status"] == "void"

    asyncio.run(scenario())


def test_a_release_waits_for_the_other_cancel_no_longer_than_its_bound(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider slower than ``RELEASE_WAIT`` to answer the other release's cancel: the
    waiting release gives up at the bound (and says so) instead of hanging; the cancel in
    flight still ends the intent once answered, with one void at the provider."""
    monkeypatch.setattr(invoice_payments, "RELEASE_WAIT", 0.3)

    async def scenario() -> None:
        async with Harness.open(db_url, tmp_path) as h:
            invoice_id, pi_id = await _waiting_invoice(h)
            gate = h.gw.hold("void")
            void = asyncio.ensure_future(h.post(f"/v1/invoices/{invoice_id}/void", {}))
            await gate.wait_reached()
            with caplog.at_level(logging.WARNING, logger=invoice_payments.__name__):
                await asyncio.wait_for(h.app.invoices.release(h.account, pi_id), 5)
            assert "still unanswered" in caplog.text
            # It gave up with the provider's answer still pending.
            assert not void.done()
            assert (await h.get(f"/v1/payment_intents/{pi_id}"))["status"] == "processing"
            gate.release()
            answered = await void
            assert answered.status_code == 200, answered.text
            pi = await h.get(f"/v1/payment_intents/{pi_id}")
            assert (pi["status"], pi["amount_received"]) == ("canceled", 0)
            assert h.gw.calls["void"] == 1

    asyncio.run(scenario())


def test_a_release_for_an_intent_charging_for_another_reason_does_not_wait(
    db_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Harness.open(db_url, tmp_path) as h:
            invoice_id, pi_id = await _waiting_invoice(h)
            await ok(h, f"/v1/invoices/{invoice_id}/void", {})
            # Processing with no cancel in flight (an asynchronous payment, say): nothing to
            # wait for; the hook answers for its money.
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text("update payment_intents set status = 'processing' where id = :i"),
                    {"i": pi_id},
                )
            await asyncio.wait_for(h.app.invoices.release(h.account, pi_id), 1.0)

    asyncio.run(scenario())


pg_url = migrated_database_fixture("release_race_pg", backends=["postgres"])


def test_a_release_whose_cancel_is_refused_because_the_other_started_first_waits_for_it(
    pg_url: str, tmp_path: Path
) -> None:
    """Both releases read the intent still waiting for the payer; the second one's cancel is
    refused (the first's moved it to ``processing`` meanwhile): it too returns only once the
    first's cancel is answered, and finds the intent canceled. PostgreSQL: another
    connection holds the intent's row until both releases wait on it."""

    async def scenario() -> None:
        async with Harness.open(pg_url, tmp_path) as h:
            invoice_id, pi_id = await _waiting_invoice(h)
            # The invoice closed without its releases (they run here, by hand).
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text("update invoices set status = 'void' where id = :i"), {"i": invoice_id}
                )
            dsn = pg_url.replace("postgresql+asyncpg", "postgresql")
            locker, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
            try:
                await locker.execute("BEGIN")
                await locker.execute(
                    "select id from payment_intents where id = $1 for update", pi_id
                )
                gate = h.gw.hold("void")

                async def release_then_status() -> str:
                    await h.app.invoices.release(h.account, pi_id)
                    return str((await h.get(f"/v1/payment_intents/{pi_id}"))["status"])

                both = [asyncio.ensure_future(release_then_status()) for _ in range(2)]
                for _ in range(1000):  # both past their read, waiting for the row: 20 s at most
                    # (another connection: the locker's own reads of pg_stat_activity keep the
                    # snapshot its transaction took first)
                    waiting = await watcher.fetchval(
                        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                        "and datname = current_database()"
                    )
                    if waiting == 2:
                        break
                    assert not any(task.done() for task in both)
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError(f"the two releases never both waited: {waiting}")
                await locker.execute("COMMIT")
                await gate.wait_reached()  # the first one's cancel at the provider
                await asyncio.sleep(0.3)
                assert not any(task.done() for task in both)  # the second waits for it too
                gate.release()
                statuses = await asyncio.wait_for(asyncio.gather(*both), 10)
            finally:
                await locker.close()
                await watcher.close()
            assert statuses == ["canceled", "canceled"]
            assert h.gw.calls["void"] == 1  # one cancel at the provider, not two

    asyncio.run(scenario())
