"""The webhook promise under crashes, concurrency and a database outage: never lose an event,
never apply one twice. Real processes throughout: ``paymux serve`` (API only) takes the
deliveries, ``paymux worker`` subprocesses apply them.

1. kill -9 of the worker in the middle of a batch (SQLite and PostgreSQL): 200 3-D Secure
   payments wait in requires_action (one made through the API, the others copies of its
   row), their completion events are stored, a worker is killed
   with some applied; the jobs it held keep their lease (a restarted worker leaves them
   alone) until it runs out, then they are applied. The end state equals that of an
   undisturbed worker on a copy of the same database taken before the first worker started.
2. Two workers on PostgreSQL drain 1,000 events started at the same instant: every job
   runs exactly once (attempts == 1), the SKIP LOCKED claim at work; the drain rate is
   printed.
3. 50 events each delivered 5 times at once, with a worker applying while the copies
   arrive: one inbox row, one job and one application per event.
4. PostgreSQL stops under a live server while deliveries stream in: every answer while it
   is down is a 503 (never a 2xx, never a dropped connection); a worker started during the
   outage survives it; after the restart the refused events are redelivered and the inbox
   holds each event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from test_crash_recovery import PAYMUX, Serve, query, wait_until

from conftest import migrated_database_url
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.domain.ids import new_id
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import PaymentIntent
from support.keys import random_token
from support.pgcluster import _SERVER_SETTINGS, HOST, PgCluster, postgres_available

THREE_DS = "pm_card_threeDSecure2Required"
LEASE_US = 60 * 1_000_000  # the worker's claim lease (jobs.queue.claim's default)
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


# -- processes ---------------------------------------------------------------------------------
def paymux_env(tmp: Path, db_url: str, **env: str) -> dict[str, str]:
    """The environment of a paymux subprocess: only PAYMUX_* variables configure it."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAYMUX_", "STRIPE_")) and "proxy" not in k.lower()
    }
    base.update(
        NO_PROXY="127.0.0.1,localhost",
        PAYMUX_DATABASE_URL=db_url,
        PAYMUX_SANDBOX_DB=str(tmp / "sandbox.db"),
        PAYMUX_WORKER_POLL_INTERVAL="0.05",
        PAYMUX_LOG_JSON="false",
        PAYMUX_LOG_LEVEL="WARNING",
    )
    base.update(env)
    return base


class WorkerProcess:
    """``paymux worker`` in a subprocess."""

    def __init__(self, tmp: Path, db_url: str, name: str, **env: str) -> None:
        self.log = tmp / f"worker-{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(PAYMUX), "worker"],
                env=paymux_env(tmp, db_url, **env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def held_by(locked_by: str | None, pid: int) -> bool:
    """Worker ids are host:pid:object."""
    return locked_by is not None and locked_by.split(":")[1] == str(pid)


# -- the database --------------------------------------------------------------------------------
def execute(url: str, statement: str, **params: Any) -> int:
    async def run() -> int:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as s:
                return int((await s.execute(text(statement), params)).rowcount or 0)
        finally:
            await db.dispose()

    return asyncio.run(run())


def scalar(url: str, statement: str, **params: Any) -> Any:
    return query(url, statement, **params)[0][0]


def clone_database(url: str, tmp: Path, pg: PgCluster | None, name: str) -> str:
    """A copy of the whole database (nobody may be connected to it)."""
    source = make_url(url).database
    assert source is not None
    if url.startswith("sqlite"):
        target = tmp / f"{name}.db"
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return f"sqlite+aiosqlite:///{target}"
    assert pg is not None

    async def create() -> None:
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f'create database "{name}" template "{source}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return pg.url(name)


def apply_jobs(url: str) -> dict[str, tuple[int, str, int, str | None, int | None]]:
    """apply_webhook jobs by inbox id: (job id, status, attempts, locked_by, locked_until_us)."""
    rows = query(
        url,
        "select id, payload, status, attempts, locked_by, locked_until_us from jobs "
        "where kind = 'apply_webhook'",
    )
    jobs: dict[str, tuple[int, str, int, str | None, int | None]] = {}
    for job_id, payload, status, attempts, locked_by, until in rows:
        data = json.loads(payload) if isinstance(payload, str) else payload
        inbox_id = str(data["inbox_id"])
        assert inbox_id not in jobs, f"two apply_webhook jobs for {inbox_id}"
        jobs[inbox_id] = (int(job_id), str(status), int(attempts), locked_by, until)
    return jobs


def inbox(url: str) -> dict[str, tuple[str, str, int | None, str | None]]:
    """Inbox rows by provider event id: (inbox id, status, applied_us, error)."""
    rows = query(url, "select event_id, id, status, applied_us, error from webhook_inbox")
    found = Counter(r[0] for r in rows)
    assert all(n == 1 for n in found.values()), f"an event stored twice: {found.most_common(3)}"
    return {str(r[0]): (str(r[1]), str(r[2]), r[3], r[4]) for r in rows}


def outcomes(url: str, pi_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Per intent: status, amount, amount_received, amount_capturable, its events by type."""
    types: dict[str, Counter[str]] = {pi: Counter() for pi in pi_ids}
    for object_id, event_type in query(url, "select object_id, type from events"):
        if object_id in types:
            types[object_id][event_type] += 1
    rows = query(
        url,
        "select id, status, amount, amount_received, amount_capturable from payment_intents",
    )
    return {r[0]: (*r[1:], tuple(sorted(types[r[0]].items()))) for r in rows if r[0] in types}


def applied_and_running(url: str) -> tuple[int, int]:
    row = query(
        url,
        "select (select count(*) from webhook_inbox where status = 'applied'), "
        "(select count(*) from jobs where kind = 'apply_webhook' and status = 'running')",
    )[0]
    return int(row[0]), int(row[1])


def wait_drained(url: str, count: int, timeout: float, worker: WorkerProcess | None = None) -> None:
    """Until ``count`` inbox rows are applied and no apply_webhook job is queued or running."""

    def drained() -> bool:
        if worker is not None and not worker.alive():
            raise AssertionError(f"the worker exited:\n{worker.output()}")
        applied = scalar(url, "select count(*) from webhook_inbox where status = 'applied'")
        pending = scalar(
            url,
            "select count(*) from jobs where kind = 'apply_webhook' "
            "and status in ('queued', 'running')",
        )
        return bool(applied == count and pending == 0)

    wait_until(f"{count} events applied", drained, timeout=timeout)


# -- the provider's side ---------------------------------------------------------------------------
def sandbox_secret(tmp: Path) -> str:
    processor = SandboxProcessor(str(tmp / "sandbox.db"))
    try:
        return processor.webhook_secret()
    finally:
        processor.close()


def approve_3ds(tmp: Path, charge_ids: list[str]) -> list[dict[str, Any]]:
    """The payers pass their challenges at the sandbox: the charges, now succeeded."""
    processor = SandboxProcessor(str(tmp / "sandbox.db"))
    try:
        charges = [processor.complete_3ds(charge_id, True) for charge_id in charge_ids]
    finally:
        processor.close()
    assert all(c["status"] == "succeeded" for c in charges)
    return charges


def charge_event(charge: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{charge['id']}",
        "object": "event",
        "type": "charge.updated",
        "created": int(time.time()),
        "data": {"object": charge},
    }


def deliver(client: httpx.Client, base: str, event: dict[str, Any], secret: str) -> httpx.Response:
    """One delivery, signed now (as a provider signs each attempt)."""
    body = json.dumps(event).encode()
    return client.post(
        f"{base}/webhooks/sandbox",
        content=body,
        headers={
            "paymux-sandbox-signature": sign_header(body, secret),
            "content-type": "application/json",
        },
    )


def deliver_all(
    base: str, events: list[dict[str, Any]], secret: str, threads: int = 4
) -> list[httpx.Response]:
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(event: dict[str, Any]) -> httpx.Response:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
            clients.append(local.client)
        return deliver(local.client, base, event, secret)

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, events))
    finally:
        for client in clients:
            client.close()


def create_3ds_intents(server: Serve, amounts: list[int], threads: int = 3) -> list[dict[str, Any]]:
    headers = dict(server.http.headers)

    def one(amount: int) -> dict[str, Any]:
        r = httpx.post(
            f"{server.url}/v1/payment_intents",
            json={"amount": amount, "currency": "usd", "confirm": True, "payment_method": THREE_DS},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        pi: dict[str, Any] = r.json()
        assert pi["status"] == "requires_action", pi
        return pi

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, amounts))


def waiting_intents(
    server: Serve, tmp: Path, url: str, count: int, first_amount: int
) -> tuple[list[tuple[str, int, str]], list[dict[str, Any]]]:
    """``count`` intents waiting in requires_action and the completion event of each, not
    delivered: one made through the API (3-D Secure) and passed at the sandbox, then
    ``count - 1`` copies of its row (clone_intents), each event that charge's with the copy's
    id, reference and amount. Making them all over HTTP takes ~50-90 ms each, too slow here.
    Returns (intent id, amount, charge id) per intent, and the events in the same order."""
    [template] = create_3ds_intents(server, [first_amount])
    [charge] = approve_3ds(tmp, [template["gateway_reference"]])
    intents = [(str(template["id"]), first_amount, str(charge["id"]))]
    intents += clone_intents(url, template["id"], count - 1)
    events = [
        charge_event(
            dict(
                charge,
                id=charge_id,
                reference=pi_id,
                amount=amount,
                amount_authorized=amount,
                amount_captured=amount,
            )
        )
        for pi_id, amount, charge_id in intents
    ]
    return intents, events


@dataclass
class Prepared:
    tmp: Path
    url: str
    intents: list[tuple[str, int, str]]
    events: list[dict[str, Any]]


def prepare(tmp: Path, url: str, n: int) -> Prepared:
    """n intents in requires_action and their completion events stored, none applied yet."""
    server = Serve(tmp, url, "sk_test_" + secrets.token_hex(16), PAYMUX_RUN_WORKER="false")
    try:
        intents, events = waiting_intents(server, tmp, url, n, 1000)
        answers = deliver_all(server.url, events, sandbox_secret(tmp))
        assert [a.status_code for a in answers] == [200] * n, answers[0].text
        assert not any(a.json()["duplicate"] for a in answers)
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()
    return Prepared(tmp, url, intents, events)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", POSTGRES])
def backend(request: pytest.FixtureRequest) -> str:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    return str(request.param)


def fresh_database(backend: str, tmp: Path, pg: PgCluster | None, prefix: str) -> str:
    url = migrated_database_url(backend, tmp, pg, f"{prefix}_{uuid.uuid4().hex[:10]}")
    return url


# -- 1. kill -9 in the middle of a batch ------------------------------------------------------------
N_CRASH = 200


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = fresh_database(backend, tmp_path, pg_cluster, "wh_crash")
    began = time.monotonic()
    prepared = prepare(tmp_path, url, N_CRASH)
    pi_ids = [pi_id for pi_id, _, _ in prepared.intents]
    stored = inbox(url)
    assert {s for _, s, _, _ in stored.values()} == {"received"} and len(stored) == N_CRASH
    jobs = apply_jobs(url)
    assert {j[1] for j in jobs.values()} == {"queued"} and len(jobs) == N_CRASH
    # The undisturbed run gets the very same intents, inbox and jobs.
    calm_url = clone_database(url, tmp_path, pg_cluster, f"wh_calm_{uuid.uuid4().hex[:10]}")
    print(f"\n[{backend}] {N_CRASH} intents and events prepared in {time.monotonic() - began:.1f}s")

    first = WorkerProcess(tmp_path, url, "first")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert first.alive(), first.output()
            applied, running = applied_and_running(url)
            # Early in a batch (of 20): the kill lands while the worker still holds jobs.
            if applied >= N_CRASH // 5 and running >= 5:
                break
            assert applied < N_CRASH, "the worker finished before it could be killed"
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.005)
        first.kill9()
    finally:
        first.stop()
    applied_at_kill = {e for e, (_, s, _, _) in inbox(url).items() if s == "applied"}
    jobs = apply_jobs(url)
    held = {inbox_id for inbox_id, j in jobs.items() if j[1] == "running"}
    assert 0 < len(applied_at_kill) < N_CRASH
    assert held and all(held_by(jobs[i][3], first.pid) for i in held)
    event_of = {inbox_id: event_id for event_id, (inbox_id, _, _, _) in inbox(url).items()}
    held_applied = {i for i in held if event_of[i] in applied_at_kill}
    print(
        f"[{backend}] killed with {len(applied_at_kill)}/{N_CRASH} applied; it held "
        f"{len(held)} jobs ({len(held_applied)} of them applied but not yet marked done)"
    )

    second = WorkerProcess(tmp_path, url, "second")
    try:
        # Everything but the dead worker's jobs is applied; those wait for their lease.
        others = N_CRASH - len(held) + len(held_applied)
        wait_until(
            "the jobs the dead worker did not hold to be applied",
            lambda: applied_and_running(url) == (others, len(held)),
            timeout=60,
        )
        time.sleep(0.3)
        jobs = apply_jobs(url)
        assert {i for i, j in jobs.items() if j[1] == "running"} == held
        assert all(held_by(jobs[i][3], first.pid) and jobs[i][2] == 1 for i in held)
        assert applied_and_running(url) == (others, len(held))
        # The lease runs out (as 60 s later): the second worker takes those jobs over.
        moved = execute(
            url,
            "update jobs set locked_until_us = locked_until_us - :lease "
            "where kind = 'apply_webhook' and status = 'running'",
            lease=LEASE_US,
        )
        assert moved == len(held)
        wait_drained(url, N_CRASH, timeout=60, worker=second)
    except BaseException:
        print(second.output())
        raise
    finally:
        second.stop()

    calm = WorkerProcess(tmp_path, calm_url, "calm")
    started = time.monotonic()
    try:
        wait_drained(calm_url, N_CRASH, timeout=60, worker=calm)
        calm_drain = time.monotonic() - started
    except BaseException:
        print(calm.output())
        raise
    finally:
        calm.stop()

    # Every intent succeeded once, with the amount the gateway captured.
    crashed = outcomes(url, pi_ids)
    for pi_id, amount, _ in prepared.intents:
        status, stored_amount, received, capturable, events = crashed[pi_id]
        assert (status, stored_amount, received, capturable) == ("succeeded", amount, amount, 0)
        assert dict(events)["payment_intent.succeeded"] == 1, (pi_id, events)
    # Every event stored once and applied; every job done; only the held ones ran twice.
    final = inbox(url)
    assert set(final) == {e["id"] for e in prepared.events}
    assert all(
        s == "applied" and at is not None and err is None for _, s, at, err in final.values()
    )
    jobs = apply_jobs(url)
    assert set(jobs) == {inbox_id for inbox_id, _, _, _ in final.values()}
    assert {j[1] for j in jobs.values()} == {"done"}
    assert {i for i, j in jobs.items() if j[2] == 2} == held
    assert {j[2] for i, j in jobs.items() if i not in held} == {1}
    # ... and it all ends exactly as the undisturbed run on the copy did.
    assert crashed == outcomes(calm_url, pi_ids)
    assert {e: s for e, (_, s, _, _) in final.items()} == {
        e: s for e, (_, s, _, _) in inbox(calm_url).items()
    }
    assert {j[2] for j in apply_jobs(calm_url).values()} == {1}
    print(
        f"[{backend}] one undisturbed worker applied {N_CRASH} in {calm_drain:.1f}s "
        f"({N_CRASH / calm_drain:.0f} events/s, process start included); "
        f"whole test {time.monotonic() - began:.1f}s"
    )


# -- 2. two workers, one PostgreSQL database, 1,000 events ---------------------------------------------
N_DRAIN = 1000


def clone_intents(url: str, template_id: str, count: int) -> list[tuple[str, int, str]]:
    """``count`` copies of a requires_action intent, each with its own charge reference, as
    plain rows (the same columns the API wrote for the template): (id, amount, charge id)."""
    table = PaymentIntent.__table__

    async def run() -> list[tuple[str, int, str]]:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as s:
                result = await s.execute(table.select().where(table.c.id == template_id))
                template = dict(result.mappings().one())
                assert template["status"] == "requires_action"
                made, rows = [], []
                for i in range(count):
                    pi_id, amount = new_id("pi"), 2000 + i
                    charge_id = random_token("ch_sbx_", 20)
                    rows.append(
                        dict(
                            template,
                            id=pi_id,
                            amount=amount,
                            gateway_reference=charge_id,
                            next_action=dict(template["next_action"]),
                        )
                    )
                    made.append((pi_id, amount, charge_id))
                await s.execute(insert(table), rows)
                return made
        finally:
            await db.dispose()

    return asyncio.run(run())


async def start_together(
    dsn: str, start: Callable[[], list[WorkerProcess]]
) -> tuple[list[WorkerProcess], float]:
    """Start workers behind a lock on the jobs table; release it once all of them wait on it,
    so their first claims race. Returns the workers and the moment of the release."""
    gate = await asyncpg.connect(dsn)
    try:
        async with gate.transaction():
            await gate.execute("lock table jobs in access exclusive mode")
            workers = start()
            deadline = time.monotonic() + 60
            while True:
                waiting = await gate.fetchval(
                    "select count(distinct pid) from pg_locks "
                    "where relation = 'jobs'::regclass and not granted"
                )
                if waiting >= len(workers):
                    break
                for w in workers:
                    assert w.alive(), w.output()
                assert time.monotonic() < deadline, "the workers never reached the jobs table"
                await asyncio.sleep(0.01)
        return workers, time.monotonic()
    finally:
        await gate.close()


async def watch_drain(
    dsn: str, count: int, workers: list[WorkerProcess], within: float = 120
) -> tuple[float, set[str]]:
    """Poll until ``count`` events are applied and no apply job is pending; returns the moment
    the last one was applied and every worker id seen holding a job meanwhile."""
    conn = await asyncpg.connect(dsn)
    holders: set[str] = set()
    applied_at: float | None = None
    deadline = time.monotonic() + within
    try:
        while True:
            for w in workers:
                assert w.alive(), w.output()
            rows = await conn.fetch(
                "select distinct locked_by from jobs where kind = 'apply_webhook' "
                "and status = 'running'"
            )
            holders.update(str(r[0]) for r in rows)
            applied = await conn.fetchval(
                "select count(*) from webhook_inbox where status = 'applied'"
            )
            if applied == count and applied_at is None:
                applied_at = time.monotonic()
            pending = await conn.fetchval(
                "select count(*) from jobs where kind = 'apply_webhook' "
                "and status in ('queued', 'running')"
            )
            if applied_at is not None and pending == 0:
                return applied_at, holders
            assert time.monotonic() < deadline, f"{applied}/{count} applied, {pending} pending"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_started_together_drain_1000_events_each_job_runs_once(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    url = fresh_database("postgres", tmp_path, pg_cluster, "wh_drain")
    assert pg_cluster is not None
    dsn = pg_cluster.dsn(str(make_url(url).database))
    began = time.monotonic()
    # One intent made through the API (3-D Secure, waiting in requires_action), 999 copies of
    # its row: making 1,000 over HTTP takes ~50-90 ms each, too slow here.
    server = Serve(tmp_path, url, "sk_test_" + secrets.token_hex(16), PAYMUX_RUN_WORKER="false")
    try:
        intents, events = waiting_intents(server, tmp_path, url, N_DRAIN, 1999)
        posting = time.monotonic()
        answers = deliver_all(server.url, events, sandbox_secret(tmp_path))
        posted = time.monotonic() - posting
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * N_DRAIN
    assert not any(a.json()["duplicate"] for a in answers)
    assert applied_and_running(url) == (0, 0)
    assert len(apply_jobs(url)) == N_DRAIN

    def start() -> list[WorkerProcess]:
        return [WorkerProcess(tmp_path, url, name) for name in ("one", "two")]

    workers: list[WorkerProcess] = []
    try:
        workers, released = asyncio.run(start_together(dsn, start))
        applied_at, holders = asyncio.run(watch_drain(dsn, N_DRAIN, workers))
    except BaseException:
        for w in workers:
            print(w.output())
        raise
    finally:
        for w in workers:
            w.stop()
    drain = applied_at - released

    # Both workers took jobs, and no job was claimed twice: the SKIP LOCKED claim.
    assert {int(h.split(":")[1]) for h in holders} == {w.pid for w in workers}
    jobs = apply_jobs(url)
    assert len(jobs) == N_DRAIN
    assert Counter((j[1], j[2]) for j in jobs.values()) == {("done", 1): N_DRAIN}
    stored = inbox(url)
    assert set(stored) == {e["id"] for e in events}
    assert {s for _, s, _, _ in stored.values()} == {"applied"}
    final = outcomes(url, [pi_id for pi_id, _, _ in intents])
    for pi_id, amount, _ in intents:
        status, _, received, capturable, types = final[pi_id]
        assert (status, received, capturable) == ("succeeded", amount, 0), pi_id
        assert dict(types).get("payment_intent.succeeded") == 1, (pi_id, types)
    assert (
        scalar(url, "select count(*) from events where type = 'payment_intent.succeeded'")
        == N_DRAIN
    )
    print(
        f"\n[postgres] {N_DRAIN} deliveries in {posted:.1f}s ({N_DRAIN / posted:.0f}/s, 4 "
        f"threads); two workers drained them in {drain:.2f}s ({N_DRAIN / drain:.0f} events/s); "
        f"whole test {time.monotonic() - began:.1f}s"
    )


# -- 3. the same events delivered five times at once ------------------------------------------------
N_EVENTS, COPIES = 50, 5


@pytest.mark.slow
def test_50_events_each_delivered_5_times_at_once_are_stored_and_applied_once(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = fresh_database(backend, tmp_path, pg_cluster, "wh_dups")
    # The server's own worker applies the first copies while the others still arrive.
    server = Serve(tmp_path, url, "sk_test_" + secrets.token_hex(16))
    try:
        intents = create_3ds_intents(server, [3000 + i for i in range(N_EVENTS)])
        charges = approve_3ds(tmp_path, [pi["gateway_reference"] for pi in intents])
        events = [charge_event(c) for c in charges]
        secret = sandbox_secret(tmp_path)
        barriers = [threading.Barrier(COPIES) for _ in events]
        local = threading.local()
        clients: list[httpx.Client] = []

        def copy(index: int) -> tuple[str, int, bool | None]:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=30)
                clients.append(local.client)
            event = events[index]
            barriers[index].wait(timeout=30)  # the five copies leave together
            r = deliver(local.client, server.url, event, secret)
            return event["id"], r.status_code, r.json().get("duplicate")

        order = [i for i in range(N_EVENTS) for _ in range(COPIES)]
        try:
            with ThreadPoolExecutor(COPIES * 5) as pool:
                answers = list(pool.map(copy, order))
        finally:
            for client in clients:
                client.close()
        assert Counter(status for _, status, _ in answers) == {200: N_EVENTS * COPIES}
        firsts = Counter(event_id for event_id, _, duplicate in answers if duplicate is False)
        assert firsts == {e["id"]: 1 for e in events}  # one copy stored, four acknowledged
        wait_drained(url, N_EVENTS, timeout=60)
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()
    stored = inbox(url)
    assert set(stored) == {e["id"] for e in events}
    jobs = apply_jobs(url)  # one job per stored event, never one per delivery
    assert set(jobs) == {inbox_id for inbox_id, _, _, _ in stored.values()}
    assert Counter(j[1] for j in jobs.values()) == {"done": N_EVENTS}
    final = outcomes(url, [pi["id"] for pi in intents])
    for pi in intents:
        status, amount, received, _, types = final[pi["id"]]
        assert (status, received) == ("succeeded", amount)
        assert dict(types)["payment_intent.succeeded"] == 1, (pi["id"], types)


# -- 4. PostgreSQL goes away under a live server -----------------------------------------------------
class StoppablePgCluster(PgCluster):
    """A private cluster that can be stopped and started again on its data dir and port."""

    def halt(self) -> None:
        self._run(
            self._server_cmd("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"),
            "pg_ctl stop",
            timeout=60,
        )

    def resume(self) -> None:
        port, tmpdir = self._require_port(), self._require_tmpdir()
        options = " ".join((f"-h {HOST}", f"-p {port}", f"-k {tmpdir}", *_SERVER_SETTINGS))
        self._run(
            self._server_cmd(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ),
            "pg_ctl start",
        )


@pytest.fixture
def private_pg(pg_cluster: PgCluster | None) -> Iterator[StoppablePgCluster]:
    if pg_cluster is None:  # the session fixture already decided PostgreSQL is unavailable
        pytest.skip(postgres_available() or "PostgreSQL tests are switched off")
    cluster = StoppablePgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Answer:
    event_id: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer at all
    body: str
    retry_after: str | None = None


N_STREAM = 400


@pytest.mark.slow
@pytest.mark.postgres
def test_deliveries_while_postgres_is_down_are_refused_then_redelivered_none_lost_none_doubled(
    tmp_path: Path, private_pg: StoppablePgCluster
) -> None:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    began = time.monotonic()
    url = private_pg.create_database("paymux_outage")
    upgrade(url)
    server = Serve(tmp_path, url, "sk_test_" + secrets.token_hex(16), PAYMUX_RUN_WORKER="false")
    worker: WorkerProcess | None = None
    sent: list[dict[str, Any]] = []
    try:
        intents, events = waiting_intents(server, tmp_path, url, N_STREAM, 4999)
        secret = sandbox_secret(tmp_path)

        # A provider delivering steadily; PostgreSQL stops and starts again underneath.
        answers: list[Answer] = []
        enough = threading.Event()

        def stream() -> None:
            with httpx.Client(timeout=30) as client:
                for event in events:
                    if enough.is_set():
                        return
                    sent = time.monotonic()
                    try:
                        r = deliver(client, server.url, event, secret)
                        answer = Answer(
                            event["id"],
                            sent,
                            time.monotonic(),
                            r.status_code,
                            r.text,
                            r.headers.get("retry-after"),
                        )
                    except httpx.TransportError as exc:
                        answer = Answer(event["id"], sent, time.monotonic(), None, repr(exc))
                    answers.append(answer)
                    time.sleep(0.02)

        def count(check: Callable[[Answer], bool]) -> int:
            return sum(1 for a in list(answers) if check(a))

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        wait_until("deliveries before the outage", lambda: count(lambda a: True) >= 10)
        halting = time.monotonic()
        private_pg.halt()
        down = time.monotonic()
        # A worker (re)started during the outage must ride it out.
        worker = WorkerProcess(tmp_path, url, "outage")
        outage_worker = worker
        wait_until(
            "the worker to run into the outage",
            lambda: "worker loop error" in outage_worker.output(tail=10**9),
            timeout=30,
        )
        wait_until(
            "deliveries during the outage", lambda: count(lambda a: a.sent > down) >= 15, timeout=30
        )
        resuming = time.monotonic()
        private_pg.resume()
        up = time.monotonic()
        wait_until(
            "deliveries after the restart", lambda: count(lambda a: a.sent > up) >= 15, timeout=30
        )
        enough.set()
        streamer.join(timeout=30)
        assert not streamer.is_alive()
        assert len(answers) < N_STREAM, "the stream ran out before the scenario ended"

        # Every delivery got an answer: 200 while the database is up, 503 + Retry-After
        # while it is down, never a 2xx for an event that was not stored, never a reset.
        assert all(a.status in (200, 503) for a in answers), "\n".join(
            str(x) for x in [(round(a.sent - halting, 2), a.status, a.body[:300]) for a in answers]
        )
        for a in answers:
            if a.status == 503:
                assert json.loads(a.body)["error"]["code"] == "service_unavailable"
                assert a.retry_after is not None and int(a.retry_after) > 0
        before = [a for a in answers if a.answered < halting]
        during = [a for a in answers if a.sent > down and a.answered < resuming]
        after = [a for a in answers if a.sent > up]
        assert {a.status for a in before} == {200} and {a.status for a in after} == {200}
        assert len(during) >= 10 and {a.status for a in during} == {503}
        assert server.proc.poll() is None and server.http.get("/health").status_code == 200
        acked = {a.event_id for a in answers if a.status == 200}
        refused = {a.event_id for a in answers if a.status != 200}
        # Every acknowledged event is stored; nothing is stored twice.
        stored_now = set(inbox(url))
        assert acked <= stored_now <= acked | refused

        # The provider delivers again what was refused (signed again: a new attempt).
        sent += events[: len(answers)]
        assert [a.event_id for a in answers] == [e["id"] for e in sent]
        later = [e for e in sent if e["id"] in refused]
        redelivered = deliver_all(server.url, later, secret)
        assert [r.status_code for r in redelivered] == [200] * len(later)
        assert [r.json()["duplicate"] for r in redelivered] == [
            e["id"] in stored_now for e in later
        ]
        wait_drained(url, len(sent), timeout=60, worker=worker)
        print(
            f"\n[postgres] down {resuming - down:.1f}s (stop {down - halting:.2f}s, start "
            f"{up - resuming:.2f}s); {len(answers)} deliveries streamed: {len(before)} 200 "
            f"before, {len(during)} 503 while down, {len(after)} 200 after; "
            f"{sum(1 for a in answers if a.status == 503)} refused in all, "
            f"{len(later)} delivered again, all applied; "
            f"whole test {time.monotonic() - began:.1f}s"
        )
    except BaseException:
        print(server.output())
        if worker is not None:
            print(worker.output())
        raise
    finally:
        server.stop()
        if worker is not None:
            worker.stop()
    # The inbox holds every event delivered, once: none lost, none doubled; all applied once.
    stored = inbox(url)
    assert set(stored) == {e["id"] for e in sent}
    assert {s for _, s, _, _ in stored.values()} == {"applied"}
    jobs = apply_jobs(url)
    assert set(jobs) == {inbox_id for inbox_id, _, _, _ in stored.values()}
    assert Counter(j[1] for j in jobs.values()) == {"done": len(sent)}
    final = outcomes(url, [pi_id for pi_id, _, _ in intents])
    for i, (pi_id, amount, _) in enumerate(intents):
        status, _, received, _, types = final[pi_id]
        if i < len(sent):
            assert (status, received) == ("succeeded", amount)
            assert dict(types).get("payment_intent.succeeded") == 1, (pi_id, types)
        else:  # the provider never sent these
            assert (status, received) == ("requires_action", 0)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(ConnectionRefusedError(111, "Connect call failed"), 503, id="refused"),
        pytest.param(
            OperationalError("select 1", {}, Exception("server closed the connection")),
            503,
            id="operational",
        ),
        pytest.param(DBAPIError("select 1", {}, _PgError("57P03")), 503, id="starting-up"),
        pytest.param(DBAPIError("select 1", {}, _PgError("08006")), 503, id="connection-lost"),
        pytest.param(PoolTimeoutError("QueuePool limit reached"), 503, id="pool-full"),
        pytest.param(IntegrityError("insert", {}, _PgError("23505")), 500, id="integrity-bug"),
        pytest.param(DBAPIError("select 1", {}, _PgError("42P01")), 500, id="undefined-table"),
        pytest.param(ValueError("boom"), 500, id="not-the-database"),
    ],
)
def test_database_outages_are_503_with_retry_after_and_bugs_stay_500(
    tmp_path: Path, error: Exception, status: int
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        sandbox_db=str(tmp_path / "sandbox.db"),
        run_worker=False,
    )
    app = create_app(settings)

    async def fail() -> None:
        raise error

    app.add_api_route("/fail", fail)

    async def call() -> httpx.Response:  # no lifespan: no database is touched
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://paymux") as client:
            return await client.get("/fail")

    r = asyncio.run(call())
    assert r.status_code == status
    code = r.json()["error"]["code"]
    if status == 503:
        assert code == "service_unavailable" and int(r.headers["retry-after"]) > 0
    else:
        assert code == "api_error" and "retry-after" not in r.headers
