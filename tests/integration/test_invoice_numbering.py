"""Invoice numbers are gap-free per account under concurrency (SQLite and PostgreSQL): 20
drafts finalized at the same time get the numbers 1..20 exactly, and a finalization that
rolls back gives its number back (the sequence row's increment rolls back with it)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import make_settings, migrated_database_url
from paymux.billing.invoices import DraftLine, invoice_prefix
from paymux.services import Paymux
from paymux.services.customers import CustomerParams
from paymux.storage.models import Invoice
from support.pgcluster import PgCluster
from support.processes import free_port

N = 20


class Boom(Exception):
    pass


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_finalizations_number_1_to_20(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"numbers_{uuid.uuid4().hex[:12]}")
    settings = make_settings(url, tmp_path, free_port())

    async def run() -> None:
        app = Paymux(settings)
        try:
            key = await app.accounts.create_key()
            account = key.account_id
            customer = (await app.customers.create(account, CustomerParams(email="n@x.io")))["id"]

            async def draft(i: int) -> str:
                line = DraftLine(
                    type="invoiceitem",
                    amount=1000 + i,
                    currency="usd",
                    description=f"item {i}",
                    period_start_us=0,
                    period_end_us=0,
                )
                return await app.invoices.create_draft(
                    account,
                    customer_id=customer,
                    currency="usd",
                    billing_reason="manual",
                    period_start_us=0,
                    period_end_us=0,
                    lines=[line],
                    collection_method="send_invoice",
                    days_until_due=30,
                    now_us=1,
                )

            drafts = [await draft(i) for i in range(N + 1)]
            # One finalization rolls back after taking its number: the number comes back.
            async with app.ctx.db.write() as s:
                invoice = await s.get(Invoice, drafts[-1], with_for_update=True)
                assert invoice is not None
                try:
                    async with s.begin_nested():
                        await app.invoices.finalize_in(s, invoice, charge=False)
                        assert invoice.number == f"{invoice_prefix(account, False)}-0001"
                        raise Boom
                except Boom:
                    pass
            views = await asyncio.gather(
                *(app.invoices.finalize(account, d, charge=False) for d in drafts[:N])
            )
            numbers = sorted(v["number"] for v in views)
            prefix = invoice_prefix(account, False)
            assert numbers == [f"{prefix}-{n:04d}" for n in range(1, N + 1)]
            assert {v["status"] for v in views} == {"open"}
            assert (await app.invoices.retrieve(account, drafts[-1]))["number"] is None
        finally:
            await app.close()

    asyncio.run(run())
