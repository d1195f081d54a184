"""The invoice-payment hook takes its locks in the renewal steps' order: the subscription, then
the invoice. Two transactions interleaved at exactly that point on PostgreSQL never deadlock;
the other order does (the control case below shows this test would see it).

The race is a real one: the payer completes the first invoice's payment (3-D Secure, say) of
an ``incomplete`` subscription just as the scheduler expires it (23 h). Transaction A settles
the payment (``InvoicePayments.on_intent_settled``, in the intent's settling transaction, as
the attempt engine runs it); transaction B is the renewal step (``run_due``: the subscription
under its lock, then its open invoice, to void it).

Deterministic interleaving: A is stopped right before its SECOND row lock among the
subscription and the invoice (a wrapper around ``AsyncSession.get`` for A's task only) until B
is seen waiting for a lock in ``pg_locks``; then A goes on."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.billing.subscription_due import INCOMPLETE_EXPIRY_US
from paymux.storage.models import Invoice, PaymentIntent, Subscription
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
_IN_A: contextvars.ContextVar[bool] = contextvars.ContextVar("in_a", default=False)


@pytest.fixture
def pg(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"lockorder_{next(_names)}")


class Interleave:
    """Stops A before its second lock of a subscription or an invoice until B waits."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.locks: list[str] = []
        self.paused = asyncio.Event()

    async def b_is_waiting(self) -> None:
        for _ in range(1000):
            async with self.h.app.ctx.db.read() as m:
                waiting = (
                    await m.execute(
                        text(
                            "select count(*) from pg_locks l join pg_stat_activity a "
                            "on a.pid = l.pid where not l.granted "
                            "and a.datname = current_database()"
                        )
                    )
                ).scalar_one()
            if waiting:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("B never waited for a lock")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = AsyncSession.get
        interleave = self

        async def get(self: AsyncSession, entity: Any, ident: Any, **kw: Any) -> Any:
            if _IN_A.get() and kw.get("with_for_update") and entity in (Subscription, Invoice):
                interleave.locks.append(entity.__name__)
                if len(interleave.locks) == 2:
                    interleave.paused.set()
                    await interleave.b_is_waiting()
            return await original(self, entity, ident, **kw)

        monkeypatch.setattr(AsyncSession, "get", get)


async def incomplete_subscription(h: Harness) -> tuple[str, str, str]:
    """(subscription, its first invoice, that invoice's intent): ``default_incomplete``, so
    the invoice is open and its intent waits for the payer."""

    async def ok(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await h.post(path, body)
        assert r.status_code == 200, r.text
        return h.body(r)

    cus = await ok("/v1/customers", {"email": "race@example.com"})
    product = await ok("/v1/products", {"name": "Pro"})
    price = await ok("/v1/prices", {"product": product["id"], "unit_amount": 1200,
                                    "currency": "usd", "recurring": {"interval": "month"}})
    sub = await ok("/v1/subscriptions", {"customer": cus["id"], "items": [{"price": price["id"]}],
                                         "payment_behavior": "default_incomplete"})
    assert sub["status"] == "incomplete"
    rows = await h.sql("select id, payment_intent_id, status from invoices where id = :i",
                       i=sub["latest_invoice"])
    invoice_id, pi_id, status = rows[0]
    assert status == "open" and pi_id
    return sub["id"], invoice_id, pi_id


async def race(
    h: Harness, *, invoice_first: bool, out_of_band: bool = False
) -> list[BaseException | None]:
    """Run A (the payment settles; or, ``out_of_band``, the merchant marks the invoice paid
    out of band) and B (the expiry step), interleaved; their outcomes."""
    sub_id, invoice_id, pi_id = await incomplete_subscription(h)
    interleave: Interleave = h.interleave  # type: ignore[attr-defined]

    async def a() -> None:
        _IN_A.set(True)
        if out_of_band:
            await h.app.invoices.pay(h.account, invoice_id, paid_out_of_band=True)
            return
        async with h.app.ctx.db.write() as s:
            pi = await s.get(PaymentIntent, pi_id, with_for_update=True)
            assert pi is not None
            if invoice_first:  # the other order: the invoice's lock before the hook runs
                await s.get(Invoice, invoice_id, with_for_update=True)
            pi.status = "succeeded"
            pi.amount_received = pi.amount
            await h.app.invoices.on_intent_settled(s, pi, ("payment_intent.succeeded",))

    async def b() -> None:
        created = (await h.sql("select created_us from subscriptions where id = :i",
                               i=sub_id))[0][0]
        await h.app.subscriptions.run_due(sub_id, created + INCOMPLETE_EXPIRY_US + 1)

    task_a = asyncio.create_task(a())
    await asyncio.wait_for(interleave.paused.wait(), 30)  # A holds its first lock
    task_b = asyncio.create_task(b())
    outcomes = await asyncio.gather(task_a, task_b, return_exceptions=True)
    h.outcome_ids = (sub_id, invoice_id)  # type: ignore[attr-defined]
    return [o if isinstance(o, BaseException) else None for o in outcomes]


def deadlocked(error: BaseException | None) -> bool:
    if not isinstance(error, DBAPIError):
        return False
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code == "40P01" or "deadlock" in str(error).lower()


def run(pg: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, invoice_first: bool,
        out_of_band: bool = False) -> tuple[list[BaseException | None], list[str], list[Any]]:
    async def main() -> tuple[list[BaseException | None], list[str], list[Any]]:
        async with Harness.open(pg, tmp) as h:
            interleave = Interleave(h)
            h.interleave = interleave  # type: ignore[attr-defined]
            interleave.install(monkeypatch)
            outcomes = await race(h, invoice_first=invoice_first, out_of_band=out_of_band)
            monkeypatch.undo()
            sub_id, invoice_id = h.outcome_ids  # type: ignore[attr-defined]
            state = await h.sql(
                "select s.status, i.status, i.amount_paid from subscriptions s "
                "join invoices i on i.id = :i where s.id = :s", s=sub_id, i=invoice_id)
            return outcomes, interleave.locks, list(state[0])

    return asyncio.run(main())


def test_the_hooks_order_never_deadlocks_with_the_expiry_step(
    pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes, locks, state = run(pg, tmp_path, monkeypatch, invoice_first=False)
    assert outcomes == [None, None], outcomes  # both committed: B waited for A, no deadlock
    assert locks[:2] == ["Subscription", "Invoice"]  # A: the subscription first, as B
    # A paid the invoice and activated the subscription first; B then found it no longer
    # incomplete, so nothing expired.
    assert state == ["active", "paid", 1200]


def test_the_other_order_deadlocks_which_is_what_the_test_above_would_see(
    pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: A takes the invoice before the subscription (the hook's old order).
    PostgreSQL finds the cycle and ends one of the two transactions."""
    outcomes, locks, _ = run(pg, tmp_path, monkeypatch, invoice_first=True)
    assert locks[:2] == ["Invoice", "Subscription"]
    assert any(deadlocked(o) for o in outcomes), outcomes


def test_paying_out_of_band_never_deadlocks_with_the_expiry_step(
    pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race with the merchant's ``POST /v1/invoices/{id}/pay`` (``paid_out_of_band``)
    as A: it takes the subscription before the invoice too (``lock_invoice``). Before, it
    locked the invoice, then the subscription to activate it, and PostgreSQL found the cycle
    with the expiry step (as in the control case above)."""
    outcomes, locks, state = run(pg, tmp_path, monkeypatch, invoice_first=False,
                                 out_of_band=True)
    assert outcomes == [None, None], outcomes
    assert locks[:2] == ["Subscription", "Invoice"]
    assert state[:2] == ["active", "paid"]  # paid out of band first: nothing expired
