"""A fraud review on the Stripe connector, against localstripe: the PaymentIntent paymux
opened at create (capture_method automatic, for Stripe.js) is switched to manual capture
before the confirm, so Stripe holds the money and the review opens; approving captures it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from conftest import Api, RunningServer
from support.pgcluster import PgCluster
from support.sandboxes import LocalStripe
from support.stripe_server import localstripe_server

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stripe_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
    localstripe: LocalStripe,
) -> Iterator[RunningServer]:
    yield from localstripe_server(
        request.param, tmp_path_factory, pg_cluster, localstripe,
        name="fraud_stripe", webhook_secret=WEBHOOK_SECRET, default_gateway="stripe",
    )


@pytest.fixture
def sapi(stripe_server: RunningServer) -> Iterator[Api]:
    client = Api(stripe_server)
    try:
        yield client
    finally:
        client.close()


def _at_stripe(localstripe: LocalStripe, reference: str) -> dict[str, object]:
    r = httpx.get(f"{localstripe.url}/v1/payment_intents/{reference}",
                  auth=("sk_test_paymux", ""), timeout=10)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_a_review_holds_the_money_at_stripe_and_approving_captures_it(
    sapi: Api, localstripe: LocalStripe
) -> None:
    sapi.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    pi = sapi.ok("POST", "/v1/payment_intents",
                 {"amount": 7000, "currency": "usd", "gateway": "stripe"})
    assert pi["capture_method"] == "automatic"
    assert _at_stripe(localstripe, pi["gateway_reference"])["capture_method"] == "automatic"
    held = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": "pm_card_visa"})
    assert (held["status"], held["amount_capturable"], held["amount_received"]) == (
        "requires_capture", 7000, 0,
    )
    at_stripe = _at_stripe(localstripe, pi["gateway_reference"])
    assert (at_stripe["status"], at_stripe["capture_method"]) == ("requires_capture", "manual")
    reviews = sapi.ok("GET", "/v1/reviews", params={"open": "true"})["data"]
    assert [r["payment_intent"] for r in reviews] == [pi["id"]]
    approved = sapi.ok("POST", f"/v1/reviews/{reviews[0]['id']}/approve")
    assert (approved["open"], approved["closed_reason"]) == (False, "approved")
    assert _at_stripe(localstripe, pi["gateway_reference"])["status"] == "succeeded"
    done = sapi.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["status"], done["amount_received"]) == ("succeeded", 7000)


def test_an_allowed_payment_at_stripe_is_captured_at_once(sapi: Api) -> None:
    sapi.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    pi = sapi.ok("POST", "/v1/payment_intents",
                 {"amount": 2000, "currency": "usd", "gateway": "stripe"})
    done = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": "pm_card_visa"})
    assert (done["status"], done["amount_received"]) == ("succeeded", 2000)
    assert sapi.ok("GET", "/v1/reviews")["data"] == []
