"""An Idempotency-Key is per account *and mode*, as on Stripe (SQLite and PostgreSQL).

The hole this closes: a merchant that tries its integration in test mode and then goes live
with deterministic keys (``order-123``) sent the live request under a key its test run had
used. paymux replayed the stored *test* answer: a test customer, or a test payment that
"succeeded", with no live charge behind it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from conftest import Api, RunningServer
from paymux.services import Paymux
from paymux.services.idempotency import request_fingerprint


class LiveKey:
    """A live secret key of ``api``'s account, on the same server."""

    def __init__(self, api: Api) -> None:
        async def make() -> str:
            app = Paymux(api.server.settings)
            try:
                new, _ = await app.keys.create(api.account_id, livemode=True)
                return new.key
            finally:
                await app.close()

        self.http = httpx.Client(
            base_url=api.server.url, timeout=30,
            # Live keys over TLS only: through the test server's trusted proxy (127.0.0.1).
            headers={"authorization": f"Bearer {asyncio.run(make())}",
                     "x-forwarded-proto": "https"},
        )


@pytest.fixture
def live(api: Api) -> Iterator[httpx.Client]:
    client = LiveKey(api).http
    yield client
    client.close()


def key() -> str:
    return f"order-{uuid.uuid4()}"


def test_a_live_request_never_gets_the_test_answer_stored_under_its_key(
    api: Api, live: httpx.Client
) -> None:
    k, body = key(), {"email": "jenny@example.com"}
    test = api.post("/v1/customers", body, headers={"Idempotency-Key": k})
    assert test.status_code == 200, test.text
    assert test.json()["livemode"] is False

    first_live = live.post("/v1/customers", json=body, headers={"Idempotency-Key": k})
    assert first_live.status_code == 200, first_live.text
    assert "idempotent-replayed" not in first_live.headers
    assert first_live.json()["livemode"] is True
    assert first_live.json()["id"] != test.json()["id"]
    # What the live key got is a live object it can read.
    assert live.get(f"/v1/customers/{first_live.json()['id']}").status_code == 200

    # Each mode replays its own answer from now on.
    live_again = live.post("/v1/customers", json=body, headers={"Idempotency-Key": k})
    assert live_again.headers.get("idempotent-replayed") == "true"
    assert live_again.json() == first_live.json()
    test_again = api.post("/v1/customers", body, headers={"Idempotency-Key": k})
    assert test_again.headers.get("idempotent-replayed") == "true"
    assert test_again.json() == test.json()


def test_a_test_payment_that_succeeded_is_not_the_live_answer(
    api: Api, live: httpx.Client
) -> None:
    k = key()
    body = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    test = api.post("/v1/payment_intents", body, headers={"Idempotency-Key": k})
    assert test.status_code == 200, test.text
    assert (test.json()["status"], test.json()["livemode"]) == ("succeeded", False)

    answer = live.post("/v1/payment_intents", json=body, headers={"Idempotency-Key": k})
    # The live request ran in live mode (whatever its outcome on this server, which has no
    # live connection): it is not the test payment, replayed.
    assert "idempotent-replayed" not in answer.headers
    assert test.json()["id"] not in answer.text
    if answer.status_code == 200:
        assert answer.json()["livemode"] is True


def test_different_parameters_in_the_other_mode_are_not_a_mismatch(
    api: Api, live: httpx.Client
) -> None:
    k = key()
    assert api.post("/v1/customers", {"name": "Test"}, headers={"Idempotency-Key": k}
                    ).status_code == 200
    r = live.post("/v1/customers", json={"name": "Live"}, headers={"Idempotency-Key": k})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["livemode"]) == ("Live", True)


def test_a_key_still_in_flight_in_one_mode_does_not_block_the_other(
    api: Api, live: httpx.Client, server: RunningServer
) -> None:
    k = key()
    # A test-mode request under k that is still running (its row in_flight, lease fresh).
    server.sql(
        "insert into idempotency_keys (account_id, livemode, key, method, path, request_hash, "
        "status, locked_us, created_us) values (:a, :f, :k, 'POST', '/v1/customers', :h, "
        "'in_flight', :now, :now)",
        a=api.account_id, f=False, k=k, now=2**62,
        h=request_fingerprint("POST", "/v1/customers", {}),
    )
    assert api.post("/v1/customers", {}, headers={"Idempotency-Key": k}).status_code == 409
    r = live.post("/v1/customers", json={}, headers={"Idempotency-Key": k})
    assert r.status_code == 200, r.text
    assert r.json()["livemode"] is True
