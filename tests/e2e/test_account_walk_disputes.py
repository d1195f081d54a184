"""Disputes are an account's too (issue 8, "every object scoped to its account"): a dispute
Stripe opens on account A's payment, named by our id or by Stripe's, is a 404 for account B
to read or update, and never in B's lists. The walks in test_account_walk*.py cover every
other object; a dispute needs a gateway that has them, so this one runs the Stripe connector
against localstripe (SQLite and PostgreSQL). The webhook is signed here with Stripe's published
scheme (HMAC-SHA256 of ``{t}.{body}``), not with paymux's signing code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from support.pgcluster import PgCluster
from support.processes import wait_until
from support.sandboxes import LocalStripe

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None, localstripe: LocalStripe,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"walk-disputes-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"walk_dp_{request.param}")
    settings = make_settings(
        url, tmp, free_port(), stripe_secret_key="sk_test_walk", stripe_api_base=localstripe.url,
        stripe_webhook_secrets=WEBHOOK_SECRET, default_gateway="stripe",
    )
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


def stripe_event(server: RunningServer, event: dict[str, Any]) -> int:
    body = json.dumps(event).encode()
    t = int(time.time())
    v1 = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return httpx.post(f"{server.url}/webhooks/stripe", content=body, timeout=10,
                      headers={"stripe-signature": f"t={t},v1={v1}"}).status_code


def test_another_accounts_dispute_is_a_404_by_every_name_and_in_no_list(
    server: RunningServer,
) -> None:
    a, b = Api(server), Api(server)
    try:
        pi = a.ok("POST", "/v1/payment_intents", {
            "amount": 2500, "currency": "usd", "gateway": "stripe",
            "payment_method": "pm_card_visa", "confirm": True})
        assert pi["status"] == "succeeded"
        theirs = f"dp_walk{secrets.token_hex(6)}"
        dispute = {"id": theirs, "object": "dispute", "amount": 2500, "currency": "usd",
                   "payment_intent": pi["gateway_reference"], "reason": "fraudulent",
                   "status": "needs_response", "charge": "ch_walk", "created": int(time.time())}
        assert stripe_event(server, {
            "id": f"evt_{theirs}", "object": "event", "type": "charge.dispute.created",
            "created": int(time.time()), "data": {"object": dispute}}) == 200
        found: list[dict[str, Any]] = []

        def recorded() -> bool:
            found[:] = a.ok("GET", "/v1/disputes", params={"payment_intent": pi["id"]})["data"]
            return bool(found)

        wait_until("A's dispute to be recorded", recorded, timeout=15)
        ours = found[0]["id"]
        assert a.ok("GET", f"/v1/disputes/{ours}")["amount"] == 2500  # A reads it

        for name in (ours, theirs):
            for r in (b.get(f"/v1/disputes/{name}"),
                      b.post(f"/v1/disputes/{name}", {"metadata": {"taken": "over"}})):
                assert r.status_code == 404, (name, r.text)
                assert r.json()["error"]["code"] == "resource_missing"
        assert b.ok("GET", "/v1/disputes", params={"limit": 100})["data"] == []
        assert b.ok("GET", "/v1/disputes", params={"payment_intent": pi["id"]})["data"] == []
        assert a.ok("GET", f"/v1/disputes/{ours}")["metadata"] == {}  # unchanged
    finally:
        a.close()
        b.close()
