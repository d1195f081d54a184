"""Giving back money an invoice did not need (job ``return_invoice_payment``) makes at most one
refund at the gateway, whatever runs of the job overlap or die; and a refund the gateway refuses
is shown (the refund ``failed``, ``refund.failed``, an error log line), not left as a dead job.

paymux's real services and worker on a real database, against the scripted fake provider at
the connector seam; the provider's ledger is what is counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from paymux.jobs import queue
from paymux.services.refunds import RefundsService
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

db = migrated_database_fixture("return")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp) as h:
            await test(h)

    asyncio.run(main())


async def paid_intent(h: Harness, amount: int = 2000) -> str:
    r = await h.post(
        "/v1/payment_intents",
        {"amount": amount, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
    )
    assert r.status_code == 200, r.text
    pi = h.body(r)
    assert (pi["status"], pi["amount_received"]) == ("succeeded", amount)
    return str(pi["id"])


async def returned_refunds(h: Harness, pi_id: str) -> list[tuple[str, int, str]]:
    rows = await h.sql(
        "select id, amount, status from refunds where payment_intent_id = :p order by id",
        p=pi_id,
    )
    return [(str(a), int(b), str(c)) for a, b, c in rows]


async def queue_return(h: Harness, pi_id: str, amount: int) -> None:
    async with h.app.ctx.db.write() as s:
        await queue.enqueue(
            s,
            "return_invoice_payment",
            {"account_id": h.account, "pi_id": pi_id, "amount": amount},
            now_us=h.app.ctx.now_us(),
            dedupe_key=f"return:{pi_id}",
            account_id=h.account,
        )


async def job_statuses(h: Harness, kind: str) -> list[str]:
    return [r[0] for r in await h.sql("select status from jobs where kind = :k", k=kind)]


def test_two_runs_of_the_return_job_at_once_make_one_refund(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose lease ran out mid-run, and the run that claimed the job after it, both
    past the check for an earlier refund before either made one."""
    real = RefundsService.create

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        both_checked = asyncio.Barrier(2)

        async def create(self: RefundsService, *args: Any, **kw: Any) -> dict[str, Any]:
            await both_checked.wait()  # each run has looked for an earlier refund
            return await real(self, *args, **kw)

        monkeypatch.setattr(RefundsService, "create", create)
        await asyncio.gather(
            h.app.invoices.return_payment(h.account, pi_id, 500),
            h.app.invoices.return_payment(h.account, pi_id, 500),
        )
        await h.drain()
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [500]
        assert h.gw.money_refunded(pi_id) == 500
        [(_, amount, status)] = await returned_refunds(h, pi_id)
        assert (amount, status) == (500, "succeeded")
        got = await h.get(f"/v1/payment_intents/{pi_id}")
        assert (got["amount_refunded"], got["amount_received"]) == (500, 2000)

    run(db, tmp_path, test)


def test_a_run_after_a_crash_past_the_refund_call_resumes_that_refund(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        # The provider makes the refund; the run dies before it hears the answer.
        h.gw.script("refund", Outcome.slow_response(30))
        first = asyncio.create_task(h.app.invoices.return_payment(h.account, pi_id, 700))
        for _ in range(500):
            if h.gw.refunds_for(pi_id):
                break
            await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        [(refund_id, _, status)] = await returned_refunds(h, pi_id)
        assert status == "pending"
        # The job, claimed again once its lease ran out, runs again.
        await h.app.invoices.return_payment(h.account, pi_id, 700)
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert await returned_refunds(h, pi_id) == [(refund_id, 700, "succeeded")]
        assert (await h.get(f"/v1/payment_intents/{pi_id}"))["amount_refunded"] == 700

    run(db, tmp_path, test)


@pytest.mark.parametrize("refusal", ["invalid", "decline"])
def test_a_refund_the_gateway_refuses_is_shown_and_the_job_ends(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        h.gw.script(
            "refund",
            Outcome.invalid("charge_disputed") if refusal == "invalid" else Outcome.decline(
                "expired_or_canceled_card"
            ),
        )
        await queue_return(h, pi_id, 600)
        with caplog.at_level(logging.ERROR, logger="paymux.billing.invoice_payments"):
            await h.drain()
        [(refund_id, amount, status)] = await returned_refunds(h, pi_id)
        assert (amount, status) == (600, "failed")
        assert "refund.failed" in await h.events(refund_id)
        # The job is over (done), not waiting for retries that would find the same refund.
        assert await job_statuses(h, "return_invoice_payment") == ["done"]
        logged = [r for r in caplog.records if r.levelno == logging.ERROR and refund_id in r.getMessage()]
        assert len(logged) == 1 and "stays with the merchant" in logged[0].getMessage()
        got = await h.get(f"/v1/payment_intents/{pi_id}")
        assert (got["amount_refunded"], got["amount_received"]) == (0, 2000)
        assert h.gw.money_refunded(pi_id) == 0

    run(db, tmp_path, test)


@pytest.mark.parametrize("held", ["before_the_provider_acts", "after_the_provider_acts"])
def test_a_second_run_resumes_the_refund_while_the_first_runs_call_is_in_flight(
    db: str, tmp_path: Path, held: str
) -> None:
    """The first run's refund call hangs (the provider has not acted yet, or it acted and
    the answer has not come back); its lease runs out and a second run of the job resumes
    that refund while the call is still in flight; then the first call returns."""

    async def test(h: Harness) -> None:
        pi_id = await paid_intent(h)
        gate = h.gw.hold("refund", after=held == "after_the_provider_acts")
        first = asyncio.create_task(h.app.invoices.return_payment(h.account, pi_id, 700))
        await gate.wait_reached()
        [(refund_id, amount, status)] = await returned_refunds(h, pi_id)
        assert (amount, status) == (700, "pending")
        await h.app.invoices.return_payment(h.account, pi_id, 700)  # the second run
        assert not first.done(), "the first run's call is still in flight"
        # The second run settled that refund by asking the provider (or by making the call
        # itself, with the same key, if the provider had not acted yet): one refund.
        assert await returned_refunds(h, pi_id) == [(refund_id, 700, "succeeded")]
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        gate.release()
        await first  # its late answer changes nothing
        await h.drain()
        assert [r.amount for r in h.gw.refunds_for(pi_id)] == [700]
        assert h.gw.money_refunded(pi_id) == 700
        keys = {c.idempotency_key for c in h.gw.log if c.operation == "refund"}
        assert keys == {f"{refund_id}:refund"}
        assert await returned_refunds(h, pi_id) == [(refund_id, 700, "succeeded")]
        [intent] = await h.intents()
        assert (intent["refunded"], intent["pending"], intent["received"]) == (700, 0, 2000)
        assert (await h.events(refund_id)).count("refund.created") == 1

    run(db, tmp_path, test)
