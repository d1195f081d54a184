"""Memory benchmark: paymux's resident memory as payments accumulate, to show it does not grow.

For each backend (SQLite, PostgreSQL) this migrates a fresh database, starts ``paymux serve``
(with its worker, the sandbox gateway at zero latency, log level WARNING) on 127.0.0.1, and
drives it with create + confirm payments (``pm_card_visa``) from wrk at ``--concurrency``
connections, in steps of ``--step-seconds``, until ``--payments`` payments have succeeded. After
every step it samples the server process's resident memory (RSS, ``/proc/<pid>/status``) and
prints one line of the curve: payments so far, RSS, payments/s of the step. At the end it prints
the first, largest and last RSS and the slope over the second half of the run (MiB per 10,000
payments): a process that keeps something per payment shows a steady positive slope, one that
does not shows a flat curve once its caches are warm.

    .venv/bin/python bench/memory.py [--payments 100000] [--step-seconds 15]
        [--backends sqlite,postgres] [--concurrency 16]

Needs wrk (Debian package ``wrk``). The issue's target: under 150 MB per process after
100,000 payments, with no growth. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PAYMENTS_LUA,
    Databases,
    databases,
    have_wrk,
    loadavg,
    machine,
    paymux_server,
    rss_mb,
    run_wrk,
)

from paymux.storage.migrate import upgrade


@dataclass
class Curve:
    backend: str
    version: str
    points: list[tuple[int, float, float]] = field(default_factory=list)  # payments, MiB, rate
    errors: int = 0
    first_error: str | None = None

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


def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> Curve:
    work = dbs.tmp / backend
    work.mkdir()
    url = dbs.url(backend, "bench_memory")
    upgrade(url)
    curve = Curve(backend, dbs.version(backend, url))
    server = paymux_server(url, work, PAYMUX_RUN_WORKER="true")
    server.start()
    try:
        curve.points.append((0, rss_mb(server.pid), 0.0))
        print(f"{backend}: {0:>8} payments  {curve.points[0][1]:7.1f} MiB", flush=True)
        done, stalled = 0, 0
        while done < args.payments:
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
            curve.points.append((done, rss_mb(server.pid), rate))
            print(
                f"{backend}: {done:>8} payments  {curve.points[-1][1]:7.1f} MiB  "
                f"{rate:6.1f} payments/s  load {loadavg():.1f}",
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
    print(machine() + "; " + "; ".join(c.version for c in curves))
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
        if c.errors:
            print(f"ERROR {c.backend}: {c.errors} failed requests, first: {c.first_error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux memory benchmark (see module docstring)")
    parser.add_argument("--payments", type=int, default=100_000, help="payments per backend")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="seconds per sample")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres (both)")
    args = parser.parse_args(argv)
    if not have_wrk():
        parser.error("wrk is not installed (apt-get install wrk)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgres"}:
        parser.error("--backends: sqlite and/or postgres")
    if args.payments < 1 or args.step_seconds < 1 or args.concurrency < 1:
        parser.error("--payments, --step-seconds and --concurrency must be positive")
    with databases(backends, prefix="paymux-bench-mem-") as dbs:
        curves = [run_backend(b, args, dbs) for b in backends]
    report(curves, args)
    return 1 if any(c.errors for c in curves) else 0


if __name__ == "__main__":
    sys.exit(main())
