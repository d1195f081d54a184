"""Inbound-webhook benchmark: signed Stripe-format events posted to paymux over HTTP, then the
backlog drained by ``paymux worker``; compared with a bare endpoint that only stores the body.

For each backend (SQLite WAL, PostgreSQL) it:

1. migrates fresh databases and seeds the payment intents the events are about, straight into
   the tables with SQLAlchemy Core (``--n`` + ``--warmup`` intents of the ``stripe`` gateway in
   ``requires_action``, each with its settled 3-D Secure ``authorize`` attempt, as a Stripe
   payment that waits for the payer leaves them): making thousands over the API would take
   minutes and is not what is measured;
2. starts two servers as subprocesses on 127.0.0.1 (so the load generator does not share their
   GIL), each on its own database:

   * paymux (``python -m paymux.cli serve --no-worker``; the Stripe connector registered with
     STRIPE_SECRET_KEY=sk_test_bench, STRIPE_WEBHOOK_SECRETS=whsec_..., its API base
     http://127.0.0.1:9, which is never called; log level WARNING), driven at
     ``POST /webhooks/stripe``: verify Stripe-Signature (HMAC-SHA256 over ``t.body``), parse,
     INSERT the inbox row + INSERT the ``apply_webhook`` job, group-committed: the requests
     that arrive together share one transaction (webhooks/ingest.py), each answered after it;
   * the bare server (this file with ``--serve-bare``): the same stack (FastAPI, uvicorn started
     like ``paymux serve``, paymux's ``Database`` with its default engine settings: SQLite WAL
     with ``BEGIN IMMEDIATE`` writers, the asyncpg pool on PostgreSQL), whose
     ``POST /bare/webhooks/stripe`` makes ONE INSERT of the raw body into ``webhook_inbox``
     (the same table, the same indexes) and one commit: no signature, no parsing, no job;

3. posts the same Stripe ``payment_intent.succeeded`` events (``data.object`` a payment_intent
   whose ``id`` is the intent's gateway reference and ``metadata.paymux_id`` our id),
   ``--warmup`` first (unmeasured, httpx), then with ``--concurrency`` connections, taking
   turns (paymux, bare, bare, paymux, ...) so that other work on the machine slows both
   alike. The load generator (``--load``) is wrk when installed: ``--n`` events are signed
   beforehand and written to a file that the wrk Lua script reads, each side runs
   ``--seconds`` in turns of ``--chunk-seconds`` (events already sent are not sent again
   unless the file runs out: the ``dup`` column counts those answered as duplicates). Without
   wrk it is httpx in this process (one AsyncClient; ``--n`` events per side, each signed
   when sent, in turns of ``--chunk``);
4. stops the servers and drains paymux's backlog (every event it stored) with
   one ``paymux worker`` subprocess, and on PostgreSQL also with two workers on a second,
   identical backlog (a ``CREATE DATABASE ... TEMPLATE`` copy made before the first drain).

It prints, per backend, accepted events/s and p50/p99 latency of both endpoints and their
ratio (the aim is >= 3,000 events/s and a ratio >= 0.7), and events applied/s of the drains
(the aim is >= 1,000/s on PostgreSQL). The drain rate is (backlog - 1) / (last applied_us -
first applied_us), read from the inbox rows, so the workers' process start-up (imports,
connecting) is excluded; the wall time from spawning the workers to the last event applied
is printed beside it. Exits non-zero only on an error (a request refused, a server or worker
that fails, an event not applied); figures are reported, never asserted.

    .venv/bin/python bench/webhooks.py [--load wrk|httpx] [--seconds 8] [--n 30000]
        [--concurrency 16] [--backends sqlite,postgres] [--warmup 100] [--chunk 500]
        [--no-drain]

bench/common.py has the shared helpers (servers, databases, CPU, wrk).

PostgreSQL is a throwaway cluster (tests/support/pgcluster.py: fsync, synchronous_commit and
full_page_writes off), started as the ``postgres`` OS user when run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    CpuMeter,
    Databases,
    LoadResult,
    ServerProcess,
    bench_server,
    cpu_seconds,
    databases,
    free_port,
    have_wrk,
    loadavg,
    machine,
    paymux_env,
    paymux_server,
    paymux_worker,
    run_httpx,
    run_wrk,
    scalar,
    waiting_attempt_row,
    waiting_intent_row,
)
from drain import RECORDED_3DS

from paymux import heap
from paymux.domain.ids import new_id
from paymux.gateways.signing import sign_header
from paymux.security import configure_logging
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import (
    Account,
    GatewayAttempt,
    PaymentIntent,
    WebhookInbox,
)

ACCOUNT = "acct_bench"
WEBHOOK_SECRET = "whsec_bench" + secrets.token_hex(16)
# The Stripe connector, registered for the bench; its API is never called.
STRIPE_ENV = {
    "STRIPE_SECRET_KEY": "sk_test_bench",
    "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
    "PAYMUX_STRIPE_API_BASE": "http://127.0.0.1:9",
}

# Pre-signed events, one ``signature TAB body`` per line of the file args[2]. Thread t of
# args[4] sends lines args[3] + t, + nthreads, ... (wrapping around at the end of the file).
WEBHOOKS_LUA = r"""
counters = {"new", "dup", "bad", "sent"}
new, dup, bad, sent = 0, 0, 0, 0
local path, lines, i, step
function init(args)
  path = args[1]
  lines = {}
  for line in io.lines(args[2]) do lines[#lines + 1] = line end
  step = tonumber(args[4])
  i = tonumber(args[3]) + tid
end
function request()
  local line = lines[(i % #lines) + 1]
  i = i + step
  sent = sent + 1
  local tab = line:find("	", 1, true)
  return wrk.format("POST", path,
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = line:sub(1, tab - 1)},
    line:sub(tab + 1))
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1
  elseif body:find('"duplicate":%s*false') then new = new + 1
  elseif body:find('"duplicate":%s*true') then dup = dup + 1
  else bad = bad + 1 end
end
"""


# -- servers and workers (bench/common.py) -----------------------------------------------------
def paymux_webhook_server(db_url: str, tmp: Path) -> ServerProcess:
    return paymux_server(db_url, tmp, args=["--no-worker"], PAYMUX_RUN_WORKER="false", **STRIPE_ENV)


def bare_server(db_url: str, tmp: Path) -> ServerProcess:
    port = free_port()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve-bare",
        "--database-url",
        db_url,
        "--port",
        str(port),
    ]
    return bench_server("bare", cmd, tmp, port)

# -- the bare server ---------------------------------------------------------------------------
def serve_bare(database_url: str, port: int, log_level: str = "WARNING") -> None:
    """The same stack as paymux with one INSERT of the raw body per request, one commit."""
    inbox = insert(WebhookInbox.__table__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(database_url)
        heap.settle()  # as paymux serve, once started (paymux/heap.py)
        try:
            yield
        finally:
            await app.state.db.dispose()

    app = FastAPI(title="bare webhooks", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/webhooks/{gateway}")
    async def receive(gateway: str, request: Request) -> JSONResponse:
        body = await request.body()
        db: Database = request.app.state.db
        async with db.write() as s:
            await s.execute(
                inbox,
                {
                    "id": new_id("we"),
                    "gateway": gateway,
                    "event_id": new_id("evt"),  # the body is not parsed
                    "type": "unparsed",
                    "payload": body.decode(),
                    "status": "received",
                    "error": None,
                    "received_us": time.time_ns() // 1000,
                    "applied_us": None,
                },
            )
        return JSONResponse({"received": True, "duplicate": False})

    configure_logging(log_level, json_output=True)  # as `paymux serve` does
    uvicorn.run(app, host=HOST, port=port, log_config=None, access_log=True)


# -- the data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    pi_id: str
    reference: str  # Stripe's payment_intent id
    amount: int


def token(n: int = 24) -> str:
    return new_id("x", n)[2:]


async def _seed(url: str, count: int) -> list[Intent]:
    """Intents waiting for 3-D Secure at Stripe, each with its settled authorize attempt."""
    now = time.time_ns() // 1000
    intents = [Intent(new_id("pi"), "pi_3" + token(23), 1000 + i) for i in range(count)]
    pis, attempts = [], []
    for intent in intents:
        next_action = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
            "client_secret": f"{intent.reference}_secret_{token(25)}",
        }
        row = waiting_intent_row(
            intent.pi_id,
            ACCOUNT,
            intent.reference,
            intent.amount,
            now,
            next_action=next_action,
            metadata={"order": token(8)},
        )
        pis.append({**row, "three_d_secure": RECORDED_3DS})  # (bench/drain.py says why)
        attempts.append(
            waiting_attempt_row(
                new_id("att"), intent.pi_id, ACCOUNT, intent.reference, "pm_1" + token(23), now
            )
        )
    db = Database(url, pool_size=1)
    try:
        async with db.write() as s:
            await s.execute(insert(Account.__table__), [{"id": ACCOUNT, "name": "bench",
                                                         "created_us": now}])
            for start in range(0, count, 1000):
                await s.execute(insert(PaymentIntent.__table__), pis[start : start + 1000])
                await s.execute(insert(GatewayAttempt.__table__), attempts[start : start + 1000])
    finally:
        await db.dispose()
    return intents


def stripe_event(intent: Intent) -> bytes:
    """A payment_intent.succeeded event as Stripe sends it (API version 2024-06-20)."""
    created = int(time.time())
    charge = "ch_3" + token(23)
    pm = "pm_1" + token(23)
    obj = {
        "id": intent.reference,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": intent.amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent.reference}_secret_{token(25)}",
        "confirmation_method": "automatic",
        "created": created - 30,
        "currency": "usd",
        "customer": None,
        "description": None,
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": charge,
        "livemode": False,
        "metadata": {"paymux_id": intent.pi_id},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pm,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    event = {
        "id": "evt_3" + token(23),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
    }
    return json.dumps(event).encode()


# -- load --------------------------------------------------------------------------------------
@dataclass
class Result:
    side: str
    done: int = 0  # events stored as new
    dup: int = 0  # answered as duplicates (wrk, when the file of events ran out)
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    runs: list[LoadResult] = field(default_factory=list)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return (self.done + self.dup) / self.seconds if self.seconds else 0.0

    def add(self, load: LoadResult, new: int, dup: int, cpu: float, client: float) -> None:
        self.runs.append(load)
        self.done += new
        self.dup += dup
        self.errors += load.errors
        self.seconds += load.seconds
        self.server_cpu += cpu
        self.client_cpu += client
        self.first_error = self.first_error or load.first_error

    def pct(self, q: float) -> float:
        """httpx: of all events; wrk: the median of the turns' p50s / largest p99."""
        every = sorted(x for r in self.runs for x in r.latencies)
        if every:
            return every[min(len(every) - 1, round(q * (len(every) - 1)))]
        if not self.runs:
            return float("nan")
        if q <= 0.5:
            return sorted(r.p50 for r in self.runs)[len(self.runs) // 2]
        return max(r.p99 for r in self.runs)

    def per_event_ms(self, cpu: float) -> float:
        n = self.done + self.dup
        return cpu / n * 1000 if n else float("nan")


class Driver:
    """Posts events to one server, ``concurrency`` connections."""

    def __init__(
        self, server: ServerProcess, path: str, bodies: list[bytes], events_file: Path,
        args: argparse.Namespace,
    ) -> None:
        self.server, self.path, self.args = server, path, args
        self.bodies, self.events_file = bodies, events_file
        self.next = 0
        self.cpu = CpuMeter(server.pid)

    async def _post(self, http: httpx.AsyncClient, body: bytes) -> None:
        headers = {
            "content-type": "application/json",
            "stripe-signature": sign_header(body, WEBHOOK_SECRET),
        }
        r = await http.post(self.path, content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code} {r.text[:300]}")
        if r.json().get("duplicate") is not False:
            raise RuntimeError(f"not stored as new: {r.text[:300]}")

    def httpx_run(self, n: int, result: Result) -> None:
        """Post the next ``n`` bodies, each signed when sent."""
        it = iter(self.bodies[self.next : self.next + n])
        self.next += n

        async def send(http: httpx.AsyncClient) -> int:
            body = next(it, None)
            if body is None:
                raise RuntimeError("out of events")
            await self._post(http, body)
            return 1

        self.cpu.lap()
        own = time.process_time()
        load = asyncio.run(
            run_httpx(self.server.url, send, connections=self.args.concurrency, count=n)
        )
        calls = load.counters.get("calls", 0)
        result.add(load, calls, 0, self.cpu.lap(), time.process_time() - own)

    def wrk_run(self, seconds: float, result: Result) -> None:
        """Post pre-signed events from the file with wrk for ``seconds``."""
        threads = min(2, self.args.concurrency)
        self.cpu.lap()
        load = run_wrk(
            self.server.url,
            WEBHOOKS_LUA,
            seconds=seconds,
            connections=self.args.concurrency,
            threads=threads,
            args=[self.path, str(self.events_file), str(self.next), str(threads)],
            tmp=self.events_file.parent,
        )
        cpu = self.cpu.lap()
        self.next += (load.counters.get("sent_max", 0) + 1) * threads
        c = load.counters
        result.add(load, c.get("new", 0), c.get("dup", 0), cpu, 0.0)


def drive(drivers: list[Driver], args: argparse.Namespace) -> tuple[Result, Result]:
    results = [Result("paymux"), Result("bare")]
    for d, r in zip(drivers, results, strict=True):
        warm = Result(r.side)
        d.httpx_run(args.warmup, warm)
        if warm.errors:
            raise RuntimeError(f"{r.side} warm-up failed: {warm.first_error}\n{d.server.tail()}")
    if args.load == "wrk":
        turns = max(1, round(args.seconds / args.chunk_seconds))
        for turn in range(turns):
            order = list(zip(drivers, results, strict=True))
            for d, r in order if turn % 2 == 0 else reversed(order):
                d.wrk_run(args.seconds / turns, r)
        return results[0], results[1]
    chunk = max(1, min(args.chunk, args.n))
    turn = 0
    while any(r.done + r.errors < args.n for r in results):
        order = list(zip(drivers, results, strict=True))
        for d, r in order if turn % 2 == 0 else reversed(order):
            todo = min(chunk, args.n - r.done - r.errors)
            if todo > 0:
                d.httpx_run(todo, r)
        turn += 1
    return results[0], results[1]


def write_events(bodies: list[bytes], path: Path) -> None:
    """``signature TAB body`` lines, signed now (Stripe's tolerance is 5 minutes)."""
    with path.open("wb") as out:
        for body in bodies:
            assert b"\n" not in body and b"\t" not in body
            out.write(sign_header(body, WEBHOOK_SECRET).encode() + b"\t" + body + b"\n")


# -- draining ----------------------------------------------------------------------------------
@dataclass
class Drain:
    workers: int
    backlog: int
    applied: int = 0
    span: float = 0.0  # first -> last applied_us, seconds
    wall: float = 0.0  # spawn -> all applied, seconds
    worker_cpu: float = 0.0
    error: str | None = None

    @property
    def rate(self) -> float:
        return (self.applied - 1) / self.span if self.span > 0 else float("nan")


async def _progress(db: Database) -> tuple[int, int, int]:
    """(inbox rows applied, rows not yet applied or ignored, apply jobs queued or running)."""
    async with db.read() as s:
        row = (
            await s.execute(
                text(
                    "select (select count(*) from webhook_inbox where status = 'applied'), "
                    "(select count(*) from webhook_inbox where status not in "
                    "('applied', 'ignored')), "
                    "(select count(*) from jobs where kind = 'apply_webhook' "
                    "and status in ('queued', 'running'))"
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def drain(
    url: str, tmp: Path, workers: int, give_up_after: float, batch_size: int | None
) -> Drain:
    db = Database(url, pool_size=1)
    try:
        applied, left, pending = await _progress(db)
        result = Drain(workers, backlog=left)
        if applied or not left or pending != left:
            raise RuntimeError(f"unexpected backlog: {applied} applied, {left} left, {pending} jobs")
        procs = [
            paymux_worker(
                f"worker-{i}",
                paymux_env(
                    url,
                    tmp,
                    **STRIPE_ENV,
                    **({"PAYMUX_WORKER_BATCH_SIZE": str(batch_size)} if batch_size else {}),
                ),
                tmp / f"worker-{workers}-{i}.log",
            )
            for i in range(workers)
        ]
        began = time.perf_counter()
        for p in procs:
            p.spawn()
        try:
            deadline = time.monotonic() + give_up_after
            while True:
                await asyncio.sleep(0.05)
                for p in procs:
                    if not p.alive():
                        raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
                applied, left, pending = await _progress(db)
                if not left and not pending:
                    result.wall = time.perf_counter() - began
                    break
                if time.monotonic() > deadline:
                    result.error = (
                        f"{workers} worker(s): {applied}/{result.backlog} applied after "
                        f"{give_up_after:.0f}s, {pending} jobs pending"
                    )
                    break
            result.worker_cpu = sum(cpu_seconds(p.pid) for p in procs)
        finally:
            for p in procs:
                p.stop()
        async with db.read() as s:
            first, last, count = (
                await s.execute(
                    text(
                        "select min(applied_us), max(applied_us), count(*) from webhook_inbox "
                        "where status = 'applied'"
                    )
                )
            ).one()
            attempts = (
                await s.execute(
                    text("select max(attempts) from jobs where kind = 'apply_webhook'")
                )
            ).scalar_one()
        result.applied = int(count)
        if count > 1:
            result.span = (last - first) / 1e6
        if result.error is None and (count != result.backlog or attempts != 1):
            result.error = f"{count}/{result.backlog} applied, max attempts {attempts}"
        return result
    finally:
        await db.dispose()


# -- backends ----------------------------------------------------------------------------------
@dataclass
class BackendRun:
    backend: str
    version: str
    paymux: Result
    bare: Result
    drains: list[Drain]
    load: tuple[float, float]
    errors: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.paymux.rate / self.bare.rate if self.bare.rate else float("nan")


def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> BackendRun:
    work = dbs.tmp / backend
    work.mkdir()
    sides = ("paymux", "bare")
    urls = {side: dbs.url(backend, f"wh_{side}") for side in sides}
    version = dbs.version(backend, urls["paymux"])
    for url in urls.values():
        upgrade(url)
    total = args.n + args.warmup
    intents = asyncio.run(_seed(urls["paymux"], total))
    bodies = [stripe_event(i) for i in intents]
    warm, measured = bodies[: args.warmup], bodies[args.warmup :]
    events_file = work / "events.txt"
    if args.load == "wrk":
        write_events(measured, events_file)

    servers = [paymux_webhook_server(urls["paymux"], work), bare_server(urls["bare"], work)]
    load_before = loadavg()
    try:
        for server in servers:
            server.start()
        drivers = [
            Driver(servers[0], "/webhooks/stripe", warm + measured, events_file, args),
            Driver(servers[1], "/bare/webhooks/stripe", warm + measured, events_file, args),
        ]
        paymux, bare = drive(drivers, args)
    finally:
        for server in servers:
            server.stop()
    errors = [
        f"{r.side}: {r.errors} failed, first: {r.first_error}" for r in (paymux, bare) if r.errors
    ]
    for side, result in zip(sides, (paymux, bare), strict=True):
        stored = asyncio.run(scalar(urls[side], "select count(*) from webhook_inbox"))
        expected = result.done + args.warmup
        # wrk stops with up to one request per connection in flight: stored, never counted.
        slack = args.concurrency * len(result.runs) if args.load == "wrk" else 0
        if not expected <= stored <= expected + slack:
            errors.append(f"{side}: {stored} inbox rows, expected {expected} (+ {slack} in flight)")

    backlogs = [] if args.no_drain else [(1, urls["paymux"])]
    if backend == "postgres" and backlogs:  # a second identical backlog, for two workers
        copy = "wh_paymux_copy"
        _create_from_template(dbs.pg, copy, "wh_paymux")
        backlogs.append((2, dbs.pg.url(copy)))
    drains = []
    for workers, url in backlogs:
        print(f"  draining with {workers} worker(s) ...", file=sys.stderr, flush=True)
        drained = asyncio.run(
            drain(url, work, workers, args.drain_timeout, args.worker_batch_size)
        )
        if drained.error:
            errors.append(f"drain: {drained.error}")
        drains.append(drained)
    return BackendRun(backend, version, paymux, bare, drains, (load_before, loadavg()), errors)


def _create_from_template(pg: Any, name: str, template: str) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f'create database "{name}" template "{template}"')
        finally:
            await conn.close()

    asyncio.run(create())


# -- report ------------------------------------------------------------------------------------
def report(runs: list[BackendRun], args: argparse.Namespace) -> None:
    print()
    amount = f"{args.seconds:.0f} s of" if args.load == "wrk" else f"N={args.n}"
    print(
        f"{amount} Stripe payment_intent.succeeded events per server, concurrency="
        f"{args.concurrency}, warm-up={args.warmup}, load generator: {args.load}"
        + (" (wrk is not installed: apt-get install wrk)" if args.load == "httpx" and not have_wrk() else "")
    )
    print(machine() + "; " + "; ".join(run.version for run in runs))
    print()
    header = (
        f"{'backend':<9} {'endpoint':<8} {'new':>6} {'dup':>5} {'err':>4} {'events/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'srv CPU ms/ev':>13} {'cli CPU ms/ev':>13} {'ratio':>6} {'load':>10}"
    )
    print("ingest (POST /webhooks/stripe vs. the bare INSERT)")
    print(header)
    print("-" * len(header))
    for run in runs:
        for res in (run.paymux, run.bare):
            last = res is run.bare
            ratio = f"{run.ratio:6.2f}" if last and run.bare.rate else ""
            load = f"{run.load[0]:.1f}->{run.load[1]:.1f}" if last else ""
            print(
                f"{run.backend:<9} {res.side:<8} {res.done:>6} {res.dup:>5} {res.errors:>4} {res.rate:>9.1f} "
                f"{res.pct(0.50):>7.1f} {res.pct(0.99):>7.1f} "
                f"{res.per_event_ms(res.server_cpu):>13.2f} "
                f"{res.per_event_ms(res.client_cpu) if args.load == 'httpx' else float('nan'):>13.2f} "
                f"{ratio:>6} {load:>10}"
            )
    print()
    print("drain (paymux worker processes applying the stored backlog)")
    header = (
        f"{'backend':<9} {'workers':>7} {'backlog':>7} {'applied':>7} {'applied/s':>10} "
        f"{'span s':>7} {'wall s':>7} {'worker CPU ms/ev':>16}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        for d in run.drains:
            cpu = d.worker_cpu / d.applied * 1000 if d.applied else float("nan")
            print(
                f"{run.backend:<9} {d.workers:>7} {d.backlog:>7} {d.applied:>7} {d.rate:>10.1f} "
                f"{d.span:>7.2f} {d.wall:>7.2f} {cpu:>16.2f}"
            )
    print()
    print("ratio: paymux events/s / bare events/s (aim >= 0.7, and >= 3,000 events/s). CPU ms/ev:")
    print("the server process's (srv) and this load generator's (cli; httpx only) CPU per event.")
    print("Latency: per event; with wrk the median of the turns' p50s and the largest of their")
    print("p99s.")
    print("applied/s: (applied - 1) / span,")
    print("span = first -> last applied_us (worker start-up excluded); wall: spawning the")
    print("worker(s) -> all applied, start-up included (aim: >= 1,000 applied/s on PostgreSQL).")
    for run in runs:
        for error in run.errors:
            print(f"ERROR {run.backend}: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux inbound-webhook benchmark (see docstring)")
    parser.add_argument(
        "--load",
        choices=("wrk", "httpx"),
        default="wrk" if have_wrk() else "httpx",
        help="load generator (default wrk when installed, else httpx)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk: seconds per server (8)")
    parser.add_argument("--chunk-seconds", type=float, default=4.0, help="wrk: seconds per turn (4)")
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="events per server: httpx sends them all (default 3000); wrk pre-signs them "
        "(default 30000)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (16)")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres (both)"
    )
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured events first (100)")
    parser.add_argument(
        "--chunk", type=int, default=500, help="events per turn when alternating servers (500)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="give up a drain after this (120 s)"
    )
    parser.add_argument(
        "--worker-batch-size",
        type=int,
        default=None,
        help="PAYMUX_WORKER_BATCH_SIZE for the draining workers (default: paymux's, 20)",
    )
    parser.add_argument(
        "--no-drain", action="store_true", help="ingest only (bench/drain.py drains alone)"
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        if not args.database_url or not args.port:
            parser.error("--serve-bare needs --database-url and --port")
        serve_bare(args.database_url, args.port)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown or not backends:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown)) or '(none)'}")
    if args.n < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--n and --concurrency must be positive")

    if args.n is None:
        args.n = 30000 if args.load == "wrk" else 3000
    if args.load == "wrk" and not have_wrk():
        parser.error("wrk is not installed (apt-get install wrk), use --load httpx")
    runs: list[BackendRun] = []
    with databases(backends, prefix="paymux-bench-wh-") as dbs:
        for backend in backends:
            print(f"running {backend} ...", file=sys.stderr, flush=True)
            runs.append(run_backend(backend, args, dbs))
    report(runs, args)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
