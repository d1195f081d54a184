"""stripe-python's error classes as paymux's answers raise them, on a real server: the 429
of the per-key rate limit (``RateLimitError``), a gateway outage's 503 (``APIError``), a client
timeout (``APIConnectionError``) and retrying it under the same idempotency key, and a
PaymentIntent's 3-D Secure ``next_action`` read through the SDK's objects.

The rate-limit test has a server of its own with a limit of a few requests per hour (one
window for the whole test); the others share the session's server (SQLite and PostgreSQL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from support.pgcluster import PgCluster
from support.sandbox_pages import answer_challenge

LIMIT = 3
# One window for the whole test: windows start at multiples of their length since the
# epoch, so an hour-long one straddled two when a run crossed the hour (CI at 00:00 did).
WINDOW = 1_000_000_000.0  # until 2033


def client_for(server: RunningServer, key: str, **options: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0, **options
    )


def sandbox(server: RunningServer, path: str, body: dict[str, Any] | None = None) -> None:
    method = "DELETE" if body is None else "POST"
    r = httpx.request(method, f"{server.url}/sandbox/_control{path}", json=body, timeout=10)
    assert r.status_code == 200, r.text


@pytest.fixture
def limited(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[RunningServer]:
    url = migrated_database_url("sqlite", tmp_path, pg_cluster, "sdk_rate")
    settings = make_settings(
        url, tmp_path, free_port(), rate_limit_requests=LIMIT, rate_limit_window_seconds=WINDOW
    )
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    return client_for(server, key)


def test_past_the_rate_limit_the_client_raises_rate_limit_error(limited: RunningServer) -> None:
    _, key = limited.new_key()
    sdk = client_for(limited, key)
    for _ in range(LIMIT):
        sdk.v1.customers.list()
    with pytest.raises(stripe.RateLimitError) as caught:
        sdk.v1.customers.create(params={"email": "late@example.com"})
    assert caught.value.http_status == 429
    error = caught.value.error
    assert error is not None and (error.type, error.code) == ("rate_limit_error", "rate_limited")
    assert int(caught.value.headers["Retry-After"]) >= 1
    # The refused create made nothing; another key of the server is not limited by this one.
    _, other = limited.new_key()
    assert client_for(limited, other).v1.customers.list().data == []
    rows = limited.sql("select count(*) from customers")
    assert rows[0][0] == 0


def test_a_gateway_outage_raises_api_error_and_the_same_key_goes_through_after(
    server: RunningServer, sdk: stripe.StripeClient
) -> None:
    customer = sdk.v1.customers.create(params={"email": "outage@example.com"})
    # Describing the new card fails on every try paymux makes inline (gateway_retries = 3).
    sandbox(server, "/faults", {"operation": "describe", "mode": "server_error", "count": 4})
    try:
        with pytest.raises(stripe.APIError) as caught:
            sdk.v1.payment_methods.attach(
                "pm_card_visa",
                params={"customer": customer.id},
                options={"idempotency_key": "attach-outage"},
            )
    finally:
        sandbox(server, "/faults")
    assert caught.value.http_status == 503
    error = caught.value.error
    assert error is not None and (error.type, error.code) == ("gateway_error", "gateway_unavailable")
    assert sdk.v1.customers.payment_methods.list(customer.id).data == []
    # Nothing was kept for the key: the retry does the work once the gateway answers.
    pm = sdk.v1.payment_methods.attach(
        "pm_card_visa",
        params={"customer": customer.id},
        options={"idempotency_key": "attach-outage"},
    )
    assert (pm.customer, pm.card is not None and pm.card.last4) == (customer.id, "4242")


def test_a_client_timeout_raises_api_connection_error_and_its_retry_charges_once(
    server: RunningServer, sdk: stripe.StripeClient
) -> None:
    _, key = server.new_key()
    impatient = client_for(server, key, http_client=stripe.new_default_http_client(timeout=0.3))
    patient = client_for(server, key)
    intent = patient.v1.payment_intents.create(params={"amount": 1500, "currency": "usd"})
    params = {"payment_method": "pm_card_visa"}
    sandbox(server, "/latency", {"seconds": 1.5})
    try:
        with pytest.raises(stripe.APIConnectionError):
            impatient.v1.payment_intents.confirm(
                intent.id, params=params, options={"idempotency_key": "confirm-slow"}
            )
    finally:
        sandbox(server, "/latency", {"seconds": 0.0})
    # The retry under the same key gets the one payment, never a second charge. While the
    # first request is still running, the key answers 409 idempotency_key_in_use (which
    # stripe-python raises as APIError): retry, as a client does after a backoff.
    deadline = time.monotonic() + 30  # two busy cores (CI): the first may take a while
    while True:
        try:
            again = patient.v1.payment_intents.confirm(
                intent.id, params=params, options={"idempotency_key": "confirm-slow"}
            )
            break
        except stripe.APIError as exc:
            assert exc.http_status == 409, exc
            assert exc.error is not None and exc.error.code == "idempotency_key_in_use"
            assert time.monotonic() < deadline, "the first confirm never finished"
            time.sleep(0.05)
    assert (again.id, again.status, again.amount_received) == (intent.id, "succeeded", 1500)
    charges = httpx.get(
        f"{server.url}/sandbox/_control/charges", params={"reference": intent.id}, timeout=10
    ).json()["data"]
    assert len(charges) == 1


def test_a_3d_secure_payment_intent_shows_next_action_through_the_client(
    sdk: stripe.StripeClient,
) -> None:
    intent = sdk.v1.payment_intents.create(params={
        "amount": 2500, "currency": "eur", "confirm": True,
        "payment_method": "pm_card_threeDSecure2Required",
        "return_url": "https://shop.example/return",
    })
    assert intent.status == "requires_action"
    assert intent.next_action is not None and intent.next_action.type == "redirect_to_url"
    redirect = intent.next_action.redirect_to_url
    assert redirect is not None and redirect.url is not None
    assert "/sandbox/3ds/" in redirect.url
    assert redirect.return_url == "https://shop.example/return"
    assert intent.last_payment_error is None and intent.amount_received == 0
    done = answer_challenge(redirect.url, "complete")  # the page sends the payer back
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("https://shop.example/return")
    settled = sdk.v1.payment_intents.retrieve(intent.id)
    deadline = time.monotonic() + 30  # the answer reaches paymux as the sandbox's webhook
    while settled.status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
        settled = sdk.v1.payment_intents.retrieve(intent.id)
    assert (settled.status, settled.next_action, settled.amount_received) == (
        "succeeded", None, 2500)
