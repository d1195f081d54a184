"""The invoice's payment lease: the hosted page's payment and a dunning retry never charge side
by side (SQLite and PostgreSQL; paymux in process, the scripted provider at the connector seam,
named ``sandbox`` as the page's gateway is).

The window: the page confirms the invoice's declined intent with the payer's card. Under the
invoice's lock it checks that intent is still the invoice's and still waiting, then lets the
lock go and calls the payment service, which first asks the gateway about the card
(``describe_payment_method``) and only then records its start. Until then the intent still
reads ``requires_payment_method`` (declined): a dunning retry arriving then saw nothing in
flight and charged the default card beside it (the page's payment, second to land, was
refunded by the hook). Here the retry is run at exactly that point, with the page's call held
at the gateway seam (``ScriptedGateway.hold``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.billing.hosted_payments import pay_from_page
from paymux.billing.payment_lease import lease_seconds
from paymux.domain.errors import PaymuxError
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"lease_{next(_names)}")


async def ok(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await h.post(path, body)
    assert r.status_code == 200, r.text
    return h.body(r)


async def declined_invoice(h: Harness) -> tuple[dict[str, Any], str]:
    """An open invoice of 2,000 whose first off-session try was declined (its intent waits
    for a payment method), the customer's default card now a good one; (invoice, its token)."""
    cus = await ok(h, "/v1/customers", {"email": "lease@example.com"})
    pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
    await ok(h, f"/v1/customers/{cus['id']}",
             {"invoice_settings": {"default_payment_method": pm["id"]}})
    await ok(h, "/v1/invoiceitems", {"customer": cus["id"], "amount": 2000, "currency": "usd"})
    invoice = await ok(h, "/v1/invoices",
                       {"customer": cus["id"], "pending_invoice_items_behavior": "include"})
    await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {})
    h.gw.script("authorize", Outcome.decline("card_declined"))
    r = await h.post(f"/v1/invoices/{invoice['id']}/pay", {})
    assert r.status_code == 402, r.text
    rows = await h.sql("select hosted_token, status, amount_remaining from invoices where id = :i",
                       i=invoice["id"])
    token, status, remaining = rows[0]
    assert (status, remaining) == ("open", 2000)
    # The dunning retry is due now (not advancing the clock: the lease is timed by it too).
    async with h.app.ctx.db.write() as s:
        await s.execute(text("update invoices set next_payment_attempt_us = :t where id = :i"),
                        {"t": h.app.ctx.now_us(), "i": invoice["id"]})
    return invoice, str(token)


def captured(h: Harness) -> list[int]:
    return sorted(p.amount_captured for p in h.gw.payments.values() if p.amount_captured > 0)


def test_a_dunning_retry_in_the_pages_window_charges_nothing_beside_it(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            # The page's confirm asks the gateway about the payer's card before it records
            # its start: that call, held at the seam, is inside the window.
            gate = h.gw.hold("describe_payment_method")
            page = asyncio.create_task(
                pay_from_page(h.app, token, "tok_mastercard", "https://shop.example/back")
            )
            await gate.wait_reached()
            # The dunning retry, at exactly that point.
            await h.app.invoices.retry(h.account, invoice["id"])
            # And the merchant's POST /pay: refused with a clear error, nothing charged.
            r = await h.post(f"/v1/invoices/{invoice['id']}/pay", {})
            assert r.status_code == 400, r.text
            assert h.body(r)["error"]["code"] == "invoice_unexpected_state"
            gate.release()
            outcome = await page
            assert outcome.status == "paid"
            # The retry was put off, not lost: its job is due once the lease lapses; by then
            # the invoice is paid and it charges nothing.
            h.advance(lease_seconds(h.app.ctx) + 5)
            await h.drain()
            rows = await h.sql(
                "select status, amount_paid, payment_lease_holder from invoices where id = :i",
                i=invoice["id"],
            )
            assert rows[0] == ("paid", 2000, None)
            assert captured(h) == [2000]  # one charge, the page's
            assert h.gw.total_charged() == 2000  # and nothing was refunded (none was needed)
            refunds = await h.sql("select count(*) from refunds")
            assert refunds[0][0] == 0

    asyncio.run(main())


def test_a_page_payment_in_a_dunning_tries_window_is_refused(db: str, tmp_path: Path) -> None:
    """The other way round: the dunning try holds the lease while its call is at the gateway;
    the page refuses the payer's card (a payment is under way) and charges nothing."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            gate = h.gw.hold("authorize")
            retry = asyncio.create_task(h.app.invoices.retry(h.account, invoice["id"]))
            await gate.wait_reached()
            with pytest.raises(PaymuxError) as refused:
                await pay_from_page(h.app, token, "tok_mastercard", "https://shop.example/back")
            assert refused.value.code == "invoice_unexpected_state"
            gate.release()
            await retry
            rows = await h.sql(
                "select status, amount_paid, payment_lease_holder from invoices where id = :i",
                i=invoice["id"],
            )
            assert rows[0] == ("paid", 2000, None)
            assert captured(h) == [2000]

    asyncio.run(main())


def test_a_lease_left_by_a_dead_process_lapses_and_the_retry_then_charges(
    db: str, tmp_path: Path
) -> None:
    """A lease whose holder died (never released) blocks only until its time: the put-off
    try then charges the invoice once."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, _ = await declined_invoice(h)
            until = h.app.ctx.now_us() + 60_000_000
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text("update invoices set payment_lease_holder = 'pi_gone', "
                         "payment_lease_until_us = :u where id = :i"),
                    {"u": until, "i": invoice["id"]},
                )
            await h.app.invoices.retry(h.account, invoice["id"])
            assert captured(h) == []  # held: nothing charged yet
            jobs = await h.sql(
                "select run_at_us from jobs where kind = 'invoice_pay' and status = 'queued'"
            )
            assert [r[0] for r in jobs] == [until + 1_000_000]
            h.advance(62)
            await h.drain()
            rows = await h.sql("select status, amount_paid from invoices where id = :i",
                               i=invoice["id"])
            assert rows[0] == ("paid", 2000)
            assert captured(h) == [2000]

    asyncio.run(main())


def test_a_lease_outlasts_a_slow_page_before_its_payment_starts(db: str, tmp_path: Path) -> None:
    """Reviewer's scenario: the page's card lookup is slow (a gateway call with its retries)
    and one call's budget passes before its payment starts; a dunning retry then must still
    find the lease held, or the customer is charged twice (it was: [2000, 2000])."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            gate = h.gw.hold("describe_payment_method")
            page = asyncio.create_task(
                pay_from_page(h.app, token, "tok_mastercard", "https://shop.example/back")
            )
            await gate.wait_reached()
            h.advance(h.app.settings.attempt_settle_after_seconds + 1)
            await h.app.invoices.retry(h.account, invoice["id"])
            assert captured(h) == []  # the lease still holds: the retry is put off
            gate.release()
            outcome = await page
            assert outcome.status == "paid"
            h.advance(lease_seconds(h.app.ctx) + 5)
            await h.drain()
            assert captured(h) == [2000]
            rows = await h.sql("select status, amount_paid from invoices where id = :i",
                               i=invoice["id"])
            assert rows[0] == ("paid", 2000)

    asyncio.run(main())
