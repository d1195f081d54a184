"""Outbound webhook delivery throughput: a ``paymux worker`` subprocess draining a backlog of
events to fast loopback receivers.

For each backend it migrates a fresh database, registers ``--endpoints`` endpoints (each
listening to every event, Standard Webhooks signatures) pointing at one receiver
subprocess (a minimal asyncio HTTP/1.1 server answering 200 at once), writes events straight
into the events table and the outbox (undispatched, as ``emit`` leaves them: ``--deliveries``
deliveries owed in all, whatever the number of endpoints), then starts ``--workers``
``paymux worker`` processes (they share the work) and waits until every delivery is
``delivered``. It prints
deliveries/s (from the first to the last attempt recorded: start-up excluded), the drain's
wall time (from the workers' start: it includes dispatching the events), the CPU per
delivery of the workers, the receiver and PostgreSQL (postmaster and backends; SQLite's is
in the worker's), counted once deliveries have started (these survive a loaded machine far
better than the rates), a worker's peak RSS, and checks that every delivery was made
exactly once (one succeeded attempt each). ``--backlog N`` adds a run of N events to one
endpoint: the time such a backlog takes to drain. Figures are printed, never asserted.

    .venv/bin/python bench/outbound.py [--deliveries 5000] [--endpoints 1,50]
        [--backlog 100000] [--backends postgres,sqlite] [--max-in-flight 256]
        [--workers 1] [--endpoint-concurrency 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, databases, loadavg, machine, paymux_env, paymux_worker, rss_mb

from paymux.config import Settings
from paymux.domain.ids import new_id
from paymux.outbound.endpoints import EndpointParams
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from paymux.storage.migrate import upgrade
from paymux.storage.models import Event, EventOutbox
from support.processes import child_pids, free_port

RECEIVER = textwrap.dedent(
    """
    import asyncio, sys

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf = transport, b""
        def data_received(self, data):
            self.buf += data
            while True:
                head, sep, rest = self.buf.partition(b"\\r\\n\\r\\n")
                if not sep:
                    return
                length = 0
                for line in head.split(b"\\r\\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    return
                self.buf = rest[length:]
                self.t.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    async def main():
        server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", int(sys.argv[1]))
        await server.serve_forever()

    asyncio.run(main())
    """
)


# ``python -c PROFILED out worker``: paymux's CLI sampled every 2 ms of its CPU time
# (SIGPROF), each sample's stack counted; written at stop as collapsed stacks ("a;b;c N"
# lines, leaf last: flame-graph input). Sampling, not cProfile: tracing every call distorts
# small functions and cannot follow SQLAlchemy's greenlets.
PROFILED = textwrap.dedent(
    """
    import collections, signal, sys
    from paymux.cli import main
    out = sys.argv[1]
    sys.argv = ["paymux", *sys.argv[2:]]
    stacks = collections.Counter()
    def sample(signum, frame):
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}")
            frame = frame.f_back
        stacks[";".join(reversed(names))] += 1
    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)
    try:
        main()
    except SystemExit:
        pass
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        with open(out, "w") as f:
            for stack, n in stacks.items():
                f.write(f"{stack} {n}\\n")
    """
)


def postgres_cpu(datadir: Path | None) -> float:
    """CPU seconds the PostgreSQL cluster used so far: the postmaster's own and its reaped
    children's (``cutime``/``cstime``: backends that ended), plus its live children's.
    0.0 for SQLite (its work is in the worker's own CPU) or where /proc cannot tell."""
    if datadir is None:
        return 0.0
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return total + sum(cpu_seconds(pid) for pid in child_pids(postmaster))


async def seed(url: str, keys: str, receiver: str, endpoints: int, deliveries: int) -> int:
    """``endpoints`` endpoints, at most 10 per account (an account may have 16), and events
    enough for about ``deliveries`` deliveries, shared out evenly over the accounts. Returns
    the deliveries owed (each event goes to each endpoint of its account)."""
    settings = Settings(database_url=url, encryption_keys=keys, run_worker=False)
    app = Paymux(settings)
    try:
        accounts = -(-endpoints // 10)
        owed = 0
        rows = []
        now = app.ctx.now_us()
        for a in range(accounts):
            new = await app.accounts.create_key()
            mine = endpoints // accounts + (1 if a < endpoints % accounts else 0)
            for _ in range(mine):
                await app.webhook_endpoints.create(
                    new.account_id, False, EndpointParams(url=receiver, enabled_events=["*"])
                )
            share = max(1, deliveries // endpoints)  # events of this account
            owed += share * mine
            rows += [
                {
                    "id": new_id("evt"),
                    "account_id": new.account_id,
                    "type": "customer.created",
                    "object_id": f"cus_bench{i}",
                    "livemode": False,
                    "data": {"id": f"cus_bench{i}", "object": "customer", "email": "a@example.com"},
                    "created_us": now + len(rows) + i,
                    "dispatched_us": 0,  # as emit writes it: the outbox row below
                }
                for i in range(share)
            ]
        async with app.ctx.db.write() as s:
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                await s.execute(insert(Event), chunk)
                await s.execute(insert(EventOutbox), [{"event_id": r["id"]} for r in chunk])
        return owed
    finally:
        await app.close()


async def counts(url: str) -> tuple[int, int, int, int]:
    settings = Settings(database_url=url, run_worker=False)
    app = Paymux(settings)
    try:
        async with app.ctx.db.read() as s:
            row = (
                await s.execute(
                    text(
                        "select (select count(*) from webhook_deliveries where status = 'delivered'),"
                        " (select count(*) from webhook_attempts),"
                        " (select min(created_us) from webhook_attempts),"
                        " (select max(created_us) from webhook_attempts)"
                    )
                )
            ).one()
            return int(row[0]), int(row[1]), int(row[2] or 0), int(row[3] or 0)
    finally:
        await app.close()


def run_one(
    backend: str,
    url: str,
    tmp: Path,
    endpoints: int,
    deliveries: int,
    inflight: int,
    label: str,
    datadir: Path | None = None,
    workers: int = 1,
    per_endpoint: int = 0,
    profile: Path | None = None,
) -> None:
    keys = generate_key_entry("bench")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        total = asyncio.run(seed(url, keys, f"http://127.0.0.1:{port}/hook", endpoints, deliveries))
        env = paymux_env(
            url,
            tmp,
            PAYMUX_ENCRYPTION_KEYS=keys,
            PAYMUX_WEBHOOK_MAX_IN_FLIGHT=str(inflight),
            PAYMUX_WEBHOOK_ENDPOINT_CONCURRENCY=str(
                per_endpoint or max(4, inflight // max(endpoints, 1))
            ),
            PAYMUX_WEBHOOK_POLL_INTERVAL="0.05",
        )
        pool = [
            paymux_worker(f"worker{i}", env, tmp / f"worker{i}-{backend}-{endpoints}.log")
            for i in range(workers)
        ]
        if profile is not None:  # each worker sampled (PROFILED), written when it stops
            for i, w in enumerate(pool):
                out = profile / f"worker{i}-{backend}-{endpoints}.stacks"
                w.cmd[1:] = ["-c", PROFILED, str(out), *w.cmd[3:]]
        for w in pool:
            w.spawn()
        started = time.monotonic()
        receiver_cpu0 = cpu_seconds(receiver.pid)
        peak = 0.0
        # Worker, receiver and database CPU, and deliveries, at the first look that found
        # deliveries made: the figures per delivery leave start-up and dispatching out.
        steady: tuple[float, float, float, int] | None = None
        try:
            while True:
                time.sleep(0.5)
                peak = max(peak, *(rss_mb(w.pid) for w in pool))
                delivered, attempts, first, last = asyncio.run(counts(url))
                if steady is None and delivered > 0:
                    steady = (
                        sum(cpu_seconds(w.pid) for w in pool),
                        cpu_seconds(receiver.pid),
                        postgres_cpu(datadir),
                        delivered,
                    )
                if delivered >= total or time.monotonic() - started > 3000:
                    break
            wall = time.monotonic() - started
            worker_cpu = sum(cpu_seconds(w.pid) for w in pool)
            receiver_end = cpu_seconds(receiver.pid)
            db_end = postgres_cpu(datadir)
        finally:
            for w in pool:
                w.stop()
        receiver_cpu = receiver_end - receiver_cpu0
        span = max((last - first) / 1e6, 1e-6)
        ok = "ok" if delivered == total == attempts else f"WRONG ({attempts} attempts)"
        # CPU per delivery once delivering (start-up and imports excluded), where measurable.
        cpu0, rcv0, db0, done0 = steady or (0.0, receiver_cpu0, 0.0, 0)
        n = max(delivered - done0, 1)
        per = 1000 * (worker_cpu - cpu0) / n
        rcv_per = 1000 * (receiver_end - rcv0) / n
        db_per = 1000 * (db_end - db0) / n
        db_text = f"db {db_per:.2f}" if datadir is not None else "db (in the worker)"
        print(
            f"{label}{backend:8} workers={workers} endpoints={endpoints:<3} deliveries={delivered}/{total} {ok}  "
            f"{delivered / span:7.0f} deliveries/s  wall {wall:6.1f} s  "
            f"CPU ms/delivery: worker {per:.3f}, receiver {rcv_per:.3f}, {db_text} "
            f"(worker all: {worker_cpu:.1f} s, receiver all: {receiver_cpu:.1f} s)  "
            f"peak RSS per worker {peak:.0f} MiB  load {loadavg():.1f}",
            flush=True,
        )
    finally:
        receiver.kill()
        receiver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", "--events", type=int, default=5000)
    parser.add_argument("--endpoints", default="1,50")
    parser.add_argument("--backlog", type=int, default=0, help="events to 1 endpoint; 0: none")
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="paymux worker processes")
    parser.add_argument(
        "--endpoint-concurrency",
        type=int,
        default=0,
        help="per endpoint; 0: max(4, max-in-flight / endpoints)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="directory: each worker's sampled stacks"
    )
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    print(f"{machine()}; load average {loadavg():.1f}", flush=True)
    with databases(backends, prefix="paymux-outbound-") as dbs:
        for backend in backends:
            datadir = dbs.pg.datadir if backend == "postgres" and dbs.pg is not None else None
            for n in (int(x) for x in args.endpoints.split(",") if x):
                url = dbs.url(backend, f"outbound_{n}")
                upgrade(url)
                run_one(
                    backend,
                    url,
                    dbs.tmp,
                    n,
                    args.deliveries,
                    args.max_in_flight,
                    "",
                    datadir,
                    args.workers,
                    args.endpoint_concurrency,
                    args.profile,
                )
            if args.backlog:
                url = dbs.url(backend, "outbound_backlog")
                upgrade(url)
                run_one(
                    backend,
                    url,
                    dbs.tmp,
                    1,
                    args.backlog,
                    args.max_in_flight,
                    "backlog ",
                    datadir,
                    args.workers,
                    args.endpoint_concurrency,
                    args.profile,
                )


if __name__ == "__main__":
    main()
