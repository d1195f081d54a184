"""Crash points for the renewal tests (tests/e2e/test_renewal_safety.py,
tests/integration/test_renewals_exactly_once.py): paymux in process with its real services,
worker and sandbox gateway on a real database, a frozen clock at 2027-01-01, and the process
dying at a chosen statement: ``Crash``, a BaseException no handler catches, raised from a
SQLAlchemy statement hook (the mechanism of tests/integration/test_batched_apply.py). What
was committed before stays; nothing after runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from conftest import make_settings
from paymux.billing.subscriptions import SubscriptionParams
from paymux.domain.clock import FrozenClock
from paymux.jobs.worker import Worker
from paymux.services import Paymux
from paymux.services.customers import CustomerParams
from paymux.storage import driver
from support.processes import free_port

__all__ = ["FEB_1", "HOUR", "JAN_1", "MAR_1", "Billing", "Crash", "billing", "dying", "starts"]

JAN_1 = 1_798_761_600  # 2027-01-01T00:00:00Z
FEB_1 = JAN_1 + 31 * 86_400
MAR_1 = FEB_1 + 28 * 86_400
HOUR = 3600


class Crash(BaseException):
    """The process dying: no ``except Exception`` catches it."""


class Billing:
    """The app, a clock at 2027-01-01 and a customer with ``token`` as its default card."""

    def __init__(self, app: Paymux, clock: FrozenClock, account: str, customer: str) -> None:
        self.app, self.clock, self.account, self.customer = app, clock, account, customer

    def advance_to(self, unix: int) -> None:
        self.clock.advance(unix - self.clock.now_us() / 1_000_000)

    async def price(self, amount: int) -> str:
        product = await self.app.catalog.create_product(self.account, {"name": "Plan"})
        price = await self.app.catalog.create_price(
            self.account,
            {
                "product": product["id"],
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": "month"},
            },
        )
        return str(price["id"])

    async def subscribe(self, amount: int = 1200) -> dict[str, Any]:
        return await self.app.subscriptions.create(
            self.account,
            SubscriptionParams(customer=self.customer, items=[{"price": await self.price(amount)}]),
        )

    async def drain(self, worker_id: str = "w2") -> list[str]:
        """Sweep, then run due jobs until none is left; returns the kinds that ran."""
        worker = Worker(self.app, worker_id=worker_id)
        await worker.sweep()
        before = {r[0] for r in await self.sql("select id from jobs where status = 'done'")}
        for _ in range(20):
            if await worker.run_once() == 0:
                break
        rows = await self.sql("select id, kind from jobs where status = 'done'")
        return sorted(kind for job_id, kind in rows if job_id not in before)

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with self.app.ctx.db.read() as s:
            return list((await s.execute(text(statement), params)).all())

    async def invoice(self, invoice_id: str) -> tuple[str, int, int, str | None]:
        """(status, attempt_count, amount_paid, payment_intent_id)."""
        rows = await self.sql(
            "select status, attempt_count, amount_paid, payment_intent_id from invoices "
            "where id = :i",
            i=invoice_id,
        )
        return tuple(rows[0])  # type: ignore[return-value]

    async def intents(self, invoice_id: str) -> list[tuple[str, str]]:
        rows = await self.sql(
            "select id, status from payment_intents where invoice_id = :i order by id",
            i=invoice_id,
        )
        return [(str(a), str(b)) for a, b in rows]


@asynccontextmanager
async def billing(url: str, tmp: Path, token: str = "pm_card_visa") -> AsyncIterator[Billing]:
    clock = FrozenClock(JAN_1 * 1_000_000)
    app = Paymux(make_settings(url, tmp, free_port()), clock=clock)
    try:
        account = (await app.accounts.create_key()).account_id
        customer = (await app.customers.create(account, CustomerParams()))["id"]
        pm = await app.customers.attach(account, token, customer)
        await app.customers.update(
            account, customer, CustomerParams(default_payment_method=pm["id"])
        )
        yield Billing(app, clock, account, customer)
    finally:
        await app.close()


@asynccontextmanager
async def dying(
    app: Paymux, when: Callable[[str], bool], *, after_commit: bool = False
) -> AsyncIterator[dict[str, bool]]:
    """Every statement from the first one ``when`` accepts on (``after_commit``: from the
    first statement after the commit of the transaction that ran it) raises ``Crash``."""
    state = {"seen": False, "dead": False}
    db = app.ctx.db
    engines = {id(e): e.sync_engine for e in (db.writer, db.reader)}.values()

    def on_statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if state["dead"]:
            raise Crash
        if when(statement):
            state["seen"] = True
            if not after_commit:
                state["dead"] = True
                raise Crash

    def on_commit(conn: Any) -> None:
        if state["seen"]:
            state["dead"] = True

    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_statement)
        event.listen(engine, "commit", on_commit)
    # Statements on the database driver (storage/driver.py) fire no SQLAlchemy event: its
    # observer sees each one just after it ran, inside its transaction, so a Crash there
    # still rolls that transaction back (as dying at the statement itself does).
    stop_observing = driver.observe(lambda sql, _took: on_statement(None, None, sql))
    try:
        yield state
    finally:
        stop_observing()
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_statement)
            event.remove(engine, "commit", on_commit)
        for _ in range(500):  # let the dead transactions' connections go back to the pool
            if all(e.pool.checkedout() == 0 for e in engines):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda statement: statement.lstrip().upper().startswith(prefix)
