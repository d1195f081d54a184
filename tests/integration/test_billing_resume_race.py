"""Two runs of ONE invoice try (SQLite and PostgreSQL; paymux in process, the scripted
provider at the connector seam).

A path slower than its payment lease (stalled, not dead) and the run that took the invoice
after the lease lapsed derive the same intent id for the same try count
(``attempt_intent_id``). The second run answers for the try; the slow path's own error (its
card could not be read) must not be recorded as a failed try of the invoice, nor may it give
back the lease the second run holds (``payment_lease.taken_over``, ``release_lease``'s
``until``). Before, the invoice counted a failed try (``invoice.payment_failed``, the
dunning schedule started) while the same try's payment succeeded.

Interleaving forced with gates at the seam (``ScriptedGateway.hold``), never timing: each
run's card lookup (``describe_payment_method``) is held in turn."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.billing.invoice_payments import attempt_intent_id
from paymux.billing.payment_lease import lease_seconds
from support.billing_harness import ok
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"resume_{next(_names)}")


async def open_invoice(h: Harness) -> dict[str, Any]:
    """A finalized invoice of 2,000 usd, never tried (attempt_count 0)."""
    cus = await ok(h, "/v1/customers", {"email": "resume@example.com"})
    await ok(h, "/v1/invoiceitems", {"customer": cus["id"], "amount": 2000, "currency": "usd"})
    invoice = await ok(
        h, "/v1/invoices", {"customer": cus["id"], "pending_invoice_items_behavior": "include"}
    )
    return await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {})


def test_a_slow_paths_error_is_not_a_failed_try_when_another_run_pays_it(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice_id = (await open_invoice(h))["id"]
            pi_id = attempt_intent_id(invoice_id, 1)
            # A: the merchant's /pay (try 1) with a card the gateway is asked about; held,
            # then the gateway refuses its token (not retried).
            h.gw.script("describe_payment_method", Outcome.invalid(message="no such token"))
            gate_a = h.gw.hold("describe_payment_method")
            slow = asyncio.create_task(
                h.post(f"/v1/invoices/{invoice_id}/pay", {"payment_method": "tok_mastercard"})
            )
            await gate_a.wait_reached()
            # A outlives its lease; B, another /pay of the same try, takes the invoice.
            h.advance(lease_seconds(h.app.ctx) + 1)
            gate_b = h.gw.hold("describe_payment_method")
            other = asyncio.create_task(
                h.post(f"/v1/invoices/{invoice_id}/pay", {"payment_method": "tok_amex"})
            )
            await gate_b.wait_reached()
            [(holder, until)] = await h.sql(
                "select payment_lease_holder, payment_lease_until_us from invoices where id = :i",
                i=invoice_id,
            )
            assert holder == pi_id  # B's lease: the same try's intent
            # A's lookup fails now, while B holds the invoice (before its start).
            gate_a.release()
            r = await slow
            assert r.status_code not in (200, 500), r.text
            rows = await h.sql(
                "select status, attempt_count, payment_lease_holder, payment_lease_until_us"
                " from invoices where id = :i",
                i=invoice_id,
            )
            # Not a failed try, and B's lease is still B's.
            assert rows[0] == ("open", 0, pi_id, until)
            gate_b.release()
            r = await other
            assert r.status_code == 200, r.text
            assert h.body(r)["status"] == "paid"
            rows = await h.sql(
                "select status, amount_paid, attempt_count from invoices where id = :i",
                i=invoice_id,
            )
            assert rows[0] == ("paid", 2000, 1)
            assert "invoice.payment_failed" not in await h.events(invoice_id)
            charged = [p.amount_captured for p in h.gw.payments.values() if p.amount_captured]
            assert charged == [2000]

    asyncio.run(main())
