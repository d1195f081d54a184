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
from paymux.billing.hosted_payments import PageOutcome, pay_from_page
from paymux.billing.payment_lease import lease_seconds
from paymux.domain.errors import PaymuxError
from paymux.services.payments import CreateParams, PaymentsService
from support.billing_harness import declined_invoice, ok
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"lease_{next(_names)}")


def captured(h: Harness) -> list[int]:
    return sorted(p.amount_captured for p in h.gw.payments.values() if p.amount_captured > 0)


def test_a_dunning_retry_in_the_pages_window_charges_nothing_beside_it(
    db: str, tmp_path: Path
) -> None:
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


def test_a_page_payment_in_a_dunning_tries_window_is_refused(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: the dunning try has taken the lease and noted its intent on the
    invoice, and the payment service has not made that intent yet (the try makes no gateway
    call before it: its card is saved). A page payment arriving then finds no intent in flight
    (the noted one does not exist, so it holds nothing); only the lease refuses it. The page's
    payment is run at exactly that point: on the try's call into ``PaymentsService.create``,
    before the real one. Without the lease the page charges the payer's card and the try's
    start is refused (``start_guard``): this test then fails on the page's answer."""
    real = PaymentsService.create
    page: list[PaymuxError | PageOutcome] = []

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)

            async def create(self: PaymentsService, account_id: str, p: CreateParams) -> Any:
                if p.metadata.get("paymux_try") == "automatic" and not page:
                    rows = await h.sql(
                        "select payment_intent_id from invoices where id = :i", i=invoice["id"]
                    )
                    assert rows[0][0] == p.id  # noted on the invoice, not made yet
                    assert await h.sql("select id from payment_intents where id = :i", i=p.id) == []
                    try:
                        page.append(
                            await pay_from_page(
                                h.app, token, "tok_mastercard", "https://shop.example/back"
                            )
                        )
                    except PaymuxError as exc:
                        page.append(exc)
                return await real(self, account_id, p)

            monkeypatch.setattr(PaymentsService, "create", create)
            lookups = h.gw.calls["describe_payment_method"]
            await h.app.invoices.retry(h.account, invoice["id"])
            [refused] = page
            assert isinstance(refused, PaymuxError), refused
            assert refused.code == "invoice_unexpected_state"
            rows = await h.sql(
                "select status, amount_paid, payment_lease_holder from invoices where id = :i",
                i=invoice["id"],
            )
            assert rows[0] == ("paid", 2000, None)
            assert captured(h) == [2000]  # the try's charge, of the saved card
            # The page never got to the payer's card.
            assert h.gw.calls["describe_payment_method"] == lookups

    asyncio.run(main())


def test_a_page_slower_than_its_lease_never_starts_beside_the_try_that_took_over(
    db: str, tmp_path: Path
) -> None:
    """Item: the payment's start checks the lease. The page's card lookup outlasts its whole
    lease; a dunning try then takes the invoice and pays it. When the page's confirm gets to
    its start, the invoice is no longer its own: the start is refused (400
    ``invoice_unexpected_state``), nothing started, the page's intent canceled, one charge
    and no refund (before: the page charged too, and the hook refunded it)."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            [first] = await h.sql(
                "select payment_intent_id from invoices where id = :i", i=invoice["id"]
            )
            gate = h.gw.hold("describe_payment_method")
            page = asyncio.create_task(
                pay_from_page(h.app, token, "tok_mastercard", "https://shop.example/back")
            )
            await gate.wait_reached()
            h.advance(lease_seconds(h.app.ctx) + 1)  # the page's lease has lapsed
            await h.app.invoices.retry(h.account, invoice["id"])
            rows = await h.sql(
                "select status, amount_paid from invoices where id = :i", i=invoice["id"]
            )
            assert rows[0] == ("paid", 2000)  # the retry took the invoice and paid it
            authorizes = h.gw.calls["authorize"]
            gate.release()
            with pytest.raises(PaymuxError) as refused:
                await page
            assert refused.value.code == "invoice_unexpected_state"
            assert h.gw.calls["authorize"] == authorizes  # the page's start sent nothing
            assert captured(h) == [2000]
            assert (await h.sql("select count(*) from refunds"))[0][0] == 0
            # The page confirmed the invoice's declined intent: it was not started again
            # (one authorize attempt, the declined one) and, no longer wanted, is canceled.
            attempts = await h.sql(
                "select count(*) from gateway_attempts where object_id = :i "
                "and operation = 'authorize'",
                i=first[0],
            )
            assert attempts[0][0] == 1
            status = await h.sql("select status from payment_intents where id = :i", i=first[0])
            assert status[0][0] == "canceled"

    asyncio.run(main())


def test_a_page_payment_is_refused_at_its_start_while_the_try_that_took_over_is_at_the_gateway(
    db: str, tmp_path: Path
) -> None:
    """As above, but the page gets to its start while the dunning try that took the lapsed
    lease holds it, its authorize still at the gateway: the start is refused by that live
    lease; the try's charge is the only one."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            lookup = h.gw.hold("describe_payment_method")
            page = asyncio.create_task(
                pay_from_page(h.app, token, "tok_mastercard", "https://shop.example/back")
            )
            await lookup.wait_reached()
            h.advance(lease_seconds(h.app.ctx) + 1)
            charge = h.gw.hold("authorize")
            retry = asyncio.create_task(h.app.invoices.retry(h.account, invoice["id"]))
            await charge.wait_reached()
            holder = await h.sql(
                "select payment_lease_holder from invoices where id = :i", i=invoice["id"]
            )
            assert holder[0][0] is not None
            lookup.release()
            with pytest.raises(PaymuxError) as refused:
                await page
            assert refused.value.code == "invoice_unexpected_state"
            charge.release()
            await retry
            rows = await h.sql(
                "select status, amount_paid, payment_lease_holder from invoices where id = :i",
                i=invoice["id"],
            )
            assert rows[0] == ("paid", 2000, None)
            assert captured(h) == [2000]
            assert (await h.sql("select count(*) from refunds"))[0][0] == 0

    asyncio.run(main())


def test_a_pay_request_slower_than_its_lease_is_refused_at_its_start(
    db: str, tmp_path: Path
) -> None:
    """The merchant's POST /pay with a new card: its card lookup outlasts the lease, and the
    payer pays on the page meanwhile. The request's start is refused (400
    ``invoice_unexpected_state``, not a 402: it was no failed try), its intent is canceled,
    the try count is the page's, and the card was charged once."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice, token = await declined_invoice(h)
            gate = h.gw.hold("describe_payment_method")
            pay = asyncio.create_task(
                h.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": "tok_amex"})
            )
            await gate.wait_reached()
            h.advance(lease_seconds(h.app.ctx) + 1)
            outcome = await pay_from_page(
                h.app, token, "tok_mastercard", "https://shop.example/back"
            )
            assert outcome.status == "paid"
            gate.release()
            r = await pay
            assert r.status_code == 400, r.text
            assert h.body(r)["error"]["code"] == "invoice_unexpected_state"
            rows = await h.sql(
                "select status, amount_paid, attempt_count from invoices where id = :i",
                i=invoice["id"],
            )
            assert rows[0] == ("paid", 2000, 2)  # the declined try and the page's
            assert captured(h) == [2000]
            intents = await h.sql(
                "select status from payment_intents where invoice_id = :i order by created_us",
                i=invoice["id"],
            )
            assert sorted(s for (s,) in intents) == [
                "canceled",  # the request's, made and never started
                "requires_payment_method",  # the first, declined
                "succeeded",  # the page's
            ]

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
                    text(
                        "update invoices set payment_lease_holder = 'pi_gone', "
                        "payment_lease_until_us = :u where id = :i"
                    ),
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
            rows = await h.sql(
                "select status, amount_paid from invoices where id = :i", i=invoice["id"]
            )
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
            rows = await h.sql(
                "select status, amount_paid from invoices where id = :i", i=invoice["id"]
            )
            assert rows[0] == ("paid", 2000)

    asyncio.run(main())


DAY = 86_400


def test_a_dunning_try_put_off_by_a_lease_on_a_test_clock_runs_at_the_clocks_time(
    db: str, tmp_path: Path
) -> None:
    """On a test clock, a dunning try that finds the lease held (here by a process that died
    holding it, on the wall clock) waits for it as it would in real time: the advance stops
    at the try's time, the clock still ``advancing``; once the lease is over the advance goes
    on, the try charges at its own time on the clock, and only then is the clock ``ready``.
    (Before: the try became a job on the wall clock and the clock went on without it; the
    try charged after the advance, dated at the clock's target.)"""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            t0 = 1_900_000_000
            clk = (await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": t0}))["id"]
            cus = await ok(h, "/v1/customers", {"email": "clock@example.com", "test_clock": clk})
            pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
            await ok(
                h,
                f"/v1/customers/{cus['id']}",
                {"invoice_settings": {"default_payment_method": pm["id"]}},
            )
            await ok(
                h, "/v1/invoiceitems", {"customer": cus["id"], "amount": 2000, "currency": "usd"}
            )
            invoice = await ok(
                h,
                "/v1/invoices",
                {"customer": cus["id"], "pending_invoice_items_behavior": "include"},
            )
            await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {})
            h.gw.script("authorize", Outcome.decline("card_declined"))
            r = await h.post(f"/v1/invoices/{invoice['id']}/pay", {})
            assert r.status_code == 402, r.text
            failed = await h.get(f"/v1/invoices/{invoice['id']}")
            # The default schedule's first retry: a day after the first failure (clock time).
            assert failed["next_payment_attempt"] == t0 + DAY
            until = h.app.ctx.now_us() + 60_000_000
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "update invoices set payment_lease_holder = 'pi_gone', "
                        "payment_lease_until_us = :u where id = :i"
                    ),
                    {"u": until, "i": invoice["id"]},
                )
            await ok(
                h, f"/v1/test_helpers/test_clocks/{clk}/advance", {"frozen_time": t0 + 2 * DAY}
            )
            await h.drain()
            waiting = await h.get(f"/v1/test_helpers/test_clocks/{clk}")
            assert (waiting["status"], waiting["frozen_time"]) == ("advancing", t0 + DAY)
            assert captured(h) == []
            wall_jobs = await h.sql(
                "select count(*) from jobs where kind = 'invoice_pay' and status = 'queued'"
            )
            assert wall_jobs[0][0] == 0  # no try queued on the wall clock
            h.advance(62)  # the dead holder's lease is over
            await h.drain()
            ready = await h.get(f"/v1/test_helpers/test_clocks/{clk}")
            assert (ready["status"], ready["frozen_time"]) == ("ready", t0 + 2 * DAY)
            paid = await h.get(f"/v1/invoices/{invoice['id']}")
            assert (paid["status"], paid["amount_paid"]) == ("paid", 2000)
            assert paid["status_transitions"]["paid_at"] == t0 + DAY
            assert captured(h) == [2000]

    asyncio.run(main())
