"""Payments benchmark: paymux create + confirm over HTTP vs. a bare endpoint that only writes.

For each backend (SQLite, PostgreSQL) this migrates two fresh databases and starts two servers
as subprocesses on 127.0.0.1 (so the load generator does not share their GIL):

* paymux itself (``python -m paymux.cli serve``, configured by PAYMUX_* environment
  variables, with its worker, the built-in sandbox gateway at zero latency, log level WARNING);
* bench/bare_server.py, the same stack (FastAPI, uvicorn started the same way, paymux's
  ``Database`` and tables) making only the write transactions and row writes a create +
  confirm makes, and nothing else (see that file for the list).

Both are warmed up (``--warmup``), then driven with ``--n`` payments each (create, then
confirm with ``pm_card_visa``) by ``--concurrency`` httpx clients, in alternating chunks of
``--chunk`` payments (paymux, bare, bare, paymux, ...) so that other work on the machine
slows both alike. Latency is create + confirm, per payment. It prints payments/s, p50/p99
latency and the server process's CPU per payment for both, and the ratio paymux/bare of
payments/s. A side that runs past ``--max-seconds`` stops early (the ``done`` column says how
many ran). It exits non-zero only when a request fails or a server does not start; figures
are reported, never asserted.

    .venv/bin/python bench/payments.py [--n 2000] [--concurrency 16]
        [--backends sqlite,postgres] [--idempotency-keys | --no-idempotency-keys]

PostgreSQL is a throwaway cluster (tests/support/pgcluster.py: fsync, synchronous_commit and
full_page_writes off), started as the ``postgres`` OS user when run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # support.pgcluster, support.processes

from paymux.storage.db import Database  # noqa: E402
from paymux.storage.migrate import upgrade  # noqa: E402
from support.processes import (  # noqa: E402
    ServeProcess,
    ServerProcess,
    cpu_seconds,
    free_port,
)

TABLES = ("payment_intents", "events", "gateway_attempts", "payment_methods", "idempotency_keys")


# -- servers ------------------------------------------------------------------------------
def paymux_server(db_url: str, tmp: Path) -> ServeProcess:
    return ServeProcess(
        tmp,
        db_url,
        "sk_test_bench" + secrets.token_hex(12),
        command=[sys.executable, "-m", "paymux.cli", "serve"],
        settings={"PAYMUX_LOG_LEVEL": "WARNING", "PAYMUX_RATE_LIMIT_REQUESTS": "0"},
        log=tmp / "paymux-server.log",
        cwd=tmp,
        start=False,
        timeout=60,
        name="paymux",
        stop_signal=signal.SIGINT,
        stop_timeout=20,
        PAYMUX_RUN_WORKER="true",
    )


def bare_server(db_url: str, tmp: Path) -> ServerProcess:
    port = free_port()
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "bare_server.py"),
        "--database-url",
        db_url,
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    return ServerProcess(
        "bare",
        cmd,
        port=port,
        log=tmp / "bare-server.log",
        env=dict(os.environ, NO_PROXY="127.0.0.1,localhost"),
        cwd=tmp,
        stop_signal=signal.SIGINT,
        stop_timeout=20,
    )


# -- load ---------------------------------------------------------------------------------
@dataclass
class Result:
    side: str
    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    rows: dict[str, float] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / self.done * 1000 if self.done else float("nan")


class Driver:
    """Runs create + confirm pairs against one server at a fixed concurrency."""

    def __init__(
        self,
        server: ServerProcess,
        side: str,
        *,
        concurrency: int,
        idempotency_keys: bool,
        key: str | None,
    ):
        self.server, self.side, self.idem = server, side, idempotency_keys
        self.concurrency = concurrency
        if side == "paymux":
            self.create_path = "/v1/payment_intents"
            self.confirm_path = "/v1/payment_intents/{id}/confirm"
        else:
            self.create_path = "/bare/payments"
            self.confirm_path = "/bare/payments/{id}/confirm"
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.AsyncClient(
            base_url=server.url, limits=limits, timeout=30, trust_env=False
        )

    def _headers(self) -> dict[str, str]:
        if not self.idem:
            return self.headers
        return {**self.headers, "idempotency-key": "bench_" + secrets.token_hex(12)}

    async def _pair(self) -> None:
        created = await self.http.post(
            self.create_path, json={"amount": 2000, "currency": "usd"}, headers=self._headers()
        )
        if created.status_code != 200:
            raise RuntimeError(f"create: HTTP {created.status_code} {created.text[:300]}")
        pi_id = created.json()["id"]
        confirmed = await self.http.post(
            self.confirm_path.format(id=pi_id),
            json={"payment_method": "pm_card_visa"},
            headers=self._headers(),
        )
        if confirmed.status_code != 200:
            raise RuntimeError(f"confirm: HTTP {confirmed.status_code} {confirmed.text[:300]}")
        status = confirmed.json().get("status")
        if status != "succeeded":
            raise RuntimeError(f"confirm: status {status!r}")

    async def run(self, n: int, result: Result, deadline: float) -> None:
        """Run ``n`` pairs (fewer if ``deadline`` passes), adding to ``result``."""
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                began = time.perf_counter()
                try:
                    await self._pair()
                except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
                    result.errors += 1
                    result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                    continue
                result.latencies.append(time.perf_counter() - began)
                result.done += 1

        cpu = cpu_seconds(self.server.pid)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        result.seconds += time.perf_counter() - began
        result.server_cpu += cpu_seconds(self.server.pid) - cpu

    async def close(self) -> None:
        await self.http.aclose()


async def drive(servers: list[ServerProcess], args: argparse.Namespace) -> list[Result]:
    """Warm both servers up, then run them in alternating chunks (A B B A A B ...), so both
    see the same machine: a noisy neighbour slows both sides alike instead of one."""
    drivers = [
        Driver(
            server,
            server.name,
            concurrency=args.concurrency,
            idempotency_keys=args.idempotency_keys,
            key=server.env.get("PAYMUX_API_KEY"),
        )
        for server in servers
    ]
    results = [Result(d.side) for d in drivers]
    try:
        for d in drivers:
            warm = Result(d.side)
            await d.run(args.warmup, warm, time.monotonic() + args.max_seconds)
            if warm.errors:
                raise RuntimeError(
                    f"{d.side} warm-up failed: {warm.first_error}\n{d.server.tail()}"
                )
        chunk = max(1, min(args.chunk, args.n))
        deadline = time.monotonic() + args.max_seconds * len(drivers)
        turn = 0
        while any(r.done + r.errors < args.n for r in results) and time.monotonic() < deadline:
            order = list(zip(drivers, results, strict=True))
            for d, r in order if turn % 2 == 0 else reversed(order):
                todo = min(chunk, args.n - r.done - r.errors)
                if todo > 0:
                    await d.run(todo, r, time.monotonic() + args.max_seconds)
            turn += 1
    finally:
        for d in drivers:
            await d.close()
    return results


async def count_rows(db_url: str) -> dict[str, int]:
    db = Database(db_url, pool_size=1)
    try:
        async with db.read() as s:
            return {
                t: int((await s.execute(text(f"select count(*) from {t}"))).scalar_one())
                for t in TABLES
            }
    finally:
        await db.dispose()


# -- backends -----------------------------------------------------------------------------
@dataclass
class BackendRun:
    backend: str
    version: str
    paymux: Result
    bare: Result
    load: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.paymux.rate / self.bare.rate if self.bare.rate else float("nan")


def run_backend(backend: str, args: argparse.Namespace, tmp: Path, pg: Any) -> BackendRun:
    work = tmp / backend
    work.mkdir()
    if backend == "sqlite":
        urls = {side: f"sqlite+aiosqlite:///{work / (side + '.db')}" for side in ("paymux", "bare")}
        version = f"SQLite {sqlite3.sqlite_version}"
    else:
        urls = {side: pg.create_database(f"bench_{side}") for side in ("paymux", "bare")}
        version = pg_version(urls["paymux"])
    for url in urls.values():
        upgrade(url)
    servers: list[ServerProcess] = [
        paymux_server(urls["paymux"], work),
        bare_server(urls["bare"], work),
    ]
    load_before = loadavg()
    try:
        for server in servers:
            server.start()
        paymux, bare = asyncio.run(drive(servers, args))
    finally:
        for server in servers:
            server.stop()
    for result in (paymux, bare):
        rows = asyncio.run(count_rows(urls[result.side]))
        total = result.done + args.warmup
        result.rows = {t: rows[t] / total for t in TABLES}
    return BackendRun(backend, version, paymux, bare, (load_before, loadavg()))


def pg_version(url: str) -> str:
    async def ask() -> str:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as s:
                return str((await s.execute(text("show server_version"))).scalar_one())
        finally:
            await db.dispose()

    return "PostgreSQL " + asyncio.run(ask())


# -- report -------------------------------------------------------------------------------
def loadavg() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def report(runs: list[BackendRun], args: argparse.Namespace) -> None:
    print()
    print(
        f"N={args.n} payments (create + confirm pm_card_visa), concurrency={args.concurrency}, "
        f"warm-up={args.warmup}, idempotency keys={'on' if args.idempotency_keys else 'off'}"
    )
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        + "; ".join(run.version for run in runs)
    )
    print()
    header = (
        f"{'backend':<9} {'server':<7} {'done':>5} {'err':>4} {'payments/s':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'CPU ms/pay':>11} {'ratio':>6} {'load':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        for res in (run.paymux, run.bare):
            last = res is run.bare
            ratio = f"{run.ratio:6.2f}" if last and run.bare.rate else ""
            load = f"{run.load[0]:.1f}->{run.load[1]:.1f}" if last else ""
            print(
                f"{run.backend:<9} {res.side:<7} {res.done:>5} {res.errors:>4} {res.rate:>11.1f} "
                f"{res.pct(0.50):>8.1f} {res.pct(0.99):>8.1f} {res.cpu_ms:>11.2f} {ratio:>6} "
                f"{load:>10}"
            )
    print()
    print("ratio: paymux payments/s / bare payments/s (the aim is >= 0.5). CPU ms/pay: the server")
    print("process's CPU per payment (all its threads; not the client, not PostgreSQL).")
    print("load: the 1-minute load average before -> after the backend's run.")
    for run in runs:
        if run.paymux.cpu_ms and run.bare.cpu_ms:
            print(
                f"{run.backend}: bare CPU / paymux CPU per payment = "
                f"{run.bare.cpu_ms / run.paymux.cpu_ms:.2f}"
            )
    print("rows per payment at the end (warm-up included):")
    for run in runs:
        for res in (run.paymux, run.bare):
            rows = " ".join(f"{t}={v:.2f}" for t, v in res.rows.items())
            print(f"  {run.backend:<9} {res.side:<7} {rows}")
    for run in runs:
        for res in (run.paymux, run.bare):
            if res.errors:
                print(
                    f"ERROR {run.backend} {res.side}: {res.errors} failed, first: {res.first_error}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux payments benchmark (see module docstring)")
    parser.add_argument("--n", type=int, default=2000, help="payments per server (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in flight (16)")
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres (default both)",
    )
    parser.add_argument(
        "--idempotency-keys",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="send an Idempotency-Key with every POST",
    )
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured payments first (100)")
    parser.add_argument(
        "--chunk",
        type=int,
        default=250,
        help="payments per turn when alternating the two servers (250)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=35.0,
        help="measuring time budget per server and backend; past it, stop early (35)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown or not backends:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown)) or '(none)'}")
    if args.n < 1 or args.concurrency < 1:
        parser.error("--n and --concurrency must be positive")

    runs: list[BackendRun] = []
    with tempfile.TemporaryDirectory(prefix="paymux-bench-") as name:
        tmp = Path(name)
        pg = None
        try:
            if "postgres" in backends:
                from support.pgcluster import PgCluster

                pg = PgCluster()
                pg.start()
            for backend in backends:
                print(f"running {backend} ...", file=sys.stderr, flush=True)
                runs.append(run_backend(backend, args, tmp, pg))
        finally:
            if pg is not None:
                pg.stop()
    report(runs, args)
    failed = sum(r.paymux.errors + r.bare.errors for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
