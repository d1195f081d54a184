"""Two races around the hosted invoice page's pointer to its intent (found by review),
SQLite and PostgreSQL; paymux in process, the scripted provider at the connector seam.

1. Two clicks make the same intent; one fails before the intent exists and takes the noted
   id off the invoice (and gives back the lease both shared) while the other's payment is
   on its way to the provider. The other's start names its intent on the invoice
   (``payment_lease.check_start``), so the merchant's ``/pay`` meanwhile starts no payment
   beside it and the invoice is charged once.
2. A credit note settles the invoice while the page's payment waits for 3-D Secure, before
   the page points the invoice at it again (``hosted_payments._renote``): a paid invoice is
   not re-pointed, so the payer finishing 3-D Secure later is refunded, not kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from paymux.billing import hosted_payments
from paymux.billing.hosted_payments import hosted_intent_id, pay_from_page
from paymux.billing.payment_lease import release_lease
from support.billing_harness import ok
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness

db = migrated_database_fixture("inv_pointer_twins")


async def _open_invoice(h: Harness, amount: int) -> tuple[str, str]:
    customer = (await ok(h, "/v1/customers", {"email": "page@example.com"}))["id"]
    await ok(h, "/v1/invoiceitems", {"customer": customer, "amount": amount, "currency": "usd"})
    include = {"customer": customer, "pending_invoice_items_behavior": "include"}
    invoice_id = (await ok(h, "/v1/invoices", include))["id"]
    await ok(h, f"/v1/invoices/{invoice_id}/finalize", {})
    [(token,)] = await h.sql("select hosted_token from invoices where id = :i", i=invoice_id)
    return invoice_id, token


def test_a_twin_clicks_failure_does_not_open_the_invoice_to_a_second_charge(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice_id, token = await _open_invoice(h, 2400)
            pi_id = hosted_intent_id(invoice_id, "tok_mastercard")
            describe = h.gw.hold("describe_payment_method")
            b = asyncio.create_task(
                pay_from_page(h.app, token, "tok_mastercard", "https://shop.test/b")
            )
            await describe.wait_reached()
            # Click A (the same form: the same intent id) failed before the intent existed:
            # what its error path does.
            await hosted_payments._unnote(h.app, invoice_id, pi_id)
            await release_lease(h.app.ctx, invoice_id, pi_id)
            authorize = h.gw.hold("authorize")
            describe.release()
            await authorize.wait_reached()  # B's start committed; its charge is in flight
            mid = await h.get(f"/v1/invoices/{invoice_id}")
            assert (mid["status"], mid["payment_intent"]) == ("open", pi_id)
            # /pay sees the payment in flight and starts none beside it: the invoice as it is.
            second = await h.post(f"/v1/invoices/{invoice_id}/pay", {"payment_method": "tok_visa"})
            assert (second.status_code, second.json()["payment_intent"]) == (200, pi_id)
            made = await h.sql("select id from payment_intents where invoice_id = :i", i=invoice_id)
            assert made == [(pi_id,)]
            authorize.release()
            assert (await b).status == "paid"
            await h.deliver_all()
            await h.drain()
            charged = [p.amount_captured for p in h.gw.payments.values() if p.amount_captured]
            assert charged == [2400]
            final = await h.get(f"/v1/invoices/{invoice_id}")
            assert (final["status"], final["payment_intent"]) == ("paid", pi_id)

    asyncio.run(main())


def test_a_credit_noted_invoice_is_not_pointed_at_the_pages_payment_again(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice_id, token = await _open_invoice(h, 2400)
            h.gw.script("authorize", Outcome.requires_action())
            renote = hosted_payments._renote

            async def credit_note_first(app: Any, invoice: str, pi: str) -> None:
                # The merchant's credit note for all of it lands between the page's create
                # answering (3-D Secure) and the page re-pointing; the provider is slow to
                # cancel the intent the note released.
                h.gw.script("void", *[Outcome.fail_before()] * 8)
                note = await h.post("/v1/credit_notes", {"invoice": invoice, "amount": 2400})
                assert note.status_code == 200, note.text
                await renote(app, invoice, pi)

            monkeypatch.setattr(hosted_payments, "_renote", credit_note_first)
            await pay_from_page(h.app, token, "tok_mastercard", "https://shop.test/b")
            after = await h.get(f"/v1/invoices/{invoice_id}")
            assert (after["status"], after["payment_intent"]) == ("paid", None)
            [(pi_id,)] = await h.sql(
                "select id from payment_intents where invoice_id = :i", i=invoice_id
            )
            h.gw.complete_action(pi_id)  # the payer finishes 3-D Secure before the cancel
            await h.deliver_all()
            await h.drain()
            [(status, received)] = await h.sql(
                "select status, amount_received from payment_intents where id = :p", p=pi_id
            )
            refunded = await h.sql(
                "select amount from refunds where payment_intent_id = :p", p=pi_id
            )
            # The payer's 3-D Secure is applied before the release's cancel gets through: the
            # payment succeeded on a paid invoice, and it is given back in full.
            assert (status, received, [r[0] for r in refunded]) == ("succeeded", 2400, [2400])
            final = await h.get(f"/v1/invoices/{invoice_id}")
            assert (final["status"], final["payment_intent"], final["amount_paid"]) == (
                "paid",
                None,
                0,
            )

    asyncio.run(main())
