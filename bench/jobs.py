"""Job-queue benchmark: how fast jobs are claimed and completed as the backlog of due jobs
grows from 10,000 to 1,000,000, on SQLite and PostgreSQL.

For each backend it migrates a fresh database (SQLite WAL in a temp file; PostgreSQL in a
throwaway cluster from tests/support/pgcluster.py: fsync, synchronous_commit and
full_page_writes off, started as the ``postgres`` OS user when run as root), then for each
backlog size (``--sizes``):

1. fills ``jobs`` with that many queued jobs, all due (``run_at_us`` in the past, distinct),
   in one SQL statement (``generate_series`` on PostgreSQL, a recursive CTE on SQLite),
   then ``VACUUM ANALYZE`` (PostgreSQL) or ``ANALYZE`` (SQLite);
2. drives one worker loop through paymux's own ``Database`` and ``jobs.queue`` functions
   (no server, no handlers): claim a batch (``--batch``, 10) in one write transaction, then
   complete each claimed job in a second one; repeated for ``--batches`` (300) or until
   ``--seconds`` (8) have passed, whichever comes first;
3. does the same with the claim paymux had before (``claim_one_or_query`` below: one query
   with the two conditions OR-ed, ordered by ``run_at_us``), after putting the claimed jobs
   back, so both start from the same backlog;
4. prints the claim's query plan at the largest size (EXPLAIN ANALYZE on PostgreSQL,
   EXPLAIN QUERY PLAN on SQLite).

It prints, per backend, backlog and claim, jobs claimed and completed per second and the
claim transaction's p50 / p99 latency. Nothing is asserted; it exits non-zero only on an
error (for example a batch that claims a job twice).

    .venv/bin/python bench/jobs.py [--sizes 10000,1000000] [--backends sqlite,postgres]
        [--batch 10] [--batches 300] [--seconds 8] [--no-before]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, event, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Databases, databases, loadavg, machine

from paymux.jobs import queue
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import Job

SECOND = 1_000_000
Claim = Callable[..., Awaitable[list[queue.ClaimedJob]]]


async def claim_one_or_query(
    session: AsyncSession, worker_id: str, *, now_us: int, limit: int, lease: float = 60.0
) -> list[queue.ClaimedJob]:
    """The claim as it was before (commit 3a3d6ed), for comparison: one query, OR-ed."""
    due = or_(
        and_(Job.status == queue.QUEUED, Job.run_at_us <= now_us),
        and_(Job.status == queue.RUNNING, Job.locked_until_us < now_us),
    )
    candidates = select(Job.id).where(due).order_by(Job.run_at_us).limit(limit)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
        ids = list((await session.execute(candidates)).scalars())
        if not ids:
            return []
        where = Job.id.in_(ids)
    else:
        where = Job.id.in_(candidates.scalar_subquery())
    rows = await session.execute(
        update(Job)
        .where(where)
        .values(
            status=queue.RUNNING,
            locked_by=worker_id,
            locked_until_us=now_us + int(lease * SECOND),
            attempts=Job.attempts + 1,
            updated_us=now_us,
        )
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.lease_id)
    )
    return [  # the claim as the queue's fencing knows it (lease_id, 0017), not bumped here
        queue.ClaimedJob(r.id, r.kind, r.payload, r.attempts, r.max_attempts, worker_id, r.lease_id)
        for r in rows
    ]


CLAIMS: dict[str, Claim] = {
    "now: two index ranges": queue.claim,
    "before: one OR-ed query": claim_one_or_query,
}


@dataclass
class Result:
    backend: str
    backlog: int
    claim: str
    batches: int
    jobs: int
    seconds: float
    claim_ms: list[float]
    fill_seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("nan")

    def pct(self, q: float) -> float:
        if not self.claim_ms:
            return float("nan")
        ordered = sorted(self.claim_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- filling the table --------------------------------------------------------------------
_COLUMNS = "kind, payload, status, run_at_us, attempts, max_attempts, created_us, updated_us"


async def fill_postgres(url: str, n: int, base_us: int) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("TRUNCATE jobs RESTART IDENTITY"))
            await conn.execute(
                text(
                    f"INSERT INTO jobs ({_COLUMNS}) SELECT 'bench', "
                    "json_build_object('n', g), 'queued', b + g, 0, 10, b + g, b + g "
                    "FROM generate_series(1, :n) AS g, CAST(:base AS BIGINT) AS b"
                ),
                {"n": n, "base": base_us},
            )
            await conn.execute(text("VACUUM ANALYZE jobs"))
    finally:
        await engine.dispose()


def fill_sqlite(path: Path, n: int, base_us: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DELETE FROM jobs")
        conn.execute("BEGIN")
        conn.execute(
            f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            f"INSERT INTO jobs ({_COLUMNS}) SELECT 'bench', json_object('n', x), 'queued', "
            "? + x, 0, 10, ? + x, ? + x FROM g",
            (n, base_us, base_us, base_us),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def put_back(url: str, postgres: bool) -> None:
    """Claimed and completed jobs queued again, as they were filled (attempts 0)."""
    db = Database(url, pool_size=1)
    try:
        async with db.write() as s:
            await s.execute(
                update(Job)
                .where(Job.status != queue.QUEUED)
                .values(status=queue.QUEUED, attempts=0, locked_by=None, locked_until_us=None)
            )
    finally:
        await db.dispose()
    if postgres:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("VACUUM ANALYZE jobs"))
        finally:
            await engine.dispose()


# -- the worker loop -----------------------------------------------------------------------
async def drive(url: str, claim: Claim, args: argparse.Namespace) -> tuple[int, int, float, list[float]]:
    db = Database(url, pool_size=2)
    seen: set[int] = set()
    claim_ms: list[float] = []
    batches = jobs = 0
    try:
        started = time.perf_counter()
        deadline = started + args.seconds
        while batches < args.batches and time.perf_counter() < deadline:
            now = time.time_ns() // 1000
            t0 = time.perf_counter()
            async with db.write() as s:
                claimed = await claim(s, "bench", now_us=now, limit=args.batch, lease=600.0)
            claim_ms.append((time.perf_counter() - t0) * 1000)
            if len(claimed) != args.batch:
                raise RuntimeError(f"claimed {len(claimed)} jobs, wanted {args.batch}")
            ids = {job.id for job in claimed}
            if ids & seen:
                raise RuntimeError(f"jobs claimed twice: {sorted(ids & seen)}")
            seen |= ids
            async with db.write() as s:
                for job in claimed:
                    if not await queue.complete(s, job, now_us=now):
                        raise RuntimeError(f"job {job.id}: its claim was refused")
            batches += 1
            jobs += len(claimed)
        return batches, jobs, time.perf_counter() - started, claim_ms
    finally:
        await db.dispose()


async def plans(url: str, postgres: bool, batch: int) -> list[str]:
    """The plan of each claim's statements, executed (PostgreSQL) or not (SQLite)."""
    out: list[str] = []
    db = Database(url, pool_size=1)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM jobs" in statement:
            sent.append((statement, parameters))

    try:
        for name, claim in CLAIMS.items():
            sent.clear()
            event.listen(db.writer.sync_engine, "before_cursor_execute", capture)
            try:
                async with db.write() as s:
                    await claim(s, "plan", now_us=time.time_ns() // 1000, limit=batch)
                    raise _Rollback
            except _Rollback:
                pass
            finally:
                event.remove(db.writer.sync_engine, "before_cursor_execute", capture)
            out.append(f"  {name}:")
            for statement, params in sent:
                if postgres and not statement.lstrip().upper().startswith("SELECT"):
                    continue
                explain = "EXPLAIN (ANALYZE, COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
                try:  # rolled back: EXPLAIN ANALYZE runs the SELECT ... FOR UPDATE
                    async with db.write() as s:
                        conn = await s.connection()
                        rows = (await conn.exec_driver_sql(explain + statement, params)).all()
                        out += [f"    {row[0] if postgres else row[3]}" for row in rows]
                        raise _Rollback
                except _Rollback:
                    pass
    finally:
        await db.dispose()
    return out


class _Rollback(Exception):
    pass


# -- the run -------------------------------------------------------------------------------
def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> tuple[str, list[Result], list[str]]:
    postgres = backend == "postgres"
    url = dbs.url(backend, "bench_jobs")
    path = dbs.tmp / "bench_jobs.db"  # SQLite's file
    version = dbs.version(backend, url)
    upgrade(url)
    results: list[Result] = []
    plan_lines: list[str] = []
    claims = CLAIMS if args.before else {k: v for k, v in CLAIMS.items() if k.startswith("now")}
    for size in args.sizes:
        base = time.time_ns() // 1000 - 86_400 * SECOND - size  # due since yesterday
        print(f"  {backend}: filling {size:,} due jobs ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if postgres:
            asyncio.run(fill_postgres(url, size, base))
        else:
            fill_sqlite(path, size, base)
        filled = time.perf_counter() - t0
        for i, (name, claim) in enumerate(claims.items()):
            if i:
                asyncio.run(put_back(url, postgres))
            print(f"  {backend}: {size:,} due, {name} ...", file=sys.stderr, flush=True)
            batches, jobs, seconds, claim_ms = asyncio.run(drive(url, claim, args))
            results.append(Result(backend, size, name, batches, jobs, seconds, claim_ms, filled))
        if size == max(args.sizes):
            asyncio.run(put_back(url, postgres))
            plan_lines = asyncio.run(plans(url, postgres, args.batch))
    return version, results, plan_lines


def report(runs: list[tuple[str, str, list[Result], list[str]]], args: argparse.Namespace) -> None:
    print()
    print(
        f"claim batches of {args.batch}, each followed by a transaction completing them; "
        f"{args.batches} batches or {args.seconds:g} s per row, whichever is first; "
        + machine()
    )
    for backend, version, results, plan_lines in runs:
        print()
        print(f"{backend} ({version})")
        print(
            f"{'due jobs':>10}  {'fill s':>6}  {'claim':<24} {'batches':>7} {'jobs/s':>8} "
            f"{'claim p50 ms':>12} {'claim p99 ms':>12}"
        )
        for r in results:
            print(
                f"{r.backlog:>10,}  {r.fill_seconds:>6.1f}  {r.claim:<24} {r.batches:>7} "
                f"{r.rate:>8.1f} {r.pct(0.5):>12.2f} {r.pct(0.99):>12.2f}"
            )
        if plan_lines:
            print(f"claim plans at {max(args.sizes):,} due jobs:")
            print("\n".join(plan_lines))
    print()
    print(f"load average (1 min) at the end: {loadavg()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux job-queue benchmark (see docstring)")
    parser.add_argument("--sizes", default="10000,1000000", help="backlogs of due jobs")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--batch", type=int, default=10, help="jobs per claim (10)")
    parser.add_argument("--batches", type=int, default=300, help="claims per row, at most (300)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per row, at most (8)")
    parser.add_argument(
        "--before",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the former one-query claim (default: yes)",
    )
    args = parser.parse_args(argv)
    args.sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown or not backends:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown)) or '(none)'}")
    if args.batch < 1 or args.batches < 1 or not args.sizes or min(args.sizes) < args.batch:
        parser.error("--batch, --batches and --sizes must be positive, sizes >= batch")

    runs: list[tuple[str, str, list[Result], list[str]]] = []
    began = time.perf_counter()
    with databases(backends, prefix="paymux-bench-jobs-") as dbs:
        for backend in backends:
            print(f"running {backend} ...", file=sys.stderr, flush=True)
            version, results, plan_lines = run_backend(backend, args, dbs)
            runs.append((backend, version, results, plan_lines))
    report(runs, args)
    print(f"total time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
