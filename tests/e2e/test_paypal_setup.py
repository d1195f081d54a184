"""The PayPal connector's SetupIntent operation (Vault v3) against the scripted fake PayPal
(tests/support/paypal_fake.py, PayPal replaced at the HTTP seam on 127.0.0.1): an approved
setup token becomes a payment token once, however often the step is retried with its key;
one that waits for the payer answers ``requires_action`` with PayPal's approve link, and is
saved when read after the payer approved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from paymux.gateways.base import GatewayInvalidRequest, GatewayStatus, SetupRequest
from paymux.gateways.paypal import PayPalGateway
from support.paypal_fake import FakePayPal

T = TypeVar("T")
CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID = "AYsetupclient", "EPsetup-secret", "WH-SETUP"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePayPal]:
    server = FakePayPal(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID).start()
    try:
        yield server
    finally:
        server.stop()


def run(fake: FakePayPal, call: Callable[[PayPalGateway], Awaitable[T]]) -> T:
    async def go() -> T:
        gateway = PayPalGateway(CLIENT_ID, CLIENT_SECRET, api_base=fake.url)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def request(token: str, **kw: Any) -> SetupRequest:
    return SetupRequest(payment_method_token=token, customer_token="pmx_c1",
                        reference="seti_paypal1", **kw)


def test_an_approved_setup_token_is_saved_once_whatever_the_retries(fake: FakePayPal) -> None:
    token = fake.create_setup_token("card")
    before = len(fake.payment_tokens)

    async def twice(g: PayPalGateway) -> list[Any]:
        return [await g.setup(request(token), idempotency_key="seti_paypal1:setup:1"),
                await g.setup(request(token), idempotency_key="seti_paypal1:setup:1")]

    first, again = run(fake, twice)
    assert first.status is GatewayStatus.SUCCEEDED
    assert first.card is not None and first.card.token.startswith("card:")
    assert (first.card.brand, first.card.last4) == ("visa", "1111")
    assert again.card is not None and again.card.token == first.card.token
    assert len(fake.payment_tokens) == before + 1
    saves = [h for m, p, h in fake.requests if (m, p) == ("POST", "/v3/vault/payment-tokens")]
    assert {h["paypal-request-id"] for h in saves[-2:]} == {"seti_paypal1:setup:1:attach"}


def test_a_setup_token_waiting_for_the_payer_asks_for_the_approval_then_saves(
    fake: FakePayPal,
) -> None:
    token = fake.create_setup_token("paypal")
    approve = f"https://www.sandbox.paypal.com/agreements/approve?approval_session_id={token}"
    with fake.lock:
        fake.setup_tokens[token]["status"] = "PAYER_ACTION_REQUIRED"
        fake.setup_tokens[token]["links"] = [{"rel": "approve", "href": approve, "method": "GET"}]
    waiting = run(fake, lambda g: g.setup(request(token), idempotency_key="seti_p2:setup:1"))
    assert waiting.status is GatewayStatus.REQUIRES_ACTION
    assert waiting.reference == token
    assert waiting.next_action == {"type": "redirect_to_url",
                                   "redirect_to_url": {"url": approve}}
    with fake.lock:
        fake.setup_tokens[token]["status"] = "APPROVED"  # the payer approved at PayPal
    done = run(fake, lambda g: g.retrieve_setup(token, idempotency_key="seti_p2:attach:1"))
    assert done.status is GatewayStatus.SUCCEEDED
    assert done.card is not None and done.card.token.startswith("paypal:")


def test_a_wallet_setup_needs_a_return_url(fake: FakePayPal) -> None:
    async def call(g: PayPalGateway) -> Exception:
        try:
            await g.setup(request(""), idempotency_key="seti_p3:setup:1")
        except GatewayInvalidRequest as exc:
            return exc
        raise AssertionError("no error")

    error = run(fake, call)
    assert isinstance(error, GatewayInvalidRequest) and error.code == "return_url_required"
