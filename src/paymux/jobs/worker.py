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
from paymux.outbound.delivery import DeliveryRunner
from paymux.services import Paymux
from paymux.services.gateway_calls import schedule_settlement
from paymux.webhooks.inbound import BatchEventFailed, Finish, UnknownObjectYet

__all__ = ["Worker"]

log = logging.getLogger(__name__)

# A handler gets the job's payload and ``finish``: a handler that calls it, in its last
# transaction, commits the job's completion with its own work (else the worker marks the job
# done afterwards, in a transaction of its own).
Handler = Callable[[dict[str, Any], Finish], Awaitable[None]]

# apply_webhook jobs are applied in batches: up to APPLY_BATCH events in one transaction
# (InboundWebhooks.apply_many; a SAVEPOINT per event once one failed: _apply_batch), their
# jobs marked done in the same commit. On PostgreSQL a claimed batch is split into up to
# APPLY_CONCURRENCY such transactions run at the same time (each on its own pooled
# connection: keep it below the pool size, 10), so that our Python and the database work in
# parallel; SQLite has one writer, so there one transaction at a time.
APPLY_BATCH = 100
APPLY_CONCURRENCY = 2
# Finished jobs past their retention are deleted by each sweep in batches this small (a short
# write transaction each), at most PRUNE_BATCHES of them per sweep.
PRUNE_BATCH = 500
PRUNE_BATCHES = 10


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
            "subscription_due": lambda p, _: app.subscriptions.run_due(
                p["sub_id"], app.ctx.now_us()
            ),
            "invoice_pay": lambda p, _: app.invoices.attempt(
                p["account_id"], p["invoice_id"], from_job=True, only_try=p.get("try")
            ),
            "invoice_retry": lambda p, _: app.invoices.retry(p["account_id"], p["invoice_id"]),
            "finish_credit_note": lambda p, _: app.credit_notes.finish_pending(
                p["account_id"], p["note_id"]
            ),
            "release_invoice_intent": lambda p, _: app.invoices.release(
                p["account_id"], p["pi_id"]
            ),
            "return_invoice_payment": lambda p, _: app.invoices.return_payment(
                p["account_id"], p["pi_id"], int(p["amount"])
            ),
            "advance_test_clock": lambda p, _: app.clocks.run_advance(p["clock_id"]),
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
        spent = [job for job in jobs if queue.spent(job)]
        if spent:
            await self._bury_spent(spent)
            jobs = [job for job in jobs if not queue.spent(job)]
        # Webhook events are applied in batches (``_apply_batch``), beside the other jobs,
        # which run one at a time (gateway calls, each with transactions of its own).
        applies = [job for job in jobs if _inbox_id(job) is not None]
        others = [job for job in jobs if _inbox_id(job) is None]

        async def in_turn() -> None:
            for job in others:
                await self._run(job)

        await asyncio.gather(
            in_turn(), *(self._apply_batch(group) for group in self._groups(applies))
        )
        return len(jobs) + len(spent)

    async def _bury_spent(self, jobs: list[queue.ClaimedJob]) -> None:
        """Jobs claimed again after their last attempt's lease ran out are dead, not run a
        time more (``queue.spent``): a job that kills its worker (out of memory, a crash in
        a library) would otherwise come back forever. An apply_webhook job's event is marked
        dead with it, so it is listed for a replay."""
        ctx = self.app.ctx
        error = (
            "lease expired during the last attempt: the worker running it stopped before it "
            "finished (killed, or the job ran longer than PAYMUX_JOB_LEASE_SECONDS)"
        )
        async with ctx.db.write() as s:
            for job in jobs:
                await self._fail(s, job, error, now_us=ctx.now_us())

    def _groups(self, applies: list[queue.ClaimedJob]) -> list[list[queue.ClaimedJob]]:
        """The claimed apply_webhook jobs cut into batches of consecutive jobs (events about
        one object, often delivered together, mostly fall in one batch): one on SQLite (one
        writer), up to APPLY_CONCURRENCY on PostgreSQL; at most APPLY_BATCH jobs each."""
        if not applies:
            return []
        ways = 1 if self.app.ctx.db.is_sqlite else APPLY_CONCURRENCY
        size = min(APPLY_BATCH, -(-len(applies) // ways))
        return [applies[i : i + size] for i in range(0, len(applies), size)]

    async def _apply_batch(self, jobs: list[queue.ClaimedJob]) -> None:
        """Apply the events of ``jobs`` in ONE transaction: the applied events, what they
        emit, their inbox marks and their jobs' completion commit together (one statement
        marks the jobs done). So a worker killed mid-batch leaves the whole batch as it was
        (its jobs are claimed again when their lease runs out).

        First without savepoints (``apply_many(isolate=False)``: most batches apply whole).
        If an event fails, that transaction is rolled back and the batch applied again with
        a SAVEPOINT per event: the failed event is rolled back to its savepoint alone, and
        its job's failure (backoff, or dead) and the note on its inbox row are written in
        the same transaction as the others' work.

        If the transaction itself fails (a deadlock with another worker's batch, a
        serialization failure, a lost connection, a failed commit), nothing of it was
        written: the jobs are run one at a time, each event in its own transaction, as
        ``_run`` does for any job. Run twice, an event is still applied once: its inbox row,
        locked, says whether it was."""
        try:
            try:
                await self._apply_together(jobs, isolate=False)
            except BatchEventFailed as failed:
                log.info("%s; applying the batch again, one savepoint per event", failed)
                await self._apply_together(jobs, isolate=True)
        except Exception:
            log.warning(
                "a batch of %d webhook events failed; applying them one at a time",
                len(jobs),
                exc_info=True,
            )
            for job in jobs:
                await self._run(job)

    async def _apply_together(self, jobs: list[queue.ClaimedJob], *, isolate: bool) -> None:
        ctx = self.app.ctx
        inbox_ids = [_inbox_id(job) or "" for job in jobs]
        async with ctx.db.write() as s:
            failed = await self.app.webhooks.apply_many(s, inbox_ids, isolate=isolate)
            now = ctx.now_us()
            await queue.complete_many(
                s,
                [job.id for job, i in zip(jobs, inbox_ids, strict=True) if i not in failed],
                now_us=now,
            )
            for job, inbox_id in zip(jobs, inbox_ids, strict=True):
                if inbox_id in failed:
                    await self._fail(s, job, _error_of(job, failed[inbox_id]), now_us=now)

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
        except Exception as exc:
            error = _error_of(job, exc)
        if error is None and done:
            return  # committed with the handler's work
        async with ctx.db.write() as s:
            if error is None:
                await queue.complete(s, job, now_us=ctx.now_us())
            else:
                await self._fail(s, job, error, now_us=ctx.now_us())

    async def _fail(
        self, s: AsyncSession, job: queue.ClaimedJob, error: str, *, now_us: int
    ) -> None:
        """Record a failed run in ``s``: the job backs off (or is dead after its last
        attempt); an apply_webhook job's inbox row notes the error (or is marked dead)."""
        ctx = self.app.ctx
        wait = queue.backoff_seconds(
            job.attempts, ctx.settings.job_backoff_base, ctx.settings.job_backoff_cap
        )
        status = await queue.fail(s, job, error, now_us=now_us, delay=wait)
        inbox_id = _inbox_id(job)
        if job.kind == "apply_webhook" and inbox_id is not None:
            if status == queue.DEAD:
                await self.app.webhooks.mark_dead(s, inbox_id, error)
            else:
                await self.app.webhooks.note_failure(s, inbox_id, error)
        if status == queue.DEAD:
            log.error("job %s (%s) is dead after %d attempts", job.id, job.kind, job.attempts)

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
        await self.app.billing_scheduler.sweep()  # renewals and other due subscription work
        await self.prune_jobs()
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

    async def prune_jobs(self) -> int:
        """Delete finished jobs past PAYMUX_JOB_RETENTION_SECONDS: at most PRUNE_BATCHES
        batches of PRUNE_BATCH per sweep, each its own short transaction, so a large backlog
        of old jobs goes over a few sweeps without long locks. Returns how many went."""
        ctx = self.app.ctx
        cutoff = ctx.now_us() - int(ctx.settings.job_retention_seconds * 1_000_000)
        removed = 0
        for _ in range(PRUNE_BATCHES):
            async with ctx.db.write() as s:
                n = await queue.prune_done(s, before_us=cutoff, limit=PRUNE_BATCH)
            removed += n
            if n < PRUNE_BATCH:
                break
        if removed:
            log.info("pruned %d finished jobs", removed)
        return removed

    async def run(self) -> None:
        """Loop until ``stop()``: sweep now and then, run due jobs, sleep when idle."""
        settings = self.app.settings
        loop = asyncio.get_running_loop()
        log.info("worker %s started", self.worker_id)
        runner = DeliveryRunner(self.app.ctx, self.app.webhook_endpoints)
        outbound = asyncio.create_task(runner.run(self._stop))  # outbound webhooks
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
        await outbound  # the webhook sends in flight finish
        log.info("worker %s stopped", self.worker_id)


def _inbox_id(job: queue.ClaimedJob) -> str | None:
    """The inbox row an apply_webhook job applies (None: another kind, or a payload without
    one, which ``_run`` fails as it would any job)."""
    if job.kind != "apply_webhook":
        return None
    inbox_id = job.payload.get("inbox_id") if isinstance(job.payload, dict) else None
    return inbox_id if isinstance(inbox_id, str) else None


def _error_of(job: queue.ClaimedJob, exc: Exception) -> str:
    """A failed run's error, as the job and its inbox row keep it. An event about an object
    we don't have yet is expected (it waits, with backoff): no traceback for it."""
    if isinstance(exc, UnknownObjectYet):
        return f"waiting: {exc}"
    log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
