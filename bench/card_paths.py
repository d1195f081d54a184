"""What a one-request payment costs by the kind of card it names (issue 10).

A payment is ``POST /v1/payment_intents`` with ``confirm=true``. Its payment method is one of:

* ``shared``: the sandbox's shared test token ``pm_card_visa`` (each use a payment method of
  its own; what bench/payments.py sends by default);
* ``new``: a token the sandbox's card form just made (``POST /sandbox/v1/tokens``) and
  nobody used yet: a one-off checkout's card, recorded and claimed for the account by this
  payment;
* ``saved``: a token the account used before (its payment method found by the look-up).

For each backend this migrates a fresh database, runs paymux in this process (the ASGI app
over httpx's ASGI transport, no worker, the built-in sandbox gateway at zero latency), warms up
each kind, then prints, per kind: the statements and transactions (BEGIN) of one payment as
paymux sends them to its database (the sandbox's own SQLite file not counted), and this
process's CPU per payment over ``--n`` payments, one at a time (the httpx client's work
included, the database server's not: comparable with itself, not with a server under load).
The tokens are made before the timed part.

    .venv/bin/python bench/card_paths.py [--backends sqlite,postgres] [--n 300] [--show]

``--show`` prints one payment's statements per kind (SQL only, never parameters). Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import databases, in_process_paymux, paymux_engines
from payments import card_numbers
from statements import API_KEY, Counter, kind

from paymux.storage import driver
from paymux.storage.migrate import upgrade

KINDS = ("shared", "new", "saved")


async def measure(url: str, tmp: Path, n: int, show: bool) -> None:
    counter = Counter()
    async with in_process_paymux(url, tmp, API_KEY, "sandbox.db") as (core, client):
        for engine in paymux_engines(core):
            counter.attach(engine)
        stop_observing = driver.observe(counter.driver_statement)
        stop_boundaries = driver.observe_transactions(counter.boundary)

        async def tokenize(number: str) -> str:
            r = await client.post(
                "/sandbox/v1/tokens",
                json={"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
            )
            r.raise_for_status()
            return str(r.json()["id"])

        async def pay(client: httpx.AsyncClient, payment_method: str) -> None:
            r = await client.post(
                "/v1/payment_intents",
                json={
                    "amount": 2000,
                    "currency": "usd",
                    "confirm": True,
                    "payment_method": payment_method,
                },
            )
            r.raise_for_status()
            assert r.json()["status"] == "succeeded", r.text

        warm = 10
        # warm-up, the one counted, the timed ones, and the saved one
        new_cards = [await tokenize(number) for number in card_numbers(warm + 1 + n + 1)]
        saved = new_cards.pop()
        await pay(client, saved)  # used once: the account's from now on
        sources: dict[str, Callable[[], str]] = {
            "shared": lambda: "pm_card_visa",
            "new": new_cards.pop,
            "saved": lambda: saved,
        }
        for name in KINDS:
            for _ in range(warm):
                await pay(client, sources[name]())
        for name in KINDS:
            counter.log, counter.on = [], True
            await pay(client, sources[name]())
            counter.on = False
            one = counter.log
            start = time.process_time()
            for _ in range(n):
                await pay(client, sources[name]())
            cpu = (time.process_time() - start) / n * 1000
            begins = sum(kind(sql) == "BEGIN" for sql in one)
            print(
                f"  {name:<6}  {len(one):>3} statements, {begins} transactions; "
                f"CPU of this process {cpu:.2f} ms per payment"
            )
            if show:
                for sql in one:
                    print("      " + (sql if len(sql) < 140 else sql[:137] + "..."))
        stop_observing()
        stop_boundaries()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=300, help="payments timed per kind (300)")
    parser.add_argument("--show", action="store_true", help="print one payment's statements")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    with databases(backends) as dbs:
        for backend in backends:
            url = dbs.url(backend, "card_paths")
            upgrade(url)
            print(f"{backend} ({dbs.version(backend, url)}):")
            asyncio.run(measure(url, dbs.tmp, args.n, args.show))


if __name__ == "__main__":
    main()
