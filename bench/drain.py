"""Drain-only benchmark of the worker applying stored webhook events (no HTTP ingest).

bench/webhooks.py measures ingest and then drains what it took in; this measures only the
drain, on a larger backlog made straight in the tables, so that it is quick to repeat (and
to compare two versions of the worker: run it with ``PYTHONPATH=<other checkout>/src``, the
worker subprocesses import paymux from there).

For each backend it migrates a fresh database and writes, with SQLAlchemy Core:

* ``--n`` payment intents of the ``stripe`` gateway in ``requires_action``, each with its
  settled 3-D Secure ``authorize`` attempt (as bench/webhooks.py seeds them);
* for each intent ``--per-intent`` stored Stripe ``payment_intent.succeeded`` events (the
  first applies, later ones change nothing), inbox rows exactly as ``receive`` stores them
  for ``/webhooks/stripe`` (gateway, connection ``conn_env_stripe``), each with its queued
  ``apply_webhook`` job; in ``--order`` ``grouped`` (an intent's events one after another)
  or ``shuffled`` (all events in random order, so concurrent workers meet on intents).

Then it drains copies of that backlog (PostgreSQL: ``CREATE DATABASE ... TEMPLATE``; SQLite:
a file copy) with 1, then 2 (``--workers``) ``paymux worker`` subprocesses, and prints per
drain: events applied/s (from the inbox rows' ``applied_us``: start-up excluded), the wall
time, the workers' CPU per event, the database server's CPU per event (PostgreSQL: every
process of the throwaway cluster), and checks the outcome: every inbox row applied, every
job done after ONE attempt (none failed), each intent ``succeeded`` with exactly one
``payment_intent.succeeded`` event. Figures are printed, never asserted; it exits non-zero
on a wrong outcome.

    .venv/bin/python bench/drain.py [--n 5000] [--per-intent 1] [--order grouped|shuffled]
        [--workers 1,2] [--backends postgres,sqlite] [--worker-batch-size N] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    cpu_seconds,
    databases,
    loadavg,
    machine,
    paymux_env,
    paymux_worker,
    waiting_attempt_row,
    waiting_intent_row,
)

from paymux.domain.ids import new_id
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import Account, GatewayAttempt, Job, PaymentIntent, WebhookInbox

ACCOUNT = "acct_bench"
STRIPE_ENV = {
    "STRIPE_SECRET_KEY": "sk_test_bench",
    "STRIPE_WEBHOOK_SECRETS": "whsec_bench_drain",
    "PAYMUX_STRIPE_API_BASE": "http://127.0.0.1:9",  # never called
}
# The intents' 3-D Secure result, recorded as the payer's return records it before the
# webhook is applied (the common case). Without one, every payment_intent.succeeded (its
# charge named by id only) also enqueues a ``refresh_intent`` read of the charge
# (services/three_d_secure.py), which would call the unreachable API above and retry: a
# drain of 5,000 events then ran at 25/s (2026-12-03, 16:30) measuring those retries.
RECORDED_3DS: dict[str, Any] = {
    "authentication_flow": "challenge",
    "electronic_commerce_indicator": None,
    "liability_shift": True,
    "result": "authenticated",
    "result_reason": None,
    "transaction_id": None,
    "version": "2.2.0",
}


def token(n: int) -> str:
    return new_id("x", n)[2:]


def _intent(pi_id: str, reference: str, amount: int, now: int) -> dict[str, Any]:
    next_action = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure"}}
    row = waiting_intent_row(pi_id, ACCOUNT, reference, amount, now, next_action=next_action)
    return {**row, "three_d_secure": RECORDED_3DS}


def _attempt(pi_id: str, reference: str, now: int) -> dict[str, Any]:
    return waiting_attempt_row(new_id("att"), pi_id, ACCOUNT, reference, "pm_1" + token(23), now)


def _event(pi_id: str, reference: str, amount: int, created: int) -> tuple[str, str]:
    """(event id, body) of a Stripe payment_intent.succeeded (trimmed to what matters)."""
    event_id = "evt_3" + token(23)
    obj = {
        "id": reference,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount,
        "capture_method": "automatic",
        "currency": "usd",
        "last_payment_error": None,
        "latest_charge": "ch_3" + token(23),
        "livemode": False,
        "metadata": {"paymux_id": pi_id},
        "next_action": None,
        "payment_method": "pm_1" + token(23),
        "status": "succeeded",
    }
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "type": "payment_intent.succeeded",
    }
    return event_id, json.dumps(body)


async def seed(url: str, n: int, per_intent: int, order: str, seed_: int) -> int:
    """Intents, inbox rows and their queued jobs; returns the number of events."""
    now = time.time_ns() // 1000
    pis, attempts, events = [], [], []
    for i in range(n):
        pi_id, reference, amount = new_id("pi"), "pi_3" + token(23), 1000 + i
        pis.append(_intent(pi_id, reference, amount, now))
        attempts.append(_attempt(pi_id, reference, now))
        events += [_event(pi_id, reference, amount, now // 1_000_000) for _ in range(per_intent)]
    if order == "shuffled":
        random.Random(seed_).shuffle(events)
    inbox, jobs = [], []
    for k, (event_id, body) in enumerate(events):
        inbox_id = new_id("we")
        inbox.append(
            {
                "id": inbox_id,
                "gateway": "stripe",
                "account_id": None,
                "connection_id": "conn_env_stripe",
                "event_id": event_id,
                "type": "payment_intent.succeeded",
                "payload": body,
                "status": "received",
                "error": None,
                "received_us": now + k,
                "applied_us": None,
            }
        )
        jobs.append(
            {
                "kind": "apply_webhook",
                "account_id": None,
                "payload": {"inbox_id": inbox_id},
                "dedupe_key": None,
                "status": "queued",
                "run_at_us": now + k,
                "attempts": 0,
                "max_attempts": 12,
                "created_us": now + k,
                "updated_us": now + k,
            }
        )
    db = Database(url, pool_size=1)
    try:
        async with db.write() as s:
            await s.execute(
                insert(Account.__table__), [{"id": ACCOUNT, "name": "bench", "created_us": now}]
            )
            for start in range(0, len(pis), 1000):
                await s.execute(insert(PaymentIntent.__table__), pis[start : start + 1000])
                await s.execute(insert(GatewayAttempt.__table__), attempts[start : start + 1000])
            for start in range(0, len(inbox), 1000):
                await s.execute(insert(WebhookInbox.__table__), inbox[start : start + 1000])
                await s.execute(insert(Job.__table__), jobs[start : start + 1000])
        if not url.startswith("sqlite"):
            async with db.writer.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await db.dispose()
    return len(events)


# -- the drain ------------------------------------------------------------------------------
@dataclass
class Drain:
    backend: str
    workers: int
    backlog: int
    applied: int = 0
    span: float = 0.0
    wall: float = 0.0
    worker_cpu: float = 0.0
    db_cpu: float = float("nan")
    error: str | None = None

    @property
    def rate(self) -> float:
        return (self.applied - 1) / self.span if self.span > 0 else float("nan")


async def _rows(db: Database, statement: str) -> Any:
    async with db.read() as s:
        return (await s.execute(text(statement))).one()


def _cluster_cpu(pg: Any) -> float:
    """CPU seconds of every process of the throwaway cluster (postmaster's children)."""
    if pg is None:
        return float("nan")
    total = 0.0
    try:
        pid = int(Path(pg.datadir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, AttributeError, IndexError):
        return float("nan")
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        stat = Path(f"/proc/{p}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            # utime, stime, and children's (backends that exited) cutime, cstime
            total += sum(int(f) for f in fields[11:15]) / 100
    return total


async def drain(
    backend: str, url: str, tmp: Path, workers: int, args: argparse.Namespace, pg: Any
) -> Drain:
    db = Database(url, pool_size=1)
    try:
        (left,) = await _rows(db, "select count(*) from webhook_inbox where status = 'received'")
        result = Drain(backend, workers, backlog=int(left))
        env = paymux_env(
            url,
            tmp,
            **STRIPE_ENV,
            **(
                {"PAYMUX_WORKER_BATCH_SIZE": str(args.worker_batch_size)}
                if args.worker_batch_size
                else {}
            ),
        )
        procs = [
            paymux_worker(f"w{workers}-{i}", env, tmp / f"worker-{backend}-{workers}-{i}.log")
            for i in range(workers)
        ]
        db_before = _cluster_cpu(pg)
        began = time.perf_counter()
        for p in procs:
            p.spawn()
        try:
            deadline = time.monotonic() + args.drain_timeout
            while True:
                await asyncio.sleep(0.05)
                for p in procs:
                    if not p.alive():
                        raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
                (pending,) = await _rows(
                    db,
                    "select count(*) from jobs where kind = 'apply_webhook' "
                    "and status in ('queued', 'running')",
                )
                if not pending:
                    result.wall = time.perf_counter() - began
                    break
                if time.monotonic() > deadline:
                    result.error = f"{pending} jobs pending after {args.drain_timeout:.0f}s"
                    break
            result.worker_cpu = sum(cpu_seconds(p.pid) for p in procs)
            result.db_cpu = _cluster_cpu(pg) - db_before
        finally:
            for p in procs:
                p.stop()
        first, last, count = await _rows(
            db,
            "select min(applied_us), max(applied_us), count(*) from webhook_inbox "
            "where status = 'applied'",
        )
        jobs_done, max_attempts = await _rows(
            db,
            "select count(*), max(attempts) from jobs where kind = 'apply_webhook' "
            "and status = 'done'",
        )
        succeeded, events, intents = await _rows(
            db,
            "select (select count(*) from payment_intents where status = 'succeeded'), "
            "(select count(*) from events where type = 'payment_intent.succeeded'), "
            "(select count(*) from payment_intents)",
        )
        result.applied = int(count)
        if count > 1:
            result.span = (last - first) / 1e6
        wrong = []
        if count != result.backlog or jobs_done != result.backlog:
            wrong.append(f"{count}/{result.backlog} applied, {jobs_done} jobs done")
        if max_attempts != 1:
            wrong.append(f"a job took {max_attempts} attempts")
        if not succeeded == events == intents:
            wrong.append(f"{succeeded} succeeded, {events} events for {intents} intents")
        if wrong and result.error is None:
            result.error = "; ".join(wrong)
        return result
    finally:
        await db.dispose()


def copy_database(backend: str, source: str, name: str, dbs: Any) -> str:
    if backend == "sqlite":
        target = dbs.tmp / f"{name}.db"
        shutil.copy(source.split("///", 1)[1], target)
        return f"sqlite+aiosqlite:///{target}"
    url = dbs.url(backend, name)  # then replaced by a copy of the template
    database = url.rsplit("/", 1)[1]
    template = source.rsplit("/", 1)[1]

    async def recreate() -> None:
        admin = Database(url.rsplit("/", 1)[0] + "/postgres", pool_size=1)
        try:
            async with admin.writer.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'DROP DATABASE "{database}"'))
                await conn.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{template}"'))
        finally:
            await admin.dispose()

    asyncio.run(recreate())
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="intents (5000)")
    parser.add_argument("--per-intent", type=int, default=1, help="events per intent (1)")
    parser.add_argument("--order", choices=("grouped", "shuffled"), default="grouped")
    parser.add_argument("--workers", default="1,2", help="drains, by worker count (1,2)")
    parser.add_argument("--backends", default="postgres")
    parser.add_argument("--worker-batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="drains per worker count (1)")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    counts = [int(w) for w in args.workers.split(",")]
    results: list[Drain] = []
    errors: list[str] = []
    load = loadavg()
    with databases(backends, prefix="paymux-drain-") as dbs:
        for backend in backends:
            work = dbs.tmp / backend
            work.mkdir()
            template = dbs.url(backend, "drain_template")
            upgrade(template)
            asyncio.run(seed(template, args.n, args.per_intent, args.order, 1))
            for r in range(args.repeat):
                for workers in counts:
                    url = copy_database(backend, template, f"drain_{workers}_{r}", dbs)
                    print(f"  {backend}: draining with {workers} worker(s) ...", file=sys.stderr)
                    d = asyncio.run(drain(backend, url, work, workers, args, dbs.pg))
                    results.append(d)
                    if d.error:
                        errors.append(f"{backend}, {workers} worker(s): {d.error}")
    print()
    print(
        f"drain of {args.n} intents x {args.per_intent} payment_intent.succeeded "
        f"({args.order}); {machine()}"
    )
    print(
        f"{'backend':<9} {'workers':>7} {'backlog':>7} {'applied/s':>10} {'span s':>7} "
        f"{'wall s':>7} {'worker CPU ms/ev':>16} {'db CPU ms/ev':>12}"
    )
    for d in results:
        n = max(d.applied, 1)
        print(
            f"{d.backend:<9} {d.workers:>7} {d.backlog:>7} {d.rate:>10.1f} {d.span:>7.2f} "
            f"{d.wall:>7.2f} {d.worker_cpu / n * 1000:>16.3f} {d.db_cpu / n * 1000:>12.3f}"
        )
    print(f"load average {load:.1f} -> {loadavg():.1f} (other work on the machine skews these)")
    for error in errors:
        print("ERROR:", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
