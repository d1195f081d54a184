"""A dunning try on a test clock put off by the invoice's payment lease, when that lease ends
between the try being put off and the advance's look at it (SQLite and PostgreSQL; paymux in
process, the scripted provider at the connector seam).

The advance runs the try due at ``at`` (``InvoicesService.retry``); a payer took the lease
just before, so the try is put off (``InvoicePayments._after_lease``: still due at ``at``).
The advance then looks whether a live lease holds it (``ClocksService.run_advance``): if the
lease ended in between (its holder died and it lapsed), nothing is waited for, and the try,
already marked as run at ``at``, was skipped: the clock went ``ready`` with the invoice open
and unpaid, its try left for the next advance. The interleaving is forced, not timed: the
lease is taken right before the real retry and made to lapse (the test's wall clock moved
past it) right after it returns."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from support.billing_harness import declined_open_invoice, ok
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()

DAY = 86_400
T0 = 1_900_000_000
# The dead payer's lease: short, so that moving the test's wall clock past it leaves the
# advance job's own lease (60 s) untouched.
LEASE_S = 1


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"clocklease_{next(_names)}")


def captured(h: Harness) -> list[int]:
    return sorted(p.amount_captured for p in h.gw.payments.values() if p.amount_captured > 0)


async def declined_on_clock(h: Harness) -> tuple[str, str]:
    """(a clock at T0, an open invoice of 2,000 on it whose first try was declined: its
    next try due at T0 + 1 day, the default schedule's first retry)."""
    clk = (await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": T0}))["id"]
    invoice = await declined_open_invoice(h, {"email": "clocklease@example.com", "test_clock": clk})
    failed = await h.get(f"/v1/invoices/{invoice['id']}")
    assert failed["next_payment_attempt"] == T0 + DAY
    return str(clk), str(invoice["id"])


def lease_around_retry(
    h: Harness, invoice_id: str, monkeypatch: pytest.MonkeyPatch, *, times: int
) -> list[int]:
    """The retry as the advance calls it, the first ``times`` calls of it with a payer taking
    the invoice's lease right before it (so the try is put off) and that lease lapsing right
    after it returns (the payer's process died: the wall clock moves past the lease's end).
    Returns the clock times the invoice's try was called at, filled as the advance runs."""
    real = h.app.invoices.retry
    calls: list[int] = []

    async def retry(account_id: str, invoice: str, *, at_us: int | None = None) -> None:
        leased = invoice == invoice_id and len(calls) < times
        if invoice == invoice_id:
            calls.append(at_us or 0)
        if leased:
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "update invoices set payment_lease_holder = 'pi_payer_gone', "
                        "payment_lease_until_us = :u where id = :i"
                    ),
                    {"u": h.app.ctx.now_us() + LEASE_S * 1_000_000, "i": invoice_id},
                )
        await real(account_id, invoice, at_us=at_us)
        if leased:
            h.advance(LEASE_S + 1)

    monkeypatch.setattr(h.app.invoices, "retry", retry)
    return calls


def test_a_try_put_off_by_a_lease_that_lapses_at_once_runs_in_the_same_advance(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease lapses between the try being put off and the advance's look: the try runs
    again at its own time in the same advance, charges once, and only then is the clock
    ``ready``. (Before: the clock went ``ready`` with the invoice open, nothing charged.)"""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            clk, invoice_id = await declined_on_clock(h)
            calls = lease_around_retry(h, invoice_id, monkeypatch, times=1)
            await ok(
                h, f"/v1/test_helpers/test_clocks/{clk}/advance", {"frozen_time": T0 + 2 * DAY}
            )
            await h.drain()
            ready = await h.get(f"/v1/test_helpers/test_clocks/{clk}")
            assert (ready["status"], ready["frozen_time"]) == ("ready", T0 + 2 * DAY)
            due_us = (T0 + DAY) * 1_000_000
            assert calls == [due_us, due_us]  # put off, then run again at its own time
            paid = await h.get(f"/v1/invoices/{invoice_id}")
            assert (paid["status"], paid["amount_paid"]) == ("paid", 2000)
            assert paid["status_transitions"]["paid_at"] == T0 + DAY
            assert captured(h) == [2000]

    asyncio.run(main())


def test_a_try_put_off_again_and_again_is_run_again_a_bounded_number_of_times(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run of the try finds a lease that lapses before the advance looks: the advance
    runs it again three times (the bound), then goes on as before the fix (the try is left
    due for the next advance) instead of running it for ever; the next advance charges it."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            clk, invoice_id = await declined_on_clock(h)
            calls = lease_around_retry(h, invoice_id, monkeypatch, times=1_000)
            await ok(
                h, f"/v1/test_helpers/test_clocks/{clk}/advance", {"frozen_time": T0 + 2 * DAY}
            )
            await h.drain()
            ready = await h.get(f"/v1/test_helpers/test_clocks/{clk}")
            assert (ready["status"], ready["frozen_time"]) == ("ready", T0 + 2 * DAY)
            due_us = (T0 + DAY) * 1_000_000
            assert calls == [due_us] * 4  # the try, and three runs again
            waiting = await h.get(f"/v1/invoices/{invoice_id}")
            assert (waiting["status"], waiting["next_payment_attempt"]) == ("open", T0 + DAY)
            assert captured(h) == []
            monkeypatch.undo()
            await ok(
                h, f"/v1/test_helpers/test_clocks/{clk}/advance", {"frozen_time": T0 + 3 * DAY}
            )
            await h.drain()
            paid = await h.get(f"/v1/invoices/{invoice_id}")
            assert (paid["status"], paid["amount_paid"]) == ("paid", 2000)
            assert captured(h) == [2000]

    asyncio.run(main())
