"""Scale-out benchmark: payments/s with 1 and 2 API processes on PostgreSQL.

Each shape is a deployment of its own (its own database in one throwaway PostgreSQL cluster,
its own sandbox store), both started before any load:

* ``python -m paymux.cli serve --workers N --no-worker`` (N API processes on one port,
  configured by PAYMUX_* variables, log level WARNING, no rate limit), and
* one ``paymux worker`` beside it (the recommended shape, docs/operations.md).

Each is warmed up (``--warmup`` payments over httpx, repeated until every API process holds
some of the 16 connections, which also shows that they all started), then driven with wrk at
``--concurrency`` connections (payments: create, then confirm ``pm_card_visa``; the Lua
script is bench/common.py's ``PAYMENTS_LUA``), taking turns (1, 2, 2, 1, ...) of
``--chunk-seconds`` for ``--seconds`` each, so that other work on the machine slows both alike.

It prints, per shape: payments/s, p50/p99 per request (wrk), and CPU milliseconds per payment
of the API processes (the serve process and all its children), the job worker, and
PostgreSQL (the postmaster and all its backends; the idle deployment's share is in there too,
small), and their sum (a pm_card_visa payment queues no job: the worker's share is its
polling and sweeps). On a 2-core machine the sum bounds what a second process can add:
2000 / (total CPU ms per payment) payments/s at most, wrk's own CPU aside. Figures are
reported, never asserted; exit status 1 only when a request failed.

    .venv/bin/python bench/scaleout.py [--seconds 20] [--chunk-seconds 5] [--concurrency 16]
        [--processes 1,2] [--warmup 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PAYMENTS_LUA,
    LoadResult,
    LoggedProcess,
    ServerProcess,
    cpu_seconds,
    databases,
    have_wrk,
    loadavg,
    machine,
    paymux_env,
    paymux_server,
    paymux_worker,
    run_httpx,
    run_wrk,
)

from paymux.storage.migrate import upgrade
from support.processes import child_pids, connection_owners


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every descendant it has now."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_seconds(current)
        todo.extend(child_pids(current))
    return total


@dataclass
class Shape:
    """One deployment: ``processes`` API processes and one job worker on their own database."""

    processes: int
    server: ServerProcess
    worker: LoggedProcess
    key: str
    postmaster: int
    runs: list[LoadResult] = field(default_factory=list)
    done: int = 0
    cpu: dict[str, float] = field(default_factory=lambda: {"api": 0.0, "worker": 0.0, "pg": 0.0})

    def meters(self) -> dict[str, float]:
        return {
            "api": tree_cpu(self.server.pid),
            "worker": cpu_seconds(self.worker.pid),
            "pg": tree_cpu(self.postmaster),
        }

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def cpu_ms(self, part: str) -> float:
        return self.cpu[part] / self.done * 1000 if self.done else float("nan")


async def _pay(http: httpx.AsyncClient, key: str) -> int:
    headers = {"authorization": f"Bearer {key}"}
    created = await http.post(
        "/v1/payment_intents", json={"amount": 2000, "currency": "usd"}, headers=headers
    )
    if created.status_code != 200:
        raise RuntimeError(f"create: HTTP {created.status_code} {created.text[:300]}")
    confirmed = await http.post(
        f"/v1/payment_intents/{created.json()['id']}/confirm",
        json={"payment_method": "pm_card_visa"},
        headers=headers,
    )
    if confirmed.status_code != 200 or confirmed.json().get("status") != "succeeded":
        raise RuntimeError(f"confirm: HTTP {confirmed.status_code} {confirmed.text[:300]}")
    return 2


async def _spread(shape: Shape, connections: int) -> dict[int, int]:
    """One payment per connection, all at once; which API processes hold the connections."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=shape.server.url, limits=limits, timeout=60, trust_env=False
    ) as http:
        await asyncio.gather(*(_pay(http, shape.key) for _ in range(connections)))
        pids = [shape.server.pid, *child_pids(shape.server.pid)]  # one process: itself
        return connection_owners(shape.server.port, pids)


def warm_up(shape: Shape, args: argparse.Namespace) -> None:
    """Until every API process has accepted connections (they start one by one), then
    ``--warmup`` payments."""
    deadline = time.monotonic() + 180
    while True:
        owners = asyncio.run(_spread(shape, args.concurrency))
        if len(owners) >= shape.processes:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(owners)} of {shape.processes} API processes serve")
        time.sleep(1)
    load = asyncio.run(
        run_httpx(
            shape.server.url,
            lambda http: _pay(http, shape.key),
            connections=args.concurrency,
            count=args.warmup,
        )
    )
    if load.errors:
        raise RuntimeError(f"warm-up failed: {load.first_error}\n{shape.server.tail()}")


def turn(shape: Shape, seconds: float, args: argparse.Namespace, tmp: Path) -> None:
    before = shape.meters()
    load = run_wrk(
        shape.server.url,
        PAYMENTS_LUA,
        seconds=seconds,
        connections=args.concurrency,
        threads=2,
        args=["/v1/payment_intents", "/v1/payment_intents/%s/confirm", shape.key, "0"],
        tmp=tmp,
    )
    after = shape.meters()
    shape.runs.append(load)
    shape.done += load.counters.get("succeeded", 0)
    for part in shape.cpu:
        shape.cpu[part] += after[part] - before[part]


def postmaster_pid(datadir: Path) -> int:
    return int((datadir / "postmaster.pid").read_text().splitlines()[0])


def report(shapes: list[Shape], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print()
    print(
        f"{args.seconds:.0f} s of payments (create + confirm pm_card_visa) per shape, wrk "
        f"{args.concurrency} connections, turns of {args.chunk_seconds:.0f} s, PostgreSQL, "
        "API processes with --no-worker + 1 `paymux worker`"
    )
    print(f"{machine()}; load average {load[0]:.1f} -> {load[1]:.1f}")
    print()
    header = (
        f"{'API procs':>9} {'payments':>9} {'err':>4} {'payments/s':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7}  {'CPU ms/payment: API':>19} {'worker':>7} {'PG':>6} {'total':>6}"
    )
    print(header)
    print("-" * len(header))
    for s in shapes:
        p50 = sorted(r.p50 for r in s.runs)[len(s.runs) // 2] if s.runs else float("nan")
        p99 = max((r.p99 for r in s.runs), default=float("nan"))
        total = sum(s.cpu_ms(part) for part in s.cpu)
        print(
            f"{s.processes:>9} {s.done:>9} {s.errors:>4} {s.rate:>11.1f} {p50:>7.2f} "
            f"{p99:>7.2f}  {s.cpu_ms('api'):>19.2f} {s.cpu_ms('worker'):>7.2f} "
            f"{s.cpu_ms('pg'):>6.2f} {total:>6.2f}"
        )
    if len(shapes) > 1 and shapes[0].rate:
        print()
        for s in shapes[1:]:
            print(
                f"{s.processes} API processes / {shapes[0].processes}: "
                f"{s.rate / shapes[0].rate:.2f}x payments/s"
            )
    print()
    print("p50: the median of the turns' p50s; p99: the largest of their p99s (per request).")
    print("CPU: API = the serve process and its children; PG = the postmaster and all its")
    print("processes (shared by both deployments; the idle one adds little). wrk not counted.")
    print("worker: these payments queue no job, so it is the worker's polling and sweeps.")
    for s in shapes:
        for run in s.runs:
            if run.errors:
                print(f"ERROR {s.processes} API processes: {run.first_error}")
                break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux scale-out benchmark (module docstring)")
    parser.add_argument("--seconds", type=float, default=20.0, help="wrk seconds per shape (20)")
    parser.add_argument("--chunk-seconds", type=float, default=5.0, help="seconds per turn (5)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (16)")
    parser.add_argument("--processes", default="1,2", help="API process counts to compare (1,2)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured payments first (100)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        parser.error("--processes takes counts of 1 or more, e.g. 1,2")
    if not have_wrk():
        parser.error("wrk is not installed (apt-get install wrk)")

    shapes: list[Shape] = []
    with databases(["postgres"], prefix="paymux-scaleout-") as dbs:
        try:
            for n in counts:
                tmp = dbs.tmp / f"procs{n}"
                tmp.mkdir()
                url = dbs.url("postgres", f"scaleout_{n}")
                upgrade(url)
                server = paymux_server(
                    url, tmp, name=f"api{n}", args=["--workers", str(n), "--no-worker"]
                )
                worker = paymux_worker(f"worker{n}", paymux_env(url, tmp), tmp / "worker.log")
                print(f"starting {n} API process(es) + 1 worker ...", file=sys.stderr, flush=True)
                server.start(timeout=180)
                worker.spawn()
                assert server.api_key is not None
                shapes.append(
                    Shape(n, server, worker, server.api_key, postmaster_pid(dbs.pg.datadir))
                )
            for shape in shapes:
                warm_up(shape, args)
            turns = max(1, round(args.seconds / args.chunk_seconds))
            before = loadavg()
            for i in range(turns):
                for shape in shapes if i % 2 == 0 else reversed(shapes):
                    turn(shape, args.seconds / turns, args, dbs.tmp)
            after = loadavg()
        finally:
            for shape in shapes:
                shape.worker.stop()
                shape.server.stop()
    report(shapes, args, (before, after))
    return 1 if any(s.errors for s in shapes) else 0


if __name__ == "__main__":
    sys.exit(main())
