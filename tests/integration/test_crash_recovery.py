"""kill -9 in the middle of a gateway call: ``paymux serve`` runs as a real subprocess, dies
between "attempt recorded" and "result recorded", and after a restart the payment ends
succeeded with exactly one charge at the sandbox (SQLite and PostgreSQL).

Two crash points:

* before the charge was made: the sandbox is slow (3 s latency), the process dies while the
  call waits. On restart the sweep finds the stale pending attempt, the job asks the
  sandbox by the attempt's idempotency key (nothing there) and makes the call itself;
* after the charge was made: the first response is lost and the inline retry is made to wait
  (a long retry delay), the process dies during that wait. On restart the job finds the
  charge by key and records it without charging again.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.storage.db import Database
from support.pgcluster import PgCluster
from support.processes import PAYMUX, ServeProcess, wait_until


def query(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as s:
                return [tuple(r) for r in (await s.execute(text(statement), params)).all()]
        finally:
            await db.dispose()

    return asyncio.run(run())


def sandbox_charges(path: Path, reference: str) -> list[str]:
    """Charge statuses straight from the sandbox processor's own SQLite file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "select json_extract(data, '$.status') from objects "
            "where kind = 'charge' and reference = ?",
            (reference,),
        ).fetchall()
        return [str(r[0]) for r in rows]
    finally:
        db.close()


# The name test_webhook_crash_and_concurrency.py imports.
Serve = ServeProcess


@pytest.fixture(params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[tuple[Path, str, str]]:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    url = migrated_database_url(
        request.param, tmp_path, pg_cluster, f"crash_{uuid.uuid4().hex[:12]}"
    )
    yield tmp_path, url, "sk_test_" + secrets.token_hex(16)


def start_confirm(
    server: ServeProcess, pi_id: str, body: dict[str, Any] | None = None
) -> threading.Thread:
    """POST confirm (``body``: by default with pm_card_visa) in the background; its
    connection dies with the server."""

    def run() -> None:
        try:
            httpx.post(
                f"{server.url}/v1/payment_intents/{pi_id}/confirm",
                json={"payment_method": "pm_card_visa"} if body is None else body,
                headers=dict(server.http.headers),
                timeout=30,
            )
        except httpx.TransportError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def attempt_rows(url: str, pi_id: str) -> list[tuple[Any, ...]]:
    return query(
        url, "select operation, status from gateway_attempts where object_id = :o", o=pi_id
    )


def recover_and_check(
    server: ServeProcess, tmp: Path, url: str, pi_id: str, **env: str | None
) -> None:
    """Restart the killed server (the same database and sandbox, ``env`` changed) without
    faults or latency: the intent ends succeeded with one charge."""
    server.restart(**env)
    try:
        wait_until(
            "the intent to succeed after the restart",
            lambda: server.ok("GET", f"/v1/payment_intents/{pi_id}")["status"] == "succeeded",
            timeout=15,
        )
        pi = server.ok("GET", f"/v1/payment_intents/{pi_id}")
        assert pi["amount_received"] == 2000
        assert sandbox_charges(tmp / "sandbox.db", pi_id) == ["succeeded"]
        assert attempt_rows(url, pi_id) == [("authorize", "settled")]
        events = server.http.get("/v1/events", params={"object_id": pi_id}).json()["data"]
        types = [e["type"] for e in events]
        assert types.count("payment_intent.succeeded") == 1
        # A second confirm is refused: nothing can charge this intent again.
        again = server.http.post(
            f"/v1/payment_intents/{pi_id}/confirm", json={"payment_method": "pm_card_visa"}
        )
        assert again.status_code == 400
        assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
        assert len(sandbox_charges(tmp / "sandbox.db", pi_id)) == 1
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()


def test_kill_9_before_the_charge_then_restart_charges_once(
    setup: tuple[Path, str, str],
) -> None:
    tmp, url, key = setup
    server = ServeProcess(tmp, url, key, PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS="0.5")
    try:
        # The card is recorded now, while the sandbox is fast; then the sandbox turns slow
        # (as PAYMUX_SANDBOX_LATENCY would, minus the wait on the card lookup), so the
        # authorize call is still waiting when the process dies. The confirm names no card:
        # the intent's own is charged (naming it again would look it up, slowly).
        pi = server.ok(
            "POST",
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"},
        )
        r = httpx.post(f"{server.url}/sandbox/_control/latency", json={"seconds": 3})
        assert r.status_code == 200, r.text
        thread = start_confirm(server, pi["id"], {})
        wait_until(
            "the attempt to be recorded",
            lambda: attempt_rows(url, pi["id"]) == [("authorize", "pending")],
        )
        began = time.monotonic()
        server.kill9()
        assert time.monotonic() - began < 2.5, "killed too late: the call may have gone out"
    except BaseException:
        server.stop()
        print(server.output())
        raise
    thread.join(timeout=10)
    [(status,)] = query(url, "select status from payment_intents where id = :i", i=pi["id"])
    assert status == "processing"
    assert attempt_rows(url, pi["id"]) == [("authorize", "pending")]
    assert sandbox_charges(tmp / "sandbox.db", pi["id"]) == []
    recover_and_check(server, tmp, url, pi["id"])


def test_kill_9_after_the_charge_then_restart_records_it_without_charging_again(
    setup: tuple[Path, str, str],
) -> None:
    tmp, url, key = setup
    # The first response is lost; the inline retry then waits 15-30 s (never reached), and
    # no settle job runs before the crash.
    server = ServeProcess(
        tmp,
        url,
        key,
        PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS="600",
        PAYMUX_GATEWAY_RETRY_BASE_DELAY="30",
        PAYMUX_GATEWAY_RETRY_MAX_DELAY="30",
    )
    try:
        pi = server.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
        r = httpx.post(
            f"{server.url}/sandbox/_control/faults",
            json={"operation": "authorize", "mode": "lose_response", "count": 1},
        )
        assert r.status_code == 200
        thread = start_confirm(server, pi["id"])
        wait_until(
            "the charge to exist at the sandbox",
            lambda: sandbox_charges(tmp / "sandbox.db", pi["id"]) == ["succeeded"],
        )
        assert attempt_rows(url, pi["id"]) == [("authorize", "pending")]
        server.kill9()
    except BaseException:
        server.stop()
        print(server.output())
        raise
    thread.join(timeout=10)
    [(status,)] = query(url, "select status from payment_intents where id = :i", i=pi["id"])
    assert status == "processing"
    assert attempt_rows(url, pi["id"]) == [("authorize", "pending")]
    assert sandbox_charges(tmp / "sandbox.db", pi["id"]) == ["succeeded"]
    recover_and_check(
        server,
        tmp,
        url,
        pi["id"],
        PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS="0.5",
        PAYMUX_GATEWAY_RETRY_BASE_DELAY=None,
        PAYMUX_GATEWAY_RETRY_MAX_DELAY=None,
    )
