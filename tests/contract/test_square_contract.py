"""Every request the Square connector sends, checked by Prism against Square's own api.json.

One Prism server (it takes ~20 s to load Square's spec) serves this module on a free loopback
port. Each test drives the connector's real methods through the official SDK; an httpx
response hook (on the HTTP client the connector is given: the SDK's own seam) records what
went over the wire, and each exchange must be valid: no 422, no request violation in
``sl-violations``, the bearer token and Square-Version header sent. Prism answers with the
spec's examples, which the transformers must parse.

Skipped when Prism or the prepared spec is missing, unless CI or PAYMUX_TEST_SANDBOXES=required:
then it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    GatewayStatus,
    GatewayUnavailable,
)
from paymux.gateways.square import SquareGateway
from paymux.money import Money
from support.sandboxes import Prism, violations

T = TypeVar("T")

TOKEN = "EAAAl" + "x7Kq2" * 12
LOCATION = "L88917AVBK2S5"
PAYMENT_ID = "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY"
PI = "pi_contract00000000000000001"


def _required() -> bool:
    return os.environ.get("CI") in ("true", "1") or (
        os.environ.get("PAYMUX_TEST_SANDBOXES") == "required"
    )


SQUARE_PATHS = (
    "/v2/payments",
    "/v2/payments/{payment_id}",
    "/v2/payments/{payment_id}/complete",
    "/v2/payments/{payment_id}/cancel",
    "/v2/refunds",
    "/v2/refunds/{refund_id}",
    "/v2/customers",
    "/v2/cards",
    "/v2/cards/{card_id}",
    "/v2/cards/{card_id}/disable",
)


@pytest.fixture(scope="module")
def prism() -> Iterator[Prism]:
    reason = Prism.unavailable("square")
    if reason:
        if _required():
            pytest.fail(reason)
        pytest.skip(reason)
    # The operations the tests below call, as the published spec names them.
    server = Prism("square", paths=SQUARE_PATHS).start()
    try:
        yield server
    finally:
        server.stop()


def drive(
    prism: Prism, call: Callable[[SquareGateway], Awaitable[T]]
) -> tuple[T, list[httpx.Response]]:
    """Run ``call`` on a connector pointed at Prism; return its result and the exchanges."""
    seen: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response)

    async def main() -> T:
        client = httpx.AsyncClient(event_hooks={"response": [record]}, timeout=15)
        gateway = SquareGateway(TOKEN, location_id=LOCATION, api_base=prism.url,
                                http_client=client)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()
            await client.aclose()

    return asyncio.run(main()), seen


def valid(responses: list[httpx.Response], *expected: tuple[str, str]) -> list[dict[str, Any]]:
    """Assert the exchanges are the expected operations and Prism found nothing wrong; return
    the request bodies."""
    assert [(r.request.method, r.request.url.path) for r in responses] == list(expected)
    bodies = []
    for r in responses:
        assert r.status_code != 422, (r.text, r.headers.get("sl-violations"))
        assert 200 <= r.status_code < 300, r.text
        assert violations(r) == [], r.headers.get("sl-violations")
        assert r.request.headers["authorization"] == f"Bearer {TOKEN}"
        assert r.request.headers["square-version"]
        bodies.append(json.loads(r.request.content) if r.request.content else {})
    return bodies


def authorize_request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {"amount": Money(1000, "USD"),
                              "payment_method_token": "cnon:card-nonce-ok",
                              "capture": True, "reference": PI}
    values.update(fields)
    return AuthorizeRequest(**values)


def test_create_payment_with_automatic_capture_is_valid_and_its_answer_parsed(
    prism: Prism,
) -> None:
    result, seen = drive(prism, lambda g: g.authorize(
        authorize_request(description="Order 7", statement_descriptor="ORDER7"),
        idempotency_key=f"{PI}:authorize:1"))
    [body] = valid(seen, ("POST", "/v2/payments"))
    assert body["autocomplete"] is True and body["source_id"] == "cnon:card-nonce-ok"
    assert body["amount_money"] == {"amount": 1000, "currency": "USD"}
    assert body["reference_id"] == PI and body["location_id"] == LOCATION
    assert body["idempotency_key"] == f"{PI}:authorize:1"
    assert result.status is GatewayStatus.SUCCEEDED  # the example payment is COMPLETED
    assert (result.reference, result.amount_captured) == (PAYMENT_ID, 1000)


def test_create_payment_for_delayed_capture_with_a_card_on_file_is_valid(prism: Prism) -> None:
    result, seen = drive(prism, lambda g: g.authorize(
        authorize_request(capture=False, payment_method_token="ccof:GaJGNaZa8x4OgDJn4GB",
                          customer_token="W92WH6P11H4Z77CTET0RNTGFW8", off_session=True,
                          amount=Money(5000, "JPY")),
        idempotency_key=f"{PI}:authorize:2"))
    [body] = valid(seen, ("POST", "/v2/payments"))
    assert body["autocomplete"] is False
    assert body["customer_id"] == "W92WH6P11H4Z77CTET0RNTGFW8"
    assert body["amount_money"] == {"amount": 5000, "currency": "JPY"}
    assert result.reference == PAYMENT_ID


def test_get_payment_is_valid_and_capture_reads_the_payment_first(prism: Prism) -> None:
    retrieved, seen = drive(prism, lambda g: g.retrieve("bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"))
    valid(seen, ("GET", "/v2/payments/bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"))
    assert retrieved.status is GatewayStatus.SUCCEEDED and retrieved.amount_captured == 555
    # The example is already COMPLETED: a capture (e.g. a retry) changes nothing more.
    captured, seen = drive(prism, lambda g: g.capture(
        "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY", Money(555, "USD"), idempotency_key=f"{PI}:capture"))
    valid(seen, ("GET", "/v2/payments/bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"))
    assert captured.status is GatewayStatus.SUCCEEDED


def test_update_payment_then_complete_payment_are_valid(prism: Prism) -> None:
    approved = {"id": "1QjqpBVyrI9S4H9sTGDWU9JeiWdZY", "status": "APPROVED",
                "amount_money": {"amount": 1000, "currency": "USD"},
                "version_token": "rDrXnqiS7fJgexccgdpzmwqTiXui1aIKCp9EchZ7trE6o",
                "capabilities": ["EDIT_AMOUNT_DOWN"]}

    async def partial_capture(g: SquareGateway) -> Any:
        lowered = await g.update_amount(approved, Money(700, "USD"),
                                        idempotency_key=f"{PI}:capture")
        assert lowered["status"] == "APPROVED"  # the spec's UpdatePayment example
        return await g.complete(lowered)

    result, seen = drive(prism, partial_capture)
    update, complete = valid(seen, ("PUT", "/v2/payments/1QjqpBVyrI9S4H9sTGDWU9JeiWdZY"),
                             ("POST", "/v2/payments/1QjqpBVyrI9S4H9sTGDWU9JeiWdZY/complete"))
    assert update["payment"]["amount_money"] == {"amount": 700, "currency": "USD"}
    assert update["payment"]["version_token"] == approved["version_token"]
    assert len(update["idempotency_key"]) <= 45
    assert complete["version_token"] == "rDrXnqiS7fJgexccgdpzmwqTiXui1aIKCp9EchZ7trE6o"
    assert result.status is GatewayStatus.SUCCEEDED and result.amount_captured == 555


def test_cancel_payment_is_valid(prism: Prism) -> None:
    result, seen = drive(prism, lambda g: g.void("1QjqpBVyrI9S4H9sTGDWU9JeiWdZY",
                                                 idempotency_key=f"{PI}:cancel"))
    valid(seen, ("POST", "/v2/payments/1QjqpBVyrI9S4H9sTGDWU9JeiWdZY/cancel"))
    assert result.status is GatewayStatus.CANCELED


@pytest.mark.parametrize("amount", [1000, 250], ids=["full", "partial"])
def test_refund_payment_is_valid_in_full_and_in_part(prism: Prism, amount: int) -> None:
    result, seen = drive(prism, lambda g: g.refund(
        PAYMENT_ID, Money(amount, "USD"), "requested_by_customer",
        idempotency_key="re_contract000000000000001:refund"))
    [body] = valid(seen, ("POST", "/v2/refunds"))
    assert body["payment_id"] == PAYMENT_ID
    assert body["amount_money"] == {"amount": amount, "currency": "USD"}
    assert body["idempotency_key"] == "re_contract000000000000001:refund"
    assert body["reason"] == "requested_by_customer [paymux re_contract000000000000001]"
    assert result.status == "pending" and result.payment_reference == PAYMENT_ID
    assert result.reference and result.reference.startswith(PAYMENT_ID)


def test_create_customer_is_valid(prism: Prism) -> None:
    token, seen = drive(prism, lambda g: g.create_customer(
        "cus_contract0000000000000001", "amelia@example.com",
        idempotency_key="cus_contract0000000000000001:create_customer:square"))
    [body] = valid(seen, ("POST", "/v2/customers"))
    assert body["reference_id"] == "cus_contract0000000000000001"
    assert body["email_address"] == "amelia@example.com"
    assert len(body["idempotency_key"]) <= 45
    assert token == "JDKYHBWT1D4F8MFH63DBMEN8Y4"


def test_create_card_is_valid_and_the_card_on_file_replaces_the_token(prism: Prism) -> None:
    details, seen = drive(prism, lambda g: g.attach_payment_method(
        "cnon:card-nonce-ok", "VDKXEEKPJN48QDG3BGGFAK05P8",
        idempotency_key="pm_contract000000000000001:attach:cus_contract0000000000000001"))
    [body] = valid(seen, ("POST", "/v2/cards"))
    assert body["source_id"] == "cnon:card-nonce-ok"
    assert body["card"] == {"customer_id": "VDKXEEKPJN48QDG3BGGFAK05P8"}
    assert len(body["idempotency_key"]) <= 45
    assert details == CardDetails(
        token="ccof:uIbfJXhXETSP197M3GB", type="card", brand="visa", last4="1111",
        exp_month=11, exp_year=2022,
        fingerprint="ex-p-cs80EK9Flz7LsCMv-szbptQ_ssAGrhemzSTsPFgt9nzyE6t7okiLIQc-qw_quqKX4Q",
        funding="credit", bin="411111")  # the spec's example Card carries its BIN


def test_retrieve_card_is_valid(prism: Prism) -> None:
    details, seen = drive(prism, lambda g: g.describe_payment_method("ccof:uIbfJXhXETSP197M3GB"))
    valid(seen, ("GET", "/v2/cards/ccof:uIbfJXhXETSP197M3GB"))
    assert details is not None and details.last4 == "1111"


def test_disable_card_is_valid(prism: Prism) -> None:
    _, seen = drive(prism, lambda g: g.detach_payment_method(
        "ccof:uIbfJXhXETSP197M3GB", idempotency_key="pm_1:detach:cus_1"))
    valid(seen, ("POST", "/v2/cards/ccof:uIbfJXhXETSP197M3GB/disable"))


def test_create_payment_with_a_buyer_verification_token_is_valid(prism: Prism) -> None:
    _, seen = drive(prism, lambda g: g.authorize(
        authorize_request(verification_token="verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"),
        idempotency_key=f"{PI}:authorize:3"))
    [body] = valid(seen, ("POST", "/v2/payments"))
    assert body["verification_token"] == "verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"


def test_a_merchant_initiated_payment_is_flagged_as_not_customer_initiated(prism: Prism) -> None:
    """3-D Secure (issue 12): an off-session charge of a card on file says so with
    CreatePayment's customer_details, valid against Square's spec."""
    _, seen = drive(prism, lambda g: g.authorize(
        authorize_request(payment_method_token="ccof:GaJGNaZa8x4OgDJn4GB",
                          customer_token="W92WH6P11H4Z77CTET0RNTGFW8", off_session=True),
        idempotency_key=f"{PI}:authorize:4"))
    [body] = valid(seen, ("POST", "/v2/payments"))
    assert body["customer_details"] == {"customer_initiated": False}


def test_3ds_asked_without_a_verify_buyer_token_sends_nothing(prism: Prism) -> None:
    result, seen = drive(prism, lambda g: g.authorize(
        authorize_request(request_three_d_secure="challenge"),
        idempotency_key=f"{PI}:authorize:5"))
    assert seen == []
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None
    assert result.decline.gateway_code == "CARD_DECLINED_VERIFICATION_REQUIRED"


def test_list_payments_for_a_lookup_is_valid(prism: Prism) -> None:
    found, seen = drive(prism, lambda g: g.lookup(PI, f"{PI}:authorize:1"))
    [_] = valid(seen, ("GET", "/v2/payments"))
    params = dict(seen[0].request.url.params)
    assert (params["sort_order"], params["location_id"], params["limit"]) == (
        "DESC", LOCATION, "100")
    assert params["begin_time"].endswith("Z")
    assert found is None  # the spec's example payments carry no reference_id of ours


def test_get_and_list_payment_refunds_are_valid(prism: Prism) -> None:
    refund_id = f"{PAYMENT_ID}_KlWP8IC1557ddwc9QWTKrCVU6m0JXDz15R2Qym5eQfR"
    by_id, seen = drive(prism, lambda g: g.retrieve_refund(
        refund_id, our_id="re_contract", payment_reference=PAYMENT_ID))
    valid(seen, ("GET", f"/v2/refunds/{refund_id}"))
    assert by_id is not None and by_id.reference is not None

    async def by_ours(g: SquareGateway) -> Any:
        try:
            return await g.retrieve_refund(None, our_id="re_contract",
                                           payment_reference=PAYMENT_ID)
        except GatewayUnavailable as exc:
            return exc

    outcome, seen = drive(prism, by_ours)
    calls = [(r.request.method, r.request.url.path) for r in seen]
    assert calls[0] == ("GET", f"/v2/payments/{PAYMENT_ID}")
    assert calls[-2:] == [("GET", "/v2/refunds"), ("GET", "/v2/refunds")]
    valid(seen, *calls)
    # The examples' refunds are not ours, and Prism's example list always has a cursor (the
    # same one): the second page repeats it, so the answer is "unknown", never "none".
    assert isinstance(outcome, GatewayUnavailable)
    first, second = (dict(r.request.url.params) for r in seen[-2:])
    assert "cursor" not in first and second["cursor"]


def test_putting_an_amount_back_is_a_valid_update_payment(prism: Prism) -> None:
    lowered = {"id": "1QjqpBVyrI9S4H9sTGDWU9JeiWdZY", "status": "APPROVED",
               "amount_money": {"amount": 700, "currency": "USD"},
               "version_token": "rDrXnqiS7fJgexccgdpzmwqTiXui1aIKCp9EchZ7trE6o"}
    original = {**lowered, "amount_money": {"amount": 1000, "currency": "USD"}}

    async def restore(g: SquareGateway) -> None:
        await g._restore_amount(lowered, original, f"{PI}:capture")

    _, seen = drive(prism, restore)
    [body] = valid(seen, ("PUT", "/v2/payments/1QjqpBVyrI9S4H9sTGDWU9JeiWdZY"))
    assert body["payment"] == {"amount_money": {"amount": 1000, "currency": "USD"},
                               "version_token": "rDrXnqiS7fJgexccgdpzmwqTiXui1aIKCp9EchZ7trE6o"}
    assert len(body["idempotency_key"]) <= 45


def test_a_setup_saves_a_card_on_file_with_a_valid_create_card(prism: Prism) -> None:
    """SetupIntents on Square: CreateCard from the token for the customer (keyed by the
    setup's step); the card on file is what later payments charge."""
    from paymux.gateways.base import SetupRequest

    request = SetupRequest(payment_method_token="cnon:card-nonce-ok",
                           customer_token="VDKXEEKPJN48QDG3BGGFAK05P8", reference="seti_sq1")
    result, seen = drive(prism, lambda g: g.setup(request, idempotency_key="seti_sq1:setup:1"))
    [body] = valid(seen, ("POST", "/v2/cards"))
    assert body["source_id"] == "cnon:card-nonce-ok"
    assert body["idempotency_key"] == "seti_sq1:setup:1"
    assert body["card"] == {"customer_id": "VDKXEEKPJN48QDG3BGGFAK05P8"}
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.card is not None and result.card.token == "ccof:uIbfJXhXETSP197M3GB"
    assert result.reference == "ccof:uIbfJXhXETSP197M3GB"

    again, seen = drive(prism, lambda g: g.retrieve_setup(
        "ccof:uIbfJXhXETSP197M3GB", idempotency_key="seti_sq1:attach:1"))
    valid(seen, ("GET", "/v2/cards/ccof:uIbfJXhXETSP197M3GB"))
    assert again.status is GatewayStatus.SUCCEEDED
    assert again.card is not None and again.card.last4 == "1111"
