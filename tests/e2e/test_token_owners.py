"""A token a gateway issues when it saves a card (Square's card on file, ``ccof:``, from a
SetupIntent or an attach) is the account's: its ``gateway_token_owners`` row is written with
the payment method, and another account naming it gets a 404, as for any other account's
token. Square is faked at the HTTP seam (support.fake_square); SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import Api, RunningServer, database_url, free_port, make_settings
from paymux.storage.migrate import upgrade
from support.fake_square import FakeSquare
from support.pgcluster import PgCluster

ACCESS_TOKEN = "EAAAl9fK2xQ7" + "wS4qU9nX2oA6" * 5  # the shape of a Square sandbox token
SIGNATURE_KEY = "sq-webhook-key-" + "b3duZXJz" * 3
OK = "cnon:card-nonce-ok"


@dataclass
class Env:
    server: RunningServer
    fake: FakeSquare


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp(f"owners-{request.param}")
    url = database_url(request.param, tmp, pg_cluster, f"owners_{request.param}")
    upgrade(url)
    port = free_port()
    webhook_url = f"http://127.0.0.1:{port}/webhooks/square"
    fake = FakeSquare(access_token=ACCESS_TOKEN, signature_key=SIGNATURE_KEY,
                      webhook_url=webhook_url).start()
    settings = make_settings(
        url, tmp, port, square_access_token=ACCESS_TOKEN, square_location_id=fake.location_id,
        square_webhook_signature_key=SIGNATURE_KEY, square_webhook_url=webhook_url,
        square_api_base=fake.url, square_application_id="sandbox-sq0idb-owners",
    )
    running = RunningServer(settings).start()
    try:
        yield Env(running, fake)
    finally:
        running.stop()
        fake.stop()


@pytest.fixture
def two(env: Env) -> Iterator[tuple[Api, Api]]:
    a, b = Api(env.server), Api(env.server)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def owner_of(server: RunningServer, token: str) -> list[str]:
    rows = server.sql(
        "select account_id from gateway_token_owners where gateway = 'square' and token = :t",
        t=token,
    )
    return [str(r[0]) for r in rows]


def refused_to(b: Api, token: str) -> None:
    """Account B naming A's token: a payment, an attach, a SetupIntent: each a 404."""
    cus = b.ok("POST", "/v1/customers", {"email": "b@example.com"})["id"]
    before = b.counts()
    answers = [
        b.post("/v1/payment_intents", {
            "amount": 900, "currency": "usd", "gateway": "square", "customer": cus,
            "payment_method": token, "confirm": True, "off_session": True}),
        b.post(f"/v1/payment_methods/{token}/attach", {"customer": cus, "gateway": "square"}),
        b.post("/v1/setup_intents", {
            "customer": cus, "gateway": "square", "payment_method": token, "confirm": True}),
    ]
    for r in answers:
        assert r.status_code == 404, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["param"]) == (
            "resource_missing", "payment_method")
    assert b.counts() == before


def test_a_setup_intents_card_on_file_is_owned_by_its_account(
    env: Env, two: tuple[Api, Api]
) -> None:
    a, b = two
    cus = a.ok("POST", "/v1/customers", {"email": "a@example.com"})["id"]
    seti = a.ok("POST", "/v1/setup_intents", {
        "customer": cus, "gateway": "square", "payment_method": OK, "confirm": True})
    assert seti["status"] == "succeeded"
    pm = a.ok("GET", f"/v1/payment_methods/{seti['payment_method']}")
    token = pm["gateway_token"]
    assert token.startswith("ccof:") and token in env.fake.state.cards
    assert owner_of(env.server, token) == [a.account_id]
    refused_to(b, token)
    # A still charges it off-session.
    paid = a.ok("POST", "/v1/payment_intents", {
        "amount": 700, "currency": "usd", "gateway": "square", "customer": cus,
        "payment_method": pm["id"], "confirm": True, "off_session": True})
    assert paid["status"] == "succeeded"


def test_an_attached_card_on_file_is_owned_by_its_account(
    env: Env, two: tuple[Api, Api]
) -> None:
    a, b = two
    cus = a.ok("POST", "/v1/customers", {"email": "a2@example.com"})["id"]
    saved = a.ok("POST", f"/v1/payment_methods/{OK}/attach", {"customer": cus, "gateway": "square"})
    token = saved["gateway_token"]
    assert token.startswith("ccof:")
    assert owner_of(env.server, token) == [a.account_id]
    refused_to(b, token)
    assert httpx.get(f"{env.server.url}/v1/payment_methods/{saved['id']}", timeout=10,
                     headers={"authorization": f"Bearer {b.key}"}).status_code == 404
