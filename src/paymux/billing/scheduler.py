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
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from paymux.services.context import Context
from paymux.storage.models import Job, Subscription

__all__ = ["BillingScheduler"]

BATCH = 1000
_KIND = "subscription_due"
MAX_ATTEMPTS = 10  # queue.enqueue's default
_LIVE_SQL = text("status IN ('queued', 'running')")  # ux_jobs_dedupe_key_live's predicate


class BillingScheduler:
    def __init__(self, ctx: Context, *, batch: int = BATCH, max_batches: int = 100) -> None:
        self.ctx = ctx
        self.batch = batch
        self.max_batches = max_batches

    async def sweep(self) -> int:
        """Queue the due subscriptions; returns how many jobs were queued (new ones)."""
        now = self.ctx.now_us()
        key = tuple_(Subscription.next_due_us, Subscription.id)
        due = and_(Subscription.next_due_us <= now, Subscription.test_clock_id.is_(None))
        after: tuple[int, str] | None = None
        queued = 0
        for _ in range(self.max_batches):
            where: list[ColumnElement[bool]] = [due]
            if after is not None:
                where.append(key > tuple_(literal(after[0]), literal(after[1])))
            async with self.ctx.db.write() as s:
                # The batch's last key (None: fewer than a batch left, the last one).
                last = (
                    await s.execute(
                        select(Subscription.next_due_us, Subscription.id)
                        .where(*where)
                        .order_by(Subscription.next_due_us, Subscription.id)
                        .offset(self.batch - 1)
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
