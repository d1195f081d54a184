"""Statements and transactions per payment, counted with SQLAlchemy events and
``storage.driver.observe`` (the statements sent on the driver, one per round trip).

For each backend this migrates a fresh database, runs paymux in this process (the ASGI app
over httpx's ASGI transport, no worker, the built-in sandbox gateway at zero latency), warms
up with a few payments (the first use of everything), then counts, for ``--n`` payments
(create, then confirm with ``pm_card_visa``) and ``--n`` GETs of one intent, what paymux sends
to its own database: transactions (BEGIN), statements by kind (SELECT, INSERT, UPDATE, ...),
COMMITs and ROLLBACKs. The sandbox gateway's own SQLite file is not counted.

It also prints this process's CPU per payment and per GET, one request at a time (the httpx
client's own work included, the database server's not): a steadier before/after figure on
a busy machine than a server under load, comparable only with itself (``--cpu-n`` more
payments and GETs, uncounted).

    .venv/bin/python bench/statements.py [--backends sqlite,postgres] [--n 20]
        [--idempotency-keys] [--show]

``--show`` prints the statements of one payment (SQL only, never parameters). Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import databases, in_process_paymux, paymux_engines

from paymux.storage import driver
from paymux.storage.migrate import upgrade

API_KEY = "sk_test_statements" + "0" * 16


class Counter:
    """Every statement and transaction boundary on an engine, as SQL text."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.on = False

    def attach(self, engine: Any) -> None:
        sync = engine.sync_engine
        # PostgreSQL's transactions are lean (storage/db.py ``_LeanSession``): their BEGIN and
        # COMMIT come from ``driver.observe_transactions`` (``boundary``); SQLAlchemy's
        # connection shows them too once one is made an ORM session, so not counted twice.
        lean = sync.dialect.name == "postgresql"

        @event.listens_for(sync, "begin")
        def _begin(conn: Any) -> None:
            if self.on and not lean:
                self.log.append("BEGIN")

        @event.listens_for(sync, "commit")
        def _commit(conn: Any) -> None:
            if self.on and not lean:
                self.log.append("COMMIT")

        @event.listens_for(sync, "rollback")
        def _rollback(conn: Any) -> None:
            if self.on and not lean:
                self.log.append("ROLLBACK")

        @event.listens_for(sync, "before_cursor_execute")
        def _execute(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if self.on and not sql.lstrip().upper().startswith("BEGIN"):
                self.log.append(" ".join(sql.split()))

    def boundary(self, name: str) -> None:
        """A lean transaction's BEGIN, COMMIT or ROLLBACK (``driver.observe_transactions``)."""
        if self.on:
            self.log.append(name)

    def driver_statement(self, sql: str, seconds: float) -> None:
        """A statement sent on the driver (storage.driver), past SQLAlchemy's events."""
        if self.on:
            self.log.append(" ".join(sql.split()))


def kind(sql: str) -> str:
    return sql.split(" ", 1)[0].upper()


async def measure(url: str, tmp: Path, n: int, idempotency: bool, show: bool, cpu_n: int) -> None:
    counter = Counter()
    serial = 0

    async def payment(client: httpx.AsyncClient) -> str:
        nonlocal serial
        serial += 1
        extra = {"Idempotency-Key": f"stm-{serial}-c"} if idempotency else {}
        r = await client.post(
            "/v1/payment_intents", json={"amount": 2000, "currency": "usd"}, headers=extra
        )
        r.raise_for_status()
        pi = r.json()["id"]
        extra = {"Idempotency-Key": f"stm-{serial}-f"} if idempotency else {}
        r = await client.post(
            f"/v1/payment_intents/{pi}/confirm",
            json={"payment_method": "pm_card_visa"},
            headers=extra,
        )
        r.raise_for_status()
        assert r.json()["status"] == "succeeded", r.text
        return str(pi)

    sandbox = f"sandbox-{abs(hash(url))}.db"
    async with in_process_paymux(url, tmp, API_KEY, sandbox) as (core, client):
        for engine in paymux_engines(core):
            counter.attach(engine)
        stop_observing = driver.observe(counter.driver_statement)
        stop_boundaries = driver.observe_transactions(counter.boundary)
        for _ in range(5):
            pi = await payment(client)
        counter.on = True
        for _ in range(n):
            await payment(client)
        counter.on = False
        pay_log, counter.log = counter.log, []
        counter.on = True
        for _ in range(n):
            (await client.get(f"/v1/payment_intents/{pi}")).raise_for_status()
        counter.on = False
        get_log = counter.log
        cpu_pay = cpu_get = 0.0
        if cpu_n:
            start = time.process_time()
            for _ in range(cpu_n):
                await payment(client)
            cpu_pay = (time.process_time() - start) / cpu_n * 1000
            start = time.process_time()
            for _ in range(cpu_n):
                (await client.get(f"/v1/payment_intents/{pi}")).raise_for_status()
            cpu_get = (time.process_time() - start) / cpu_n * 1000
        if show:
            counter.log, counter.on = [], True
            await payment(client)
            counter.on = False
            print("  one payment:")
            for sql in counter.log:
                print("    " + (sql if len(sql) < 140 else sql[:137] + "..."))
        stop_observing()
        stop_boundaries()
    for name, entries in (("payment (create + confirm)", pay_log), ("GET one intent", get_log)):
        kinds = collections.Counter(kind(s) for s in entries)
        total = len(entries)
        print(
            f"  {name}: {total / n:.1f} statements, {kinds['BEGIN'] / n:.1f} transactions "
            f"({', '.join(f'{k} {v / n:g}' for k, v in sorted(kinds.items()))})"
        )
    if cpu_n:
        print(
            f"  CPU of this process (client included), {cpu_n} each: {cpu_pay:.2f} ms per "
            f"payment, {cpu_get:.2f} ms per GET"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--idempotency-keys", action="store_true")
    parser.add_argument("--show", action="store_true", help="print one payment's statements")
    parser.add_argument("--cpu-n", type=int, default=300, help="payments and GETs timed (300)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with databases(backends, prefix="paymux-statements-") as dbs:
        for backend in backends:
            url = dbs.url(backend, "statements")
            upgrade(url)
            print(f"{backend}:")
            asyncio.run(
                measure(
                    url,
                    dbs.tmp,
                    args.n,
                    args.idempotency_keys,
                    args.show,
                    args.cpu_n,
                )
            )


if __name__ == "__main__":
    main()
