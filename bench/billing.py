"""Billing benchmarks, one section each; ``main`` runs the sections asked for (all by default).

    .venv/bin/python bench/billing.py [meters ...] [--backends sqlite,postgres] [--seconds 10]
        [--concurrency 4] [--batch 100] [--customers 200] [--warmup 20] [--dup-every 25]
        [--server-workers 1] [--py-spy N] [renewals --subscriptions 100000]

Section ``renewals``: bench/billing_renewals.py (see its docstring) with ``--subscriptions``.

Section ``meters``: usage ingest through HTTP (issue 11: the aim is >= 5,000 meter events
accepted per second on PostgreSQL on a 2-core machine). For each backend it

1. migrates a fresh database and starts ``paymux serve --no-worker`` (bench/common.py: a
   subprocess on 127.0.0.1, log level WARNING, no rate limit), then makes one ``sum`` meter
   and ``--customers`` customers through the API;
2. builds the request bodies beforehand (``--batch`` events each, JSON, unique identifiers,
   each event's customer, value 1..100 and timestamp in the last 50 minutes drawn from a
   seeded generator) and posts them to ``POST /v2/billing/meter_event_stream`` for
   ``--seconds`` with ``--concurrency`` keep-alive connections (httpx in this process: at a
   hundred events a request the client makes a few dozen requests a second, so it is not the
   bottleneck; its CPU is printed beside the server's). Every ``--dup-every``-th request
   resends an earlier body (all its identifiers already stored): accepted, and not counted;
3. sums, independently of paymux, the values of every event of every request answered 200
   (a resent body adds nothing), then asks paymux's own aggregation
   (``MetersService.usage``, the function the invoices bill with) for each customer's usage
   over the window and compares the totals: "invoiced total equals sum sent: yes/no". A
   request that failed (none are expected) makes the comparison inconclusive, and says so.

Printed per backend: events accepted/s (new events / wall seconds of the measured run),
requests/s, p50/p99 latency per request, CPU per 1,000 events of the server (its process
tree: ``--server-workers N`` runs ``paymux serve --workers N`` on PostgreSQL) and of
PostgreSQL (the cluster's postmaster and backends), the client's CPU (% of one core) and the
load average. ``--py-spy N`` records the server with py-spy and prints its top N frames.
Exits non-zero on an error (a refused request, a mismatch); figures are reported, never
asserted. bench/common.py has the shared helpers (servers, databases, CPU, load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    Databases,
    databases,
    loadavg,
    machine,
    paymux_server,
    run_httpx,
    scalar,
)

from paymux.config import Settings
from paymux.services import Paymux
from paymux.storage.migrate import upgrade
from support.processes import child_pids, cpu_seconds

STREAM = "/v2/billing/meter_event_stream"


# == meters ===================================================================================
@dataclass
class Batch:
    body: bytes
    total: int  # the sum of its values
    count: int
    replay: bool = False  # a body sent before: adds nothing


class TreeCpu:
    """CPU seconds (user + system) of a process and its descendants between laps (paymux
    serve --workers N is a parent and N workers; PostgreSQL a postmaster and backends)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last = self.now()

    def now(self) -> float:
        pids, total, seen = [self.pid], 0.0, set()
        while pids:
            pid = pids.pop()
            if pid not in seen:
                seen.add(pid)
                total += cpu_seconds(pid)
                pids.extend(child_pids(pid))
        return total

    def lap(self) -> float:
        now = self.now()
        used, self.last = now - self.last, now
        return used


def postmaster_pid(dbs: Databases) -> int | None:
    """The pid of the throwaway cluster's postmaster, if there is one."""
    datadir = getattr(dbs.pg, "datadir", None)
    try:
        return int((Path(datadir) / "postmaster.pid").read_text().splitlines()[0])
    except (TypeError, OSError, ValueError, IndexError):
        return None


@dataclass
class MetersRun:
    backend: str
    requests: int = 0
    new_events: int = 0
    seconds: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    server_cpu: float = 0.0
    db_cpu: float = float("nan")
    client_cpu: float = 0.0
    sent_total: int = 0
    usage_total: int = 0
    failed: int = 0
    first_error: str | None = None
    load: tuple[float, float] = (0.0, 0.0)
    errors: list[str] = field(default_factory=list)
    workers: int = 1

    @property
    def rate(self) -> float:
        return self.new_events / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return self.server_cpu / self.new_events * 1000 if self.new_events else float("nan")

    @property
    def db_cpu_per_1000(self) -> float:
        return self.db_cpu / self.new_events * 1000 if self.new_events else float("nan")


def make_batches(
    event_name: str, customers: list[str], n: int, size: int, now: int, seed: int
) -> list[Batch]:
    """``n`` request bodies of ``size`` events each (unique identifiers), values 1..100."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    batches = []
    for b in range(n):
        events = []
        total = 0
        for i in range(size):
            value = rng.randint(1, 100)
            total += value
            events.append(
                {
                    "event_name": event_name,
                    "payload": {
                        "stripe_customer_id": customers[rng.randrange(len(customers))],
                        "value": str(value),
                    },
                    "identifier": f"{run}-{b}-{i}",
                    "timestamp": now - rng.randint(0, 3000),
                }
            )
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        batches.append(Batch(body, total, size))
    return batches


def schedule(batches: list[Batch], dup_every: int) -> Callable[[], Batch]:
    """The next body to send: the batches in order, every ``dup_every``-th send a resend of
    the previous new batch."""
    state = {"next": 0, "sent": 0}

    def take() -> Batch:
        state["sent"] += 1
        if dup_every and state["sent"] % dup_every == 0 and state["next"] > 0:
            old = batches[state["next"] - 1]
            return Batch(old.body, old.total, old.count, replay=True)
        if state["next"] >= len(batches):
            raise RuntimeError("out of prepared batches: raise --max-batches")
        state["next"] += 1
        return batches[state["next"] - 1]

    return take


async def invoiced_total(
    db_url: str,
    work: Path,
    account_id: str,
    meter_id: str,
    customers: list[str],
    start: int,
    end: int,
) -> int:
    """paymux's own aggregation (``MetersService.usage``) summed over the customers."""
    app = Paymux(Settings(database_url=db_url, sandbox_db=str(work / "sandbox.db")))
    try:
        total = 0
        async with app.ctx.db.read() as s:
            for cus in customers:
                total += await app.meters.usage(
                    s, account_id, False, meter_id, cus, start * 1_000_000, end * 1_000_000
                )
        return total
    finally:
        await app.close()


def meters_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> MetersRun:
    work = dbs.tmp / f"meters-{backend}"
    work.mkdir()
    url = dbs.url(backend, "bench_meters")
    upgrade(url)
    result = MetersRun(backend)
    workers = args.server_workers if backend == "postgres" else 1
    result.workers = workers
    server = paymux_server(
        url,
        work,
        name=f"meters-{backend}",
        args=["--no-worker", "--workers", str(workers)],
        PAYMUX_RUN_WORKER="false",
    )
    server.start()
    try:
        meter = server.ok(
            "POST",
            "/v1/billing/meters",
            json={
                "display_name": "bench",
                "event_name": "bench_tokens",
                "default_aggregation": {"formula": "sum"},
            },
        )
        customers = [
            str(server.ok("POST", "/v1/customers", json={"name": f"c{i}"})["id"])
            for i in range(args.customers)
        ]
        account_id = str(
            asyncio.run(scalar(url, f"select account_id from meters where id = '{meter['id']}'"))
        )
        now = int(time.time())
        needed = args.max_batches
        batches = make_batches(
            "bench_tokens", customers, needed + args.warmup, args.batch, now, args.seed
        )
        warm, measured = batches[: args.warmup], batches[args.warmup :]
        sent = {"total": 0, "new": 0}

        def sender(take: Callable[[], Batch], count_it: bool) -> Any:
            headers = {
                "authorization": f"Bearer {server.api_key}",
                "content-type": "application/json",
            }

            async def send(client: httpx.AsyncClient) -> int:
                batch = take()
                r = await client.post(STREAM, content=batch.body, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
                if not batch.replay:
                    sent["total"] += batch.total
                    if count_it:
                        sent["new"] += batch.count
                return 1

            return send

        warm_take = schedule(warm, 0)
        asyncio.run(
            run_httpx(
                server.url, sender(warm_take, False), connections=args.concurrency, count=len(warm)
            )
        )
        spy = start_py_spy(server.pid, args, work) if args.py_spy else None
        cpu = TreeCpu(server.pid)
        pg_pid = postmaster_pid(dbs) if backend == "postgres" else None
        db_cpu = TreeCpu(pg_pid) if pg_pid else None
        client_before = time.process_time()
        load_before = loadavg()
        load = asyncio.run(
            run_httpx(
                server.url,
                sender(schedule(measured, args.dup_every), True),
                connections=args.concurrency,
                seconds=args.seconds,
            )
        )
        result.server_cpu = cpu.lap()
        result.db_cpu = db_cpu.lap() if db_cpu else float("nan")
        if spy is not None:
            spy.wait(timeout=60)
            print_profile(work / "py-spy.txt", args.py_spy)
        result.client_cpu = time.process_time() - client_before
        result.load = (load_before, loadavg())
        result.requests = load.requests
        result.seconds = load.seconds
        result.p50, result.p99 = load.p50, load.p99
        result.failed = load.errors
        result.first_error = load.first_error
        result.new_events = sent["new"]
        result.sent_total = sent["total"]
    finally:
        server.stop()
    result.usage_total = asyncio.run(
        invoiced_total(url, work, account_id, meter["id"], customers, now - 3600, now + 1)
    )
    if result.failed:
        result.errors.append(f"{result.failed} requests failed, first: {result.first_error}")
    elif result.usage_total != result.sent_total:
        result.errors.append(f"invoiced total {result.usage_total} != sum sent {result.sent_total}")
    return result


def start_py_spy(pid: int, args: argparse.Namespace, work: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of the server for the measured run (``--py-spy N``: print the top N
    frames; py-spy is not a paymux dependency: ``.venv/bin/pip install py-spy``)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(pid), "-d", str(max(1, int(args.seconds) - 1)), "-r", "200"]
    cmd += ["--format", "raw", "--nonblocking", "-o", str(work / "py-spy.txt")]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: Path, top: int) -> None:
    """Own and total time of the top frames in py-spy's raw (folded) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    print(f"py-spy: {samples} samples of the server")
    for title, counter in (("own", own), ("total", total)):
        for frame, count in counter.most_common(top):
            print(f"  {count / max(samples, 1) * 100:5.1f}% {title:<5} {frame[:140]}")


def meters_report(runs: list[MetersRun], args: argparse.Namespace) -> None:
    print(
        f"\n== meters: meter events through {STREAM} ({args.batch} events a request, "
        f"{args.concurrency} connections, {args.seconds:.0f} s, httpx keep-alive, "
        f"every {args.dup_every}th request a resend)"
    )
    print(
        f"{'backend':<10} {'workers':>7} {'events/s':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv CPU ms/1k ev':>17} {'db CPU ms/1k ev':>16} {'client CPU %':>12} {'load':>11}  "
        "invoiced total = sum sent"
    )
    for r in runs:
        equal = (
            "inconclusive (requests failed)"
            if r.failed
            else ("yes" if r.usage_total == r.sent_total else "NO")
        )
        client = r.client_cpu / r.seconds * 100 if r.seconds else float("nan")
        print(
            f"{r.backend:<10} {r.workers:>7} {r.rate:>9.0f} "
            f"{r.requests / max(r.seconds, 1e-9):>7.1f} {r.p50:>7.1f} {r.p99:>7.1f} "
            f"{r.cpu_per_1000 * 1000:>17.1f} {r.db_cpu_per_1000 * 1000:>16.1f} {client:>12.0f} "
            f"{r.load[0]:>5.2f}/{r.load[1]:<5.2f}  {equal} ({r.usage_total} vs {r.sent_total})"
        )


def run_meters(args: argparse.Namespace, dbs: Databases) -> list[str]:
    runs = []
    for backend in args.backends:
        print(f"meters on {backend} ...", file=sys.stderr, flush=True)
        runs.append(meters_backend(backend, args, dbs))
    meters_report(runs, args)
    return [f"meters/{r.backend}: {e}" for r in runs for e in r.errors]


# == main =====================================================================================
def run_renewals(args: argparse.Namespace, dbs: Databases) -> list[str]:
    """Section ``renewals`` (issue 11, section 8): bench/billing_renewals.py, in a process of
    its own (it starts its own PostgreSQL cluster and workers); its figures are printed as
    they come."""
    script = Path(__file__).resolve().parent / "billing_renewals.py"
    cmd = [sys.executable, str(script), "--subscriptions", str(args.subscriptions)]
    done = subprocess.run(cmd, check=False)
    return [] if done.returncode == 0 else [f"renewals: exit status {done.returncode}"]


SECTIONS: dict[str, Callable[[argparse.Namespace, Databases], list[str]]] = {
    "meters": run_meters,
    "renewals": run_renewals,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux billing benchmarks (see docstring)")
    parser.add_argument(
        "sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (all by default)"
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--concurrency", type=int, default=4, help="connections (4)")
    parser.add_argument("--batch", type=int, default=100, help="events a request (100)")
    parser.add_argument("--customers", type=int, default=200, help="customers (200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests (20)")
    parser.add_argument("--dup-every", type=int, default=25, help="resend every Nth (25)")
    parser.add_argument("--max-batches", type=int, default=3000, help="bodies prepared (3000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--subscriptions", type=int, default=100_000, help="renewals: due at once (100000)"
    )
    parser.add_argument(
        "--server-workers", type=int, default=1, help="paymux serve --workers on PostgreSQL (1)"
    )
    parser.add_argument("--py-spy", type=int, default=0, help="profile: print the top N frames")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    sections = args.sections or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}: use {', '.join(SECTIONS)}")
    print(f"machine: {machine()}", flush=True)
    errors: list[str] = []
    with databases(args.backends, prefix="paymux-bench-billing-") as dbs:
        for section in sections:
            errors += SECTIONS[section](args, dbs)
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
