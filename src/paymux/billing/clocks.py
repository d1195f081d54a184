"""Stripe's test clocks (``/v1/test_helpers/test_clocks``): a frozen time for the customers
created on it, and everything of theirs (subscriptions, invoices) runs on that time. Test mode
only; several clocks are isolated from each other and from the wall clock's sweep (which
skips subscriptions on a clock).

Advancing is a job (``advance_test_clock``): the clock shows ``advancing`` while it runs each
due step in time order -- the earliest ``next_due_us`` of its subscriptions or
``next_payment_attempt`` of its invoices up to the target -- with the clock's time set to
that step's time first, so every invoice, payment event and status change carries the time
it would have had in real time; then the clock is ``ready`` at the target.

A dunning try due while another path holds the invoice's payment lease (a payer on the hosted
page, on the wall clock) waits for it as it would in real time: the advance stops at that
try's time, the clock still ``advancing``, and its job runs again shortly (``LEASE_POLL_S``)
until the lease is over; the try then runs at its own time on the clock. A try put off by a
lease that ended before the advance looked at it (given back, or lapsed: its holder died) is
still due at its time: it is run again then, at most ``LEASE_RERUNS`` times for one time in
one run of the job, so a try that stays due without running (one beside a payment in flight,
which answers for the invoice) is not run for ever: it is then left for the next advance.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.payment_lease import lease_live
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_views import move
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.jobs.queue import enqueue
from paymux.services.context import (
    Context,
    emit,
    get_owned,
    page_of,
    request_livemode,
)
from paymux.storage.models import Invoice, Subscription, TestClock

if TYPE_CHECKING:
    from paymux.billing.invoices import InvoicesService
    from paymux.billing.subscriptions import SubscriptionsService

__all__ = ["ClocksService", "clock_for_customer", "clock_view"]

log = logging.getLogger(__name__)

_DELETES_AFTER_US = 30 * 86_400 * 1_000_000
_MAX_STEPS = 20_000
# How often a stopped advance looks again whether the lease it waits for is over (seconds):
# a lease is given back as soon as its payment answered, long before it would lapse.
LEASE_POLL_S = 2.0
# How many times one run of the advance runs again a try still due after it ran (put off by a
# lease that ended before the advance looked): once is enough unless a lease is taken again.
LEASE_RERUNS = 3

# Where an invoice's try due at a time stands after the advance ran it or before it does:
# ``done`` (closed, or no longer due then), ``leased`` (a live lease of another path holds
# it: the advance waits), ``due`` (still due, nothing holding it).
TryState = Literal["done", "leased", "due"]


def clock_view(clock: TestClock) -> dict[str, Any]:
    return {
        "id": clock.id,
        "object": "test_helpers.test_clock",
        "created": clock.created_us // 1_000_000,
        "deletes_after": clock.deletes_after_us // 1_000_000,
        "frozen_time": clock.frozen_time_us // 1_000_000,
        "livemode": False,
        "name": clock.name,
        "status": clock.status,
        "status_details": (
            {"advancing": {"target_frozen_time": clock.advancing_to_us // 1_000_000}}
            if clock.status == "advancing" and clock.advancing_to_us is not None
            else {}
        ),
    }


async def clock_for_customer(s: AsyncSession, account_id: str, clock_id: str) -> TestClock:
    """The clock a new customer is created on (``test_clock``): the account's, ready or
    not, in test mode only."""
    if request_livemode():
        raise PaymuxError.of(
            "parameter_invalid",
            "A customer can be created on a test clock in test mode only.",
            param="test_clock",
        )
    return await get_owned(s, TestClock, clock_id, account_id, param="test_clock")


def _check_time(frozen_time: int) -> None:
    from paymux.billing.subscription_changes import MAX_SECONDS

    if not 0 < frozen_time < MAX_SECONDS:
        raise PaymuxError.of(
            "parameter_invalid",
            "frozen_time must be a unix time before 2100.",
            param="frozen_time",
        )


def _test_only() -> None:
    if request_livemode():
        raise PaymuxError.of(
            "parameter_invalid",
            "Test clocks exist in test mode only: use a test key.",
            param="test_clock",
        )


class ClocksService:
    def __init__(
        self, ctx: Context, subscriptions: SubscriptionsService, invoices: InvoicesService
    ) -> None:
        self.ctx = ctx
        self.subscriptions = subscriptions
        self.invoices = invoices

    async def create(self, account_id: str, frozen_time: int, name: str | None) -> dict[str, Any]:
        _test_only()
        _check_time(frozen_time)
        now = self.ctx.now_us()
        clock = TestClock(
            id=new_id("clock"),
            account_id=account_id,
            name=name,
            frozen_time_us=frozen_time * 1_000_000,
            status="ready",
            deletes_after_us=now + _DELETES_AFTER_US,
            deleted=False,
            created_us=now,
        )
        async with self.ctx.db.write() as s:
            s.add(clock)
            await emit(s, account_id, "test_helpers.test_clock.created", clock_view(clock), now)
        return clock_view(clock)

    async def retrieve(self, account_id: str, clock_id: str) -> dict[str, Any]:
        _test_only()
        async with self.ctx.db.read() as s:
            return clock_view(await get_owned(s, TestClock, clock_id, account_id))

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        _test_only()
        return await page_of(
            self.ctx,
            TestClock,
            account_id,
            clock_view,
            TestClock.deleted.is_(False),
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )

    async def delete(self, account_id: str, clock_id: str) -> dict[str, Any]:
        """Delete the clock: its customers' subscriptions are canceled (kept simple)."""
        _test_only()
        async with self.ctx.db.write() as s:
            clock = await get_owned(s, TestClock, clock_id, account_id, lock=True)
            subs = (
                await s.execute(
                    select(Subscription)
                    .where(
                        Subscription.test_clock_id == clock_id,
                        Subscription.status.not_in(["canceled", "incomplete_expired"]),
                    )
                    .with_for_update()
                )
            ).scalars()
            for sub in subs:
                await move(s, sub, T.CANCELED, clock.frozen_time_us)
            clock.deleted = True
            now = self.ctx.now_us()
            await emit(s, account_id, "test_helpers.test_clock.deleted", clock_view(clock), now)
        return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}

    async def advance(self, account_id: str, clock_id: str, frozen_time: int) -> dict[str, Any]:
        _test_only()
        _check_time(frozen_time)
        async with self.ctx.db.write() as s:
            clock = await get_owned(s, TestClock, clock_id, account_id, lock=True)
            target = frozen_time * 1_000_000
            if clock.status != "ready":
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"The test clock is {clock.status}: wait until it is ready.",
                    param="frozen_time",
                )
            if target <= clock.frozen_time_us:
                raise PaymuxError.of(
                    "parameter_invalid",
                    "frozen_time must be later than the clock's current frozen_time.",
                    param="frozen_time",
                )
            clock.status = "advancing"
            clock.advancing_to_us = target
            now = self.ctx.now_us()
            await enqueue(
                s,
                "advance_test_clock",
                {"clock_id": clock_id},
                now_us=now,
                dedupe_key=f"clock:{clock_id}:{target}",
                account_id=account_id,
            )
            view = clock_view(clock)
            await emit(s, account_id, "test_helpers.test_clock.advancing", view, now)
            return view

    async def _next(
        self, clock_id: str, target: int, seen: set[tuple[str, str, int]]
    ) -> tuple[str, str, str, int] | None:
        """The earliest due item of the clock at or before ``target``: (kind, account, id,
        time), skipping what was already run at that time without moving."""
        async with self.ctx.db.read() as s:
            subs = await s.execute(
                select(Subscription.id, Subscription.account_id, Subscription.next_due_us)
                .where(Subscription.test_clock_id == clock_id, Subscription.next_due_us <= target)
                .order_by(Subscription.next_due_us, Subscription.id)
                .limit(100)
            )
            invoices = await s.execute(
                select(Invoice.id, Invoice.account_id, Invoice.next_payment_attempt_us)
                .where(
                    Invoice.test_clock_id == clock_id,
                    Invoice.status == "open",
                    Invoice.next_payment_attempt_us <= target,
                )
                .order_by(Invoice.next_payment_attempt_us, Invoice.id)
                .limit(100)
            )
            found = [("sub", str(a), str(i), int(t or 0)) for i, a, t in subs.all()]
            found += [("inv", str(a), str(i), int(t or 0)) for i, a, t in invoices.all()]
        found.sort(key=lambda f: (f[3], f[0] != "sub", f[2]))
        for kind, account_id, object_id, at in found:
            if (kind, object_id, at) not in seen:
                return kind, account_id, object_id, at
        return None

    async def _wait_for_lease(
        self, clock_id: str, account_id: str, invoice_id: str, at: int, target: int
    ) -> TryState:
        """Where the invoice's try due at ``at`` stands (``TryState``); when a live lease of
        another path holds it, the advance job is queued again (``LEASE_POLL_S``) and this
        run stops there."""
        wall = self.ctx.now_us()
        async with self.ctx.db.read() as s:
            invoice = await s.get(Invoice, invoice_id, populate_existing=True)
            if (
                invoice is None
                or invoice.status != "open"
                or invoice.next_payment_attempt_us is None
                or invoice.next_payment_attempt_us > at
            ):
                return "done"
            if not lease_live(invoice, wall):
                return "due"
            until = int(invoice.payment_lease_until_us or wall)
        async with self.ctx.db.write() as s:
            await enqueue(
                s,
                "advance_test_clock",
                {"clock_id": clock_id},
                now_us=wall,
                delay=min((until - wall) / 1_000_000 + 1.0, LEASE_POLL_S),
                dedupe_key=f"clock:{clock_id}:{target}:lease:{wall}",
                account_id=account_id,
            )
        log.info("test clock %s waits at %s for the payment lease of %s", clock_id, at, invoice_id)
        return "leased"

    async def run_advance(self, clock_id: str) -> None:
        """The ``advance_test_clock`` job (see the module docstring)."""
        seen: set[tuple[str, str, int]] = set()
        reruns: Counter[tuple[str, str, int]] = Counter()
        for _ in range(_MAX_STEPS):
            async with self.ctx.db.read() as s:
                clock = await s.get(TestClock, clock_id, populate_existing=True)
                if clock is None or clock.status != "advancing" or clock.advancing_to_us is None:
                    return
                target = clock.advancing_to_us
            step = await self._next(clock_id, target, seen)
            if step is None:
                break
            kind, account_id, object_id, at = step
            key = (kind, object_id, at)
            seen.add(key)
            async with self.ctx.db.write() as s:
                locked = await s.get(TestClock, clock_id, with_for_update=True)
                assert locked is not None
                locked.frozen_time_us = max(locked.frozen_time_us, at)
            if kind == "inv":
                state = await self._wait_for_lease(clock_id, account_id, object_id, at, target)
                if state == "leased":
                    return
            if kind == "sub":
                await self.subscriptions.run_due(object_id, at)
            else:
                await self.invoices.retry(account_id, object_id, at_us=at)
                # Its try put off by a lease (``InvoicePayments._after_lease``): still due.
                state = await self._wait_for_lease(clock_id, account_id, object_id, at, target)
                if state == "leased":
                    return
                if state == "due" and reruns[key] < LEASE_RERUNS:
                    # The lease ended before this look (given back, or lapsed): nothing to
                    # wait for, and the try is still due at ``at``: run it again (bounded).
                    reruns[key] += 1
                    seen.discard(key)
                elif state == "due":
                    log.warning(
                        "test clock %s: the try of %s due at %s did not run; left for the next "
                        "advance",
                        clock_id,
                        object_id,
                        at,
                    )
        else:
            log.error("test clock %s: more than %d steps; stopping here", clock_id, _MAX_STEPS)
        async with self.ctx.db.write() as s:
            clock = await s.get(TestClock, clock_id, with_for_update=True)
            if clock is None or clock.advancing_to_us is None:
                return
            clock.frozen_time_us = clock.advancing_to_us
            clock.advancing_to_us = None
            clock.status = "ready"
            await emit(
                s,
                clock.account_id,
                "test_helpers.test_clock.ready",
                clock_view(clock),
                self.ctx.now_us(),
            )
