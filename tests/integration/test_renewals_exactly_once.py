"""Exactly-once renewal: two ``paymux serve`` processes (each with its worker) share one
PostgreSQL database and one sandbox; a batch of subscriptions comes due at once; one process
is killed with SIGKILL while renewals are being charged (the sandbox slowed down so that some
payments are in flight), and the other finishes the work, taking over the killed one's jobs
once their lease runs out. Every (subscription, period) ends with exactly one invoice,
paid by exactly one PaymentIntent that the sandbox charged exactly once.

Why it holds: the renewal invoice carries a unique ``period_key``; the payment's intent id is
derived from the invoice and its try number and noted on the invoice before the payment
service is called, so a job run again after the kill resumes that intent (whose gateway
idempotency key derives from its id) instead of charging again.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_crash_recovery import query, sandbox_charges

from conftest import database_url
from support.pgcluster import PgCluster
from support.processes import PAYMUX, ServeProcess, wait_until

N_SUBS = 10
LATENCY = 0.3  # seconds each sandbox call waits while the renewals run


@pytest.fixture(params=["postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[tuple[Path, str, str]]:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    url = database_url(request.param, tmp_path, pg_cluster, f"renew_{uuid.uuid4().hex[:12]}")
    yield tmp_path, url, "sk_test_" + secrets.token_hex(16)


def _execute(url: str, statement: str, **params: object) -> None:
    import asyncio

    from sqlalchemy import text

    from paymux.storage.db import Database

    async def run() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as s:
                await s.execute(text(statement), params)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_two_workers_and_a_kill9_bill_each_period_once(setup: tuple[Path, str, str]) -> None:
    tmp, url, key = setup
    env = {"PAYMUX_JOB_LEASE_SECONDS": "1.5", "PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS": "0.5"}
    a = ServeProcess(tmp, url, key, **env)
    b = ServeProcess(tmp, url, key, log=tmp / "serve-b.log", **env)
    try:
        customer = a.ok("POST", "/v1/customers", {"email": "renew@example.com"})["id"]
        pm = a.ok("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": customer})["id"]
        a.ok(
            "POST",
            f"/v1/customers/{customer}",
            {"invoice_settings": {"default_payment_method": pm}},
        )
        product = a.ok("POST", "/v1/products", {"name": "Renewed"})["id"]
        price = a.ok(
            "POST",
            "/v1/prices",
            {
                "product": product,
                "unit_amount": 1200,
                "currency": "usd",
                "recurring": {"interval": "month"},
            },
        )["id"]
        subs = [
            a.ok("POST", "/v1/subscriptions", {"customer": customer, "items": [{"price": price}]})
            for _ in range(N_SUBS)
        ]
        assert all(s["status"] == "active" for s in subs)
        for server in (a, b):
            r = httpx.post(
                f"{server.url}/sandbox/_control/latency",
                json={"seconds": LATENCY},
                timeout=10,
                trust_env=False,
            )
            assert r.status_code == 200, r.text
        # Everything comes due now: the periods moved back so that they end a second ago.
        due = int(time.time() * 1_000_000) - 1_000_000
        _execute(
            url,
            "update subscriptions set "
            "billing_cycle_anchor_us = billing_cycle_anchor_us - (current_period_end_us - :t), "
            "current_period_start_us = current_period_start_us - (current_period_end_us - :t), "
            "current_period_end_us = :t, next_due_us = :t",
            t=due,
        )

        def renewals_started() -> bool:
            rows = query(
                url,
                "select count(*) from payment_intents p join invoices i "
                "on p.invoice_id = i.id where i.billing_reason = 'subscription_cycle'",
            )
            return int(rows[0][0]) >= 2

        wait_until("renewal payments to start", renewals_started, timeout=20)
        a.kill9()  # its claimed jobs wait for their lease to run out, then b takes them

        def all_paid() -> bool:
            rows = query(
                url,
                "select count(*) from invoices where billing_reason = "
                "'subscription_cycle' and status = 'paid'",
            )
            return int(rows[0][0]) >= N_SUBS

        wait_until("every renewal paid", all_paid, timeout=30)
        # Let anything still queued run: nothing more may happen.
        time.sleep(1.0)
        renewals = query(
            url,
            "select id, subscription_id, status, amount_paid, payment_intent_id "
            "from invoices where billing_reason = 'subscription_cycle'",
        )
        assert sorted(r[1] for r in renewals) == sorted(s["id"] for s in subs)  # one each
        assert {(r[2], r[3]) for r in renewals} == {("paid", 1200)}
        for invoice_id, _, _, _, pi_id in renewals:
            intents = query(
                url, "select id, status from payment_intents where invoice_id = :i", i=invoice_id
            )
            assert intents == [(pi_id, "succeeded")], (invoice_id, intents)
            assert sandbox_charges(tmp / "sandbox.db", pi_id) == ["succeeded"], pi_id
            attempts = query(
                url,
                "select count(*) from gateway_attempts where object_id = :p "
                "and operation = 'authorize'",
                p=pi_id,
            )
            assert attempts[0][0] == 1
    finally:
        a.stop()
        b.stop()
