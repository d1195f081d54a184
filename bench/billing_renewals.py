"""Renewals bench: N active monthly subscriptions on PostgreSQL come due at once.

Issue 11, section 8. What it measures: the time for ``paymux worker`` process(es) to invoice
and charge every one of them against the sandbox at zero latency, renewals/s, and each
worker's peak RSS (sampled every 0.2 s from /proc: it must stay flat, the scheduler streams
due subscriptions in batches). It then checks the outcome (exactly once): one invoice per
subscription for the new period, every one paid, one sandbox charge per invoice, every
subscription's period advanced by a month.

How it seeds quickly: an in-process ``Paymux`` on the template database makes ONE real
subscription (product, monthly price, customer, ``pm_card_visa`` attached through the sandbox,
its first invoice paid); its rows (customer, payment method, subscription, item) are then
cloned N times with bulk INSERTs (new ids; the subscription's current period ended a minute
ago, so ``next_due_us`` is in the past), and the sandbox's token of the saved card is cloned N
times into the sandbox's SQLite file (each payment method has a token of its own, as after
N attaches). Each run gets a copy of that template (``CREATE DATABASE ... TEMPLATE``, and a
file copy of the sandbox), then 1, then 2 (``--workers``) worker subprocesses are started
and timed until every subscription is renewed and paid.

Figures are printed, never asserted; the exit status is non-zero on a wrong outcome.

    .venv/bin/python bench/billing_renewals.py [--subscriptions 100000] [--workers 1,2]
        [--timeout 900] [--budget SECONDS] [--worker-batch-size N]

``--budget SECONDS``: each run stops there (a 100,000 run that would take hours) and prints
what it reached: renewals paid, renewals/s, worker and PostgreSQL CPU per renewal, each
worker's peak RSS and its curve (every 30 s), and the time all of them would take at that
rate; exactly once is checked on those renewed (one invoice per subscription, its period
advanced with it, one sandbox charge per reference, every paid invoice charged once).

``--in-process 1,8`` instead: for each value, a fresh copy renewed by ONE worker in this
process (``Worker.run_once`` until nothing is left, the sandbox gateway in process too) with
that many renewals side by side (``RENEWAL_CONCURRENCY``); prints wall, renewals/s and this
process's CPU per renewal (an A/B of the side-by-side runner; no worker subprocess).
``--count`` adds the statements per renewal by kind and table (SQLAlchemy's cursor hook, as
``bench/statements.py``), ``--profile FILE`` a cProfile of each run (``FILE.<run>``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import json
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    cpu_seconds,
    databases,
    loadavg,
    machine,
    paymux_engines,
    paymux_env,
    paymux_worker,
    rss_mb,
)
from drain import _cluster_cpu, copy_database
from statements import Counter

from paymux.domain.ids import new_id
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import Customer, PaymentMethod, Subscription, SubscriptionItem

PRICE = 1500  # USD cents a month
MONTH_US = 30 * 86_400 * 1_000_000
CHUNK = 5000  # rows per INSERT batch while seeding


@dataclass
class Template:
    account_id: str
    due_us: int  # when the clones' current period ended (their next_due_us)
    customer: dict[str, Any]
    method: dict[str, Any]
    subscription: dict[str, Any]
    item: dict[str, Any]
    token: dict[str, Any]  # the sandbox's stored token of the saved card


async def make_template(url: str, sandbox_db: Path) -> Template:
    """One subscription made through the services, as a merchant would; its rows to clone."""
    from paymux.billing.subscriptions import SubscriptionParams
    from paymux.config import Settings
    from paymux.services import Paymux
    from paymux.services.customers import CustomerParams

    app = Paymux(Settings(database_url=url, sandbox_db=str(sandbox_db), run_worker=False))
    try:
        account = (await app.accounts.create_key()).account_id
        product = await app.catalog.create_product(account, {"name": "Bench plan"})
        price = await app.catalog.create_price(
            account,
            {
                "product": product["id"],
                "unit_amount": PRICE,
                "currency": "usd",
                "recurring": {"interval": "month"},
            },
        )
        customer = (await app.customers.create(account, CustomerParams(email="b@example.com")))[
            "id"
        ]
        pm = (await app.customers.attach(account, "pm_card_visa", customer))["id"]
        await app.customers.update(account, customer, CustomerParams(default_payment_method=pm))
        sub = await app.subscriptions.create(
            account, SubscriptionParams(customer=customer, items=[{"price": price["id"]}])
        )
        if sub["status"] != "active":
            raise RuntimeError(f"the template subscription is {sub['status']}, not active")
        async with app.ctx.db.read() as s:

            async def row(table: Any, column: Any, value: str) -> dict[str, Any]:
                found = (await s.execute(select(table).where(column == value))).one()
                return dict(found._mapping)

            c = await row(Customer.__table__, Customer.__table__.c.id, customer)
            m = await row(PaymentMethod.__table__, PaymentMethod.__table__.c.id, pm)
            sb = await row(Subscription.__table__, Subscription.__table__.c.id, sub["id"])
            it = await row(
                SubscriptionItem.__table__,
                SubscriptionItem.__table__.c.subscription_id,
                sub["id"],
            )
    finally:
        await app.close()
    with contextlib.closing(sqlite3.connect(sandbox_db)) as sandbox:
        (data,) = sandbox.execute("select data from objects where id = ?", (m["token"],)).fetchone()
    return Template(account, time.time_ns() // 1000 - 60_000_000, c, m, sb, it, json.loads(data))


def clones(t: Template, n: int) -> Iterator[tuple[list[dict[str, Any]], ...]]:
    """Chunks of (customers, payment methods, subscriptions, items, sandbox tokens)."""
    due, start = t.due_us, t.due_us - MONTH_US
    for first in range(0, n, CHUNK):
        customers, methods, subs, items, tokens = [], [], [], [], []
        for _ in range(first, min(n, first + CHUNK)):
            cus, pm, sub, token = new_id("cus"), new_id("pm"), new_id("sub"), new_id("pm")
            customers.append({**t.customer, "id": cus, "default_payment_method": pm})
            methods.append({**t.method, "id": pm, "customer_id": cus, "token": token})
            subs.append(
                {
                    **t.subscription,
                    "id": sub,
                    "customer_id": cus,
                    "status": "active",
                    "billing_cycle_anchor_us": start,
                    "start_date_us": start,
                    "current_period_start_us": start,
                    "current_period_end_us": due,
                    "next_due_us": due,
                    "latest_invoice_id": None,
                    "created_us": start,
                    "updated_us": start,
                }
            )
            items.append({**t.item, "id": new_id("si"), "subscription_id": sub})
            tokens.append({**t.token, "id": token})
        yield customers, methods, subs, items, tokens


async def seed(url: str, sandbox_db: Path, n: int) -> Template:
    t = await make_template(url, sandbox_db)
    db = Database(url, pool_size=1)
    try:
        with contextlib.closing(sqlite3.connect(sandbox_db)) as sandbox:
            for customers, methods, subs, items, tokens in clones(t, n):
                async with db.write() as s:
                    await s.execute(insert(Customer.__table__), customers)
                    await s.execute(insert(PaymentMethod.__table__), methods)
                    await s.execute(insert(Subscription.__table__), subs)
                    await s.execute(insert(SubscriptionItem.__table__), items)
                sandbox.executemany(
                    "insert into objects(id, kind, reference, data) values (?, 'token', null, ?)",
                    [(tok["id"], json.dumps(tok)) for tok in tokens],
                )
                sandbox.commit()
            # Everything into the main file: the runs copy it alone (no -wal file).
            sandbox.execute("pragma wal_checkpoint(truncate)")
        async with db.writer.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await db.dispose()
    return t


async def time_sweep(url: str, sandbox_db: Path) -> tuple[int, float, float]:
    """One scheduler sweep in this process (what each worker does every
    ``maintenance_interval`` while subscriptions are due): (jobs offered, seconds, seconds of
    a second sweep, which finds every job already queued)."""
    from paymux.config import Settings
    from paymux.services import Paymux

    app = Paymux(Settings(database_url=url, sandbox_db=str(sandbox_db), run_worker=False))
    try:
        began = time.perf_counter()
        offered = await app.billing_scheduler.sweep()
        first = time.perf_counter() - began
        began = time.perf_counter()
        await app.billing_scheduler.sweep()
        return offered, first, time.perf_counter() - began
    finally:
        await app.close()


# -- a run ------------------------------------------------------------------------------------
@dataclass
class Run:
    workers: int
    n: int
    paid: int = 0
    wall: float = 0.0
    span: float = 0.0  # first to last invoice paid (worker start-up excluded)
    worker_cpu: float = 0.0
    db_cpu: float = float("nan")
    peak_rss: list[float] | None = None
    error: str | None = None
    stopped: bool = False  # at --budget, before every subscription was renewed
    invoiced: int = 0
    # (seconds since the start, paid so far, each worker's RSS MiB then): every ~30 s
    curve: list[tuple[float, int, list[float]]] | None = None

    @property
    def rate(self) -> float:
        return self.paid / self.wall if self.wall > 0 else float("nan")


async def _one(db: Database, statement: str, **params: Any) -> Any:
    async with db.read() as s:
        return (await s.execute(text(statement), params)).one()


async def run(
    url: str, work: Path, t: Template, workers: int, args: argparse.Namespace, pg: Any
) -> Run:
    result = Run(workers, args.subscriptions)
    extra = (
        {"PAYMUX_WORKER_BATCH_SIZE": str(args.worker_batch_size)} if args.worker_batch_size else {}
    )
    if args.maintenance_interval:
        extra["PAYMUX_MAINTENANCE_INTERVAL"] = str(args.maintenance_interval)
    env = paymux_env(url, work, **extra)
    procs = [
        paymux_worker(f"renew{workers}-{i}", env, work / f"worker-{workers}-{i}.log")
        for i in range(workers)
    ]
    with contextlib.closing(sqlite3.connect(work / "sandbox.db")) as sandbox:
        (charges_before,) = sandbox.execute(
            "select count(*) from objects where kind = 'charge'"
        ).fetchone()
    db = Database(url, pool_size=1)
    peaks = [0.0] * workers
    try:
        db_before = _cluster_cpu(pg)
        began = time.perf_counter()
        for p in procs:
            p.spawn()
        try:
            deadline = time.monotonic() + args.timeout
            budget = time.monotonic() + args.budget if args.budget else None
            last_poll = last_point = 0.0
            result.curve = []
            while True:
                await asyncio.sleep(0.2)
                rss_now = []
                for i, p in enumerate(procs):
                    if not p.alive():
                        raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
                    rss_now.append(rss_mb(p.pid))
                    peaks[i] = max(peaks[i], rss_now[-1])
                if time.monotonic() - last_poll < 1.0:
                    continue
                last_poll = time.monotonic()
                (paid,) = await _one(
                    db,
                    "select count(*) from invoices where status = 'paid' and period_start_us = :d",
                    d=t.due_us,
                )
                if time.monotonic() - last_point >= 30.0:
                    last_point = time.monotonic()
                    result.curve.append((time.perf_counter() - began, int(paid), rss_now))
                if paid >= result.n:
                    result.wall = time.perf_counter() - began
                    break
                if budget is not None and time.monotonic() > budget:
                    # What was reached: CPU read before the workers stop; the outcome is
                    # checked on what they renewed.
                    result.wall = time.perf_counter() - began
                    result.stopped = True
                    result.paid = int(paid)
                    break
                if time.monotonic() > deadline:
                    result.wall = time.perf_counter() - began
                    result.error = f"{paid}/{result.n} paid after {args.timeout:.0f}s"
                    for p in procs:
                        print(f"--- {p.name}:\n{p.tail()}", file=sys.stderr)
                    async with db.read() as s:
                        for q in (
                            "select kind, status, count(*) from jobs group by 1, 2",
                            "select status, count(*), min(period_start_us) from invoices group by 1",
                            "select status, min(next_due_us), count(*) from subscriptions group by 1",
                        ):
                            print(q, (await s.execute(text(q))).all(), file=sys.stderr)
                    print("due", t.due_us, file=sys.stderr)
                    break
                print(
                    f"    {paid}/{result.n} paid, {time.perf_counter() - began:.0f}s, rss "
                    + ", ".join(f"{r:.0f}" for r in peaks)
                    + " MiB",
                    file=sys.stderr,
                )
            result.worker_cpu = sum(cpu_seconds(p.pid) for p in procs)
            result.db_cpu = _cluster_cpu(pg) - db_before
        finally:
            for p in procs:
                p.stop()
        result.peak_rss = peaks
        invoices, subs_invoiced, paid, first, last, total = await _one(
            db,
            "select count(*), count(distinct subscription_id), "
            "count(*) filter (where status = 'paid'), min(paid_at_us), max(paid_at_us), "
            "coalesce(sum(amount_paid), 0) from invoices where period_start_us = :d",
            d=t.due_us,
        )
        (advanced,) = await _one(
            db,
            "select count(*) from subscriptions where current_period_start_us = :d "
            "and status = 'active' and next_due_us > :d",
            d=t.due_us,
        )
        if not result.stopped:
            # Stopped at the budget: the count the rate was taken at (the workers' last
            # moments before they stopped renew a few more, checked below, not counted).
            result.paid = int(paid)
        result.invoiced = int(invoices)
        if first is not None and last is not None:
            result.span = (last - first) / 1e6
        with contextlib.closing(sqlite3.connect(work / "sandbox.db")) as sandbox:
            charges, references = sandbox.execute(
                "select count(*), count(distinct reference) from objects where kind = 'charge'"
            ).fetchone()
        charges -= charges_before
        references -= charges_before
        n = result.n
        wrong = []
        if result.stopped:
            # Exactly once on the ones renewed so far: one invoice per subscription, each
            # invoiced one with its period advanced (same transaction), one sandbox charge
            # per reference, no paid invoice without its charge, nothing charged twice.
            (advanced_any,) = await _one(
                db,
                "select count(*) from subscriptions where current_period_start_us = :d",
                d=t.due_us,
            )
            if invoices != subs_invoiced:
                wrong.append(f"{invoices} invoices for {subs_invoiced} subscriptions")
            if advanced_any != invoices:
                wrong.append(f"{advanced_any} periods advanced for {invoices} invoices")
            if total != paid * PRICE:
                wrong.append(f"{total} collected for {paid} paid (want {paid * PRICE})")
            if charges != references or not paid <= charges <= invoices:
                wrong.append(
                    f"{charges} sandbox charges for {references} references, "
                    f"{paid} paid of {invoices} invoices"
                )
            if wrong and result.error is None:
                result.error = "; ".join(wrong)
            return result
        if invoices != n or subs_invoiced != n:
            wrong.append(f"{invoices} invoices for {subs_invoiced} subscriptions (want {n})")
        if paid != n or total != n * PRICE:
            wrong.append(f"{paid} paid, {total} collected (want {n}, {n * PRICE})")
        if advanced != n:
            wrong.append(f"{advanced} subscriptions advanced (want {n})")
        if charges != n or references != n:
            wrong.append(f"{charges} sandbox charges for {references} references (want {n})")
        if wrong and result.error is None:
            result.error = "; ".join(wrong)
        return result
    finally:
        await db.dispose()


async def in_process(
    url: str, sandbox_db: Path, concurrency: int, counter: Counter | None = None
) -> tuple[int, float, float]:
    """(renewals, wall seconds, CPU seconds of this process) for one worker in process
    running ``concurrency`` renewals side by side; ``counter``: every statement it sends."""
    import paymux.jobs.worker as worker_module
    from paymux.config import Settings
    from paymux.services import Paymux

    worker_module.RENEWAL_CONCURRENCY = concurrency
    app = Paymux(Settings(database_url=url, sandbox_db=str(sandbox_db), run_worker=False))
    try:
        worker = worker_module.Worker(app, worker_id=f"inproc{concurrency}")
        await app.billing_scheduler.sweep()
        if counter is not None:
            for engine in paymux_engines(app):
                counter.attach(engine)
            counter.on = True
        cpu, began, done = time.process_time(), time.perf_counter(), 0
        while ran := await worker.run_once():
            done += ran
        return done, time.perf_counter() - began, time.process_time() - cpu
    finally:
        await app.close()


def statement_key(sql: str) -> str:
    """A statement's kind and table: ``SELECT invoices``, ``INSERT events``, ``BEGIN``."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    at = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": None, "DELETE": "FROM"}.get(verb, "")
    if verb == "UPDATE" and len(words) > 1:
        return f"UPDATE {words[1]}"
    if at and at in upper:
        following = words[upper.index(at) + 1]
        return f"{verb} {following.strip('(')}"
    return verb


def print_counts(log: list[str], n: int) -> None:
    kinds = collections.Counter(statement_key(sql) for sql in log)
    total = sum(v for k, v in kinds.items() if k not in ("BEGIN", "COMMIT", "ROLLBACK"))
    print(f"  {total / n:.1f} statements and {kinds['BEGIN'] / n:.1f} transactions per renewal:")
    for key, count in kinds.most_common():
        print(f"    {count / n:6.2f}  {key}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000, help="due at once (100000)")
    parser.add_argument("--workers", default="1,2", help="runs, by worker count (1,2; '' for none)")
    parser.add_argument("--worker-batch-size", type=int, default=None)
    parser.add_argument(
        "--maintenance-interval",
        type=float,
        default=None,
        help="the workers' PAYMUX_MAINTENANCE_INTERVAL (their default: 5 s between sweeps)",
    )
    parser.add_argument(
        "--measure-sweep",
        action="store_true",
        help="also time one scheduler sweep over all of them, in this process",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds (900)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="per run, seconds: stop there and print what was reached (renewals, rate, "
        "CPU, RSS curve, the projection to all of them), checking exactly once on those",
    )
    parser.add_argument(
        "--in-process",
        default="",
        help="A/B of the side-by-side runner: renewals at once per run, e.g. 1,8 (no subprocess)",
    )
    parser.add_argument(
        "--count",
        action="store_true",
        help="with --in-process: count the statements per renewal, by kind and table",
    )
    parser.add_argument(
        "--profile", default="", help="with --in-process: write a cProfile of the runs here"
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    results: list[Run] = []
    sweep_line = ""
    load = loadavg()
    with databases(["postgres"], prefix="paymux-renewals-") as dbs:
        seed_dir = dbs.tmp / "template"
        seed_dir.mkdir()
        template = dbs.url("postgres", "renewals_template")
        upgrade(template)
        began = time.perf_counter()
        t = asyncio.run(seed(template, seed_dir / "sandbox.db", args.subscriptions))
        print(
            f"  seeded {args.subscriptions} due subscriptions in "
            f"{time.perf_counter() - began:.1f}s",
            file=sys.stderr,
        )
        if args.measure_sweep:
            work = dbs.tmp / "sweep"
            work.mkdir()
            shutil.copy(seed_dir / "sandbox.db", work / "sandbox.db")
            url = copy_database("postgres", template, "renewals_sweep", dbs)
            offered, first, again = asyncio.run(time_sweep(url, work / "sandbox.db"))
            sweep_line = (
                f"one scheduler sweep: {offered} jobs queued in {first:.1f}s "
                f"({offered / first:.0f}/s); a second sweep (all already queued): {again:.1f}s"
            )
        for i, concurrency in enumerate(int(c) for c in args.in_process.split(",") if c.strip()):
            work = dbs.tmp / f"inproc{i}"
            work.mkdir()
            shutil.copy(seed_dir / "sandbox.db", work / "sandbox.db")
            url = copy_database("postgres", template, f"renewals_inproc{i}", dbs)
            counter = Counter() if args.count else None
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            done, wall, cpu = asyncio.run(
                in_process(url, work / "sandbox.db", concurrency, counter)
            )
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}.{i}")
            print(
                f"in process, {concurrency} side by side: {done} renewals, wall {wall:.1f}s "
                f"({done / wall:.1f}/s), worker CPU {cpu / max(done, 1) * 1000:.1f} ms/renewal "
                f"(load {loadavg():.1f})"
            )
            if counter is not None:
                print_counts(counter.log, max(done, 1))
        if args.in_process:
            counts = []
        for workers in counts:
            work = dbs.tmp / f"run{workers}"
            work.mkdir()
            shutil.copy(seed_dir / "sandbox.db", work / "sandbox.db")
            url = copy_database("postgres", template, f"renewals_{workers}", dbs)
            print(f"  renewing with {workers} worker(s) ...", file=sys.stderr)
            results.append(asyncio.run(run(url, work, t, workers, args, dbs.pg)))
    print()
    print(
        f"renewals: {args.subscriptions} monthly subscriptions due at once, PostgreSQL, "
        f"sandbox at zero latency; {machine()}"
    )
    print(
        f"{'workers':>7} {'paid':>7} {'wall s':>8} {'renewals/s':>10} {'span s':>8} "
        f"{'worker CPU ms/renewal':>21} {'db CPU ms/renewal':>17} {'peak RSS MiB':>14}"
    )
    for r in results:
        n = max(r.paid, 1)
        rss = "/".join(f"{x:.0f}" for x in r.peak_rss or [])
        print(
            f"{r.workers:>7} {r.paid:>7} {r.wall:>8.1f} {r.rate:>10.1f} {r.span:>8.1f} "
            f"{r.worker_cpu / n * 1000:>21.2f} {r.db_cpu / n * 1000:>17.2f} {rss:>14}"
        )
    for r in results:
        if r.stopped:
            print(
                f"{r.workers} worker(s): stopped at the budget ({r.wall:.0f}s) with {r.paid} of "
                f"{r.n} paid ({r.invoiced} invoiced by the time the workers stopped); all "
                f"{r.n} at this rate: {r.n / r.rate / 60:.1f} min"
            )
        if r.curve:
            print(
                f"{r.workers} worker(s), paid and RSS MiB over time: "
                + "; ".join(
                    f"{at:.0f}s {paid} " + "/".join(f"{x:.0f}" for x in rss)
                    for at, paid, rss in r.curve
                )
            )
    if sweep_line:
        print(sweep_line)
    aim, goal = 120.0, 100_000  # issue 11: 100,000 renewals in under 2 minutes
    for r in results:
        if r.paid and r.wall > aim * r.paid / goal:
            print(
                f"{r.workers} worker(s): {r.rate:.1f} renewals/s; the aim ({goal} in "
                f"{aim:.0f}s) needs {goal / aim:.0f}/s: at this rate {goal} would take "
                f"{goal / r.rate / 60:.0f} min"
            )
    print(f"load average {load:.1f} -> {loadavg():.1f} (other work on the machine skews these)")
    errors = [f"{r.workers} worker(s): {r.error}" for r in results if r.error]
    for error in errors:
        print("ERROR:", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
