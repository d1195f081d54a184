"""Stripe's numeric risk score through the API (issue 13): a payment on the Stripe connector
whose charge carries Radar's ``outcome.risk_score`` stores it with the payment's fraud data
(``payment_intents.gateway_risk_score``, and the card's velocity minute), and the next
payment with that card is decided on it as ``:gateway_risk_score:``: a rule naming it blocks
that payment without a call to Stripe.

Stripe is a stdlib HTTP server on 127.0.0.1 (test_stripe_connector's routed fake) answering
in Stripe's documented shapes (localstripe's charges carry no ``outcome``). Expected values
are written out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from test_stripe_connector import Answer, routed_stripe

from conftest import free_port, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.services import Paymux
from support.pgcluster import PgCluster

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)
PM = "pm_1QRiskScoreLkdIwHcard01"
FINGERPRINT = "Xt5EWLLDS7FJjR1c"


def _payment_intent(pi_id: str, status: str, **fields: Any) -> dict[str, Any]:
    pi: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 2000,
        "amount_capturable": 0,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_abc",
        "currency": "usd",
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "payment_method": None,
        "status": status,
    }
    pi.update(fields)
    return pi


def _paid(pi_id: str, risk_level: str, risk_score: int) -> dict[str, Any]:
    return _payment_intent(
        pi_id,
        "succeeded",
        amount_received=2000,
        payment_method=PM,
        latest_charge={
            "id": f"ch_{pi_id[3:]}",
            "object": "charge",
            "amount": 2000,
            "captured": True,
            "paid": True,
            "status": "succeeded",
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": risk_level,
                "risk_score": risk_score,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": "visa",
                    "country": "US",
                    "fingerprint": FINGERPRINT,
                    "funding": "credit",
                    "last4": "4242",
                    "three_d_secure": None,
                },
            },
        },
    )


def _routes(pi_id: str, risk_level: str, risk_score: int) -> dict[str, Answer]:
    return {
        "POST /v1/payment_intents": Answer(200, _payment_intent(pi_id, "requires_payment_method")),
        f"POST /v1/payment_intents/{pi_id}": Answer(
            200, _payment_intent(pi_id, "requires_payment_method")
        ),
        f"POST /v1/payment_intents/{pi_id}/confirm": Answer(
            200, _paid(pi_id, risk_level, risk_score)
        ),
        f"GET /v1/payment_methods/{PM}": Answer(
            200,
            {
                "id": PM,
                "object": "payment_method",
                "type": "card",
                "card": {
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "country": "US",
                    "funding": "credit",
                    "fingerprint": FINGERPRINT,
                },
            },
        ),
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stripes_risk_score_is_stored_and_decides_the_cards_next_payment(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    database = migrated_database_url(backend, tmp_path, pg_cluster, f"stripe_risk_{backend}")
    routes: dict[str, Answer] = _routes("pi_3QRiskFirstLkdIwH0aaaa", "elevated", 67)

    async def work(url: str, seen: list[str]) -> None:
        settings = make_settings(
            database,
            tmp_path,
            free_port(),
            run_worker=False,
            stripe_api_base=url,
            stripe_secret_key="sk_test_paymux_risk",
            stripe_publishable_key="pk_test_risk",
        )
        app = Paymux(settings)
        asgi = create_app(settings, paymux=app)
        key = (await app.accounts.create_key()).key
        try:
            async with (
                asgi.router.lifespan_context(asgi),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=asgi),
                    base_url="https://paymux.test",
                    headers={"authorization": f"Bearer {key}"},
                ) as http,
            ):

                async def pay() -> httpx.Response:
                    r = await http.post(
                        "/v1/payment_intents",
                        json={"amount": 2000, "currency": "usd", "gateway": "stripe"},
                    )
                    assert r.status_code == 200, r.text
                    return await http.post(
                        f"/v1/payment_intents/{r.json()['id']}/confirm", json={"payment_method": PM}
                    )

                r = await http.post(
                    "/v1/fraud/rules", json={"rule": "block if :gateway_risk_score: >= 65"}
                )
                assert r.status_code == 200, r.text
                first = await pay()  # no score known for the card yet: allowed
                assert first.status_code == 200, first.text
                assert (first.json()["status"], first.json()["risk_level"]) == (
                    "succeeded",
                    "elevated",
                )
                async with app.ctx.db.read() as s:
                    stored = (
                        await s.execute(
                            text("select gateway_risk_score from payment_intents where id = :id"),
                            {"id": first.json()["id"]},
                        )
                    ).scalar_one()
                    minutes = (
                        await s.execute(
                            text(
                                "select gateway_risk, gateway_risk_score from fraud_velocity_buckets"
                                " where gateway_risk_score is not null"
                            )
                        )
                    ).all()
                assert stored == 67
                assert [tuple(m) for m in minutes] == [(2, 67)]  # the card's key alone

                routes.update(_routes("pi_3QRiskSecondLkdIwH0bbbb", "normal", 10))
                before = len(seen)
                second = await pay()
                assert second.status_code == 402, second.text
                error = second.json()["error"]
                assert (error["code"], error["decline_code"]) == ("card_declined", "fraudulent")
                asked = [s.split("?")[0] for s in seen[before:]]
                assert "POST /v1/payment_intents/pi_3QRiskSecondLkdIwH0bbbb/confirm" not in asked
        finally:
            await app.close()

    with routed_stripe(routes) as (url, seen):
        asyncio.run(work(url, seen))
