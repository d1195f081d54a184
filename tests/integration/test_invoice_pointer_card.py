"""The hosted invoice page's card payment notes its new intent on the invoice before the
payment service makes it; when the create fails before the intent exists (the gateway down
while it describes the card, on every try), the invoice names no intent again: the API never
shows an id that does not exist. The payer's next try pays once. SQLite and PostgreSQL;
paymux in process, the scripted provider at the connector seam."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paymux.billing.hosted_payments import pay_from_page
from paymux.gateways.base import GatewayUnavailable
from support.billing_harness import ok
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness

db = migrated_database_fixture("inv_pointer_card")
# Tries of one gateway call: the harness's gateway_retries (3) and the first.
TRIES = 4


def test_a_card_create_failing_before_its_intent_leaves_none_named(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            # An open invoice nobody charged yet: its payer pays it from the hosted page.
            customer = (await ok(h, "/v1/customers", {"email": "page@example.com"}))["id"]
            item = {"customer": customer, "amount": 2400, "currency": "usd"}
            await ok(h, "/v1/invoiceitems", item)
            include = {"customer": customer, "pending_invoice_items_behavior": "include"}
            invoice_id = (await ok(h, "/v1/invoices", include))["id"]
            await ok(h, f"/v1/invoices/{invoice_id}/finalize", {})
            [(token,)] = await h.sql(
                "select hosted_token from invoices where id = :i", i=invoice_id
            )
            h.gw.script("describe_payment_method", *[Outcome.fail_before()] * TRIES)
            with pytest.raises(GatewayUnavailable):
                await pay_from_page(h.app, token, "tok_mastercard", "https://shop.test/b")
            assert (
                await h.sql("select id from payment_intents where invoice_id = :i", i=invoice_id)
                == []
            )
            shown = await h.get(f"/v1/invoices/{invoice_id}")
            assert (shown["status"], shown["payment_intent"]) == ("open", None)

            outcome = await pay_from_page(h.app, token, "tok_mastercard", "https://shop.test/b")
            assert outcome.status == "paid"
            paid = await h.get(f"/v1/invoices/{invoice_id}")
            [(pi_id, status)] = await h.sql(
                "select id, status from payment_intents where invoice_id = :i", i=invoice_id
            )
            assert (paid["status"], paid["payment_intent"], status) == ("paid", pi_id, "succeeded")
            charged = [p.amount_captured for p in h.gw.payments.values() if p.amount_captured]
            assert charged == [2400]

    asyncio.run(main())
