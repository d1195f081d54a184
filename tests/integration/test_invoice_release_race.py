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
from pathlib import Path

from sqlalchemy import text

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
