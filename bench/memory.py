"""Memory benchmark: paymux's resident memory as payments accumulate, to show it does not grow.

For each backend (SQLite, PostgreSQL) this migrates a fresh database, starts ``paymux serve``
(with its worker, the sandbox gateway at zero latency, log level WARNING) on 127.0.0.1, and
drives it with create + confirm payments (``pm_card_visa``) from wrk at ``--concurrency``
connections, in steps of ``--step-seconds``, until ``--payments`` payments have succeeded. After
every step it samples the server process's resident memory (RSS, ``/proc/<pid>/status``) and
prints one line of the curve: payments so far, RSS (and its anonymous and file-backed parts),
payments/s of the step, CPU ms per payment of the server (survives other load), and for SQLite
the size of the database's WAL file. At the end it prints the curve at every ``--every``
payments, the first, largest and last RSS, whether the last is under the target (150 MB =
143.05 MiB; the docs' figures are MiB) and the slope over the second half of the run (MiB per
10,000 payments): a process that keeps something per payment shows a steady positive slope,
one that does not shows a flat curve once its caches are warm. ``--max-minutes`` stops a
backend's run early (a loaded machine): the report then says how far it got.

    .venv/bin/python bench/memory.py [--payments 100000] [--step-seconds 15]
        [--backends sqlite,postgres] [--concurrency 16] [--every 10000] [--max-minutes 0]

The server's pool is ``PAYMUX_DB_POOL_SIZE`` (printed; default 5: on PostgreSQL 5 connections
plus 5 in overflow, each with its prepared statements). Needs wrk (Debian package ``wrk``).
The issue's target: under 150 MB per process after 100,000 payments, with no growth. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PAYMENTS_LUA,
    CpuMeter,
    Databases,
    databases,
    have_wrk,
    loadavg,
    machine,
    paymux_server,
    rss_mb,
    run_wrk,
)

from paymux.config import Settings
from paymux.storage.migrate import upgrade


@dataclass
class Curve:
    backend: str
    version: str
    points: list[tuple[int, float, float]] = field(default_factory=list)  # payments, MiB, rate
    errors: int = 0
    first_error: str | None = None
    stopped_early: bool = False

    def slope_per_10k(self) -> float:
        """Least-squares MiB per 10,000 payments over the second half of the points."""
        half = self.points[len(self.points) // 2 :]
        if len(half) < 2:
            return float("nan")
        xs = [p[0] for p in half]
        ys = [p[1] for p in half]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        if not var:
            return float("nan")
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 10_000


MB = 1_000_000 / 2**20  # 150 MB in MiB: 150 * MB = 143.05


def memory_parts(pid: int) -> str:
    """``anon A file F`` (MiB): the process's own memory, and file mappings (libraries, the
    SQLite WAL index)."""
    parts: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0]] = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return ""
    return f"anon {parts.get('RssAnon', 0):6.1f} file {parts.get('RssFile', 0):5.1f}"


def wal_mb(url: str) -> str:
    """The size of a SQLite database's WAL file (MiB), or "" for PostgreSQL."""
    if not url.startswith("sqlite"):
        return ""
    wal = Path(url.split("///", 1)[1] + "-wal")
    size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
    return f"  WAL {size:7.1f} MiB"


def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> Curve:
    work = dbs.tmp / backend
    work.mkdir()
    url = dbs.url(backend, "bench_memory")
    upgrade(url)
    curve = Curve(backend, dbs.version(backend, url))
    server = paymux_server(url, work, PAYMUX_RUN_WORKER="true")
    server.start()
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    try:
        curve.points.append((0, rss_mb(server.pid), 0.0))
        print(
            f"{backend}: {0:>8} payments  {curve.points[0][1]:7.1f} MiB "
            f"({memory_parts(server.pid)}){wal_mb(url)}",
            flush=True,
        )
        done, stalled = 0, 0
        cpu = CpuMeter(server.pid)
        while done < args.payments:
            if deadline is not None and time.monotonic() > deadline:
                curve.stopped_early = True
                break
            load = run_wrk(
                server.url,
                PAYMENTS_LUA,
                seconds=args.step_seconds,
                connections=args.concurrency,
                threads=min(2, args.concurrency),
                args=["/v1/payment_intents", "/v1/payment_intents/%s/confirm", server.api_key, "0"],
                tmp=work,
            )
            succeeded = load.counters.get("succeeded", 0)
            done += succeeded
            curve.errors += load.errors
            curve.first_error = curve.first_error or load.first_error
            rate = succeeded / load.seconds if load.seconds else 0.0
            cpu_ms = cpu.lap() * 1000 / succeeded if succeeded else float("nan")
            curve.points.append((done, rss_mb(server.pid), rate))
            print(
                f"{backend}: {done:>8} payments  {curve.points[-1][1]:7.1f} MiB "
                f"({memory_parts(server.pid)})  {rate:6.1f} payments/s  "
                f"CPU {cpu_ms:5.1f} ms/payment  load {loadavg():.1f}{wal_mb(url)}",
                flush=True,
            )
            stalled = stalled + 1 if succeeded == 0 else 0
            if stalled == 3:  # three steps without a payment: report what we have
                curve.first_error = curve.first_error or "no payment succeeded in 3 steps"
                curve.errors += 1
                break
    finally:
        server.stop()
    return curve


def report(curves: list[Curve], args: argparse.Namespace) -> None:
    print()
    print(
        f"resident memory of paymux serve over {args.payments} payments (create + confirm "
        f"pm_card_visa), wrk at {args.concurrency} connections, steps of {args.step_seconds:.0f} s"
    )
    print(
        machine()
        + "; "
        + "; ".join(c.version for c in curves)
        + f"; PAYMUX_DB_POOL_SIZE {Settings().db_pool_size}"
    )
    header = (
        f"{'backend':<9} {'payments':>9} {'first MiB':>10} {'max MiB':>8} {'last MiB':>9} "
        f"{'MiB/10k (2nd half)':>19} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for c in curves:
        print(
            f"{c.backend:<9} {c.points[-1][0]:>9} {c.points[0][1]:>10.1f} "
            f"{max(p[1] for p in c.points):>8.1f} {c.points[-1][1]:>9.1f} "
            f"{c.slope_per_10k():>19.2f} {c.errors:>7}"
        )
    for c in curves:
        last = c.points[-1]
        verdict = "under" if last[1] < 150 * MB else "NOT under"
        reached = "" if last[0] >= args.payments else f" (only {last[0]} of {args.payments})"
        print(
            f"{c.backend}: {last[1]:.1f} MiB = {last[1] / MB:.1f} MB after {last[0]} payments"
            f"{reached}: {verdict} 150 MB"
            + (" (stopped at --max-minutes)" if c.stopped_early else "")
        )
        print(f"{c.backend} curve (every {args.every} payments): " + curve_at(c, args.every))
    for c in curves:
        if c.errors:
            print(f"ERROR {c.backend}: {c.errors} failed requests, first: {c.first_error}")


def curve_at(curve: Curve, every: int) -> str:
    """``payments: MiB`` at the first sample at or past each multiple of ``every``."""
    shown = [curve.points[0]]
    mark = every
    for point in curve.points[1:]:
        if point[0] >= mark:
            shown.append(point)
            mark = (point[0] // every + 1) * every
    if shown[-1] is not curve.points[-1]:
        shown.append(curve.points[-1])
    return ", ".join(f"{p[0]}: {p[1]:.1f}" for p in shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux memory benchmark (see module docstring)")
    parser.add_argument("--payments", type=int, default=100_000, help="payments per backend")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="seconds per sample")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres (both)")
    parser.add_argument("--every", type=int, default=10_000, help="the report's curve step")
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop a backend after this (0: never)"
    )
    args = parser.parse_args(argv)
    if not have_wrk():
        parser.error("wrk is not installed (apt-get install wrk)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgres"}:
        parser.error("--backends: sqlite and/or postgres")
    if args.payments < 1 or args.step_seconds < 1 or args.concurrency < 1 or args.every < 1:
        parser.error("--payments, --step-seconds and --concurrency must be positive")
    with databases(backends, prefix="paymux-bench-mem-") as dbs:
        curves = [run_backend(b, args, dbs) for b in backends]
    report(curves, args)
    return 1 if any(c.errors for c in curves) else 0


if __name__ == "__main__":
    sys.exit(main())
