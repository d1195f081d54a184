"""The hosted invoice page and an intent of the invoice that was made and never confirmed
(SQLite and PostgreSQL; paymux in process, scripted providers at the connector seam).

A try's run reserves its intent on the invoice, takes the payment lease, makes the intent and
then confirms it. A run that died between the two leaves a ``requires_confirmation`` intent
that never reached a gateway (``never_started``), and its lease lapses. Nothing of it is in
flight: the payer's card on the page must pay the invoice. Before, the page took that intent
for a payment under way (``live_intent``) and refused every card until a job resumed it.

The intent is made at another gateway than the page's (``other``): an intent of the page's
own gateway is confirmed with the payer's card instead (the page's first branch)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.billing.hosted_payments import pay_from_page
from paymux.billing.invoice_payments import attempt_intent_id
from paymux.services.payments import CreateParams
from support.billing_harness import ok
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"hostedns_{next(_names)}")


def test_the_page_pays_beside_a_never_started_intent_whose_run_died(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            other = ScriptedGateway("other")
            other.now = h.gw.now
            h.app.ctx.gateways["other"] = other
            cus = await ok(h, "/v1/customers", {"email": "page@example.com"})
            await ok(
                h, "/v1/invoiceitems", {"customer": cus["id"], "amount": 2000, "currency": "usd"}
            )
            invoice = await ok(
                h,
                "/v1/invoices",
                {"customer": cus["id"], "pending_invoice_items_behavior": "include"},
            )
            invoice_id = (await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {}))["id"]
            # The dead run of try 1: its reservation and lease (lapsed), then its intent,
            # made (at ``other``) and never confirmed.
            pi_id = attempt_intent_id(invoice_id, 1)
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "update invoices set payment_intent_id = :p, payment_lease_holder = :p,"
                        " payment_lease_until_us = :t where id = :i"
                    ),
                    {"p": pi_id, "t": h.app.ctx.now_us() - 1, "i": invoice_id},
                )
            made = await h.app.payments.create(
                h.account,
                CreateParams(
                    id=pi_id,
                    invoice_id=invoice_id,
                    amount=2000,
                    currency="usd",
                    customer=cus["id"],
                    payment_method="tok_visa",
                    gateway="other",
                    metadata={"invoice": invoice_id},
                ),
            )
            assert made["status"] == "requires_confirmation"
            [(token,)] = await h.sql(
                "select hosted_token from invoices where id = :i", i=invoice_id
            )
            outcome = await pay_from_page(h.app, token, "tok_mastercard", "https://shop.test/b")
            assert outcome.status == "paid"
            rows = await h.sql(
                "select status, amount_paid from invoices where id = :i", i=invoice_id
            )
            assert rows[0] == ("paid", 2000)
            # The never-started intent is canceled, and nothing reached ``other``.
            rows = await h.sql("select status from payment_intents where id = :p", p=pi_id)
            assert rows[0][0] == "canceled"
            assert other.calls["authorize"] == 0
            charged = [p.amount_captured for p in h.gw.payments.values() if p.amount_captured]
            assert charged == [2000]

    asyncio.run(main())
