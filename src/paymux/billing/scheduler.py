"""The billing scheduler: the worker's periodic sweep queues a ``subscription_due`` job for
every subscription whose ``next_due_us`` has come (those on a test clock excepted: their
clock runs them), streamed through the ``ix_subscriptions_next_due`` index in batches by a
(next_due_us, id) keyset, one short transaction per batch: never all rows at once.

Each job's dedupe key is ``renew:<sub id>:<next_due_us>``: several workers sweeping at once
queue it once, and a job that runs twice does its period once anyway (the invoice's unique
``period_key``, and the payment's reserved intent id).

A batch is ONE ``INSERT INTO jobs ... SELECT`` from the subscriptions (``ON CONFLICT DO
NOTHING`` on the live-dedupe index, ``NOT EXISTS`` skipping what a live job holds already),
not a statement per subscription: the sweep runs every few seconds on every worker while a
backlog is due, and used to offer each of those subscriptions again, one round trip each.
And a sweep queues only while fewer than ``BACKLOG`` renewals wait in the queue (one
bounded count first): with 100,000 due at once, every sweep of every worker walked all of
them again, each found already queued, and that walk took most of PostgreSQL's CPU
(docs/benchmarks.md, "Issue 11: 100,000 due at once, with a budget").

A process's first sweep first brings ``next_due_us`` forward to the ``invoice.upcoming``
notice wherever it is later than that notice (``catch_up_upcoming``): subscriptions made
before the notice existed (their due time was the renewal, so the notice was skipped), or
before the lead was raised (``PAYMUX_BILLING_UPCOMING_INVOICE_DAYS``, 0 -> 7). One UPDATE, the
same rule as ``subscription_due.upcoming_notice``, for renewals still to come (the clock's
time for a subscription on a test clock); a notice whose time has passed is then sent at
once (dated at its time, as after workers that were down).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from paymux.billing.subscription_due import RENEWING, upcoming_lead_us
from paymux.services.context import Context
from paymux.storage.models import Job, Subscription, TestClock

__all__ = ["BACKLOG", "RENEWAL_CONCURRENCY", "BillingScheduler", "runs_concurrently"]

log = logging.getLogger(__name__)

BATCH = 1000
# A sweep queues renewals only while fewer than this many wait in the queue (``sweep``): a
# backlog of 100,000 due subscriptions is fed to the workers 10,000 at a time, instead of
# every sweep (every few seconds, on every worker) walking all of them again to find each
# one already queued.
BACKLOG = 10_000
_KIND = "subscription_due"
# How many of a worker's claimed ``subscription_due`` jobs run at once (the worker's
# ``run_once``): each is one subscription's steps and its invoice's off-session payment,
# every transaction short and every gateway call outside them, so one worker keeps its core
# busy while others wait on PostgreSQL or the gateway. Exactly once does not rest on it:
# each job is what it was (the subscription's row lock, the invoice's unique period_key, the
# payment's reserved intent id), as with several workers. Kept well under the database
# pool (10 + 10 overflow): a renewal holds one connection at a time.
RENEWAL_CONCURRENCY = 8
MAX_ATTEMPTS = 10  # queue.enqueue's default
_LIVE_SQL = text("status IN ('queued', 'running')")  # ux_jobs_dedupe_key_live's predicate


def runs_concurrently(kind: str) -> bool:
    """Whether a worker runs claimed jobs of ``kind`` side by side (``RENEWAL_CONCURRENCY``
    at a time) instead of one after another."""
    return kind == _KIND


class BillingScheduler:
    def __init__(
        self, ctx: Context, *, batch: int = BATCH, max_batches: int = 100, backlog: int = BACKLOG
    ) -> None:
        self.ctx = ctx
        self.batch = batch
        self.max_batches = max_batches
        self.backlog = backlog
        self._caught_up = False

    async def catch_up_upcoming(self) -> int:
        """``next_due_us`` brought forward to the subscription's ``invoice.upcoming`` notice
        where it is later (see the module docstring); returns how many were. The notice as
        ``upcoming_notice`` computes it: charged automatically, renewing (a trial's end
        included), not ending by then, not sent for that renewal, after the period's start."""
        lead = upcoming_lead_us(self.ctx)
        if lead <= 0:
            return 0
        sub = Subscription
        trialing = sub.status == "trialing"
        renews = case((trialing, sub.trial_end_us), else_=sub.current_period_end_us)
        start = case(
            (trialing, func.coalesce(sub.trial_start_us, sub.current_period_start_us)),
            else_=sub.current_period_start_us,
        )
        notice = renews - lead
        # The subscription's time: its clock's, else the wall's. A renewal already due is
        # left alone: its step comes first, and a notice after it would be late.
        clock_time = (
            select(TestClock.frozen_time_us)
            .where(TestClock.id == sub.test_clock_id)
            .scalar_subquery()
        )
        sub_now = func.coalesce(clock_time, self.ctx.now_us())
        stmt = (
            update(sub)
            .where(
                sub.status.in_(("trialing", *RENEWING)),
                sub.collection_method == "charge_automatically",
                renews.is_not(None),
                renews > sub_now,
                or_(sub.cancel_at_us.is_(None), sub.cancel_at_us > renews),
                or_(sub.upcoming_notice_for_us.is_(None), sub.upcoming_notice_for_us != renews),
                notice > start,
                sub.next_due_us > notice,
            )
            .values(next_due_us=notice)
            .execution_options(synchronize_session=False)
        )
        async with self.ctx.db.write() as s:
            result = await s.execute(stmt)
        moved = int(getattr(result, "rowcount", 0) or 0)
        if moved:
            log.info("invoice.upcoming: %d subscriptions due earlier for their notice", moved)
        return moved

    async def sweep(self) -> int:
        """Queue the due subscriptions, earliest first, while fewer than ``backlog`` of their
        jobs wait in the queue; returns how many jobs were queued (new ones). Those left
        are queued by a later sweep, once the workers have taken some (each still due: a
        subscription leaves the due set only when its step has run)."""
        if not self._caught_up:
            await self.catch_up_upcoming()
            self._caught_up = True
        now = self.ctx.now_us()
        room = self.backlog - await self._waiting(now)
        if room <= 0:
            return 0
        key = tuple_(Subscription.next_due_us, Subscription.id)
        due = and_(Subscription.next_due_us <= now, Subscription.test_clock_id.is_(None))
        after: tuple[int, str] | None = None
        queued = 0
        for _ in range(self.max_batches):
            if queued >= room:
                break
            where: list[ColumnElement[bool]] = [due]
            if after is not None:
                where.append(key > tuple_(literal(after[0]), literal(after[1])))
            # No more rows than there is room for: never past the backlog.
            size = min(self.batch, room - queued)
            async with self.ctx.db.write() as s:
                # The batch's last key (None: fewer than a batch left, the last one).
                last = (
                    await s.execute(
                        select(Subscription.next_due_us, Subscription.id)
                        .where(*where)
                        .order_by(Subscription.next_due_us, Subscription.id)
                        .offset(size - 1)
                        .limit(1)
                    )
                ).one_or_none()
                if last is not None:
                    where.append(key <= tuple_(literal(last[0]), literal(last[1])))
                queued += await self._queue(s, where, now)
            if last is None:
                break
            after = (int(last[0] or 0), str(last[1]))
        return queued

    async def _waiting(self, now: int) -> int:
        """How many ``subscription_due`` jobs wait in the queue ready to run, counted up to
        ``backlog`` (a bounded count: a backlog of 100,000 is not walked to say it is full).
        Jobs waiting out a retry's delay are not counted: renewals failing by the thousand
        (a gateway or database outage) must not stop every other due subscription from
        being queued."""
        waiting = (
            select(Job.id)
            .where(Job.status == "queued", Job.kind == _KIND, Job.run_at_us <= now)
            .limit(self.backlog)
            .subquery()
        )
        async with self.ctx.db.read() as s:
            count = (await s.execute(select(func.count()).select_from(waiting))).scalar_one()
        return int(count)

    async def _queue(self, s: Any, where: list[ColumnElement[bool]], now: int) -> int:
        """One INSERT ... SELECT: a job for each subscription ``where`` selects that no
        live job holds yet."""
        sqlite = self.ctx.db.is_sqlite
        dedupe = (
            literal("renew:")
            + Subscription.id
            + literal(":")
            + cast(Subscription.next_due_us, String)
        )
        payload = (
            func.json_object("sub_id", Subscription.id)
            if sqlite
            else func.json_build_object("sub_id", Subscription.id)
        )
        held = exists().where(Job.dedupe_key == dedupe, _LIVE_SQL)
        # Typed constants: PostgreSQL does not infer a SELECT list's parameters from the
        # INSERT's columns.
        rows = select(
            cast(literal(_KIND), String),
            Subscription.account_id,
            payload,
            dedupe,
            cast(literal("queued"), String),
            cast(literal(now), BigInteger),
            cast(literal(0), Integer),
            cast(literal(MAX_ATTEMPTS), Integer),
            cast(literal(now), BigInteger),
            cast(literal(now), BigInteger),
        ).where(*where, ~held)
        insert = sqlite_insert if sqlite else pg_insert
        stmt = (
            insert(Job)
            .from_select(
                [
                    "kind",
                    "account_id",
                    "payload",
                    "dedupe_key",
                    "status",
                    "run_at_us",
                    "attempts",
                    "max_attempts",
                    "created_us",
                    "updated_us",
                ],
                rows,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_LIVE_SQL)
        )
        result = await s.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)
