"""The Square connector's SetupIntent operation (a card on file) against the stateful fake
Square (tests/support/fake_square.py, Square replaced at the HTTP seam on 127.0.0.1): the
payer's verifyBuyer token for storing the card (intent STORE) goes with the nonce to
CreateCard; a retry under the same key replays the same card; a retry that lost the token
(a setup left pending and then read) is an unknown outcome, never a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from paymux.gateways.base import GatewayStatus, GatewayUnavailable, SetupRequest, SetupResult
from paymux.gateways.square import SquareGateway
from support.fake_square import FakeSquare

T = TypeVar("T")
ACCESS_TOKEN = "EAAAl9fK2xQ9" + "vR3pT8mW1nZ7" * 5
SIGNATURE_KEY = "sq-webhook-key-" + "c2V0dXBz" * 3
VERIFICATION = "verf:CA4SEKxQ2Wd0setupStore"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSquare]:
    server = FakeSquare(access_token=ACCESS_TOKEN, signature_key=SIGNATURE_KEY,
                        webhook_url="http://127.0.0.1:9/webhooks/square").start()
    try:
        yield server
    finally:
        server.stop()


def run(fake: FakeSquare, call: Callable[[SquareGateway], Awaitable[T]]) -> T:
    async def go() -> T:
        gateway = SquareGateway(ACCESS_TOKEN, location_id=fake.location_id, api_base=fake.url,
                                timeout=5)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def customer(fake: FakeSquare, reference: str) -> str:
    return run(fake, lambda g: g.create_customer(reference, None,
                                                 idempotency_key=f"{reference}:create_customer"))


def setup(token: str, customer_token: str, verification: str | None) -> SetupRequest:
    return SetupRequest(payment_method_token=token, customer_token=customer_token,
                        reference="seti_sq1", verification_token=verification)


def test_the_verification_token_reaches_create_card_and_a_retry_replays_the_card(
    fake: FakeSquare,
) -> None:
    cust = customer(fake, "cus_sq1")
    request = setup("cnon:card-nonce-ok", cust, VERIFICATION)

    async def twice(g: SquareGateway) -> list[SetupResult]:
        return [await g.setup(request, idempotency_key="seti_sq1:setup:1"),
                await g.setup(request, idempotency_key="seti_sq1:setup:1")]

    first, again = run(fake, twice)
    assert first.status is GatewayStatus.SUCCEEDED
    assert first.card is not None and first.card.token.startswith("ccof:")
    assert again.card is not None and again.card.token == first.card.token
    assert first.reference == first.card.token  # the card on file is the setup's reference
    sent = [c.body for c in fake.calls_to("POST", "/v2/cards")
            if c.body["card"]["customer_id"] == cust]
    assert [b["verification_token"] for b in sent] == [VERIFICATION, VERIFICATION]
    assert sent[0]["source_id"] == "cnon:card-nonce-ok"
    assert [c["id"] for c in fake.state.cards.values() if c["customer_id"] == cust] == [
        first.card.token]


def test_a_setup_without_a_verification_token_sends_none(fake: FakeSquare) -> None:
    cust = customer(fake, "cus_sq2")
    result = run(fake, lambda g: g.setup(setup("cnon:card-nonce-ok", cust, None),
                                         idempotency_key="seti_sq2:setup:1"))
    assert result.status is GatewayStatus.SUCCEEDED
    [sent] = [c.body for c in fake.calls_to("POST", "/v2/cards")
              if c.body["card"]["customer_id"] == cust]
    assert "verification_token" not in sent


def test_a_retry_that_lost_the_verification_token_is_an_unknown_outcome_not_a_refusal(
    fake: FakeSquare,
) -> None:
    cust = customer(fake, "cus_sq3")
    made = run(fake, lambda g: g.setup(setup("cnon:card-nonce-ok", cust, VERIFICATION),
                                       idempotency_key="seti_sq3:setup:1"))
    assert made.card is not None

    async def without(g: SquareGateway) -> Exception:
        try:
            await g.setup(setup("cnon:card-nonce-ok", cust, None),
                          idempotency_key="seti_sq3:setup:1")
        except GatewayUnavailable as exc:
            return exc
        raise AssertionError("no error")

    assert isinstance(run(fake, without), GatewayUnavailable)
    # The retry that sends the token again reads the same card; no second one was made.
    back = run(fake, lambda g: g.setup(setup("cnon:card-nonce-ok", cust, VERIFICATION),
                                       idempotency_key="seti_sq3:setup:1"))
    assert back.card is not None and back.card.token == made.card.token
    assert len([c for c in fake.state.cards.values() if c["customer_id"] == cust]) == 1


def test_a_declined_card_is_a_failed_setup_with_the_decline(fake: FakeSquare) -> None:
    cust = customer(fake, "cus_sq4")
    result = run(fake, lambda g: g.setup(setup("cnon:card-nonce-declined", cust, VERIFICATION),
                                         idempotency_key="seti_sq4:setup:1"))
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None and result.decline.gateway_code == "GENERIC_DECLINE"
    assert [c for c in fake.state.cards.values() if c["customer_id"] == cust] == []
