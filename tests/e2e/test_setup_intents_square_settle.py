"""A Square setup left pending by a crash between the browser's tokens and CreateCard is
settled by paymux alone (here a read; the ``refresh_setup_intent`` job runs the same
``_settle``), without the client's retry: the payer's verifyBuyer token (intent STORE) is kept with the pending attempt, so the
keyed CreateCard is sent again identically and Square replays the one card it made. Square
is the stateful fake at the HTTP seam (tests/support/fake_square.py); no inline retries
(PAYMUX_GATEWAY_RETRIES=0), so the lost answer leaves the setup pending, as a crash does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import Api, RunningServer, free_port
from support.fake_square import FakeSquare
from support.served import account_api, served

ACCESS_TOKEN = "EAAAl9fK2xQ7" + "sEtTlEpEnD1x" * 5
SIGNATURE_KEY = "sq-webhook-key-" + "c2V0dGxl" * 3
VERIFICATION = "verf:CA4SEKsettleAfterCrashStore"


@dataclass
class Env:
    server: RunningServer
    fake: FakeSquare


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/square"
    fake = FakeSquare(
        access_token=ACCESS_TOKEN, signature_key=SIGNATURE_KEY, webhook_url=hook
    ).start()
    with served(
        tmp_path_factory,
        "square-setup-settle",
        port=port,
        also_stop=[fake],
        square_access_token=ACCESS_TOKEN,
        square_location_id=fake.location_id,
        square_webhook_signature_key=SIGNATURE_KEY,
        square_webhook_url=hook,
        square_api_base=fake.url,
        square_application_id="sandbox-sq0idb-settle",
        gateway_retries=0,
    ) as server:
        yield Env(server, fake)


@pytest.fixture
def api(env: Env) -> Iterator[Api]:
    yield from account_api(env.server)


def lost_confirm(api: Api, env: Env) -> tuple[str, str]:
    """A Square setup confirmed with the card's nonce and verifyBuyer's token, whose
    CreateCard Square ran but whose answer never came back: (setup id, customer id)."""
    cus = api.ok("POST", "/v1/customers", {"email": "settle@example.com"})["id"]
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus, "gateway": "square"})
    env.fake.fail_next("POST /v2/cards", "drop")  # Square made the card; the answer is lost
    r = api.post(
        f"/v1/setup_intents/{seti['id']}/confirm",
        {
            "payment_method_data": {"type": "card", "card": {"token": "cnon:card-nonce-ok"}},
            "verification_token": VERIFICATION,
        },
    )
    assert r.status_code >= 500 or r.status_code == 402, r.text
    [(pending,)] = env.server.sql("select pending from setup_intents where id = :i", i=seti["id"])
    assert pending  # the attempt's outcome is unknown to paymux
    return str(seti["id"]), str(cus)


def square_cards(env: Env, square_customer: str) -> list[str]:
    return [c["id"] for c in env.fake.state.cards.values() if c["customer_id"] == square_customer]


def square_customer_of(env: Env) -> str:
    [sent] = [c.body for c in env.fake.calls_to("POST", "/v2/cards")][-1:]
    return str(sent["card"]["customer_id"])


def test_a_read_settles_the_pending_setup_with_the_kept_verification_token(
    api: Api, env: Env
) -> None:
    seti, cus = lost_confirm(api, env)
    square_customer = square_customer_of(env)
    # The token is kept with the attempt, but no view shows it.
    raw = api.get(f"/v1/setup_intents/{seti}")
    assert raw.status_code == 200, raw.text
    assert VERIFICATION not in raw.text
    done = raw.json()
    assert (done["status"], done["next_action"]) == ("succeeded", None)
    # CreateCard sent again with the same key and the same verification token: Square
    # replayed the one card it made.
    sent = [
        c
        for c in env.fake.calls_to("POST", "/v2/cards")
        if c.body["card"]["customer_id"] == square_customer
    ]
    assert [c.body["verification_token"] for c in sent] == [VERIFICATION, VERIFICATION]
    assert len({c.body["idempotency_key"] for c in sent}) == 1
    [card] = square_cards(env, square_customer)
    listed = api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]
    assert [pm["id"] for pm in listed] == [done["payment_method"]]
    # Settled once: one succeeded event; the token is gone from the row.
    events = api.ok("GET", "/v1/events", params={"type": "setup_intent.succeeded"})["data"]
    assert [e["data"]["object"]["id"] for e in events].count(seti) == 1
    [(stored,)] = env.server.sql("select next_action from setup_intents where id = :i", i=seti)
    assert stored is None or VERIFICATION not in json.dumps(stored)
    assert card  # the card on file
