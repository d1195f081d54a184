"""Where the tail of a sequential payment is spent: the load generator's figure against the
server's own, for paymux and for the bare endpoint (bench/payments.py's yardstick).

Issue 10's "sequential p99 under 10 ms" is measured by wrk on one connection
(bench/payments.py, ``1 req, c=1``): from wrk's send to its receipt of the whole response.
Here the same run is also timed inside each server process (``bench/request_timing``, a
probe the servers load at start-up; nothing of paymux's own code), per request:

- **server**: from its first bytes parsed by the server (httptools' ``on_message_begin``) to
  its response sent (the end of uvicorn's task for it);
- **wait**: of that, the wait before the task that runs the app started (the event loop busy
  with other work: paymux's in-process worker, say);
- **outside**: wrk's p50/p99 minus the server's (the kernel's loopback, wrk, and the
  scheduling of both processes on the machine's cores): not a per-request difference (the
  two are measured by different processes), the difference of the percentiles;
- **gap**: from one response sent to the next request's first bytes parsed (one connection:
  the way back to wrk, wrk, and the way to the server again);
- **req**: each request's latency as wrk's client saw it (bench/common.py
  ``LUA_PER_REQUEST``). wrk's own p99 is corrected for coordinated omission: for every
  request slower than twice the mean interval it adds samples at that latency minus one,
  two, ... intervals, requests a sequential client never made; that correction, not time
  outside the servers, is most of "outside" at p99 (docs/benchmarks.md, the session of
  2026-12-05, 10:35-13:35).

Prints, per backend and server, wrk's p50/p99 and the server's, the wait's p99, and the
server's share of wrk's p99. ``--no-worker`` starts paymux with ``PAYMUX_RUN_WORKER=false``
(the job worker and the outbound dispatcher in a process of their own, as
docs/operations.md recommends): what the in-process worker adds.

Each backend: both servers started on fresh databases, warmed up (100 payments over httpx),
then ``--load-seconds`` (12) of 16 connections on each (as bench/payments.py runs before its
sequential turn; 0 to skip), then ``--seconds`` (10) of one connection on each, in turn
(paymux first). Requires wrk.

Run: ``python bench/sequential_split.py [--backends sqlite,postgres] [--seconds 10]
[--load-seconds 12] [--no-worker]``. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Databases, databases, have_wrk, loadavg, machine, paymux_server
from payments import Result, Side, bare_server, warm_up

from paymux.storage.migrate import upgrade

PROBE = ROOT / "bench" / "request_timing"
PAYMENT_PATHS = ("/v1/payment_intents", "/bare/payments")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def server_times(folder: Path, pid: int, since: float, until: float) -> tuple[list[float], ...]:
    """(server, wait, between) in ms of the payment requests process ``pid`` began in the
    window; ``between``: from one response sent to the next request's first bytes parsed
    (one connection: the requests follow each other), the time the request spent outside
    the server's timing, on its way back and forth and before the server read it."""
    path = folder / f"{pid}.jsonl"
    server: list[float] = []
    wait: list[float] = []
    between: list[float] = []
    if not path.exists():
        return server, wait, between
    last_end = None
    for line in path.read_text().splitlines():
        begin, started, ended, route = json.loads(line)
        if since <= begin <= until and route.startswith(PAYMENT_PATHS):
            server.append((ended - begin) * 1000)
            wait.append((started - begin) * 1000)
            if last_end is not None:
                between.append((begin - last_end) * 1000)
            last_end = ended
    return server, wait, between


def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> list[str]:
    work = dbs.tmp / backend
    work.mkdir()
    timing = work / "timing"
    timing.mkdir()
    urls = {side: dbs.url(backend, f"split_{side}") for side in ("paymux", "bare")}
    for url in urls.values():
        upgrade(url)
    worker = "false" if args.no_worker else "true"
    servers = [
        paymux_server(urls["paymux"], work, PAYMUX_RUN_WORKER=worker),
        bare_server(urls["bare"], work),
    ]
    lines = []
    try:
        for server in servers:
            server.start()
        sides = [Side(server, args, work) for server in servers]
        for side in sides:
            side.one = True
        warm_up(sides, args)
        if args.load_seconds > 0:
            for side in sides:
                side.connections = 16
                side.wrk_run(args.load_seconds, Result(side.name))
        for side in sides:
            side.connections = 1
            result = Result(side.name)
            since = time.monotonic()
            side.wrk_run(args.seconds, result)
            until = time.monotonic()
            if result.errors:
                raise RuntimeError(f"{side.name}: {result.errors} failed ({result.first_error})")
            time.sleep(1.5)  # the probe appends its records every second: all of this turn's
            server, wait, between = server_times(timing, side.server.pid, since, until)
            if not server:
                raise RuntimeError(f"{side.name}: no request timed (is httptools installed?)")
            wrk = result.runs[-1]
            sent = wrk.per_request
            s50, s99 = percentile(server, 0.50), percentile(server, 0.99)
            lines.append(
                f"{backend:<9} {side.name:<7} {result.done:>6} {wrk.p50:>8.2f} {wrk.p99:>8.2f} "
                f"{s50:>8.2f} {s99:>8.2f} {percentile(wait, 0.99):>8.2f} "
                f"{wrk.p50 - s50:>8.2f} {wrk.p99 - s99:>8.2f} {100 * s99 / wrk.p99:>7.0f}% "
                f"{percentile(between, 0.50):>8.2f} {percentile(between, 0.99):>8.2f} "
                f"{max(between):>8.2f} {percentile(sent, 0.50):>8.2f} {percentile(sent, 0.99):>8.2f}"
            )
    finally:
        for server in servers:
            server.stop()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres (both)")
    parser.add_argument("--seconds", type=float, default=10.0, help="one connection (10 s)")
    parser.add_argument(
        "--load-seconds", type=float, default=12.0, help="16 connections before (12 s; 0: none)"
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="paymux without its in-process worker (PAYMUX_RUN_WORKER=false)",
    )
    args = parser.parse_args(argv)
    if not have_wrk():
        print("wrk is not installed: this bench measures wrk's figures against the servers'")
        return 2
    # What bench/payments.py's Side and warm_up read.
    args.concurrency, args.idempotency_keys, args.warmup, args.max_seconds = 1, False, 100, 60.0
    args.chunk = 100
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    # The servers load the probe (sitecustomize) from PYTHONPATH; it records into the
    # folder BENCH_REQUEST_TIMING names (the environment reaches both servers).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p
    )
    print(machine())
    print(f"load average before: {loadavg()}")
    header = (
        f"{'backend':<9} {'server':<7} {'done':>6} {'wrk p50':>8} {'wrk p99':>8} "
        f"{'srv p50':>8} {'srv p99':>8} {'wait p99':>8} {'out p50':>8} {'out p99':>8} "
        f"{'srv/wrk':>8} {'gap p50':>8} {'gap p99':>8} {'gap max':>8} {'req p50':>8} "
        f"{'req p99':>8}"
    )
    lines: list[str] = []
    with databases(backends, prefix="paymux-split-") as dbs:
        for backend in backends:
            os.environ["BENCH_REQUEST_TIMING"] = str(dbs.tmp / backend / "timing")
            lines += run_backend(backend, args, dbs)
    worker = "without" if args.no_worker else "with"
    print(
        f"one connection, {args.seconds:.0f} s per server after {args.load_seconds:.0f} s of 16 "
        f"connections; paymux {worker} its in-process worker (ms)"
    )
    print(header)
    print("-" * len(header))
    print("\n".join(lines))
    print(f"load average after: {loadavg()}")
    print(
        "srv: first bytes parsed -> response sent, in the server process; wait: of that, "
        "before the app's task started; out: wrk's percentile minus the server's; gap: "
        "from a response sent to the next request's first bytes parsed; req: each request as "
        "wrk's client saw it, without wrk's correction for coordinated omission (its p99 "
        "adds samples for every request slower than twice the mean interval; "
        "common.LUA_PER_REQUEST)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
