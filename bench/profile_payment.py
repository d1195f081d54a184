"""Where a payment's CPU goes: a cProfile of ``--n`` in-process payments.

For each backend this migrates a fresh database, runs paymux in this process (the ASGI app
over httpx's ASGI transport, no worker, the built-in sandbox gateway at zero latency), warms
up with a few payments, then profiles ``--n`` payments (``POST /v1/payment_intents`` with
``confirm=true`` and ``pm_card_visa``) and prints the top functions by cumulative and by own
time, the statements per payment (SQLAlchemy's events and storage/driver.py's observer),
and this process's CPU per payment without the profiler (``--cpu-n``, client included:
comparable only with itself), and the Python function calls per payment under the profiler
(a deterministic count: on a loaded machine, where CPU time per payment varies by half, it
still compares two versions).

    .venv/bin/python bench/profile_payment.py [--backends sqlite,postgres] [--n 300]
        [--top 40] [--no-fraud] [--save DIR] [--get N] [--list]

``--bridge`` measures instead what SQLAlchemy's asyncio bridge costs a transaction of 6
INSERTs (a settle's size), four ways: an AsyncSession awaiting each statement (as paymux
does), ``AsyncSession.run_sync`` running them all in one greenlet, an AsyncConnection awaiting
each, and ``AsyncConnection.run_sync``: Python function calls and CPU per transaction.

``--get N`` profiles ``N`` GETs of one intent (``GET /v1/payment_intents/{id}``) instead of
payments: the same figures per request (statements, CPU, Python function calls).

``--list`` prints instead the statements of one payment in order, each marked ``orm`` (through
SQLAlchemy's execution layer) or ``driver`` (storage/driver.py): which of a payment's
statements still pay for SQLAlchemy's layers, and in which transaction.

``--save DIR`` writes each backend's ``.pstats`` there (for snakeviz, flameprof...). To
compare with an older commit: ``git archive <commit> | tar -x -C /tmp/snap`` and run this
script with ``PYTHONPATH=/tmp/snap/src``. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import itertools
import pstats
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Column, MetaData, String, Table, event, insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import databases, in_process_paymux, paymux_engines

from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade

API_KEY = "sk_test_profile" + "0" * 16
COUNTED = 50
_BRIDGE_K = 6
"""Requests whose statements are counted (the mean: the request log's batched flush and
other periodic writes land in some requests, not in each)."""


def _count_statements(engine: Any, counts: collections.Counter[str], on: list[bool]) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _execute(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if on[0]:
            counts[sql.lstrip().split(" ", 1)[0].upper()] += 1


def _count_driver_statements(counts: collections.Counter[str], on: list[bool]) -> None:
    """Statements run on the database driver (storage/driver.py), which SQLAlchemy's events
    do not see: counted the same way (its observer hook)."""

    def _driver(sql: str, seconds: float) -> None:
        if on[0]:
            counts[sql.lstrip().split(" ", 1)[0].upper()] += 1

    driver.observe(_driver)


async def list_statements(url: str, tmp: Path, args: argparse.Namespace, backend: str) -> None:
    """``--list``: one payment's statements (after 10 to warm up), in order."""
    seen: list[str] = []
    on = [False]
    body = {"amount": 2000, "currency": "usd", "confirm": "true", "payment_method": "pm_card_visa"}

    def _orm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if on[0]:
            seen.append("orm     " + " ".join(sql.split()))

    def _driver(sql: str, seconds: float) -> None:
        if on[0]:
            seen.append("driver  " + " ".join(sql.split()))

    async with in_process_paymux(
        url, tmp, API_KEY, f"sandbox-{backend}.db", fraud_enabled=not args.no_fraud
    ) as (core, client):
        for engine in paymux_engines(core):
            event.listen(engine.sync_engine, "before_cursor_execute", _orm)
        stop = driver.observe(_driver)
        try:
            for i in range(11):
                on[0] = i == 10
                r = await client.post("/v1/payment_intents", data=body)
                r.raise_for_status()
        finally:
            stop()
    print(f"--- {backend}: the statements of one payment ({len(seen)}) ---")
    for line in seen:
        print(line[:160])


async def measure(url: str, tmp: Path, args: argparse.Namespace, backend: str) -> None:
    counts: collections.Counter[str] = collections.Counter()
    on = [False]
    body = {"amount": 2000, "currency": "usd", "confirm": "true", "payment_method": "pm_card_visa"}

    async def payment(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/payment_intents", data=body)
        r.raise_for_status()
        assert r.json()["status"] == "succeeded", r.text

    async with in_process_paymux(
        url, tmp, API_KEY, f"sandbox-{backend}.db", fraud_enabled=not args.no_fraud
    ) as (core, client):
        for engine in paymux_engines(core):
            _count_statements(engine, counts, on)
        _count_driver_statements(counts, on)
        for _ in range(10):
            await payment(client)
        if args.get:
            await measure_get(core, client, counts, on, args, backend)
            return
        on[0] = True
        for _ in range(COUNTED):
            await payment(client)
        on[0] = False
        start = time.process_time()
        for _ in range(args.cpu_n):
            await payment(client)
        cpu = (time.process_time() - start) / max(args.cpu_n, 1) * 1000
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.n):
            await payment(client)
        profile.disable()
    calls = cast(Any, pstats.Stats(profile)).total_calls / max(args.n, 1)
    print(
        f"{backend}: {sum(counts.values()) / COUNTED:g} statements per payment "
        f"({', '.join(f'{k} {v / COUNTED:g}' for k, v in sorted(counts.items()))}); "
        f"CPU of this process (client included) {cpu:.2f} ms per payment ({args.cpu_n}); "
        f"{calls:,.0f} Python function calls per payment (profiled, client included: "
        "a count that a loaded machine does not change)"
    )
    _print_profile(profile, args, backend, f"{args.n} payments")


async def measure_get(
    core: Any,
    client: httpx.AsyncClient,
    counts: collections.Counter[str],
    on: list[bool],
    args: argparse.Namespace,
    backend: str,
) -> None:
    """``--get``: the same figures for ``GET /v1/payment_intents/{id}`` of one intent."""
    made = await client.post("/v1/payment_intents", data={"amount": 2000, "currency": "usd"})
    made.raise_for_status()
    url = f"/v1/payment_intents/{made.json()['id']}"

    async def get() -> None:
        r = await client.get(url)
        r.raise_for_status()

    for _ in range(20):
        await get()
    on[0] = True
    for _ in range(COUNTED):
        await get()
    on[0] = False
    start = time.process_time()
    for _ in range(args.cpu_n):
        await get()
    cpu = (time.process_time() - start) / max(args.cpu_n, 1) * 1000
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.get):
        await get()
    profile.disable()
    calls = cast(Any, pstats.Stats(profile)).total_calls / max(args.get, 1)
    print(
        f"{backend}: GET one intent: {sum(counts.values()) / COUNTED:g} statements per request; CPU of "
        f"this process (client included) {cpu:.3f} ms per request ({args.cpu_n}); "
        f"{calls:,.0f} Python function calls per request (profiled, client included)"
    )
    _print_profile(profile, args, f"{backend}-get", f"{args.get} GETs")


async def measure_bridge(url: str) -> None:
    """``--bridge``: one transaction of ``_BRIDGE_K`` Core INSERTs on paymux's ``Database``."""
    metadata = MetaData()
    probe = Table("bridge_probe", metadata, Column("id", String, primary_key=True))
    statement = insert(probe)
    db = Database(url)
    async with db.writer.begin() as conn:
        await conn.run_sync(metadata.create_all)
    ids = itertools.count()

    def rows() -> list[dict[str, str]]:
        return [{"id": f"r{next(ids)}"} for _ in range(_BRIDGE_K)]

    async def session_each() -> None:
        async with db.write() as s:
            for row in rows():
                await s.execute(statement, row)

    async def session_one_greenlet() -> None:
        async with db.write() as s:
            batch = rows()
            await s.run_sync(lambda sync: [sync.execute(statement, row) for row in batch])

    async def connection_each() -> None:
        async with db.writer.begin() as conn:
            for row in rows():
                await conn.execute(statement, row)

    async def connection_one_greenlet() -> None:
        async with db.writer.begin() as conn:
            batch = rows()
            await conn.run_sync(lambda sync: [sync.execute(statement, row) for row in batch])

    ways = {
        "AsyncSession, await per statement": session_each,
        "AsyncSession.run_sync, one greenlet": session_one_greenlet,
        "AsyncConnection, await per statement": connection_each,
        "AsyncConnection.run_sync, one greenlet": connection_one_greenlet,
    }
    for name, way in ways.items():
        for _ in range(50):
            await way()
        start = time.process_time()
        for _ in range(500):
            await way()
        cpu = (time.process_time() - start) / 500 * 1000
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100):
            await way()
        profile.disable()
        calls = cast(Any, pstats.Stats(profile)).total_calls / 100
        print(f"  {name:40s} {calls:6,.0f} calls, {cpu:.3f} ms CPU per transaction")
    await db.dispose()


def _print_profile(
    profile: cProfile.Profile, args: argparse.Namespace, name: str, what: str
) -> None:
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(args.save) / f"payment-{name}.pstats"))
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        text = out.getvalue()
        print(f"--- {name}, {what}, by {order} ---")
        print(text[text.find("   ncalls") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--cpu-n", type=int, default=200)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-fraud", action="store_true", help="PAYMUX_FRAUD_ENABLED=false")
    parser.add_argument("--save", help="a directory for the .pstats files")
    parser.add_argument("--bridge", action="store_true", help="the asyncio bridge's cost")
    parser.add_argument("--get", type=int, default=0, help="profile N GETs of one intent")
    parser.add_argument("--list", action="store_true", help="one payment's statements, in order")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with databases(backends, prefix="paymux-profile-") as dbs:
        for backend in backends:
            url = dbs.url(backend, "profile")
            if args.bridge:
                print(f"{backend}: a transaction of {_BRIDGE_K} INSERTs")
                asyncio.run(measure_bridge(url))
                continue
            upgrade(url)
            if args.list:
                asyncio.run(list_statements(url, dbs.tmp, args, backend))
                continue
            asyncio.run(measure(url, dbs.tmp, args, backend))


if __name__ == "__main__":
    main()
