"""Graceful shutdown and the deploy gate (issue 16), SQLite and PostgreSQL.

- ``paymux migrate --check`` exits 1 while migrations are pending, 0 once applied.
- SIGTERM to ``paymux serve`` under load (payments in flight, each gateway call slowed): it
  stops accepting, finishes what it has, exits 0 within PAYMUX_SHUTDOWN_TIMEOUT, and leaves
  no job claimed; every payment a client was answered for is there, and a client that lost
  its answer retries with its Idempotency-Key after the restart: each order is paid once.
- SIGTERM to ``paymux worker`` with a queue to work through: it exits promptly, no job is
  left claimed (the unstarted ones are released, not left to their lease), and its heartbeat
  row is gone.
- After SIGTERM, ``paymux serve`` refuses new connections while a request it holds (its body
  still to come: ``Expect: 100-continue`` proves it in flight) completes with 200.
- A job longer than PAYMUX_SHUTDOWN_TIMEOUT (waiting for a lock the test holds) is cut short
  at the timeout, queued again, and the worker exits (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import BACKENDS, database_url, migrated_database_url
from support.pgcluster import PgCluster
from support.processes import (
    PAYMUX,
    LoggedProcess,
    ServeProcess,
    free_port,
    paymux_env,
    wait_until,
)

_names = itertools.count()


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return database_url(request.param, tmp_path, pg_cluster, f"shutdown_{next(_names)}")


@pytest.fixture(params=BACKENDS)
def migrated_db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> str:
    """A database at the head revision (a copy of the migrated template): what ``paymux
    migrate`` on an empty one gives, for the tests whose claim is the shutdown, not the
    migrations (those are test_migrate_check_fails_while_migrations_are_pending's)."""
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"shutdown_{next(_names)}")


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    """One statement in its own transaction, on an engine of its own."""

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def sql_rows(url: str, statement: str, rows: list[dict[str, Any]]) -> None:
    """One statement run for each of ``rows`` (its parameters), in one transaction."""

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement), rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


def paymux(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PAYMUX), *args],
        env=paymux_env(url, tmp),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_check_fails_while_migrations_are_pending(empty_db: str, tmp_path: Path) -> None:
    pending = paymux(empty_db, tmp_path, "migrate", "--check")
    assert pending.returncode == 1, pending.stdout + pending.stderr
    assert "migrations pending" in pending.stderr and "paymux migrate" in pending.stderr
    # --check changed nothing: still no schema.
    assert paymux(empty_db, tmp_path, "migrate", "--check").returncode == 1
    assert paymux(empty_db, tmp_path, "migrate").returncode == 0
    current = paymux(empty_db, tmp_path, "migrate", "--check")
    assert current.returncode == 0, current.stderr
    assert "current" in current.stdout
    # A newer release's revision (rolling upgrade): nothing for this release to run.
    sql(empty_db, "update alembic_version set version_num = '0099_next_release'")
    ahead = paymux(empty_db, tmp_path, "migrate", "--check")
    assert ahead.returncode == 0, ahead.stdout + ahead.stderr
    assert "newer than this release" in ahead.stdout
    # A known older revision: pending.
    sql(empty_db, "update alembic_version set version_num = '0015'")
    assert paymux(empty_db, tmp_path, "migrate", "--check").returncode == 1


def _pay(client: httpx.Client, order: int, results: dict[int, Any]) -> None:
    try:
        r = client.post(
            "/v1/payment_intents",
            json={
                "amount": 1000 + order,
                "currency": "usd",
                "confirm": True,
                "payment_method": "pm_card_visa",
            },
            headers={"idempotency-key": f"order-{order}"},
        )
        results[order] = r.status_code, r.json().get("id")
    except httpx.HTTPError as exc:  # refused or cut: the client does not know
        results[order] = type(exc).__name__, None


def _held_request(server: ServeProcess) -> socket.socket:
    """A POST whose body is not sent yet, on a connection of its own: with ``Expect:
    100-continue``, the server's "100 Continue" says the app is running it and waits for the
    body (so it is in flight, whatever the timing), until ``_finish``."""
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = (
        "POST /v1/customers HTTP/1.1\r\n"
        f"host: 127.0.0.1:{server.port}\r\n"
        f"authorization: Bearer {server.api_key}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(HELD_BODY)}\r\n"
        "expect: 100-continue\r\n\r\n"
    )
    conn.sendall(head.encode())
    seen = b""
    while b"\r\n\r\n" not in seen:
        chunk = conn.recv(4096)
        assert chunk, seen
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 100 "), seen
    return conn


def _finish(conn: socket.socket) -> bytes:
    """Send the held request's body; its whole answer (the server closes the connection)."""
    with conn:
        conn.sendall(HELD_BODY)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


HELD_BODY = json.dumps({"email": "held@example.com"}).encode()


def test_sigterm_under_load_loses_nothing_and_leaves_no_job_claimed(
    migrated_db: str, tmp_path: Path
) -> None:
    empty_db = migrated_db
    server = ServeProcess(
        tmp_path,
        empty_db,
        "sk_test_" + "s" * 32,
        PAYMUX_SANDBOX_LATENCY="0.4",
        PAYMUX_SHUTDOWN_TIMEOUT="20",
        PAYMUX_LOG_LEVEL="INFO",
    )
    results: dict[int, Any] = {}
    orders = 24
    try:
        clients = [
            httpx.Client(
                base_url=server.url,
                timeout=60,
                trust_env=False,
                headers={"authorization": f"Bearer {server.api_key}"},
            )
            for _ in range(6)
        ]
        threads = []
        for order in range(orders):
            t = threading.Thread(target=_pay, args=(clients[order % 6], order, results))
            threads.append(t)
            t.start()
            time.sleep(0.05)
            if order == orders // 2:  # half sent, some in flight: the signal
                assert server.proc is not None
                gate = _held_request(server)  # in flight until the test sends its body
                signalled = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                # The listener is closed before uvicorn waits for the connections in flight
                # (ours is one): from then on a new connection is refused.
                wait_until(
                    "the server to wait for its connections",
                    lambda: "Waiting for connections to close" in server.output(1_000_000),
                    timeout=30,
                )
                with pytest.raises(httpx.ConnectError):
                    httpx.get(f"{server.url}/health/live", timeout=10)
                held = _finish(gate)  # the request in flight still completes
                assert held.startswith(b"HTTP/1.1 200 "), held[:200]
                assert b'"object":"customer"' in held.replace(b" ", b"")
        for t in threads:
            t.join(timeout=60)
        code = server.proc.wait(timeout=40) if server.proc else None
        took = time.monotonic() - signalled
        # uvicorn shuts down, then raises the signal it caught again: the exit status says
        # SIGTERM, as service managers expect of a process they stopped. The log says the
        # shutdown ran to its end (the lifespan's: the worker stopped).
        assert code == -signal.SIGTERM, server.tail()
        log = server.output(1_000_000)
        assert "Application shutdown complete" in log and "stopped" in log, server.tail()
        assert took < 20 + 5, took
        for c in clients:
            c.close()
        # Nothing claimed is left behind, and what was answered 200 is there.
        assert sql(empty_db, "select count(*) from jobs where status = 'running'") == [(0,)]
        answered = {o: pi for o, (status, pi) in results.items() if status == 200}
        assert answered, results  # the ones in flight were finished, not cut
        for pi in answered.values():
            assert sql(empty_db, "select status from payment_intents where id = :i", i=pi) == [
                ("succeeded",)
            ]
        # After the restart every order is paid, once: the lost answers are retried (the
        # gateway fast again: its latency was there to keep payments in flight at the signal).
        server.restart(PAYMUX_SANDBOX_LATENCY=None)
        paid: dict[int, str] = {}
        for order in range(orders):
            r = server.http.post(
                "/v1/payment_intents",
                json={
                    "amount": 1000 + order,
                    "currency": "usd",
                    "confirm": True,
                    "payment_method": "pm_card_visa",
                },
                headers={"idempotency-key": f"order-{order}"},
            )
            assert r.status_code == 200, r.text
            paid[order] = r.json()["id"]
            if order in answered:
                assert paid[order] == answered[order]
        assert len(set(paid.values())) == orders
        for order, pi in paid.items():
            charges = server.http.get(
                f"{server.url}/sandbox/_control/charges", params={"reference": pi}
            ).json()["data"]
            assert len(charges) == 1, (order, charges)
        rows = sql(
            empty_db,
            "select count(*) from payment_intents where amount >= 1000 and amount < :top",
            top=1000 + orders,
        )
        assert rows == [(orders,)]
    finally:
        server.stop()


def test_sigterm_to_a_worker_releases_its_jobs_and_its_heartbeat(
    migrated_db: str, tmp_path: Path
) -> None:
    empty_db = migrated_db
    metrics_port = free_port()
    now = int(time.time() * 1_000_000)
    # Work that takes a while, one job at a time: settlements of attempts that don't exist
    # (each fails and backs off), plus purges.
    sql_rows(
        empty_db,
        "insert into jobs (kind, payload, status, run_at_us, attempts, "
        "max_attempts, created_us, updated_us) values (:k, :p, 'queued', :t, 0, 5, :t, :t)",
        [
            {
                "k": "purge_idempotency_keys" if n % 2 else "settle_attempt",
                "p": '{"attempt_id": "att_missing"}',
                "t": now,
            }
            for n in range(300)
        ],
    )
    worker = LoggedProcess(
        "paymux worker",
        [str(PAYMUX), "worker"],
        log=tmp_path / "worker.log",
        env=paymux_env(
            empty_db,
            tmp_path,
            PAYMUX_WORKER_HEARTBEAT_INTERVAL="0.2",
            PAYMUX_SHUTDOWN_TIMEOUT="10",
            PAYMUX_LOG_JSON="false",
            PAYMUX_WORKER_BATCH_SIZE="50",
            PAYMUX_WORKER_METRICS_PORT=str(metrics_port),
            PAYMUX_METRICS_TOKEN="worker-metrics-token",
        ),
    ).spawn()
    try:
        wait_until(
            "the worker's heartbeat",
            lambda: (
                worker.check_alive()
                or bool(sql(empty_db, "select worker_id from worker_heartbeats"))
            ),
            timeout=60,
        )
        # The worker's own /metrics (PAYMUX_WORKER_METRICS_PORT), with the metrics token.
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(metrics, timeout=10).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/v1/customers").status_code == 404
        # Its liveness probe (deploy/: the worker Deployment's), no token needed.
        alive = httpx.get(f"http://127.0.0.1:{metrics_port}/health/live", timeout=10)
        assert (alive.status_code, alive.json()) == (200, {"status": "live"})
        scraped = httpx.get(
            metrics, headers={"authorization": "Bearer worker-metrics-token"}, timeout=10
        )
        assert scraped.status_code == 200, scraped.text
        assert "paymux_workers_alive 1.0" in scraped.text
        assert "paymux_gateway_call_duration_seconds" in scraped.text  # the process's own
        # SIGTERM while the worker holds claimed jobs it has not started.
        wait_until(
            "the worker to hold a batch",
            lambda: sql(empty_db, "select count(*) from jobs where status = 'running'")[0][0] > 5,
            timeout=60,
            interval=0.005,
        )
        assert worker.proc is not None
        signalled = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=30) == 0, worker.tail()
        assert time.monotonic() - signalled < 10 + 5
    finally:
        worker.stop()
    # It released what it held (not left to the lease), and its metrics port closed.
    released = re.search(r"released (\d+) unfinished jobs", worker.output(1_000_000))
    assert released is not None and int(released.group(1)) > 0, worker.tail()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert sql(empty_db, "select count(*) from jobs where status = 'running'") == [(0,)]
    # Ours are all there, each queued again, done or backing off (the sweep adds its own).
    assert sql(empty_db, "select count(*) from jobs where created_us = :t", t=now) == [(300,)]
    assert sql(empty_db, "select count(*) from worker_heartbeats") == [(0,)]


class _LockHolder:
    """A PostgreSQL session of the test's own, on a loop in a thread, holding a lock."""

    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn: Any = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def lock(self, table: str) -> None:
        self.conn = self.run(asyncpg.connect(self.dsn))
        self.run(self.conn.execute("BEGIN"))
        self.run(self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))

    def close(self) -> None:
        try:
            if self.conn is not None:
                self.run(self.conn.close())  # the transaction ends: the lock goes
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


def test_sigterm_cuts_a_job_longer_than_the_shutdown_timeout_short_and_releases_it(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """A job that can't finish (its transaction waits for a lock the test holds) while the
    worker is told to stop, PAYMUX_SHUTDOWN_TIMEOUT=1: the worker cuts it short, queues it
    again (not left claimed until its lease runs out) and exits. PostgreSQL: a lock wait is
    what makes the job's length the test's to decide (and visible in pg_stat_activity)."""
    url = migrated_database_url("postgres", tmp_path, pg_cluster, f"shutdown_cut_{next(_names)}")
    now = int(time.time() * 1_000_000)
    sql(
        url,
        "insert into jobs (kind, payload, status, run_at_us, attempts, max_attempts, "
        "created_us, updated_us) values ('purge_idempotency_keys', '{}', 'queued', :t, 0, 5, "
        ":t, :t)",
        t=now,
    )
    [(job_id,)] = sql(url, "select id from jobs where created_us = :t", t=now)
    holder = _LockHolder(url)
    worker: LoggedProcess | None = None
    try:
        holder.lock("idempotency_keys")  # the purge's DELETE waits for it
        worker = LoggedProcess(
            "paymux worker",
            [str(PAYMUX), "worker"],
            log=tmp_path / "worker.log",
            env=paymux_env(url, tmp_path, PAYMUX_SHUTDOWN_TIMEOUT="1", PAYMUX_LOG_JSON="false"),
        ).spawn()

        def job_waits_for_the_lock() -> bool:
            assert worker is not None
            worker.check_alive()
            waiting = sql(
                url,
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock' and query ilike '%idempotency_keys%'",
            )
            return bool(waiting[0][0])

        wait_until("the job to wait for the lock", job_waits_for_the_lock, timeout=60)
        assert sql(url, "select status from jobs where id = :i", i=job_id) == [("running",)]
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        # Generous: a bound on the test, not a timing claim (the log says what happened).
        assert worker.proc.wait(timeout=60) == 0, worker.tail()
        log = worker.output(1_000_000)
        assert "worker cut short after 1s" in log, worker.tail()
        # (At least ours: the sweep's own hourly purge may have come due too.)
        assert re.search(r"released [1-9]\d* unfinished jobs", log), worker.tail()
        assert sql(url, "select count(*) from jobs where status = 'running'") == [(0,)]
        # Queued again at once, not left claimed; its attempt counted (it was started).
        assert sql(
            url, "select status, locked_until_us, attempts from jobs where id = :i", i=job_id
        ) == [("queued", None, 1)]
        assert sql(url, "select count(*) from worker_heartbeats") == [(0,)]
    finally:
        if worker is not None:
            worker.stop()
        holder.close()


def test_sigterm_cuts_a_request_longer_than_the_shutdown_timeout_and_its_retry_pays_once(
    migrated_db: str, tmp_path: Path
) -> None:
    """A confirm whose gateway call takes 60 s (the sandbox's latency, set once the intent
    and its card exist) is in flight when ``paymux serve`` gets SIGTERM with
    PAYMUX_SHUTDOWN_TIMEOUT=2: the process does not wait for it, it exits (uvicorn cancels
    the request at the timeout), and no job is left claimed. The client lost its answer; it
    retries with its Idempotency-Key against the restarted server (no latency, a short
    idempotency lease so the dead request's claim can be taken over) and the order is paid,
    once."""
    empty_db = migrated_db
    key = "sk_test_" + "c" * 32
    slow = ServeProcess(
        tmp_path, empty_db, key, PAYMUX_SHUTDOWN_TIMEOUT="2", PAYMUX_LOG_LEVEL="INFO"
    )
    results: dict[str, Any] = {}
    try:
        made = slow.http.post(
            "/v1/payment_intents",
            json={"amount": 4321, "currency": "usd", "payment_method": "pm_card_visa"},
        )
        assert made.status_code == 200, made.text
        pi = made.json()["id"]
        r = slow.http.post("/sandbox/_control/latency", json={"seconds": 60})
        assert r.status_code == 200, r.text
        confirm = f"/v1/payment_intents/{pi}/confirm"
        payer = threading.Thread(
            target=lambda: results.update(
                first=_answer_of(
                    lambda: slow.http.post(
                        confirm, json={}, headers={"idempotency-key": "cut-confirm"}, timeout=90
                    )
                )
            )
        )
        payer.start()
        # The attempt is written before the gateway is called: from then on it is in flight.
        wait_until(
            "the confirm's gateway call",
            lambda: sql(empty_db, "select count(*) from gateway_attempts") == [(1,)],
            timeout=60,
        )
        assert slow.proc is not None
        slow.proc.send_signal(signal.SIGTERM)
        # Bound on the test, not a timing claim: waiting for the request would take 60 s of
        # sandbox latency; the log below says the shutdown timeout cut it.
        slow.proc.wait(timeout=45)
        payer.join(timeout=60)
        log = slow.output(1_000_000)
        assert "timeout graceful shutdown exceeded" in log, slow.tail()
        assert results["first"][0] != 200, results  # cut: the client has no answer
        assert sql(empty_db, "select count(*) from jobs where status = 'running'") == [(0,)]
    finally:
        slow.stop()
    again = ServeProcess(tmp_path, empty_db, key, PAYMUX_IDEMPOTENCY_LEASE_SECONDS="1")
    try:
        answers: list[httpx.Response] = []

        def retried() -> bool:
            r = again.http.post(confirm, json={}, headers={"idempotency-key": "cut-confirm"})
            answers.append(r)
            return r.status_code == 200 and r.json()["status"] == "succeeded"

        wait_until("the retry to be answered", retried, timeout=60)
        assert answers[-1].json()["id"] == pi
        assert sql(empty_db, "select count(*) from payment_intents") == [(1,)]
        charges = again.http.get("/sandbox/_control/charges", params={"reference": pi}).json()
        assert len(charges["data"]) == 1, charges
        assert charges["data"][0]["amount"] == 4321
    finally:
        again.stop()


def _answer_of(call: Any) -> tuple[Any, Any]:
    try:
        r = call()
        return r.status_code, r.text
    except httpx.HTTPError as exc:  # refused or cut: the client does not know
        return type(exc).__name__, None
