"""Where a payment's CPU goes: a cProfile of ``--n`` in-process payments.

For each backend this migrates a fresh database, runs paymux in this process (the ASGI app
over httpx's ASGI transport, no worker, the built-in sandbox gateway at zero latency), warms
up with a few payments, then profiles ``--n`` payments (``POST /v1/payment_intents`` with
``confirm=true`` and ``pm_card_visa``) and prints the top functions by cumulative and by own
time, the statements per payment (SQLAlchemy's events), and this process's CPU per payment
without the profiler (``--cpu-n``, client included: comparable only with itself), and the
Python function calls per payment under the profiler (a deterministic count: on a loaded
machine, where CPU time per payment varies by half, it still compares two versions).

    .venv/bin/python bench/profile_payment.py [--backends sqlite,postgres] [--n 300]
        [--top 40] [--no-fraud] [--save DIR]

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
import pstats
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import databases, in_process_paymux, paymux_engines

from paymux.storage.migrate import upgrade

API_KEY = "sk_test_profile" + "0" * 16


def _count_statements(engine: Any, counts: collections.Counter[str], on: list[bool]) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _execute(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if on[0]:
            counts[sql.lstrip().split(" ", 1)[0].upper()] += 1


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
        for _ in range(10):
            await payment(client)
        on[0] = True
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
        f"{backend}: {sum(counts.values())} statements per payment "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
        f"CPU of this process (client included) {cpu:.2f} ms per payment ({args.cpu_n}); "
        f"{calls:,.0f} Python function calls per payment (profiled, client included: "
        "a count that a loaded machine does not change)"
    )
    if args.save:
        profile.dump_stats(str(Path(args.save) / f"payment-{backend}.pstats"))
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        text = out.getvalue()
        print(f"--- {backend}, {args.n} payments, by {order} ---")
        print(text[text.find("   ncalls") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--cpu-n", type=int, default=200)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-fraud", action="store_true", help="PAYMUX_FRAUD_ENABLED=false")
    parser.add_argument("--save", help="a directory for the .pstats files")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with databases(backends, prefix="paymux-profile-") as dbs:
        for backend in backends:
            url = dbs.url(backend, "profile")
            upgrade(url)
            asyncio.run(measure(url, dbs.tmp, args, backend))


if __name__ == "__main__":
    main()
