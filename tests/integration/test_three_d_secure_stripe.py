"""Stripe's 3-D Secure result on the recovery path (issue 12 section 3): ``lookup`` (a lost
confirm, found again through Search or List, which answer ``latest_charge`` as an id) reads
the PaymentIntent found once more with its charge expanded, so the result and the network
transaction id are recorded as on the direct path.

Stripe is a stdlib HTTP server on 127.0.0.1 (test_stripe_connector's routed fake) answering
in Stripe's documented shapes (tests/fixtures/three_d_secure). Expected values written out.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from test_stripe_connector import Answer, _listing, routed_stripe, session

from paymux.gateways.base import GatewayStatus, ThreeDSecure

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
