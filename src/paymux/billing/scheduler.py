"""The billing scheduler: the worker's periodic sweep queues a ``subscription_due`` job for
every subscription whose ``next_due_us`` has come (those on a test clock excepted: their
clock runs them), streamed through the ``ix_subscriptions_next_due`` index in batches by a
(next_due_us, id) keyset, one short transaction per batch: never all rows at once.

Each job's dedupe key is ``renew:<sub id>:<next_due_us>``: several workers sweeping at once
queue it once, and a job that runs twice does its period once anyway (the invoice's unique
``period_key``, and the payment's reserved intent id).
"""

from __future__ import annotations

from sqlalchemy import select, tuple_

from paymux.jobs.queue import enqueue
from paymux.services.context import Context
from paymux.storage.models import Subscription

__all__ = ["BillingScheduler"]

BATCH = 1000


class BillingScheduler:
    def __init__(self, ctx: Context, *, batch: int = BATCH, max_batches: int = 100) -> None:
        self.ctx = ctx
        self.batch = batch
        self.max_batches = max_batches

    async def sweep(self) -> int:
        """Queue the due subscriptions; returns how many jobs were offered."""
        now = self.ctx.now_us()
        after: tuple[int, str] | None = None
        offered = 0
        for _ in range(self.max_batches):
            query = (
                select(Subscription.id, Subscription.account_id, Subscription.next_due_us)
                .where(
                    Subscription.next_due_us <= now,
                    Subscription.test_clock_id.is_(None),
                )
                .order_by(Subscription.next_due_us, Subscription.id)
                .limit(self.batch)
            )
            if after is not None:
                query = query.where(
                    tuple_(Subscription.next_due_us, Subscription.id) > tuple_(*after)
                )
            async with self.ctx.db.write() as s:
                rows = (await s.execute(query)).all()
                for sub_id, account_id, due in rows:
                    await enqueue(
                        s,
                        "subscription_due",
                        {"sub_id": sub_id},
                        now_us=now,
                        dedupe_key=f"renew:{sub_id}:{due}",
                        account_id=account_id,
                    )
            offered += len(rows)
            if len(rows) < self.batch:
                break
            last = rows[-1]
            after = (int(last[2] or 0), str(last[0]))
        return offered
