"""Stripe's 3-D Secure result where Stripe names the charge by id only (issue 12 section 3):
``lookup`` (a lost confirm, found again through Search or List) reads the PaymentIntent found
once more with its charge expanded, so the result and the network transaction id are
recorded as on the direct path; and a payment completed by Stripe's webhook (whose
``latest_charge`` is an id) is read once more by the worker, after the event is applied.

Stripe is a stdlib HTTP server on 127.0.0.1 (test_stripe_connector's routed fake) answering
in Stripe's documented shapes (tests/fixtures/three_d_secure). Expected values written out.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from test_stripe_connector import Answer, _listing, routed_stripe, session

from conftest import free_port, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.gateways.base import GatewayStatus, ThreeDSecure
from paymux.jobs.worker import Worker
from paymux.services import Paymux

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "three_d_secure"
PI = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
KEY = "pi_ours_3ds:authorize:1"


def expanded() -> dict[str, Any]:
    pi: dict[str, Any] = json.loads(
        (FIXTURES / "stripe_payment_intent_challenge_authenticated.json").read_text()
    )
    pi["metadata"] = {"paymux_id": "pi_ours_3ds", "paymux_key": KEY}
    return pi


def as_searched() -> dict[str, Any]:
    """The same PaymentIntent as Search and List return it: latest_charge an id."""
    pi = copy.deepcopy(expanded())
    pi["latest_charge"] = pi["latest_charge"]["id"]
    return pi


def test_lookup_reads_the_found_payment_again_with_its_charge_expanded() -> None:
    routes = {
        "GET /v1/payment_intents/search": Answer(
            200, _listing(as_searched(), url="/v1/payment_intents/search", search=True)
        ),
        f"GET /v1/payment_intents/{PI}": Answer(200, expanded()),
    }
    with routed_stripe(routes) as (url, seen), session(url) as fake:
        found = fake.run(fake.gateway.lookup("pi_ours_3ds", KEY))
    assert found is not None
    assert (found.status, found.reference) == (GatewayStatus.SUCCEEDED, PI)
    assert found.three_d_secure == ThreeDSecure(
        result="authenticated",
        authentication_flow="challenge",
        version="2.2.0",
        electronic_commerce_indicator="05",
        transaction_id="f879ea1c-aa2c-4441-806d-e30406466d79",
        liability_shift=True,
    )
    assert found.network_transaction_id == "582110910210415"
    assert [s.split("?")[0] for s in seen] == [
        "GET /v1/payment_intents/search",
        f"GET /v1/payment_intents/{PI}",
    ]
    assert parse_qs(seen[1].partition("?")[2]) == {"expand[0]": ["latest_charge"]}


def test_lookup_of_a_payment_found_expanded_or_without_a_charge_asks_nothing_more() -> None:
    failed = json.loads((FIXTURES / "stripe_payment_intent_authentication_failed.json").read_text())
    failed["metadata"] = {"paymux_id": "pi_ours_3ds", "paymux_key": KEY}
    routes = {
        "GET /v1/payment_intents/search": Answer(
            200, _listing(failed, url="/v1/payment_intents/search", search=True)
        ),
    }
    with routed_stripe(routes) as (url, seen), session(url) as fake:
        found = fake.run(fake.gateway.lookup("pi_ours_3ds", KEY))
    assert found is not None and found.status is GatewayStatus.FAILED
    assert found.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)
    assert [s.split("?")[0] for s in seen] == ["GET /v1/payment_intents/search"]


# -- a payment completed by Stripe's webhook ---------------------------------------------------
WEBHOOK_SECRET = "whsec_3ds_webhook_test"
OURS_KEY_SECRET = "sk_test_paymux_3ds_webhook"


def _opened(status: str, **fields: Any) -> dict[str, Any]:
    pi = {key: value for key, value in expanded().items() if key != "latest_charge"}
    pi.update(status=status, amount_received=0, latest_charge=None, metadata={}, **fields)
    return pi


def _signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"stripe-signature": f"t={t},v1={mac}", "content-type": "application/json"}


async def _deliver(http: httpx.AsyncClient, worker: Worker, event: dict[str, Any]) -> None:
    """Post the signed event as Stripe does, then run every job it left due."""
    body, headers = _signed(event)
    r = await http.post("/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    for _ in range(10):
        await worker.sweep()
        if not await worker.run_once():
            break


def test_a_payment_completed_by_webhook_keeps_its_3ds_result(tmp_path: Path) -> None:
    """Stripe's ``payment_intent.succeeded`` names the charge by id: applying it moves the
    payment, then the worker reads the PaymentIntent once (a GET with latest_charge expanded,
    no write at Stripe) and records the charge's 3-D Secure result, shown on our charge as
    Stripe shows it. The same event again reads nothing more."""
    routes: dict[str, Answer] = {
        "POST /v1/payment_intents": Answer(200, _opened("requires_payment_method")),
        f"POST /v1/payment_intents/{PI}": Answer(200, _opened("requires_payment_method")),
        f"POST /v1/payment_intents/{PI}/confirm": Answer(
            200,
            _opened(
                "requires_action",
                next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}},
            ),
        ),
        "GET /v1/payment_methods/pm_1MtwBwLkdIwHu7ixhZpbeTV9": Answer(
            200,
            {
                "id": "pm_1MtwBwLkdIwHu7ixhZpbeTV9",
                "object": "payment_method",
                "type": "card",
                "card": {"brand": "visa", "last4": "3184", "exp_month": 12,
                         "exp_year": 2034, "country": "DE", "funding": "credit"},
            },
        ),
    }

    database = migrated_database_url("sqlite", tmp_path, None, "tds_webhook")

    async def work(url: str, seen: list[str]) -> None:
        settings = make_settings(
            database, tmp_path, free_port(),
            run_worker=False, stripe_api_base=url, stripe_secret_key=OURS_KEY_SECRET,
            stripe_publishable_key="pk_test_3ds", stripe_webhook_secrets=WEBHOOK_SECRET,
        )
        app = Paymux(settings)
        asgi = create_app(settings, paymux=app)
        key = (await app.accounts.create_key()).key
        worker = Worker(app, worker_id="t")
        try:
            async with asgi.router.lifespan_context(asgi), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="https://paymux.test",
                headers={"authorization": f"Bearer {key}"},
            ) as http:
                r = await http.post("/v1/payment_intents", json={
                    "amount": 2000, "currency": "eur", "gateway": "stripe"})
                assert r.status_code == 200, r.text
                ours = r.json()["id"]
                r = await http.post(f"/v1/payment_intents/{ours}/confirm",
                                    json={"payment_method": "pm_1MtwBwLkdIwHu7ixhZpbeTV9"})
                assert r.status_code == 200, r.text
                assert r.json()["status"] == "requires_action"
                # The payer authenticates in Stripe.js; Stripe's webhook says succeeded, with
                # latest_charge an id, as every Stripe event does.
                paid = as_searched()
                paid["metadata"] = {"paymux_id": ours}
                routes[f"GET /v1/payment_intents/{PI}"] = Answer(
                    200, {**expanded(), "metadata": {"paymux_id": ours}})
                event = {"id": "evt_3ds_1", "object": "event", "type": "payment_intent.succeeded",
                         "created": int(time.time()), "data": {"object": paid}}
                before = len(seen)
                await _deliver(http, worker, event)
                view = (await http.get(f"/v1/payment_intents/{ours}")).json()
                assert view["status"] == "succeeded"
                charge = (await http.get(f"/v1/charges/{view['latest_charge']}")).json()
                assert charge["payment_method_details"]["card"]["three_d_secure"] == {
                    "authentication_flow": "challenge",
                    "electronic_commerce_indicator": "05",
                    "liability_shift": True,
                    "result": "authenticated",
                    "result_reason": None,
                    "transaction_id": "f879ea1c-aa2c-4441-806d-e30406466d79",
                    "version": "2.2.0",
                }
                after = seen[before:]
                assert [s.split("?")[0] for s in after] == [f"GET /v1/payment_intents/{PI}"]
                assert parse_qs(after[0].partition("?")[2]) == {"expand[0]": ["latest_charge"]}
                # The same event again (Stripe retries): applied once, nothing read again.
                await _deliver(http, worker, event)
                assert len(seen) == before + 1, seen[before:]
        finally:
            await app.close()

    with routed_stripe(routes) as (url, seen):
        asyncio.run(work(url, seen))
