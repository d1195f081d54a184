"""Payments benchmark: paymux create + confirm over HTTP vs. a bare endpoint that only writes.

For each backend (SQLite, PostgreSQL) this migrates two fresh databases and starts two servers
as subprocesses on 127.0.0.1 (so the load generator does not share their GIL):

* paymux itself (``python -m paymux.cli serve``, configured by PAYMUX_* environment
  variables, with its worker, the built-in sandbox gateway at zero latency, log level WARNING);
* bench/bare_server.py, the same stack (FastAPI, uvicorn started the same way, paymux's
  ``Database`` and tables) making only the write transactions and row writes a create +
  confirm makes, and nothing else (see that file for the list).

Both are warmed up (``--warmup`` payments over httpx), then driven with payments (per
``--mode``, see below) at ``--concurrency`` connections, taking turns (paymux, bare,
bare, paymux, ...) so that other work on the machine slows both alike. The load generator
(``--load``) is wrk when it is installed (Debian package ``wrk``; a Lua script keeps, per
thread, a queue of created intents and confirms them, so a "request" is a create or a
confirm; each side runs ``--seconds`` in turns of ``--chunk-seconds``), else httpx in this
process (``--n`` payments per side in turns of ``--chunk``; a side that runs past
``--max-seconds`` stops early). With httpx latency is per payment (create + confirm, the
client's own time included); with wrk it is per request. It prints payments/s, p50/p99
latency and the server process's CPU per payment for both, and the ratio paymux/bare of
payments/s. Then (``--get-seconds``, 0 to skip) it measures ``GET /v1/payment_intents/{id}``
of one intent on paymux alone: requests/s, latency and CPU per request. It exits non-zero
only when a request fails or a server does not start; figures are reported, never asserted.
bench/common.py has the shared helpers (servers, databases, CPU, wrk).

    .venv/bin/python bench/payments.py [--load wrk|httpx] [--seconds 24] [--n 2000]
        [--concurrency 16] [--backends sqlite,postgres] [--idempotency-keys]
        [--get-seconds 10] [--mode two|one|both] [--sequential-seconds 5] [--cards N]
        [--analyze]

``--cards N`` makes the one-request payments name N distinct cards in turn (tokens the
sandbox's card form makes before the warm-up, ``POST /sandbox/v1/tokens``) instead of
``pm_card_visa`` every time: with N at least the payments made, each payment's card is new
to the account (a one-off checkout: the payment records and claims it); fewer, and cards
come back (a saved card's look-up). One card for every payment is one fraud velocity key for
every payment, whose decisions PostgreSQL runs one after another (docs/fraud.md).

``--analyze`` takes PostgreSQL's statistics of both databases after the warm-up: a deployment
running for more than a minute has them (autovacuum's first ANALYZE of a table comes after its
first 50 rows), the bench's fresh databases otherwise have none during a run, and a plan made
without them can walk an index on the account where the primary key was meant
(docs/operations.md).

``--mode`` picks how a payment is driven: ``two`` requests (a create, then a confirm), ``one``
(the create with ``confirm=true`` and the card: the issue's "create+confirm" row; the bare
server makes the same three write transactions in its one request), or ``both`` (default),
printed side by side with their mode. Then (``--sequential-seconds``, 0 to skip) one client
drives one request per payment (wrk, 1 connection): the sequential p50/p99 per payment,
in the table as wrk reports them (corrected for coordinated omission) and under it as each
request took (``common.LUA_PER_REQUEST``; the issue's sequential targets are read there).

Turns of at least 12 s (``--chunk-seconds``, the default): each turn is a wrk run of its own,
on 16 new connections, and the start of a run costs its first requests 100 - 170 ms more,
outside the server (paymux's own time per request, from its headers parsed to its response
written, stayed under 57 ms in the same runs; docs/benchmarks.md, "the session of 2026-12-04
night"). A turn of 4 s at 16 connections makes about 1,500 payments, so those 16 requests
are more than 1 % of them, and the largest of the turns' p99s was that start (141 - 212 ms);
turns of 12 s put it under 1 % (p99 64 - 89 ms).

PostgreSQL is a throwaway cluster (tests/support/pgcluster.py: fsync, synchronous_commit and
full_page_writes off), started as the ``postgres`` OS user when run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PAYMENTS_LUA,
    ROOT,
    CpuMeter,
    Databases,
    LoadResult,
    ServerProcess,
    bench_server,
    databases,
    free_port,
    have_wrk,
    loadavg,
    machine,
    paymux_server,
    percentile,
    rss_mb,
    run_httpx,
    run_wrk,
)

from paymux.gateways.sandbox.cards import Scenario, card_for_number
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade

TABLES = ("payment_intents", "events", "gateway_attempts", "payment_methods", "idempotency_keys")

# One request per payment: POST the create with ``confirm=true`` and the test card (bare: its
# ``/bare/payments`` with the same body makes the three write transactions in one request).
# args: create path, API key ("" for none), "1" to send an Idempotency-Key.
ONE_LUA = r"""
counters = {"succeeded", "bad"}
succeeded, bad = 0, 0
local create_path, key, idem, n = nil, nil, false, 0
local body = '{"amount":2000,"currency":"usd","confirm":true,"payment_method":"pm_card_visa"}'
local cards, next_card = {}, 0
function init(args)
  create_path, key, idem = args[1], args[2], args[3] == "1"
  if args[4] and args[4] ~= "" then  -- a file of card tokens, one per line: one each in turn
    for token in io.lines(args[4]) do cards[#cards + 1] = token end
    next_card = math.floor(#cards * tid / nthreads)  -- the threads start apart
  end
end
function request()
  local h = {["Content-Type"] = "application/json"}
  if key ~= "" then h["Authorization"] = "Bearer " .. key end
  if idem then
    n = n + 1
    h["Idempotency-Key"] = string.format("bench1_%d_%d_%d", tid, n, math.random(1, 1e9))
  end
  if #cards > 0 then
    next_card = next_card % #cards + 1
    body = '{"amount":2000,"currency":"usd","confirm":true,"payment_method":"' ..
      cards[next_card] .. '"}'
  end
  return wrk.format("POST", create_path, h, body)
end
function response(status, hdrs, body)
  if status == 200 and body:find('"status":%s*"succeeded"') then
    succeeded = succeeded + 1
  else
    bad = bad + 1
  end
end
"""

GET_LUA = r"""
counters = {"bad"}
bad = 0
local path, hdrs
function init(args)
  path, hdrs = args[1], {["Authorization"] = "Bearer " .. args[2]}
end
function request() return wrk.format("GET", path, hdrs) end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
"""


# -- servers ------------------------------------------------------------------------------
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
    return bench_server("bare", cmd, tmp, port)


# -- load ---------------------------------------------------------------------------------
@dataclass
class Result:
    side: str
    done: int = 0  # payments that succeeded
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    runs: list[LoadResult] = field(default_factory=list)
    rows: dict[str, float] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def add(self, load: LoadResult, payments: int, cpu: float) -> None:
        self.runs.append(load)
        self.done += payments
        self.requests += load.requests
        self.errors += load.errors
        self.seconds += load.seconds
        self.server_cpu += cpu
        self.first_error = self.first_error or load.first_error

    @property
    def p50(self) -> float:
        """httpx: of all payments; wrk: the median of the runs' p50s (per request)."""
        every = [x for r in self.runs for x in r.latencies]
        if every:
            return statistics.median(every)
        return statistics.median(r.p50 for r in self.runs) if self.runs else float("nan")

    @property
    def p99(self) -> float:
        """httpx: of all payments; wrk: the largest of the runs' p99s (per request)."""
        every = sorted(x for r in self.runs for x in r.latencies)
        if every:
            return every[min(len(every) - 1, round(0.99 * (len(every) - 1)))]
        return max(r.p99 for r in self.runs) if self.runs else float("nan")

    @property
    def sent(self) -> list[float]:
        """wrk with one connection: every request's latency as the client saw it (ms),
        without wrk's correction for coordinated omission (common.LUA_PER_REQUEST)."""
        return sorted(x for r in self.runs for x in r.per_request)

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / self.done * 1000 if self.done else float("nan")


class Side:
    """One server driven with create + confirm payments."""

    def __init__(self, server: ServerProcess, args: argparse.Namespace, tmp: Path) -> None:
        self.server, self.args, self.tmp = server, args, tmp
        self.name = server.name
        self.key = server.env.get("PAYMUX_API_KEY", "")
        if self.name.startswith("paymux"):  # "paymux", or a version of it (ab_sequential.py)
            self.create_path = "/v1/payment_intents"
            self.confirm_path = "/v1/payment_intents/{id}/confirm"
        else:
            self.create_path = "/bare/payments"
            self.confirm_path = "/bare/payments/{id}/confirm"
        self.cpu = CpuMeter(server.pid)
        self.last_id: str | None = None
        self.one = False  # True: one request per payment (create with confirm=true)
        self.connections = args.concurrency
        self.cards: list[str] = []  # --cards: tokens of distinct cards, used in turn
        self.cards_file = ""
        self._next_card = 0

    def card(self) -> str:
        """The payment method of the next one-request payment: ``pm_card_visa``, or with
        ``--cards`` the next of the distinct cards' tokens."""
        if not self.cards:
            return "pm_card_visa"
        self._next_card = (self._next_card + 1) % len(self.cards)
        return self.cards[self._next_card]

    def _headers(self) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.key}"} if self.key else {}
        if self.args.idempotency_keys:
            headers["idempotency-key"] = "bench_" + os.urandom(12).hex()
        return headers

    async def _pair(self, http: httpx.AsyncClient) -> int:
        created = await http.post(
            self.create_path, json={"amount": 2000, "currency": "usd"}, headers=self._headers()
        )
        if created.status_code != 200:
            raise RuntimeError(f"create: HTTP {created.status_code} {created.text[:300]}")
        pi_id = created.json()["id"]
        confirmed = await http.post(
            self.confirm_path.format(id=pi_id),
            json={"payment_method": "pm_card_visa"},
            headers=self._headers(),
        )
        if confirmed.status_code != 200:
            raise RuntimeError(f"confirm: HTTP {confirmed.status_code} {confirmed.text[:300]}")
        status = confirmed.json().get("status")
        if status != "succeeded":
            raise RuntimeError(f"confirm: status {status!r}")
        self.last_id = pi_id
        return 2

    async def _one(self, http: httpx.AsyncClient) -> int:
        created = await http.post(
            self.create_path,
            json={
                "amount": 2000,
                "currency": "usd",
                "confirm": True,
                "payment_method": self.card(),
            },
            headers=self._headers(),
        )
        if created.status_code != 200:
            raise RuntimeError(f"create+confirm: HTTP {created.status_code} {created.text[:300]}")
        body = created.json()
        if body.get("status") != "succeeded":
            raise RuntimeError(f"create+confirm: status {body.get('status')!r}")
        self.last_id = body["id"]
        return 1

    def httpx_run(self, count: int, result: Result) -> None:
        self.cpu.lap()
        load = asyncio.run(
            run_httpx(
                self.server.url,
                self._one if self.one else self._pair,
                connections=self.connections,
                count=count,
                seconds=self.args.max_seconds,
            )
        )
        result.add(load, load.counters.get("calls", 0), self.cpu.lap())

    def wrk_run(self, seconds: float, result: Result) -> None:
        self.cpu.lap()
        if self.one:
            load = run_wrk(
                self.server.url,
                ONE_LUA,
                seconds=seconds,
                connections=self.connections,
                threads=min(2, self.connections),
                args=[
                    self.create_path,
                    self.key,
                    "1" if self.args.idempotency_keys else "0",
                    self.cards_file,
                ],
                tmp=self.tmp,
                per_request=self.connections == 1,
            )
            result.add(load, load.counters.get("succeeded", 0), self.cpu.lap())
            return
        load = run_wrk(
            self.server.url,
            PAYMENTS_LUA,
            seconds=seconds,
            connections=self.args.concurrency,
            threads=min(2, self.args.concurrency),
            args=[
                self.create_path,
                self.confirm_path.replace("{id}", "%s"),
                self.key,
                "1" if self.args.idempotency_keys else "0",
            ],
            tmp=self.tmp,
            per_request=self.args.concurrency == 1,
        )
        result.add(load, load.counters.get("succeeded", 0), self.cpu.lap())


def warm_up(sides: list[Side], args: argparse.Namespace) -> None:
    for side in sides:
        warm = Result(side.name)
        side.httpx_run(args.warmup, warm)
        if warm.errors:
            raise RuntimeError(
                f"{side.name} warm-up failed: {warm.first_error}\n{side.server.tail()}"
            )


def drive(
    sides: list[Side], args: argparse.Namespace, *, one: bool, connections: int, seconds: float
) -> list[Result]:
    """Run both servers in turns (A B B A A B ...), so both see the same machine: a noisy
    neighbour slows both sides alike instead of one. ``one``: a payment is one request (create
    with ``confirm=true``), else a create then a confirm."""
    for side in sides:
        side.one, side.connections = one, connections
    results = [Result(s.name) for s in sides]
    turn = 0
    if args.load == "wrk":
        turns = max(1, round(seconds / args.chunk_seconds))
        for turn in range(turns):
            order = list(zip(sides, results, strict=True))
            for side, result in order if turn % 2 == 0 else reversed(order):
                side.wrk_run(seconds / turns, result)
        return results
    chunk = max(1, min(args.chunk, args.n))
    while any(r.done + r.errors < args.n for r in results):
        order = list(zip(sides, results, strict=True))
        progressed = False
        for side, result in order if turn % 2 == 0 else reversed(order):
            todo = min(chunk, args.n - result.done - result.errors)
            if todo > 0:
                before = result.done + result.errors
                side.httpx_run(todo, result)
                progressed = progressed or result.done + result.errors > before
        if not progressed:
            break
        turn += 1
    return results


@dataclass
class GetResult:
    load: LoadResult
    cpu: float

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.load.requests * 1000 if self.load.requests else float("nan")


def measure_get(side: Side, args: argparse.Namespace) -> GetResult:
    """GET one payment intent, over and over, on paymux."""
    assert side.last_id is not None
    path = f"/v1/payment_intents/{side.last_id}"
    side.cpu.lap()
    if args.load == "wrk":
        load = run_wrk(
            side.server.url,
            GET_LUA,
            seconds=args.get_seconds,
            connections=args.concurrency,
            threads=min(2, args.concurrency),
            args=[path, side.key],
            tmp=side.tmp,
        )
    else:

        async def get(http: httpx.AsyncClient) -> int:
            r = await http.get(path, headers={"authorization": f"Bearer {side.key}"})
            if r.status_code != 200:
                raise RuntimeError(f"GET: HTTP {r.status_code}")
            return 1

        load = asyncio.run(
            run_httpx(side.server.url, get, connections=args.concurrency, seconds=args.get_seconds)
        )
    return GetResult(load, side.cpu.lap())


async def analyze(db_url: str) -> None:
    """``--analyze``: the statistics of every table, as autovacuum's first ANALYZE of a table
    takes them in a running deployment (a minute or so after its first 50 rows)."""
    db = Database(db_url, pool_size=1)
    try:
        async with db.write() as s:
            await s.execute(text("ANALYZE"))
    finally:
        await db.dispose()


def card_numbers(count: int) -> list[str]:
    """``count`` distinct Luhn-valid Visa numbers that the sandbox charges successfully (none
    of its test cards' scenarios): 41 and a 13-digit serial, then the check digit."""
    out: list[str] = []
    serial = 0
    while len(out) < count:
        serial += 1
        body = f"41{serial:013d}"
        total = 0
        for i, ch in enumerate(reversed(body)):  # the check digit goes right of these
            d = int(ch) * (2 if i % 2 == 0 else 1)
            total += d - 9 if d > 9 else d
        number = body + str((10 - total % 10) % 10)
        if card_for_number(number).scenario is Scenario.SUCCEED:
            out.append(number)
    return out


async def tokenize(url: str, count: int) -> list[str]:
    """``--cards``: tokens of ``count`` distinct cards, made at paymux's built-in sandbox as
    its card form makes them (``POST /sandbox/v1/tokens``), before the warm-up."""
    numbers = card_numbers(count)
    tokens: list[str] = [""] * count
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def one(start: int) -> None:
            for i in range(start, count, 8):
                r = await http.post(
                    "/sandbox/v1/tokens",
                    json={"number": numbers[i], "exp_month": 12, "exp_year": 2040, "cvc": "123"},
                )
                if r.status_code != 200:
                    raise RuntimeError(f"tokenize: HTTP {r.status_code} {r.text[:300]}")
                tokens[i] = r.json()["id"]

        await asyncio.gather(*(one(k) for k in range(8)))
    return tokens


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
class Mode:
    """One way of driving payments: a label, the paymux and bare results side by side."""

    label: str
    paymux: Result
    bare: Result

    @property
    def ratio(self) -> float:
        return self.paymux.rate / self.bare.rate if self.bare.rate else float("nan")


@dataclass
class BackendRun:
    backend: str
    version: str
    modes: list[Mode]
    get: GetResult | None
    load: tuple[float, float]
    rss: float  # paymux's resident memory at the end, MiB
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # side -> table -> rows/pay
    done: int = 0  # paymux payments measured, all modes


def modes_of(args: argparse.Namespace) -> list[tuple[str, bool, int, float]]:
    """(label, one request per payment, connections, seconds) for each mode asked for."""
    out: list[tuple[str, bool, int, float]] = []
    c = args.concurrency
    if args.mode in ("two", "both"):
        out.append((f"2 req, c={c}", False, c, args.seconds))
    if args.mode in ("one", "both"):
        out.append((f"1 req, c={c}", True, c, args.seconds))
    if args.sequential_seconds > 0:
        out.append(("1 req, c=1", True, 1, args.sequential_seconds))
    return out


def run_backend(backend: str, args: argparse.Namespace, dbs: Databases) -> BackendRun:
    work = dbs.tmp / backend
    work.mkdir()
    urls = {side: dbs.url(backend, f"bench_{side}") for side in ("paymux", "bare")}
    version = dbs.version(backend, urls["paymux"])
    for url in urls.values():
        upgrade(url)
    servers: list[ServerProcess] = [
        paymux_server(urls["paymux"], work, PAYMUX_RUN_WORKER="true"),
        bare_server(urls["bare"], work),
    ]
    load_before = loadavg()
    get = None
    modes: list[Mode] = []
    try:
        for server in servers:
            server.start()
        sides = [Side(server, args, work) for server in servers]
        if args.cards:
            tokens = asyncio.run(tokenize(servers[0].url, args.cards))
            path = work / "cards.txt"
            path.write_text("".join(t + "\n" for t in tokens))
            for side in sides:  # the bare server stores the token as it stores pm_card_visa
                side.cards, side.cards_file = tokens, str(path)
        warm_up(sides, args)
        if args.analyze and backend == "postgres":
            for url in urls.values():
                asyncio.run(analyze(url))
        for label, one, connections, seconds in modes_of(args):
            paymux, bare = drive(sides, args, one=one, connections=connections, seconds=seconds)
            modes.append(Mode(label, paymux, bare))
        if args.get_seconds > 0:
            get = measure_get(sides[0], args)
        rss = rss_mb(servers[0].pid)
    finally:
        for server in servers:
            server.stop()
    run = BackendRun(backend, version, modes, get, (load_before, loadavg()), rss)
    run.done = sum(m.paymux.done for m in modes)
    for side in ("paymux", "bare"):
        rows = asyncio.run(count_rows(urls[side]))
        total = rows["events"] / 2 or 1  # two events per succeeded payment
        run.rows[side] = {t: rows[t] / total for t in TABLES}
    return run


# -- report -------------------------------------------------------------------------------
def report(runs: list[BackendRun], args: argparse.Namespace) -> None:
    print()
    amount = f"{args.seconds:.0f} s per server and mode" if args.load == "wrk" else f"N={args.n}"
    cards = (
        f"1 request: {args.cards} distinct cards in turn, 2 requests: pm_card_visa"
        if args.cards
        else "pm_card_visa"
    )
    print(
        f"{amount} of payments ({cards}), concurrency={args.concurrency}, "
        f"warm-up={args.warmup}, idempotency keys={'on' if args.idempotency_keys else 'off'}, "
        f"load generator: {args.load}"
        + (
            " (wrk is not installed: apt-get install wrk)"
            if args.load == "httpx" and not have_wrk()
            else ""
        )
    )
    print(machine() + "; " + "; ".join(run.version for run in runs))
    print()
    header = (
        f"{'backend':<9} {'mode':<12} {'server':<7} {'done':>6} {'err':>4} {'payments/s':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'CPU ms/pay':>11} {'ratio':>6} {'load':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        for i, mode in enumerate(run.modes):
            for res in (mode.paymux, mode.bare):
                last = res is mode.bare
                ratio = f"{mode.ratio:6.2f}" if last and mode.bare.rate else ""
                load = (
                    f"{run.load[0]:.1f}->{run.load[1]:.1f}"
                    if last and i == len(run.modes) - 1
                    else ""
                )
                print(
                    f"{run.backend:<9} {mode.label:<12} {res.side:<7} {res.done:>6} "
                    f"{res.errors:>4} {res.rate:>11.1f} {res.p50:>8.2f} {res.p99:>8.2f} "
                    f"{res.cpu_ms:>11.2f} {ratio:>6} {load:>10}"
                )
    one_client = [
        (run.backend, mode, res)
        for run in runs
        for mode in run.modes
        for res in (mode.paymux, mode.bare)
        if res.sent
    ]
    if one_client:
        print()
        print("one connection, every request as the client saw it (no correction, ms):")
        for backend, mode, res in one_client:
            sent = res.sent
            print(
                f"  {backend:<9} {mode.label:<12} {res.side:<7} {len(sent):>6} requests: "
                f"p50 {percentile(sent, 0.50):.2f}, p99 {percentile(sent, 0.99):.2f}, "
                f"max {sent[-1]:.2f}"
            )
        print("  (wrk's p99 in the table adds, for each request slower than twice the mean")
        print("  interval between requests, samples at its latency minus one, two, ... intervals:")
        print("  wrk's correction for coordinated omission, which models requests arriving at a")
        print("  fixed rate, not one client sending each after the last; common.LUA_PER_REQUEST)")
    print()
    print("modes: '2 req' = a create, then a confirm (two HTTP requests per payment); '1 req' =")
    print("ONE request per payment, the create with confirm=true (the issue's first row); c=")
    print("connections ('c=1': sequential, one client).")
    if args.load == "wrk":
        print("p50/p99: per request, from wrk (the median of the turns' p50s and the largest of")
        print("their p99s): with '1 req' a request is a whole payment; with '2 req' a create or")
        print("a confirm.")
    else:
        print("p50/p99: per payment, seen by the httpx client in this process.")
    print("ratio: paymux payments/s / bare payments/s. CPU ms/pay: the server process's CPU per")
    print("payment (all its threads; not the client, not PostgreSQL).")
    print("load: the 1-minute load average before -> after the backend's run.")
    print("rows per payment at the end (warm-up and all modes included; rows / (events / 2)):")
    for run in runs:
        for side, table in run.rows.items():
            rows = " ".join(f"{t}={v:.2f}" for t, v in table.items())
            print(f"  {run.backend:<9} {side:<7} {rows}")
    for run in runs:
        total = run.done + args.warmup
        print(
            f"paymux's resident memory at the end, {run.backend}: {run.rss:.0f} MiB "
            f"(after about {total} payments)"
        )
    gets = [run for run in runs if run.get is not None]
    if gets:
        print()
        print(
            f"GET /v1/payment_intents/{{id}} (one intent), paymux, {args.concurrency} connections, {args.load}"
        )
        header = f"{'backend':<9} {'requests':>9} {'err':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}"
        print(header)
        print("-" * len(header))
        for run in gets:
            g = run.get
            assert g is not None
            print(
                f"{run.backend:<9} {g.load.requests:>9} {g.load.errors:>4} {g.load.rate:>9.1f} "
                f"{g.load.p50:>8.2f} {g.load.p99:>8.2f} {g.cpu_ms:>11.3f}"
            )
    for run in runs:
        for mode in run.modes:
            for res in (mode.paymux, mode.bare):
                if res.errors:
                    print(
                        f"ERROR {run.backend} {mode.label} {res.side}: {res.errors} failed, "
                        f"first: {res.first_error}"
                    )
        if run.get is not None and run.get.load.errors:
            print(f"ERROR {run.backend} GET: {run.get.load.first_error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paymux payments benchmark (see module docstring)")
    parser.add_argument(
        "--load",
        choices=("wrk", "httpx"),
        default="wrk" if have_wrk() else "httpx",
        help="load generator (default wrk when installed, else httpx)",
    )
    parser.add_argument("--seconds", type=float, default=24.0, help="wrk: seconds per server (24)")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=12.0,
        help="wrk: seconds per turn (12; shorter turns put each run's start in the p99)",
    )
    parser.add_argument("--n", type=int, default=2000, help="httpx: payments per server (2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (16)")
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
    parser.add_argument(
        "--mode",
        choices=("two", "one", "both"),
        default="both",
        help="a payment as two requests (create, confirm), one (create with confirm=true), or "
        "both, each measured (default both)",
    )
    parser.add_argument(
        "--sequential-seconds",
        type=float,
        default=5.0,
        help="then one client (1 connection), one request per payment, this long (5; 0: skip)",
    )
    parser.add_argument(
        "--cards",
        type=int,
        default=0,
        help="one-request payments: this many distinct cards, tokenized at the sandbox "
        "first and used in turn (0, default: every payment pm_card_visa, one card)",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="PostgreSQL: ANALYZE both databases after the warm-up, as autovacuum would have "
        "in a deployment running for a minute (default: off; the bench's tables then have no "
        "statistics during the run)",
    )
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured payments first (100)")
    parser.add_argument("--chunk", type=int, default=250, help="httpx: payments per turn (250)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=35.0,
        help="httpx: time budget per turn; past it, stop early (35)",
    )
    parser.add_argument(
        "--get-seconds", type=float, default=10.0, help="GET one object for this long (10; 0: skip)"
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown or not backends:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown)) or '(none)'}")
    if args.n < 1 or args.concurrency < 1:
        parser.error("--n and --concurrency must be positive")
    if args.load == "wrk" and not have_wrk():
        parser.error("wrk is not installed (apt-get install wrk), use --load httpx")

    runs: list[BackendRun] = []
    with databases(backends) as dbs:
        for backend in backends:
            print(f"running {backend} ...", file=sys.stderr, flush=True)
            runs.append(run_backend(backend, args, dbs))
    report(runs, args)
    failed = sum(
        sum(m.paymux.errors + m.bare.errors for m in r.modes) + (r.get.load.errors if r.get else 0)
        for r in runs
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
