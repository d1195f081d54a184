"""What the bench scripts share: servers, databases, CPU, the machine, and load with wrk or httpx.

bench/payments.py, bench/webhooks.py and bench/jobs.py import this module (and nothing of each
other). Process handling itself (free ports, logged subprocesses, ``paymux serve``, waiting
for ``/health``, a process's CPU time) is tests/support/processes.py, shared with the tests;
the throwaway PostgreSQL cluster is tests/support/pgcluster.py. This module adds:

- ``paymux_server(db_url, tmp, ...)``: ``python -m paymux.cli serve`` on 127.0.0.1 (a free
  port), configured only by PAYMUX_* variables, log level WARNING, no rate limit, stopped
  with SIGINT; ``bench_server(name, cmd, ...)`` for the bare comparison servers.
- ``databases(backends, tmp)``: a context manager yielding a ``Databases`` that hands out
  fresh database URLs per backend (a SQLite file, or a database in one throwaway PostgreSQL
  cluster started only if ``postgres`` is asked for) and each backend's version string.
- ``paymux_env(db_url, tmp, **env)`` and ``paymux_worker(name, env, log)``: ``paymux worker``.
- ``rss_mb(pid)``: resident memory; ``CpuMeter(pid)``: CPU seconds (user + system, all threads) a process used since the last
  ``lap()``; ``loadavg()``; ``machine()`` (CPUs, model, RAM, Python, the CPU idle driver).
- ``percentile(values, q)``.
- ``in_process_paymux(url, tmp, api_key, ...)``: paymux in this process behind an httpx
  client (ASGI transport, no worker, sandbox gateway); ``paymux_engines(core)``.
- Load: ``have_wrk()``; ``run_wrk(url, script, ...)`` runs wrk with a Lua script (``LUA_COMMON``
  is prepended: it numbers the threads (global ``tid``, ``nthreads``) and, in ``done``,
  prints one ``WRK key=value ...`` line with requests, errors, latency percentiles and the sum
  and maximum over threads of every per-thread counter named in the script's global
  ``counters``), and returns a ``LoadResult``; ``run_httpx(url, make_request, ...)`` is the
  fallback (a coroutine per connection, in this process: its own CPU competes with the
  server's, which is why wrk is preferred). Both report requests, seconds, latency and
  errors; the caller measures the server's CPU around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # support.pgcluster, support.processes

from paymux.api.app import create_app  # noqa: E402
from paymux.config import Settings  # noqa: E402
from paymux.services import Paymux  # noqa: E402
from support import processes  # noqa: E402
from support.processes import (  # noqa: E402
    HOST,
    LoggedProcess,
    ServeProcess,
    ServerProcess,
    cpu_seconds,
    free_port,
)

__all__ = [
    "HOST",
    "LUA_COMMON",
    "PAYMENTS_LUA",
    "ROOT",
    "CpuMeter",
    "Databases",
    "LoadResult",
    "LoggedProcess",
    "ServerProcess",
    "bench_server",
    "cpu_seconds",
    "databases",
    "free_port",
    "have_wrk",
    "in_process_paymux",
    "loadavg",
    "machine",
    "paymux_engines",
    "paymux_env",
    "paymux_server",
    "paymux_worker",
    "percentile",
    "rss_mb",
    "run_httpx",
    "run_wrk",
    "waiting_attempt_row",
    "waiting_intent_row",
]

# Output appended to a log beside the databases; stopped with SIGINT (as Ctrl-C), killed after
# 20 s.
_STOP: dict[str, Any] = {"stop_signal": signal.SIGINT, "stop_timeout": 20}

BENCH_SETTINGS: Mapping[str, str] = {
    "PAYMUX_LOG_LEVEL": "WARNING",
    "PAYMUX_RATE_LIMIT_REQUESTS": "0",  # one key driven far past any limit
}


# Per wrk thread: a queue of created intents; the next request confirms one if any is waiting,
# else creates one. A "request" is a create or a confirm. args: create path, confirm path
# (with %s for the id), API key ("" for none), "1" to send an Idempotency-Key.
PAYMENTS_LUA = r"""
counters = {"created", "succeeded", "bad"}
created, succeeded, bad = 0, 0, 0
local queue, head, tail, n = {}, 1, 0, 0
local create_path, confirm_path, key, idem
function init(args)
  create_path, confirm_path, key, idem = args[1], args[2], args[3], args[4] == "1"
end
local function headers()
  local h = {["Content-Type"] = "application/json"}
  if key ~= "" then h["Authorization"] = "Bearer " .. key end
  if idem then
    n = n + 1
    h["Idempotency-Key"] = string.format("bench_%d_%d_%d", tid, n, math.random(1, 1e9))
  end
  return h
end
function request()
  if head <= tail then
    local id = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("POST", string.format(confirm_path, id), headers(),
                      '{"payment_method":"pm_card_visa"}')
  end
  return wrk.format("POST", create_path, headers(), '{"amount":2000,"currency":"usd"}')
end
function response(status, hdrs, body)
  if status ~= 200 then bad = bad + 1 return end
  if body:find('"status":%s*"succeeded"') then succeeded = succeeded + 1 return end
  local id = body:match('"id":%s*"(pi_[%w_]+)"')
  if id and body:find('"status":%s*"requires_payment_method"') then
    created = created + 1
    tail = tail + 1
    queue[tail] = id
  else
    bad = bad + 1
  end
end
"""


# -- servers --------------------------------------------------------------------------------
def paymux_server(
    db_url: str,
    tmp: Path,
    *,
    name: str = "paymux",
    args: Sequence[str] = (),
    api_key: str | None = None,
    **env: str,
) -> ServeProcess:
    """``python -m paymux.cli serve [args]`` on 127.0.0.1, not started yet (``.start()``).
    Its API key is ``.api_key`` (a fresh one unless given); ``env`` adds PAYMUX_* (or
    connector) variables on top of ``BENCH_SETTINGS``."""
    return ServeProcess(
        tmp,
        db_url,
        api_key or "sk_test_bench" + secrets.token_hex(12),
        command=[sys.executable, "-m", "paymux.cli", "serve", *args],
        settings=BENCH_SETTINGS,
        log=tmp / f"{name}-server.log",
        cwd=tmp,
        start=False,
        timeout=180,  # start-up on a busy 2-core machine took over 60 s (imports compiled)
        name=name,
        **_STOP,
        **env,
    )


def bench_server(name: str, cmd: Sequence[str], tmp: Path, port: int) -> ServerProcess:
    """A comparison server (``cmd`` must listen on 127.0.0.1:``port`` and answer
    ``GET /health``), not started yet."""
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost")
    return ServerProcess(
        name, cmd, port=port, log=tmp / f"{name}-server.log", env=env, cwd=tmp, **_STOP
    )


# -- databases ------------------------------------------------------------------------------
class Databases:
    """Fresh database URLs for ``sqlite`` (files under ``tmp``) and ``postgres`` (databases in
    one throwaway cluster, tests/support/pgcluster.py)."""

    def __init__(self, tmp: Path, pg: Any) -> None:
        self.tmp, self.pg = tmp, pg

    def url(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / (name + '.db')}"
        if self.pg is None:
            raise RuntimeError("PostgreSQL was not asked for")
        return str(self.pg.create_database(name))

    def version(self, backend: str, url: str) -> str:
        if backend == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return "PostgreSQL " + str(asyncio.run(scalar(url, "show server_version")))


@contextlib.contextmanager
def databases(backends: Sequence[str], prefix: str = "paymux-bench-") -> Iterator[Databases]:
    """A temporary directory and, if ``postgres`` is among ``backends``, a throwaway cluster
    (fsync, synchronous_commit and full_page_writes off; run as the ``postgres`` OS user when
    we are root), both removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        pg = None
        try:
            if "postgres" in backends:
                from support.pgcluster import PgCluster

                pg = PgCluster()
                pg.start()
            yield Databases(Path(name), pg)
        finally:
            if pg is not None:
                pg.stop()


@contextlib.asynccontextmanager
async def in_process_paymux(
    url: str, tmp: Path, api_key: str, sandbox_name: str, **settings: Any
) -> AsyncIterator[tuple[Paymux, httpx.AsyncClient]]:
    """paymux in this process, on the migrated database ``url``: the ASGI app over httpx's
    ASGI transport, no worker, the built-in sandbox gateway at zero latency (its file
    ``sandbox_name`` under ``tmp``), log level WARNING, no rate limit, ``settings`` on top.
    Yields the ``Paymux`` core (its engines: ``paymux_engines``) and a client that sends
    ``api_key``; the database is disposed of on exit (bench/statements.py,
    bench/profile_payment.py)."""
    config = Settings(
        database_url=url,
        api_key=api_key,
        sandbox_db=str(tmp / sandbox_name),
        run_worker=False,
        log_level="WARNING",
        rate_limit_requests=0,
        **settings,
    )
    core = Paymux(config)
    app = create_app(config, core)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://paymux",
                headers={"Authorization": f"Bearer {api_key}"},
            ) as client:
                yield core, client
    finally:
        await core.ctx.db.dispose()


def paymux_engines(core: Paymux) -> list[Any]:
    """The database engines of an in-process ``Paymux``: its writer, and its reader if
    apart (what a statement counter attaches to)."""
    db = core.ctx.db
    return [db.writer] if db.reader is db.writer else [db.writer, db.reader]


def waiting_intent_row(
    pi_id: str,
    account_id: str,
    reference: str,
    amount: int,
    now_us: int,
    *,
    next_action: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``payment_intents`` row at Stripe waiting for 3-D Secure (``requires_action``): what
    the webhook benches seed for a ``payment_intent.succeeded`` event to apply to."""
    return {
        "id": pi_id,
        "account_id": account_id,
        "status": "requires_action",
        "amount": amount,
        "currency": "USD",
        "amount_capturable": 0,
        "amount_received": 0,
        "amount_refunded": 0,
        "amount_refund_pending": 0,
        "capture_method": "automatic",
        "customer_id": None,
        "payment_method_id": None,
        "setup_future_usage": None,
        "off_session": False,
        "gateway": "stripe",
        "gateway_reference": reference,
        "last_payment_error": None,
        "next_action": next_action,
        "gateway_client": None,
        "return_url": "https://shop.example/return",
        "risk_level": "normal",
        "cancellation_reason": None,
        "canceled_us": None,
        "authorized_us": None,
        "description": None,
        "statement_descriptor": None,
        "metadata": metadata or {},
        "confirm_count": 1,
        "created_us": now_us,
        "updated_us": now_us,
    }


def waiting_attempt_row(
    attempt_id: str, pi_id: str, account_id: str, reference: str, token: str, now_us: int
) -> dict[str, Any]:
    """The settled authorize attempt of :func:`waiting_intent_row`'s intent (Stripe answered
    ``requires_action``), ``token`` the payment method it was called with."""
    return {
        "id": attempt_id,
        "account_id": account_id,
        "gateway": "stripe",
        "operation": "authorize",
        "object_id": pi_id,
        "idempotency_key": f"{pi_id}:authorize:1",
        "status": "settled",
        "request": {"token": token, "customer_token": None},
        "result": {
            "status": "requires_action",
            "reference": reference,
            "amount_authorized": 0,
            "amount_captured": 0,
            "decline": None,
        },
        "error": None,
        "created_us": now_us,
        "updated_us": now_us,
    }


async def scalar(url: str, statement: str) -> Any:
    """One value from ``statement`` through paymux's own ``Database``."""
    from sqlalchemy import text

    from paymux.storage.db import Database

    db = Database(url, pool_size=1)
    try:
        async with db.read() as s:
            return (await s.execute(text(statement))).scalar_one()
    finally:
        await db.dispose()


# -- CPU and the machine ----------------------------------------------------------------------
class CpuMeter:
    """CPU seconds (user + system, every thread) that process ``pid`` used between laps."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last = cpu_seconds(pid)

    def lap(self) -> float:
        now = cpu_seconds(self.pid)
        used, self.last = now - self.last, now
        return used


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (VmRSS), NaN where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def loadavg() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def machine() -> str:
    """``N CPUs (model), RAM, Python x.y.z``."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kb / 1024 / 1024:.1f} GiB RAM"
    return f"{os.cpu_count()} CPUs ({cpu}){memory}, Python {platform.python_version()}" + cpu_idle()


_CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")
_HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def cpu_idle() -> str:
    """``, idle: <cpuidle driver>`` and, in a KVM guest on the ``haltpoll`` driver, how long
    an idle vCPU polls before it halts (``guest_halt_poll_ns``; the kernel's default 200000,
    0 = halt at once: every wake-up of an idle core then goes through the host, which this
    machine's round-trip tails show: docs/benchmarks.md, the session of 2026-12-05,
    12:59-15:59). Empty where the kernel says nothing."""
    try:
        driver = (_CPUIDLE / "current_driver").read_text().strip()
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        return f", idle: {driver} (guest_halt_poll_ns {_HALT_POLL.read_text().strip()})"
    return f", idle: {driver}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank), NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- load ---------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """What one load run measured. Latencies in milliseconds, per HTTP request."""

    tool: str
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    p50: float = float("nan")
    p90: float = float("nan")
    p99: float = float("nan")
    counters: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)  # httpx only: ms per call
    # wrk with one connection per thread and ``per_request``: each request's latency as the
    # client saw it (ms; LUA_PER_REQUEST), without wrk's correction for coordinated omission
    per_request: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


# Prepended to every wrk script, after ``local _nthreads = <threads>`` (``run_wrk``). Threads
# are numbered in setup() (globals ``tid`` from 0 and ``nthreads`` in each thread's Lua state);
# done() sums the counters the script names. setup() writes to the new thread's state only:
# wrk starts each thread as soon as it is set up, so a write into an earlier thread's state
# (as setup once did, to count the threads) races with that thread's own request() and
# response() in it, and once crashed wrk (``PANIC: unprotected error in call to Lua API``).
LUA_COMMON = r"""
local _threads = {}
counters = counters or {}
function setup(thread)
  thread:set("tid", #_threads)
  thread:set("nthreads", _nthreads)
  table.insert(_threads, thread)
end
function done(summary, latency, requests)
  local e = summary.errors
  local out = string.format(
    "WRK requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99))
  for _, name in ipairs(counters) do
    local total, most = 0, 0
    for _, t in ipairs(_threads) do
      local v = tonumber(t:get(name)) or 0
      total = total + v
      if v > most then most = v end
    end
    out = out .. string.format(" %s=%d %s_max=%d", name, total, name, most)
  end
  io.write(out .. "\n")
end
"""

_WRK_LINE = re.compile(r"^WRK (.*)$", re.M)

# Appended to a script run with one connection per thread (``run_wrk(..., per_request=...)``):
# each request's latency as the client saw it, from the script's request() (just before
# wrk notes the request's start) to its response() (just after wrk notes the response's end),
# on the monotonic clock (LuaJIT's ffi), one line of microseconds per request in a file per
# thread (``<prefix>.<tid>``; C's stdio flushes it when wrk exits). wrk's own percentiles are
# corrected for coordinated omission (wrk 4: for every latency of at least twice the mean
# interval between a connection's requests it adds samples at that latency minus one, two, ...
# intervals), which models requests arriving at a fixed rate; a sequential client's requests
# do not, and these are their latencies as they were.
LUA_PER_REQUEST = r"""
local _ffi = require("ffi")
_ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local _ts = _ffi.new("bench_timespec")
local function _now_us()
  _ffi.C.clock_gettime(1, _ts)
  return tonumber(_ts.tv_sec) * 1000000 + tonumber(_ts.tv_nsec) / 1000
end
local _request, _response, _init = request, response, init
local _out, _sent = nil, 0
function init(args)
  _out = io.open(string.format("%s.%d", os.getenv("BENCH_WRK_PER_REQUEST"), tid), "w")
  _out:setvbuf("full")
  if _init then _init(args) end
end
function request()
  local r = _request()
  _sent = _now_us()
  return r
end
function response(status, headers, body)
  _out:write(string.format("%.1f\n", _now_us() - _sent))
  if _response then _response(status, headers, body) end
end
"""


def run_wrk(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    args: Sequence[str] = (),
    tmp: Path | None = None,
    timeout_s: int = 10,
    per_request: bool = False,
) -> LoadResult:
    """``wrk -t threads -c connections -d seconds -s <LUA_COMMON + script> url -- args``.

    Errors are wrk's socket errors plus non-2xx/3xx answers; a script may count more of its
    own (a counter named ``bad`` is added to ``errors``). ``per_request`` (one connection per
    thread, a script with a request() function): also each request's latency as the client
    saw it (``LoadResult.per_request``, LUA_PER_REQUEST)."""
    directory = Path(tmp or tempfile.gettempdir())
    name = f"wrk-{secrets.token_hex(4)}"
    path = directory / f"{name}.lua"
    env = None
    if per_request:
        if connections != max(1, threads) or "function request" not in script:
            raise ValueError("per_request: one connection per thread, a script with request()")
        env = {**os.environ, "BENCH_WRK_PER_REQUEST": str(directory / name)}
        script += LUA_PER_REQUEST
    threads = max(1, min(threads, connections))
    path.write_text(f"local _nthreads = {threads}\n" + LUA_COMMON + script)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(path),
        url,
        "--",
        *args,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=seconds + 60, env=env
        )
    finally:
        path.unlink(missing_ok=True)
    sent: list[float] = []
    for recorded in sorted(directory.glob(f"{name}.[0-9]*")):
        sent += [float(line) / 1000 for line in recorded.read_text().split()]
        recorded.unlink()
    match = _WRK_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    fields = {k: int(v) for k, v in (kv.split("=", 1) for kv in match.group(1).split())}
    errors = sum(fields[k] for k in ("connect", "read", "write", "status", "timeout"))
    counters = {
        k: v
        for k, v in fields.items()
        if k not in {"requests", "duration_us", "connect", "read", "write", "status", "timeout"}
        and not k.startswith("p")
    }
    errors += counters.get("bad", 0)
    return LoadResult(
        "wrk",
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        errors=errors,
        p50=fields["p50_us"] / 1000,
        p90=fields["p90_us"] / 1000,
        p99=fields["p99_us"] / 1000,
        counters=counters,
        first_error=None if not errors else f"wrk: {errors} errors {fields}",
        per_request=sent,
    )


async def run_httpx(
    base_url: str,
    send: Callable[[httpx.AsyncClient], Awaitable[int]],
    *,
    connections: int,
    seconds: float | None = None,
    count: int | None = None,
) -> LoadResult:
    """The fallback load generator: ``connections`` coroutines on one httpx.AsyncClient, each
    calling ``send(client)`` (which makes one or more requests, checks them, raises on a bad
    answer and returns how many requests it made) until ``count`` calls were made or
    ``seconds`` passed. Latency is per call of ``send``, in milliseconds."""
    if seconds is None and count is None:
        raise ValueError("give seconds or count")
    result = LoadResult("httpx")
    latencies: list[float] = []
    remaining = count if count is not None else 1 << 62
    deadline = time.monotonic() + (seconds if seconds is not None else 1e9)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=30, trust_env=False
    ) as http:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                began = time.perf_counter()
                try:
                    made = await send(http)
                except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
                    result.errors += 1
                    result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                result.requests += made
                result.counters["calls"] = result.counters.get("calls", 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        result.seconds = time.perf_counter() - began
    result.p50, result.p90, result.p99 = (percentile(latencies, q) for q in (0.5, 0.9, 0.99))
    result.latencies = latencies
    return result


def paymux_env(db_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a paymux subprocess (``paymux worker``, say): ``BENCH_SETTINGS``,
    then ``extra``; nothing else of ours configures it (tests/support/processes.py)."""
    return processes.paymux_env(db_url, tmp, **{**BENCH_SETTINGS, **extra})


def paymux_worker(name: str, env: Mapping[str, str], log: Path) -> LoggedProcess:
    """``python -m paymux.cli worker`` with ``env`` (see ``paymux_env``), not started yet
    (``.spawn()``), its output appended to ``log``."""
    cmd = [sys.executable, "-m", "paymux.cli", "worker"]
    return LoggedProcess(name, cmd, env=env, log=log, cwd=log.parent, append=True, **_STOP)
