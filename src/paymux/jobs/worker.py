"""The worker: claims due jobs and runs their handlers; every few seconds it also sweeps for
work that must happen without a trigger (expired authorizations, interrupted gateway calls,
old idempotency keys) and enqueues it with dedupe keys, so several workers never double it.

Runs inside ``paymux serve`` by default, or alone as ``paymux worker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.jobs import queue
from paymux.services import Paymux
from paymux.services.gateway_calls import schedule_settlement
from paymux.webhooks.inbound import Finish, UnknownObjectYet

__all__ = ["Worker"]

log = logging.getLogger(__name__)

# A handler gets the job's payload and ``finish``: a handler that calls it, in its last
# transaction, commits the job's completion with its own work (else the worker marks the job
# done afterwards, in a transaction of its own).
Handler = Callable[[dict[str, Any], Finish], Awaitable[None]]

# apply_webhook jobs of one claimed batch applied at the same time on PostgreSQL (each in its
# own transaction, on its own pooled connection: keep it below the pool size, 10).
APPLY_CONCURRENCY = 8


class Worker:
    def __init__(self, app: Paymux, *, worker_id: str | None = None) -> None:
        self.app = app
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.handlers: dict[str, Handler] = {
            # apply_webhook marks its job done in its own transaction (``finish``).
            "apply_webhook": lambda p, finish: app.webhooks.apply(p["inbox_id"], finish=finish),
            "settle_attempt": lambda p, _: app.settle_attempt(p["attempt_id"]),
            "refresh_intent": lambda p, _: self._refresh_intent(p["pi_id"]),
            "refresh_refund": lambda p, _: self._refresh_refund(p["refund_id"]),
            "return_late_payment": lambda p, _: app.return_late_payment(p["pi_id"]),
            "attach_payment_method": lambda p, _: app.attach_payment_method(
                p["account_id"], p["pm_id"], p["customer_id"], p.get("pi_id")
            ),
            "expire_authorization": lambda p, _: app.payments.expire_authorization(p["pi_id"]),
            "purge_idempotency_keys": lambda p, _: self._purge(),
        }
        self._stop = asyncio.Event()
        self._last_sweep = 0.0

    async def _refresh_intent(self, pi_id: str) -> None:
        await self.app.engine.refresh_intent(pi_id)

    async def _refresh_refund(self, refund_id: str) -> None:
        await self.app.engine.refresh_refund(refund_id)

    async def _purge(self) -> None:
        removed = await self.app.idempotency.purge()
        log.info("purged %d idempotency keys", removed)

    def stop(self) -> None:
        self._stop.set()

    async def run_once(self) -> int:
        """Claim and run one batch. Returns how many jobs ran."""
        ctx = self.app.ctx
        async with ctx.db.write() as s:
            jobs = await queue.claim(
                s,
                self.worker_id,
                now_us=ctx.now_us(),
                limit=ctx.settings.worker_batch_size,
                lease=ctx.settings.job_lease_seconds,
            )
        # On PostgreSQL webhook events are applied several at a time: each apply locks its
        # inbox row, then the intent it changes, and reads what it decides on under that lock
        # (as with several workers). SQLite has one writer: there they run one at a time, as
        # do other jobs (gateway calls) everywhere.
        applies = [job for job in jobs if job.kind == "apply_webhook"]
        others = [job for job in jobs if job.kind != "apply_webhook"]
        limit = asyncio.Semaphore(1 if ctx.db.is_sqlite else APPLY_CONCURRENCY)

        async def bounded(job: queue.ClaimedJob) -> None:
            async with limit:
                await self._run(job)

        async def in_turn() -> None:
            for job in others:
                await self._run(job)

        await asyncio.gather(in_turn(), *(bounded(job) for job in applies))
        return len(jobs)

    async def _run(self, job: queue.ClaimedJob) -> None:
        ctx = self.app.ctx
        handler = self.handlers.get(job.kind)
        error: str | None = None
        done = False

        async def finish(s: AsyncSession) -> None:
            """Mark the job done in the handler's own transaction."""
            nonlocal done
            await queue.complete(s, job, now_us=ctx.now_us())
            done = True

        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await handler(job.payload, finish)
        except UnknownObjectYet as exc:
            error = f"waiting: {exc}"
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            error = f"{type(exc).__name__}: {exc}"
        if error is None and done:
            return  # committed with the handler's work
        async with ctx.db.write() as s:
            if error is None:
                await queue.complete(s, job, now_us=ctx.now_us())
            else:
                wait = queue.backoff_seconds(
                    job.attempts, ctx.settings.job_backoff_base, ctx.settings.job_backoff_cap
                )
                status = await queue.fail(s, job, error, now_us=ctx.now_us(), delay=wait)
                if job.kind == "apply_webhook":
                    inbox_id = str(job.payload["inbox_id"])
                    if status == queue.DEAD:
                        await self.app.webhooks.mark_dead(s, inbox_id, error)
                    else:
                        await self.app.webhooks.note_failure(s, inbox_id, error)
                if status == queue.DEAD:
                    log.error(
                        "job %s (%s) is dead after %d attempts", job.id, job.kind, job.attempts
                    )

    async def sweep(self) -> None:
        """Enqueue periodic work (deduplicated while queued, so concurrent workers don't double
        it). Each sweep is ordered (oldest first) and bounded; what it finds is moved to the
        back of its queue when handled, so stuck rows can't starve the rest."""
        ctx, payments = self.app.ctx, self.app.payments
        now = ctx.now_us()
        expired = await payments.expired_authorizations()
        stale = await payments.stale_attempts()
        stuck = await payments.stuck_intents()
        refunds = await self.app.refunds.pending_refunds()
        await self.app.rate_limiter.purge()
        async with ctx.db.write() as s:
            for pi_id, account_id in expired:
                await queue.enqueue(
                    s,
                    "expire_authorization",
                    {"pi_id": pi_id},
                    now_us=now,
                    dedupe_key=f"expire:{pi_id}",
                    account_id=account_id,
                )
            for attempt_id, account_id in stale:
                await schedule_settlement(s, attempt_id, now_us=now, delay=0, account_id=account_id)
            for pi_id, account_id in stuck:
                await queue.enqueue(
                    s,
                    "refresh_intent",
                    {"pi_id": pi_id},
                    now_us=now,
                    dedupe_key=f"refresh:{pi_id}",
                    account_id=account_id,
                )
            for refund_id, account_id in refunds:
                await queue.enqueue(
                    s,
                    "refresh_refund",
                    {"refund_id": refund_id},
                    now_us=now,
                    dedupe_key=f"refresh:{refund_id}",
                    account_id=account_id,
                )
            # One purge always waits for the next hour (the key is unique while it waits).
            next_hour = (now // 3_600_000_000 + 1) * 3_600_000_000
            await queue.enqueue(
                s,
                "purge_idempotency_keys",
                {},
                now_us=now,
                delay=(next_hour - now) / 1_000_000,
                dedupe_key="purge",
            )

    async def run(self) -> None:
        """Loop until ``stop()``: sweep now and then, run due jobs, sleep when idle."""
        settings = self.app.settings
        loop = asyncio.get_running_loop()
        log.info("worker %s started", self.worker_id)
        while not self._stop.is_set():
            try:
                if loop.time() - self._last_sweep >= settings.maintenance_interval:
                    self._last_sweep = loop.time()
                    await self.sweep()
                ran = await self.run_once()
            except Exception:
                log.exception("worker loop error; backing off")
                ran = 0
                await asyncio.sleep(1.0)
            if ran == 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), settings.worker_poll_interval)
                except TimeoutError:
                    pass
        log.info("worker %s stopped", self.worker_id)
