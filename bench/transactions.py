"""What a PostgreSQL transaction of ``Database.write()`` costs this process (issue 10).

A payment makes two write transactions (the create's, the settle's). For one transaction of
one driver statement (``SELECT $1``, storage/driver.py) this prints this process's CPU and the
wall time per transaction, for:

* ``lean``: ``Database.write()`` as paymux runs it (storage/db.py ``_LeanSession``: the pooled
  connection checked out with its BEGIN as the ping, the statement, COMMIT, check-in);
* ``orm``: the same block made an ORM session at its start (``s.info`` touched: SQLAlchemy's
  session, its transaction and connection objects, as every transaction paid before);
* ``pool+asyncpg``: the pool's checkout (pinged), asyncpg's own transaction, the statement,
  the check-in: the floor with this pool;
* ``asyncpg``: asyncpg's transaction on one connection held throughout (no pool at all).

Each in turn, ``--rounds`` times ``--n`` transactions, on a throwaway PostgreSQL cluster, on
the event loop ``paymux serve`` runs on (uvloop where it can be imported). Figures are
printed, never asserted.

    .venv/bin/python bench/transactions.py [--n 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from sqlalchemy.util import greenlet_spawn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import databases, loadavg

from paymux.cli import _event_loop_and_parser
from paymux.storage import driver
from paymux.storage.db import Database

_ONE = driver.Statement("SELECT CAST(:a AS integer)")


async def measure(url: str, n: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    db = Database(url)
    plain = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))

    async def lean() -> None:
        async with db.write() as s:
            await driver.fetchrow(s, _ONE, {"a": 1})

    async def orm() -> None:
        async with db.write() as s:
            s.info["orm"] = True  # made an ORM session here
            await driver.fetchrow(s, _ONE, {"a": 1})

    async def pool_asyncpg() -> None:
        pooled = await db.writer.raw_connection()
        try:
            connection = pooled.driver_connection
            async with connection.transaction():
                await connection.fetchrow("SELECT CAST($1 AS integer)", 1)
        finally:
            await greenlet_spawn(pooled.close)  # the check-in, as storage/db.py makes it

    async def bare() -> None:
        async with plain.transaction():
            await plain.fetchrow("SELECT CAST($1 AS integer)", 1)

    kinds: dict[str, Callable[[], Awaitable[None]]] = {
        "lean": lean,
        "orm": orm,
        "pool+asyncpg": pool_asyncpg,
        "asyncpg": bare,
    }
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
    try:
        for run in kinds.values():  # warm: connections opened, statements prepared
            for _ in range(200):
                await run()
        for _ in range(rounds):
            for name, run in kinds.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(n):
                    await run()
                figures[name].append(
                    (
                        (time.process_time() - cpu) / n * 1e6,
                        (time.perf_counter() - wall) / n * 1e6,
                    )
                )
    finally:
        await plain.close()
        await db.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="transactions per round and kind")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    loop, _ = _event_loop_and_parser()
    with databases(["postgres"], prefix="paymux-tx-") as dbs:
        url = dbs.url("postgres", "transactions")
        if loop == "uvloop":
            import uvloop

            figures = uvloop.run(measure(url, args.n, args.rounds))
        else:
            figures = asyncio.run(measure(url, args.n, args.rounds))
    print(
        f"one transaction of one driver statement on PostgreSQL, {args.rounds} rounds of "
        f"{args.n}, event loop {loop}, 1-min load {loadavg():.1f}"
    )
    print("  kind            CPU us (median of rounds, each round)    wall us (median)")
    for name, rows in figures.items():
        cpus = [c for c, _ in rows]
        walls = [w for _, w in rows]
        each = " / ".join(f"{c:.0f}" for c in cpus)
        print(
            f"  {name:14s} {statistics.median(cpus):6.0f} ({each}){'':10s}"
            f"{statistics.median(walls):6.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
