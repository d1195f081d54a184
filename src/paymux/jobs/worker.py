"""The worker: claims due jobs and runs their handlers; every few seconds it also sweeps for
work that must happen without a trigger (expired authorizations, interrupted gateway calls,
old idempotency keys) and enqueues it with dedupe keys, so several workers never double it.

From its claim until each of its jobs is finished, one heartbeat extends the leases of a
claimed batch every ``heartbeat_interval`` (a third of PAYMUX_JOB_LEASE_SECONDS), and writes
the worker's health row: a job that runs long, or waits behind one that does, is not taken
over by another worker. Right before a handler starts, its claim is checked (and its lease
extended) in a transaction of its own: a job whose lease was lost while it waited is not run
here. A worker that stalls past its lease anyway (no heartbeat) loses the job; its late
outcome is refused by the queue's fencing (``queue.LeaseLost``), logged, and the new owner's
stands. If the heartbeat finds that a running handler's lease was lost, the handler is
cancelled at its next await (its transaction rolled back), as if the worker had crashed
there.

So every handler must be safe to run twice, and to be stopped at any await and run again:
each gateway call it makes carries an idempotency key derived from our own object and step
(the same key on every run, so the provider acts once), and what it writes is checked
against the state it finds in its transaction, never against what an earlier run saw.

Runs inside ``paymux serve`` by default, or alone as ``paymux worker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.scheduler import RENEWAL_CONCURRENCY, runs_concurrently
from paymux.jobs import queue
from paymux.observability.health import WorkerBeat
from paymux.observability.tracing import batch_job_spans, job_span
from paymux.outbound.delivery import DeliveryRunner
from paymux.root import Paymux
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
# A claim that came back full of apply_webhook jobs (a backlog of events) is topped up, in
# the same transaction, with more of them, up to APPLY_BATCH per concurrent transaction: the
# batch's fixed cost (the claim, the check before the start, the transactions and their
# round trips, the outbound dispatcher's round after each commit) is then shared by 100
# events rather than by PAYMUX_WORKER_BATCH_SIZE / 2 (10 by default). bench/drain.py on
# PostgreSQL, 5,000 events: 2.2 - 2.4 -> 1.25 ms of worker CPU per event with one worker,
# 2.7 - 2.8 -> 1.7 - 1.9 with two (2026-12-03, issue 10, loaded machine). PostgreSQL only:
# on SQLite a batch's transaction holds the one write lock the API's writers wait for.
# Other kinds stay at PAYMUX_WORKER_BATCH_SIZE (a claimed job that waits its turn holds its
# lease, and gateway calls are slow).
# Finished jobs past their retention are deleted by each sweep in batches this small (a short
# write transaction each), at most PRUNE_BATCHES of them per sweep.
PRUNE_BATCH = 500
PRUNE_BATCHES = 10
# When the worker stops (or is cut short), the outbound webhook sends in flight get this long
# to finish and be recorded (at least a send's timeout, PAYMUX_WEBHOOK_TIMEOUT, plus
# OUTBOUND_STOP_MARGIN: a send just started may finish); those cut short are sent again
# (deliveries are at least once).
OUTBOUND_STOP_SECONDS = 5.0
OUTBOUND_STOP_MARGIN = 2.0


def outbound_stop_seconds(webhook_timeout: float) -> float:
    """How long the sends in flight get to finish when the worker stops."""
    return max(OUTBOUND_STOP_SECONDS, webhook_timeout + OUTBOUND_STOP_MARGIN)


class _CutShort(Exception):
    """A handler cancelled because the heartbeat found its job's lease lost."""


class Worker:
    def __init__(
        self,
        app: Paymux,
        *,
        worker_id: str | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        """``heartbeat_interval``: seconds between extensions of a running job's lease
        (default: a third of the lease; 0 turns the heartbeat off)."""
        self.app = app
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.heartbeat_interval = (
            app.settings.job_lease_seconds / 3
            if heartbeat_interval is None
            else heartbeat_interval
        )
        self.handlers: dict[str, Handler] = {
            # apply_webhook marks its job done in its own transaction (``finish``).
            "apply_webhook": lambda p, finish: app.webhooks.apply(p["inbox_id"], finish=finish),
            "settle_attempt": lambda p, _: app.settle_attempt(p["attempt_id"]),
            "refresh_intent": lambda p, _: self._refresh_intent(p["pi_id"]),
            "refresh_refund": lambda p, _: self._refresh_refund(p["refund_id"]),
            "refresh_setup_intent": lambda p, _: app.setup_intents.settle_waiting(
                p["account_id"], p["seti_id"]
            ),
            "return_late_payment": lambda p, _: app.return_late_payment(p["pi_id"]),
            "attach_payment_method": lambda p, _: app.attach_payment_method(
                p["account_id"], p["pm_id"], p["customer_id"], p.get("pi_id")
            ),
            "expire_authorization": lambda p, _: app.payments.expire_authorization(p["pi_id"]),
            "expire_checkout_session": lambda p, _: app.checkout.expire_job(
                p["account_id"], p["cs_id"]
            ),
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
        # Its row in worker_heartbeats, for /health/ready (observability/health.py).
        self.beat = WorkerBeat(app.ctx.db, self.worker_id, app.settings.worker_heartbeat_interval)
        self._last_sweep = 0.0
        # The claims this worker holds and has not finished (by job id): the heartbeat keeps
        # them, ``shut_down`` releases them. ``_started``: those whose handler started;
        # ``_lost``: those whose lease the heartbeat or the check before a start found lost;
        # ``_running``: the handlers running, cancelled when their lease is lost.
        self._held: dict[int, queue.ClaimedJob] = {}
        self._started: set[int] = set()
        self._lost: set[int] = set()
        self._running: dict[int, asyncio.Future[None]] = {}
        self._outbound: asyncio.Task[None] | None = None

    async def _refresh_intent(self, pi_id: str) -> None:
        await self.app.engine.refresh_intent(pi_id)

    async def _refresh_refund(self, refund_id: str) -> None:
        await self.app.engine.refresh_refund(refund_id)

    async def _purge(self) -> None:
        removed = await self.app.idempotency.purge()
        log.info("purged %d idempotency keys", removed)

    def stop(self) -> None:
        self._stop.set()

    async def _any_due(self) -> bool:
        ctx = self.app.ctx
        return await queue.any_due(ctx.db.reader, now_us=ctx.now_us())

    async def run_once(self) -> int:
        """Claim and run one batch. Returns how many jobs ran."""
        ctx = self.app.ctx
        limit = ctx.settings.worker_batch_size
        async with ctx.db.write() as s:
            now = ctx.now_us()
            jobs = await queue.claim(
                s, self.worker_id, now_us=now, limit=limit, lease=ctx.settings.job_lease_seconds
            )
            top_up = self._apply_claim() - len(jobs)
            if len(jobs) == limit and top_up > 0 and all(_inbox_id(j) for j in jobs):
                jobs += await queue.claim(
                    s,
                    self.worker_id,
                    now_us=now,
                    limit=top_up,
                    lease=ctx.settings.job_lease_seconds,
                    kind="apply_webhook",
                )
        spent = [job for job in jobs if queue.spent(job)]
        jobs = [job for job in jobs if not queue.spent(job)]
        for job in jobs:
            self._held[job.id] = job
        # Webhook events are applied in batches (``_apply_batch``), beside the other jobs,
        # which run one at a time (gateway calls, each with transactions of its own).
        applies = [job for job in jobs if _inbox_id(job) is not None]
        others = [job for job in jobs if _inbox_id(job) is None]
        # Renewals run side by side, a few at a time (billing.scheduler.RENEWAL_CONCURRENCY).
        together = [job for job in others if runs_concurrently(job.kind)]
        others = [job for job in others if not runs_concurrently(job.kind)]

        async def in_turn() -> None:
            for job in others:
                if self._stop.is_set():
                    break  # shutting down: the rest are released (``shut_down``)
                await self._run(job)

        async def side_by_side() -> None:
            slots = asyncio.Semaphore(RENEWAL_CONCURRENCY)

            async def one(job: queue.ClaimedJob) -> None:
                async with slots:
                    if not self._stop.is_set():  # shutting down: released (``shut_down``)
                        await self._run(job)

            await asyncio.gather(*(one(job) for job in together))

        # One heartbeat over the whole batch, from the claim until each job is finished:
        # the jobs waiting their turn keep their leases too.
        try:
            async with self._lease_kept(jobs):
                if spent:
                    await self._bury_spent(spent)
                await asyncio.gather(
                    in_turn(),
                    side_by_side(),
                    *(self._apply_batch(group) for group in self._groups(applies)),
                )
        finally:
            self._lost -= {job.id for job in jobs}
        return len(jobs) + len(spent)

    async def _bury_spent(self, jobs: list[queue.ClaimedJob]) -> None:
        """Jobs claimed again after their last attempt's lease ran out are dead, not run a
        time more (``queue.spent``): a job that kills its worker (out of memory, a crash in
        a library) would otherwise come back forever. An apply_webhook job's event is marked
        dead with it, so it is listed for a replay."""
        ctx = self.app.ctx
        error = (
            "lease expired during the last attempt: the worker running it stopped before it "
            "finished (killed, or stalled past PAYMUX_JOB_LEASE_SECONDS without a heartbeat)"
        )
        async with ctx.db.write() as s:
            for job in jobs:
                await self._fail(s, job, error, now_us=ctx.now_us())

    def _apply_claim(self) -> int:
        """How many apply_webhook jobs one claim may gather (see APPLY_BATCH): none past
        PAYMUX_WORKER_BATCH_SIZE on SQLite."""
        return 0 if self.app.ctx.db.is_sqlite else APPLY_BATCH * APPLY_CONCURRENCY

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
            jobs = await self._still_held(jobs)
            if not jobs:
                return
            self._started.update(job.id for job in jobs)
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
        # A span per job, as ``_run``'s, each linked to the request that delivered its event
        # (and to the batch's span); a try rolled back marks them all failed.
        traced = [(job.id, job.payload) for job in jobs]
        with batch_job_spans("apply_webhook", traced) as span_failed:
            async with ctx.db.write() as s:
                failed = await self.app.webhooks.apply_many(s, inbox_ids, isolate=isolate)
                now = ctx.now_us()
                lost = await queue.complete_many(
                    s,
                    [job for job, i in zip(jobs, inbox_ids, strict=True) if i not in failed],
                    now_us=now,
                )
                for job in jobs:
                    if job.id in lost:
                        span_failed(job.id, "LeaseLost")
                        if job.id not in self._lost:
                            _log_lost(queue.LeaseLost(job))
                for job, inbox_id in zip(jobs, inbox_ids, strict=True):
                    if inbox_id in failed:
                        span_failed(job.id, type(failed[inbox_id]).__name__)
                        await self._fail(s, job, _error_of(job, failed[inbox_id]), now_us=now)
        for job in jobs:  # committed: their outcome is written (or was another claim's)
            self._forget(job)

    async def _run(self, job: queue.ClaimedJob) -> None:
        ctx = self.app.ctx
        handler = self.handlers.get(job.kind)
        error: str | None = None
        done = False
        if job.id in self._lost:
            return  # the heartbeat found its lease lost while it waited (logged)
        self._held.setdefault(job.id, job)

        async def finish(s: AsyncSession) -> None:
            """Mark the job done in the handler's own transaction; if the lease was lost,
            raise ``LeaseLost`` so that the handler's transaction is rolled back (the job is
            another worker's now)."""
            nonlocal done
            if not await queue.complete(s, job, now_us=ctx.now_us()):
                raise queue.LeaseLost(job)
            done = True

        try:
            if not await self._still_held([job]):
                return  # its lease was lost while it waited: not run here (logged)
            self._started.add(job.id)
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            with job_span(job.kind, job.id, job.payload):  # linked to its enqueuer
                await self._cancellable(job, handler(job.payload, finish))
        except queue.LeaseLost as lost:
            _log_lost(lost)
            self._forget(job)
            return
        except _CutShort:
            self._forget(job)  # logged by the heartbeat that found the lease lost
            return
        except Exception as exc:
            error = _error_of(job, exc)
        if error is None and done:
            self._forget(job)
            return  # committed with the handler's work
        async with ctx.db.write() as s:
            if error is None:
                if not await queue.complete(s, job, now_us=ctx.now_us()):
                    if job.id not in self._lost:
                        _log_lost(queue.LeaseLost(job))
            else:
                await self._fail(s, job, error, now_us=ctx.now_us())
        self._forget(job)

    async def _cancellable(self, job: queue.ClaimedJob, work: Awaitable[None]) -> None:
        """Run a handler as a task of its own, which the heartbeat cancels if it finds the
        job's lease lost (``_lose``): then ``_CutShort``. Cancelling the caller (a shutdown
        cut short) cancels the handler too, and goes on as a cancellation."""
        task = asyncio.ensure_future(work)
        self._running[job.id] = task
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            ours = current is not None and current.cancelling() > 0
            if job.id in self._lost and task.cancelled() and not ours:
                raise _CutShort from None
            raise
        finally:
            self._running.pop(job.id, None)

    async def _still_held(self, jobs: Sequence[queue.ClaimedJob]) -> list[queue.ClaimedJob]:
        """The check right before handlers start, in a transaction of its own: the jobs whose
        claim still holds their row (their leases extended now). The others' leases ran out
        and another worker claimed them: they are logged and dropped, never run here."""
        ctx = self.app.ctx
        jobs = [job for job in jobs if job.id not in self._lost]
        if not jobs:
            return []
        async with ctx.db.write() as s:
            lost = await queue.extend(
                s, jobs, now_us=ctx.now_us(), lease=ctx.settings.job_lease_seconds
            )
        for job in jobs:
            if job.id in lost:
                self._lose(job)
        return [job for job in jobs if job.id not in lost]

    def _lose(self, job: queue.ClaimedJob) -> None:
        """``job``'s lease was lost to another claim: drop it, and cancel its handler if it
        runs (no worse than a crash there, which handlers survive)."""
        if self._held.get(job.id) is not job:
            return  # finished meanwhile
        del self._held[job.id]
        self._lost.add(job.id)
        task = self._running.get(job.id)
        if task is None:
            log.warning("%s; it is not run here", queue.LeaseLost(job))
        else:
            log.warning("%s; its handler is cancelled", queue.LeaseLost(job))
            task.cancel()

    def _forget(self, job: queue.ClaimedJob) -> None:
        """``job``'s outcome is written (or refused): this worker holds it no more."""
        if self._held.get(job.id) is job:
            del self._held[job.id]
        self._started.discard(job.id)

    @asynccontextmanager
    async def _lease_kept(self, jobs: Sequence[queue.ClaimedJob]) -> AsyncIterator[None]:
        """While the body runs, a heartbeat extends the leases of those of ``jobs`` this
        worker still holds (``_held``: finished ones are dropped) every
        ``heartbeat_interval`` seconds. It is stopped between two extensions, never in the
        middle of one's transaction."""
        if not jobs or self.heartbeat_interval <= 0:
            yield
            return
        stop = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(list(jobs), stop))
        try:
            yield
        finally:
            stop.set()
            await beat

    async def _heartbeat(self, jobs: list[queue.ClaimedJob], stop: asyncio.Event) -> None:
        ctx = self.app.ctx
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.heartbeat_interval)
                return
            except TimeoutError:
                pass
            jobs = [job for job in jobs if self._held.get(job.id) is job]
            if not jobs:
                return
            # A long batch keeps the worker's health row fresh too (WorkerBeat: at most once
            # per PAYMUX_WORKER_HEARTBEAT_INTERVAL; never raises).
            await self.beat.beat(ctx.now_us())
            try:
                async with ctx.db.write() as s:
                    lost = await queue.extend(
                        s, jobs, now_us=ctx.now_us(), lease=ctx.settings.job_lease_seconds
                    )
            except Exception:
                log.warning("could not extend the lease of %d jobs", len(jobs), exc_info=True)
                continue
            for job in jobs:
                if job.id in lost:
                    self._lose(job)

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
        if status is None:  # another worker holds the job now: its outcome stands
            _log_lost(queue.LeaseLost(job), error)
            return
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
        await self.app.checkout.expire_due()  # jobs expiring checkout sessions; repairs
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
        self._outbound = outbound
        ran = 1  # the first round claims without looking first
        try:
            while not self._stop.is_set():
                try:
                    await self.beat.beat(self.app.ctx.now_us())
                    swept = loop.time() - self._last_sweep >= settings.maintenance_interval
                    if swept:
                        self._last_sweep = loop.time()
                        await self.sweep()
                    # Idle (the last round ran nothing, and no sweep may have enqueued work):
                    # a read first, and the claim's write transaction only when it finds a
                    # job (queue.any_due: no write lock taken five times a second on SQLite,
                    # fewer round trips on PostgreSQL). A backlog is claimed straight away.
                    if ran or swept or await self._any_due():
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
        finally:
            # Stopped, or cut short (cancelled): the outbound sender stops with the worker;
            # the sends in flight get outbound_stop_seconds() to finish and be recorded.
            self._stop.set()
            grace = outbound_stop_seconds(settings.webhook_timeout)
            try:
                await asyncio.wait_for(outbound, grace)
            except TimeoutError:
                log.warning(
                    "outbound webhook sends cut short after %gs; they are sent again", grace
                )
            except Exception:
                log.warning("the outbound webhook sender failed", exc_info=True)
        log.info("worker %s stopped", self.worker_id)

    async def shut_down(self) -> None:
        """After ``run`` ended (``stop()``) or was cancelled (the shutdown timeout ran out):
        the claims this worker still holds (claimed, not run; or cut short, their transaction
        rolled back) are queued again at once rather than left to their lease (an unstarted
        job gets its attempt back, one cut short keeps it), and its heartbeat row goes."""
        self._stop.set()
        ctx = self.app.ctx
        held = list(self._held.values())
        try:
            async with ctx.db.write() as s:
                released = await queue.release_held(
                    s, held, now_us=ctx.now_us(), started=set(self._started)
                )
            self._held.clear()
            self._started.clear()
            if released:
                log.warning("worker %s released %d unfinished jobs", self.worker_id, released)
            await self.beat.forget()
        except Exception:  # the database is gone: the leases run out, the beat goes stale
            log.warning("worker %s could not release its jobs", self.worker_id, exc_info=True)


def _inbox_id(job: queue.ClaimedJob) -> str | None:
    """The inbox row an apply_webhook job applies (None: another kind, or a payload without
    one, which ``_run`` fails as it would any job)."""
    if job.kind != "apply_webhook":
        return None
    inbox_id = job.payload.get("inbox_id") if isinstance(job.payload, dict) else None
    return inbox_id if isinstance(inbox_id, str) else None


def _log_lost(lost: queue.LeaseLost, error: str | None = None) -> None:
    """A run whose outcome the queue refused: its lease ran out (the worker stalled past
    it) and another worker claimed the job."""
    log.warning(
        "%s; its outcome (%s) is dropped", lost, "failed: " + error if error else "done"
    )


def _error_of(job: queue.ClaimedJob, exc: Exception) -> str:
    """A failed run's error, as the job and its inbox row keep it. An event about an object
    we don't have yet is expected (it waits, with backoff): no traceback for it."""
    if isinstance(exc, UnknownObjectYet):
        return f"waiting: {exc}"
    log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
