"""The PayPal connector's pure parts: amounts, every status, errors, webhook events, and
offline signature verification with a CA made here. The connector's HTTP seam is driven
through httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from paymux.domain.errors import card_error
from paymux.gateways.base import (
    AuthorizeRequest,
    DisputeUpdate,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    WebhookVerificationError,
)
from paymux.gateways.connectors import connectors
from paymux.gateways.paypal import PayPalGateway, transformers
from paymux.gateways.paypal.webhooks import (
    OfflineVerifier,
    api_request_body,
    signed_message,
    transmission,
)
from paymux.money import Money
from support.paypal import CERT_URL, TestCA, sign_headers

connectors()  # registers each connector's code rows, as a running paymux has them

# -- amounts -------------------------------------------------------------------------------


def test_usd_amounts_are_sent_with_two_decimals() -> None:
    assert transformers.money(Money(1050, "USD")) == {"currency_code": "USD", "value": "10.50"}
    assert transformers.amount_problem(Money(1050, "USD")) is None


def test_jpy_amounts_are_whole_yen() -> None:
    assert transformers.to_paypal(Money(1050, "JPY")) == "1050"
    assert transformers.amount_problem(Money(1050, "JPY")) is None


def test_huf_is_taken_in_whole_forints_only() -> None:
    assert transformers.to_paypal(Money(105000, "HUF")) == "1050"
    assert transformers.amount_problem(Money(105000, "HUF")) is None
    problem = transformers.amount_problem(Money(1050, "HUF"))
    assert problem is not None and "whole units" in problem
    assert transformers.amount_problem(Money(1050, "TWD")) is not None


def test_kwd_is_not_a_paypal_currency() -> None:
    gateway = PayPalGateway("id", "secret", api_base="http://127.0.0.1:9")
    assert not gateway.supports_currency("KWD") and not gateway.supports_currency("kwd")
    assert gateway.supports_currency("usd") and gateway.supports_currency("HUF")
    assert "does not support KWD" in (transformers.amount_problem(Money(1000, "KWD")) or "")
    asyncio.run(gateway.aclose())


def test_paypal_amounts_are_read_back_into_minor_units_and_placeholders_are_not_amounts() -> None:
    assert transformers.from_paypal({"currency_code": "USD", "value": "10.50"}) == 1050
    assert transformers.from_paypal({"currency_code": "HUF", "value": "1050"}) == 105000
    assert transformers.from_paypal({"currency_code": "JPY", "value": "1050"}) == 1050
    assert transformers.from_paypal({"currency_code": "str", "value": "string"}) is None
    assert transformers.from_paypal(None) is None


def test_request_ids_are_our_keys_and_long_keys_are_digested() -> None:
    assert transformers.request_id("pi_abc:authorize:1") == "pi_abc:authorize:1"
    long = transformers.request_id("x" * 300)
    assert len(long) <= 108 and long == transformers.request_id("x" * 300)


# -- statuses ------------------------------------------------------------------------------

CAPTURE_STATUS = {
    "COMPLETED": GatewayStatus.SUCCEEDED,
    "PARTIALLY_REFUNDED": GatewayStatus.SUCCEEDED,
    "REFUNDED": GatewayStatus.SUCCEEDED,
    "PENDING": GatewayStatus.PROCESSING,
    "DECLINED": GatewayStatus.FAILED,
    "FAILED": GatewayStatus.FAILED,
}
AUTHORIZATION_STATUS = {
    "CREATED": GatewayStatus.REQUIRES_CAPTURE,
    "PENDING": GatewayStatus.PROCESSING,
    "CAPTURED": GatewayStatus.SUCCEEDED,
    "PARTIALLY_CAPTURED": GatewayStatus.SUCCEEDED,
    "DENIED": GatewayStatus.FAILED,
    "VOIDED": GatewayStatus.CANCELED,
}
ORDER_STATUS = {
    # Nothing tried on it by us yet: opened for the buyer, or approved and waiting for our
    # capture/authorize (which confirming again sends).
    "CREATED": GatewayStatus.OPEN,
    "SAVED": GatewayStatus.OPEN,
    "APPROVED": GatewayStatus.OPEN,
    "PAYER_ACTION_REQUIRED": GatewayStatus.REQUIRES_ACTION,
    "VOIDED": GatewayStatus.CANCELED,
    "COMPLETED": GatewayStatus.SUCCEEDED,
}
REFUND_STATUS = {
    "COMPLETED": "succeeded",
    "PENDING": "pending",
    "FAILED": "failed",
    "CANCELLED": "canceled",
}


def test_every_paypal_status_is_in_the_tables() -> None:
    assert set(CAPTURE_STATUS) == {s.value for s in transformers.CaptureStatus}
    assert set(AUTHORIZATION_STATUS) == {s.value for s in transformers.AuthorizationStatus}
    assert set(ORDER_STATUS) == {s.value for s in transformers.OrderStatus}
    assert set(REFUND_STATUS) == {s.value for s in transformers.RefundStatus}


@pytest.mark.parametrize(("status", "expected"), CAPTURE_STATUS.items())
def test_capture_status_maps(status: str, expected: GatewayStatus) -> None:
    capture = {"id": "2GG279541U471931P", "status": status,
               "amount": {"currency_code": "USD", "value": "10.00"}}
    result = transformers.capture_result(capture, failed_reference="5O190127TN364715T")
    assert result.status is expected
    if expected is GatewayStatus.FAILED:
        assert result.decline is not None and result.decline.gateway_code == status
        assert result.reference == "5O190127TN364715T"  # the order, to approve again
    else:
        assert result.reference == "2GG279541U471931P"
    assert result.amount_captured == (1000 if expected is GatewayStatus.SUCCEEDED else 0)


@pytest.mark.parametrize(("status", "expected"), AUTHORIZATION_STATUS.items())
def test_authorization_status_maps(status: str, expected: GatewayStatus) -> None:
    auth = {"id": "0VF52814937998046", "status": status,
            "amount": {"currency_code": "EUR", "value": "25.00"}}
    result = transformers.authorization_result(auth)
    assert result.status is expected
    assert result.amount_authorized == (2500 if expected is GatewayStatus.REQUIRES_CAPTURE else 0)
    assert (result.decline is not None) == (expected is GatewayStatus.FAILED)


@pytest.mark.parametrize(("status", "expected"), ORDER_STATUS.items())
def test_order_status_maps_when_the_order_holds_no_payment(
    status: str, expected: GatewayStatus
) -> None:
    order = {"id": "5O190127TN364715T", "status": status, "intent": "CAPTURE",
             "purchase_units": [{"amount": {"currency_code": "USD", "value": "5.00"}}],
             "links": [{"rel": "payer-action", "href": "https://www.paypal.com/checkoutnow?token=5O1"}]}
    result = transformers.order_result(order)
    assert result.status is expected and result.reference == "5O190127TN364715T"
    if expected is GatewayStatus.REQUIRES_ACTION:
        assert result.next_action == {"type": "redirect_to_url", "redirect_to_url": {
            "url": "https://www.paypal.com/checkoutnow?token=5O1"}}


@pytest.mark.parametrize(("status", "expected"), REFUND_STATUS.items())
def test_refund_status_maps(status: str, expected: str) -> None:
    refund = {"id": "1JU08902781691411", "status": status, "custom_id": "re_abc",
              "amount": {"currency_code": "USD", "value": "4.00"},
              "links": [{"rel": "up", "href": "https://api.paypal.com/v2/payments/captures/2GG279541U471931P"}]}
    result = transformers.refund_result(refund)
    assert (result.status, result.amount, result.reference) == (expected, 400, "1JU08902781691411")
    assert result.payment_reference == "2GG279541U471931P" and result.our_id == "re_abc"


def test_an_unknown_status_is_an_unknown_outcome_not_a_crash_later() -> None:
    with pytest.raises(GatewayUnavailable):
        transformers.capture_result({"id": "X", "status": "SOMETHING_NEW"})


def test_a_captured_order_gives_the_capture_id_and_an_authorized_one_the_authorization_id() -> None:
    payments = {
        "captures": [{"id": "CAP1", "status": "COMPLETED",
                      "amount": {"currency_code": "USD", "value": "10.00"}}],
        "authorizations": [{"id": "AUTH1", "status": "CREATED",
                            "amount": {"currency_code": "USD", "value": "10.00"}}],
    }
    order = {"id": "ORDER1", "status": "COMPLETED", "purchase_units": [{"payments": payments}]}
    captured = transformers.order_result(order, capture=True)
    assert (captured.status, captured.reference, captured.amount_captured) == (
        GatewayStatus.SUCCEEDED, "CAP1", 1000)
    held = transformers.order_result(order, capture=False)
    assert (held.status, held.reference, held.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE, "AUTH1", 1000)


def test_a_declined_card_capture_keeps_the_processor_code() -> None:
    capture = {"id": "C", "status": "DECLINED", "processor_response": {"response_code": "5120"}}
    result = transformers.capture_result(capture)
    assert result.decline is not None and result.decline.gateway_code == "5120"
    assert card_error("paypal", "5120").code == "card_declined"
    assert card_error("paypal", "5120").decline_code == "insufficient_funds"


# -- errors --------------------------------------------------------------------------------

def _error(issue: str, status: int = 422) -> transformers.ApiError:
    body = {"name": "UNPROCESSABLE_ENTITY", "debug_id": "dbg1",
            "details": [{"issue": issue, "description": f"{issue} happened"}]}
    return transformers.api_error(status, body)


@pytest.mark.parametrize(("issue", "code", "decline_code"), [
    ("INSTRUMENT_DECLINED", "card_declined", "generic_decline"),
    ("TRANSACTION_REFUSED", "card_declined", "generic_decline"),
    ("PAYER_ACTION_REQUIRED", "authentication_required", "authentication_required"),
    ("ORDER_NOT_APPROVED", "authentication_required", None),
    ("PAYER_ACCOUNT_RESTRICTED", "card_declined", "restricted_card"),
])
def test_payer_side_issues_are_declines_mapped_through_the_table(
    issue: str, code: str, decline_code: str | None
) -> None:
    decline = transformers.decline_for(_error(issue))
    assert decline is not None and decline.gateway_code == issue
    assert decline.message == f"{issue} happened"
    error = card_error("paypal", issue)
    assert (error.code, error.decline_code, error.gateway) == (code, decline_code, "paypal")


@pytest.mark.parametrize("issue", ["AUTHORIZATION_EXPIRED", "MAX_CAPTURE_AMOUNT_EXCEEDED",
                                   "DUPLICATE_INVOICE_ID", "PAYEE_ACCOUNT_RESTRICTED",
                                   "ORDER_ALREADY_CAPTURED"])
def test_merchant_side_issues_are_not_declines(issue: str) -> None:
    assert transformers.decline_for(_error(issue)) is None


def test_an_error_body_without_details_uses_its_name() -> None:
    error = transformers.api_error(404, {"name": "RESOURCE_NOT_FOUND", "message": "gone"}, "d1")
    assert (error.issue, error.message, error.debug_id) == ("RESOURCE_NOT_FOUND", "gone", "d1")
    assert transformers.decline_for(_error("INSTRUMENT_DECLINED", status=400)) is None


# -- the HTTP seam, with httpx.MockTransport -----------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def _gateway(handler: Handler, **kw: Any) -> PayPalGateway:
    return PayPalGateway("client-1", "secret-1", api_base="https://paypal.test",
                         transport=httpx.MockTransport(handler), **kw)


def _token(request: httpx.Request, token: str = "A21AAtoken", expires: int = 32400) -> httpx.Response:
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        b"client-1:secret-1").decode()
    assert request.content == b"grant_type=client_credentials"
    return httpx.Response(200, json={"access_token": token, "token_type": "Bearer",
                                     "expires_in": expires})


def _request(capture: bool = True, token: str = "5O190127TN364715T") -> AuthorizeRequest:
    return AuthorizeRequest(amount=Money(1000, "USD"), payment_method_token=token,
                            capture=capture, reference="pi_123", gateway_reference=token)


def test_the_token_is_cached_and_fetched_again_once_on_a_401() -> None:
    seen: list[str] = []
    tokens = iter(["T1", "T2"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return _token(request, next(tokens))
        seen.append(request.headers["authorization"])
        if len(seen) == 2:
            return httpx.Response(401, json={"name": "AUTHENTICATION_FAILURE"})
        return httpx.Response(200, json={"id": "ORDER", "status": "CREATED"})

    async def run() -> None:
        gateway = _gateway(handler)
        await gateway.open_payment(Money(100, "USD"), "pi_1", True, idempotency_key="pi_1:open")
        await gateway.open_payment(Money(100, "USD"), "pi_2", True, idempotency_key="pi_2:open")
        await gateway.aclose()

    asyncio.run(run())
    assert seen == ["Bearer T1", "Bearer T1", "Bearer T2"]


def test_every_post_carries_the_paypal_request_id_of_its_step() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return _token(request)
        sent.append(request)
        return httpx.Response(201, json={"id": "ORDER", "status": "COMPLETED", "purchase_units": [
            {"payments": {"captures": [{"id": "CAP", "status": "COMPLETED"}]}}]})

    async def run() -> None:
        gateway = _gateway(handler)
        result = await gateway.authorize(_request(), idempotency_key="pi_123:authorize:1")
        assert result.reference == "CAP" and result.amount_captured == 1000
        await gateway.aclose()

    asyncio.run(run())
    [capture] = [request for request in sent if request.method == "POST"]
    assert capture.url.path == "/v2/checkout/orders/5O190127TN364715T/capture"
    assert capture.headers["paypal-request-id"] == "pi_123:authorize:1"
    assert capture.headers["prefer"] == "return=representation"


@pytest.mark.parametrize(("response", "raised"), [
    (httpx.Response(500, json={"name": "INTERNAL_SERVER_ERROR"}), GatewayUnavailable),
    (httpx.Response(503), GatewayUnavailable),
    (httpx.Response(409, json={"name": "RESOURCE_CONFLICT"}), GatewayUnavailable),
    (httpx.Response(429, headers={"retry-after": "7"}), GatewayRateLimited),
    (httpx.Response(400, json={"name": "INVALID_REQUEST",
                               "details": [{"issue": "INVALID_PARAMETER_VALUE"}]}),
     GatewayInvalidRequest),
    (httpx.Response(422, json={"name": "UNPROCESSABLE_ENTITY",
                               "details": [{"issue": "AUTHORIZATION_EXPIRED"}]}),
     GatewayInvalidRequest),
])
def test_failures_are_translated_into_the_exception_tree(
    response: httpx.Response, raised: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _token(request) if request.url.path == "/v1/oauth2/token" else response

    async def run() -> None:
        gateway = _gateway(handler)
        try:
            await gateway.capture("0VF52814937998046", Money(500, "USD"), idempotency_key="k")
        finally:
            await gateway.aclose()

    with pytest.raises(raised) as info:
        asyncio.run(run())
    if isinstance(info.value, GatewayRateLimited):
        assert info.value.retry_after == 7.0
    if isinstance(info.value, GatewayInvalidRequest) and response.status_code == 422:
        assert info.value.code == "AUTHORIZATION_EXPIRED"


def test_a_network_error_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def run() -> None:
        gateway = _gateway(handler)
        try:
            await gateway.void("0VF52814937998046", idempotency_key="pi:cancel")
        finally:
            await gateway.aclose()

    with pytest.raises(GatewayUnavailable):
        asyncio.run(run())


def test_a_declined_instrument_is_a_decline_that_keeps_the_order() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return _token(request)
        return httpx.Response(422, headers={"paypal-debug-id": "dbg"}, json={
            "name": "UNPROCESSABLE_ENTITY",
            "details": [{"issue": "INSTRUMENT_DECLINED", "description": "declined"}]})

    async def run() -> None:
        gateway = _gateway(handler)
        result = await gateway.authorize(_request(), idempotency_key="pi_123:authorize:1")
        await gateway.aclose()
        assert result.status is GatewayStatus.FAILED and result.reference == "5O190127TN364715T"
        assert result.decline is not None and result.decline.gateway_code == "INSTRUMENT_DECLINED"

    asyncio.run(run())


def _already_captured(custom_id: str | None) -> Callable[[httpx.Request], httpx.Response]:
    unit: dict[str, Any] = {"payments": {"captures": [{"id": "CAP9", "status": "COMPLETED"}]}}
    if custom_id is not None:
        unit["custom_id"] = custom_id

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return _token(request)
        if request.method == "POST":
            return httpx.Response(422, json={"name": "UNPROCESSABLE_ENTITY",
                                             "details": [{"issue": "ORDER_ALREADY_CAPTURED"}]})
        return httpx.Response(200, json={"id": "5O190127TN364715T", "status": "COMPLETED",
                                         "purchase_units": [unit]})

    return handler


def test_an_order_of_this_payment_already_captured_is_read_back_instead_of_failing() -> None:
    async def run() -> None:
        gateway = _gateway(_already_captured("pi_123"))
        result = await gateway.authorize(_request(), idempotency_key="pi_123:authorize:2")
        await gateway.aclose()
        assert (result.status, result.reference) == (GatewayStatus.SUCCEEDED, "CAP9")

    asyncio.run(run())


@pytest.mark.parametrize("custom_id", [None, "pi_other"])
def test_an_order_captured_by_another_request_is_not_this_payments(custom_id: str | None) -> None:
    """"Already captured" to our capture means another request paid it (ours sent again
    is replayed by PayPal-Request-Id): unless the order was opened for this payment, it is
    refused, not reported as this payment's money."""
    async def run() -> None:
        gateway = _gateway(_already_captured(custom_id))
        try:
            await gateway.authorize(_request(), idempotency_key="pi_123:authorize:2")
        finally:
            await gateway.aclose()

    with pytest.raises(GatewayInvalidRequest) as refused:
        asyncio.run(run())
    assert refused.value.param == "payment_method"


def test_a_reference_that_is_not_a_paypal_id_never_reaches_a_url() -> None:
    async def run() -> None:
        gateway = _gateway(lambda r: httpx.Response(500))
        try:
            await gateway.capture("../../v1/oauth2/token", Money(1, "USD"), idempotency_key="k")
        finally:
            await gateway.aclose()

    with pytest.raises(GatewayInvalidRequest):
        asyncio.run(run())


# -- webhook events ------------------------------------------------------------------------

def _event(event_type: str, resource_type: str, resource: dict[str, Any]) -> InboundEvent:
    payload = {"id": "WH-58D329510W468432D-8HN650336L201105X", "event_version": "1.0",
               "create_time": "2019-02-14T21:50:07.940Z", "resource_type": resource_type,
               "event_type": event_type, "summary": "...", "resource": resource}
    return InboundEvent("paypal", payload["id"], event_type, payload)


CAPTURE = {
    "id": "27M47624FP291604U", "status": "COMPLETED", "final_capture": True,
    "amount": {"currency_code": "USD", "value": "2.51"}, "custom_id": "pi_abc",
    "supplementary_data": {"related_ids": {"order_id": "1AB234567A1234567"}},
    "links": [{"href": "https://api.paypal.com/v2/payments/captures/27M47624FP291604U",
               "rel": "self", "method": "GET"},
              {"href": "https://api.paypal.com/v2/checkout/orders/1AB234567A1234567",
               "rel": "up", "method": "GET"}],
}


@pytest.mark.parametrize(("event_type", "status", "expected"), [
    ("PAYMENT.CAPTURE.COMPLETED", "COMPLETED", GatewayStatus.SUCCEEDED),
    ("PAYMENT.CAPTURE.PENDING", "PENDING", GatewayStatus.PROCESSING),
    ("PAYMENT.CAPTURE.DENIED", "DECLINED", GatewayStatus.FAILED),
])
def test_capture_events_are_payment_updates_found_by_our_id_and_the_capture_id(
    event_type: str, status: str, expected: GatewayStatus
) -> None:
    change = transformers.interpret_event(_event(event_type, "capture", {**CAPTURE, "status": status}))
    assert isinstance(change, PaymentUpdate)
    assert change.reference == "pi_abc" and change.result.status is expected
    if expected is not GatewayStatus.FAILED:
        assert change.result.reference == "27M47624FP291604U"
    if expected is GatewayStatus.SUCCEEDED:
        assert change.result.amount_captured == 251


def test_authorization_events_give_the_authorization_id() -> None:
    auth = {"id": "0VF52814937998046", "status": "CREATED", "custom_id": "pi_abc",
            "amount": {"currency_code": "USD", "value": "10.99"},
            "expiration_time": "2017-10-10T23:23:45Z"}
    created = transformers.interpret_event(_event("PAYMENT.AUTHORIZATION.CREATED", "authorization", auth))
    assert isinstance(created, PaymentUpdate) and created.reference == "pi_abc"
    assert created.result.status is GatewayStatus.REQUIRES_CAPTURE
    assert (created.result.reference, created.result.amount_authorized) == ("0VF52814937998046", 1099)
    voided = transformers.interpret_event(
        _event("PAYMENT.AUTHORIZATION.VOIDED", "authorization", {**auth, "status": "VOIDED"}))
    assert isinstance(voided, PaymentUpdate) and voided.result.status is GatewayStatus.CANCELED


@pytest.mark.parametrize("event_type", ["PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"])
def test_refund_events_are_refund_updates_on_the_capture(event_type: str) -> None:
    refund = {"id": "1Y107995YT783435V", "status": "COMPLETED", "custom_id": "re_xyz",
              "amount": {"currency_code": "USD", "value": "1.00"},
              "links": [{"href": "https://api.paypal.com/v2/payments/refunds/1Y107995YT783435V",
                         "rel": "self", "method": "GET"},
                        {"href": "https://api.paypal.com/v2/payments/captures/0KG12345VE123456J",
                         "rel": "up", "method": "GET"}]}
    change = transformers.interpret_event(_event(event_type, "refund", refund))
    assert isinstance(change, RefundUpdate)
    assert change.refund.reference == "1Y107995YT783435V" and change.refund.amount == 100
    assert change.refund.payment_reference == "0KG12345VE123456J"
    assert change.refund.our_id == "re_xyz" and change.refund.status == "succeeded"


def test_an_approved_order_reads_open_until_paymux_charges_it() -> None:
    order = {"id": "5O190127TN364715T", "status": "APPROVED", "intent": "CAPTURE",
             "purchase_units": [{"custom_id": "pi_abc",
                                 "amount": {"currency_code": "USD", "value": "10.00"}}]}
    approved = transformers.interpret_event(_event("CHECKOUT.ORDER.APPROVED", "checkout-order", order))
    assert isinstance(approved, PaymentUpdate) and approved.reference == "pi_abc"
    assert approved.result.status is GatewayStatus.OPEN
    assert approved.result.reference == "5O190127TN364715T"
    assert (approved.result.amount_authorized, approved.result.amount_captured) == (0, 0)
    not_ours = {**order, "purchase_units": [{"amount": order["purchase_units"][0]["amount"]}]}
    assert transformers.interpret_event(
        _event("CHECKOUT.ORDER.APPROVED", "checkout-order", not_ours)) is None
    done = {**order, "status": "COMPLETED", "purchase_units": [
        {**order["purchase_units"][0], "payments": {"captures": [CAPTURE]}}]}
    change = transformers.interpret_event(_event("CHECKOUT.ORDER.COMPLETED", "checkout-order", done))
    assert isinstance(change, PaymentUpdate) and change.reference == "pi_abc"
    assert change.result.reference == "27M47624FP291604U"


@pytest.mark.parametrize("event_type", ["BILLING.SUBSCRIPTION.CREATED", "PAYMENT.SALE.COMPLETED",
                                        "MERCHANT.PARTNER-CONSENT.REVOKED"])
def test_other_events_are_ignored(event_type: str) -> None:
    assert transformers.interpret_event(_event(event_type, "other", {"id": "I-1"})) is None


# -- payment methods -----------------------------------------------------------------------

def test_vault_tokens_carry_their_kind_and_orders_are_bare_ids() -> None:
    token = {"id": "8kk8451t", "customer": {"id": "customer_4029352050"}, "payment_source": {
        "card": {"last_digits": "1111", "expiry": "2027-02", "brand": "VISA"}}}
    card = transformers.card_details_from_vault(token)
    assert (card.token, card.type, card.brand, card.last4, card.exp_month, card.exp_year) == (
        "card:8kk8451t", "card", "visa", "1111", 2, 2027)
    wallet = transformers.card_details_from_vault({"id": "9xy", "payment_source": {
        "paypal": {"email_address": "b@example.com"}}})
    assert (wallet.token, wallet.type) == ("paypal:9xy", "paypal")
    assert transformers.split_vault_token("card:8kk8451t") == ("card", "8kk8451t")
    assert transformers.split_vault_token("5O190127TN364715T") is None
    with pytest.raises(ValueError):
        transformers.split_vault_token("bitcoin:abc")
    order = transformers.card_details_from_order({"id": "5O190127TN364715T", "payment_source": {
        "paypal": {"email_address": "buyer@example.com"}}})
    assert (order.token, order.type) == ("5O190127TN364715T", "paypal")
    assert "buyer@example.com" not in repr(order)


def test_a_saved_method_is_charged_with_its_vault_id() -> None:
    request = AuthorizeRequest(amount=Money(1200, "USD"), payment_method_token="card:8kk8451t",
                               capture=True, reference="pi_1", off_session=True)
    body = transformers.vault_order_request(request, "card", "8kk8451t")
    assert body["intent"] == "CAPTURE"
    assert body["purchase_units"] == [{"amount": {"currency_code": "USD", "value": "12.00"},
                                       "custom_id": "pi_1"}]
    assert body["payment_source"]["card"]["vault_id"] == "8kk8451t"
    assert body["payment_source"]["card"]["stored_credential"]["payment_initiator"] == "MERCHANT"
    assert transformers.payment_token_request("5C991763VB2781612") == {
        "payment_source": {"token": {"id": "5C991763VB2781612", "type": "SETUP_TOKEN"}}}
    customer = transformers.customer_reference("cus_" + "a" * 24)
    assert len(customer) <= 22 and customer == transformers.customer_reference("cus_" + "a" * 24)


# -- webhook verification ------------------------------------------------------------------

WEBHOOK_ID = "1JE4291016473214C"
BODY = json.dumps({"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED",
                   "resource_type": "capture", "resource": CAPTURE}).encode()


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def _verifier(roots: list[Any], pem: bytes, fetched: list[str] | None = None,
              now: datetime | None = None) -> OfflineVerifier:
    async def fetch(url: str) -> bytes:
        if fetched is not None:
            fetched.append(url)
        return pem

    return OfflineVerifier(roots, fetch, now=(lambda: now) if now else lambda: datetime.now(UTC))


def _refused(verifier: OfflineVerifier, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        asyncio.run(verifier.verify(transmission(headers), WEBHOOK_ID, body))
    return info.value.reason


def test_the_signed_message_is_ids_time_webhook_and_unsigned_crc32() -> None:
    assert signed_message("t1", "2024-01-01T00:00:00Z", "W1", b"hello") == (
        b"t1|2024-01-01T00:00:00Z|W1|907060870")
    assert signed_message("t", "x", "w", b"\xff" * 8).split(b"|")[-1].isdigit()  # unsigned


def test_a_good_signature_verifies_and_the_certificate_is_fetched_once(ca: TestCA) -> None:
    leaf = ca.issue()
    fetched: list[str] = []
    verifier = _verifier([ca.cert], leaf.pem(), fetched)
    for _ in range(2):
        asyncio.run(verifier.verify(transmission(sign_headers(BODY, leaf.key, WEBHOOK_ID)),
                                    WEBHOOK_ID, BODY))
    assert fetched == [CERT_URL]


def test_a_tampered_body_is_a_signature_mismatch(ca: TestCA) -> None:
    leaf = ca.issue()
    headers = sign_headers(BODY, leaf.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], leaf.pem()), headers,
                    BODY.replace(b"2.51", b"9.51")) == "signature_mismatch"


def test_another_webhook_id_or_transmission_is_a_signature_mismatch(ca: TestCA) -> None:
    leaf = ca.issue()
    headers = sign_headers(BODY, leaf.key, "OTHERWEBHOOK")
    assert _refused(_verifier([ca.cert], leaf.pem()), headers) == "signature_mismatch"
    good = sign_headers(BODY, leaf.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], leaf.pem()),
                    {**good, "paypal-transmission-id": "another"}) == "signature_mismatch"


def test_a_signature_by_another_key_is_a_signature_mismatch(ca: TestCA) -> None:
    leaf, other = ca.issue(), ca.issue()
    headers = sign_headers(BODY, other.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], leaf.pem()), headers) == "signature_mismatch"


@pytest.mark.parametrize("url", [
    "https://evil.example.com/cert.pem",
    "http://api.paypal.com/v1/notifications/certs/CERT-1",
    "https://paypal.com.evil.example/cert",
    "https://api.paypal.com.evil.example/cert",
    "https://user@api.paypal.com/cert",
    "https://api.paypal.com:8443/cert",
    "https://notpaypal.com/cert",
])
def test_a_certificate_url_off_paypal_com_is_refused_before_any_fetch(ca: TestCA, url: str) -> None:
    leaf = ca.issue()
    fetched: list[str] = []
    headers = sign_headers(BODY, leaf.key, WEBHOOK_ID, cert_url=url)
    assert _refused(_verifier([ca.cert], leaf.pem(), fetched), headers) == "cert_url_not_allowed"
    assert fetched == []


def test_a_certificate_from_an_untrusted_ca_is_refused(ca: TestCA) -> None:
    rogue = TestCA("rogue root").issue()
    headers = sign_headers(BODY, rogue.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], rogue.pem()), headers) == "certificate_untrusted"


def test_an_expired_certificate_is_refused(ca: TestCA) -> None:
    now = datetime.now(UTC)
    old = ca.issue(not_before=now - timedelta(days=100), not_after=now - timedelta(days=1))
    headers = sign_headers(BODY, old.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], old.pem()), headers) == "certificate_untrusted"


def test_a_trusted_certificate_for_another_host_is_refused(ca: TestCA) -> None:
    stranger = ca.issue("webhooks.example.com")
    headers = sign_headers(BODY, stranger.key, WEBHOOK_ID)
    assert _refused(_verifier([ca.cert], stranger.pem()), headers) == "certificate_untrusted"


def test_missing_headers_are_named() -> None:
    with pytest.raises(WebhookVerificationError) as info:
        transmission({"paypal-transmission-id": "x"})
    assert info.value.reason == "missing_headers"
    assert "paypal-cert-url" in str(info.value)


def test_the_api_request_embeds_the_event_byte_for_byte() -> None:
    headers = {"paypal-transmission-id": "t1", "paypal-transmission-time": "2024-01-01T00:00:00Z",
               "paypal-transmission-sig": "c2ln", "paypal-cert-url": CERT_URL,
               "paypal-auth-algo": "SHA256withRSA"}
    body = b'{"id":"WH-1",  "event_type":"X","resource":{"value":"1.10"}}'
    request = api_request_body(transmission(headers), WEBHOOK_ID, body)
    assert request.endswith(b'"webhook_event":' + body + b"}")
    parsed = json.loads(request)
    assert parsed["webhook_id"] == WEBHOOK_ID and parsed["webhook_event"]["id"] == "WH-1"


def test_a_verified_body_that_is_not_an_event_is_an_invalid_payload(ca: TestCA) -> None:
    leaf = ca.issue()
    body = b'["not", "an", "event"]'
    gateway = PayPalGateway("id", "s", api_base="http://127.0.0.1:9", webhook_id=WEBHOOK_ID,
                            webhook_verification="offline", trust_roots=[ca.cert],
                            cert_fetcher=lambda url: _pem(leaf.pem()))
    with pytest.raises(WebhookVerificationError) as info:
        asyncio.run(gateway.verify_webhook(sign_headers(body, leaf.key, WEBHOOK_ID), body))
    assert info.value.reason == "invalid_payload"
    event = asyncio.run(gateway.verify_webhook(sign_headers(BODY, leaf.key, WEBHOOK_ID), BODY))
    assert (event.event_id, event.type) == ("WH-1", "PAYMENT.CAPTURE.COMPLETED")
    asyncio.run(gateway.aclose())


async def _pem(pem: bytes) -> bytes:
    return pem


def test_settings_choose_the_verification_mode_and_the_trust_roots(
    ca: TestCA, tmp_path: Any
) -> None:
    from cryptography.hazmat.primitives import serialization

    from paymux.config import Settings

    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    settings = Settings(paypal_client_id="id", paypal_client_secret="secret",
                        paypal_webhook_id=WEBHOOK_ID, paypal_webhook_verification="offline",
                        paypal_trust_roots=str(roots), paypal_api_base="http://127.0.0.1:9")
    gateway = PayPalGateway.from_settings(settings)
    assert gateway.webhook_verification == "offline" and gateway.webhook_id == WEBHOOK_ID
    assert "secret" not in repr(gateway)
    asyncio.run(gateway.aclose())
    with pytest.raises(ValueError):
        PayPalGateway("id", "secret", webhook_verification="sometimes")


# -- disputes (CUSTOMER.DISPUTE.*) ---------------------------------------------------------

# The resource of PayPal's documented CUSTOMER.DISPUTE.CREATED sample (webhook event names,
# disputes): an inquiry about a capture, opened by the buyer.
DISPUTE = {
    "dispute_id": "PP-000-042-663-135", "create_time": "2018-06-21T13:35:44.000Z",
    "update_time": "2018-06-21T13:35:44.000Z",
    "disputed_transactions": [{"seller_transaction_id": "6T496768GW863311H",
                               "seller": {"merchant_id": "RD465XN5VS364", "name": "Test Store"},
                               "items": [], "seller_protection_eligible": True}],
    "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", "status": "OPEN",
    "dispute_amount": {"currency_code": "USD", "value": "3.00"},
    "dispute_life_cycle_stage": "INQUIRY", "dispute_channel": "INTERNAL",
    "messages": [{"posted_by": "BUYER", "time_posted": "2018-06-21T13:35:52.000Z",
                  "content": "qwqwqwq"}],
    "links": [{"href": "https://api.paypal.com/v1/customer/disputes/PP-000-042-663-135",
               "rel": "self", "method": "GET"}],
}


def test_a_dispute_created_event_is_a_dispute_on_the_capture() -> None:
    change = transformers.interpret_event(_event("CUSTOMER.DISPUTE.CREATED", "dispute", DISPUTE))
    assert change == DisputeUpdate(
        reference="PP-000-042-663-135", payment_reference="6T496768GW863311H", amount=300,
        currency="USD", reason="merchandise_or_service_not_received",
        status="warning_needs_response")


@pytest.mark.parametrize(("stage", "status", "outcome", "expected"), [
    ("INQUIRY", "WAITING_FOR_SELLER_RESPONSE", None, "warning_needs_response"),
    ("INQUIRY", "WAITING_FOR_BUYER_RESPONSE", None, "warning_under_review"),
    ("INQUIRY", "UNDER_REVIEW", None, "warning_under_review"),
    ("CHARGEBACK", "OPEN", None, "needs_response"),
    ("CHARGEBACK", "WAITING_FOR_SELLER_RESPONSE", None, "needs_response"),
    ("CHARGEBACK", "UNDER_REVIEW", None, "under_review"),
    ("PRE_ARBITRATION", "WAITING_FOR_BUYER_RESPONSE", None, "under_review"),
    ("ARBITRATION", "OTHER", None, "needs_response"),
    ("CHARGEBACK", "RESOLVED", "RESOLVED_SELLER_FAVOUR", "won"),
    ("CHARGEBACK", "RESOLVED", "RESOLVED_WITH_PAYOUT", "won"),
    ("CHARGEBACK", "RESOLVED", "CANCELED_BY_BUYER", "won"),
    ("CHARGEBACK", "RESOLVED", "DENIED", "won"),
    ("CHARGEBACK", "RESOLVED", "RESOLVED_BUYER_FAVOUR", "lost"),
    ("CHARGEBACK", "RESOLVED", "ACCEPTED", "lost"),
    ("INQUIRY", "RESOLVED", "CANCELED_BY_BUYER", "warning_closed"),
    ("INQUIRY", "RESOLVED", "RESOLVED_SELLER_FAVOUR", "warning_closed"),
    ("INQUIRY", "RESOLVED", "ACCEPTED", "lost"),
])
def test_dispute_statuses_become_stripe_s(
    stage: str, status: str, outcome: str | None, expected: str
) -> None:
    dispute = {**DISPUTE, "dispute_life_cycle_stage": stage, "status": status}
    if outcome:
        dispute["dispute_outcome"] = {"outcome_code": outcome,
                                      "amount_refunded": {"currency_code": "USD", "value": "3.00"}}
    event_type = "CUSTOMER.DISPUTE.RESOLVED" if status == "RESOLVED" else "CUSTOMER.DISPUTE.UPDATED"
    change = transformers.interpret_event(_event(event_type, "dispute", dispute))
    assert isinstance(change, DisputeUpdate) and change.status == expected
    assert (change.reference, change.payment_reference) == ("PP-000-042-663-135",
                                                            "6T496768GW863311H")


@pytest.mark.parametrize("dispute", [
    {**DISPUTE, "status": "SOMETHING_NEW"},
    {**DISPUTE, "status": "RESOLVED", "dispute_outcome": {"outcome_code": "NONE"}},
    {**DISPUTE, "status": "RESOLVED"},
], ids=["unknown status", "resolved without outcome", "resolved, no outcome object"])
def test_a_dispute_status_this_connector_does_not_know_is_not_guessed(
    dispute: dict[str, Any]
) -> None:
    with pytest.raises(transformers.UnknownStatus):
        transformers.interpret_event(_event("CUSTOMER.DISPUTE.UPDATED", "dispute", dispute))


# -- the connector's recovery, cancel and update (httpx.MockTransport) ---------------------

class Seam:
    """Answers by "METHOD path" from a table; records every request (after the token)."""

    def __init__(self, routes: dict[str, httpx.Response | list[httpx.Response]]) -> None:
        self.routes = routes
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return _token(request)
        self.sent.append(request)
        answer = self.routes.get(f"{request.method} {request.url.path}")
        if isinstance(answer, list):
            answer = answer.pop(0)
        if answer is None:
            return httpx.Response(404, json={"name": "RESOURCE_NOT_FOUND", "details": [
                {"issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist."}]})
        return answer

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.sent]


def _run(seam: Seam, call: Callable[[PayPalGateway], Any]) -> Any:
    async def go() -> Any:
        gateway = _gateway(seam)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


ORDER = "5O190127TN364715T"
AUTH = "0VF52814937998046"
CAP = "27M47624FP291604U"


def _order(status: str, intent: str = "CAPTURE", payments: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    unit: dict[str, Any] = {"reference_id": "default", "custom_id": "pi_123",
                            "amount": {"currency_code": "USD", "value": "10.00"}}
    if payments is not None:
        unit["payments"] = payments
    return {"id": ORDER, "intent": intent, "status": status, "purchase_units": [unit], **extra}


def _unprocessable(issue: str) -> httpx.Response:
    return httpx.Response(422, json={"name": "UNPROCESSABLE_ENTITY",
                                     "details": [{"issue": issue, "description": issue}]})


def test_paypal_keeps_a_request_id_six_hours_and_lookup_asks_nothing() -> None:
    seam = Seam({})
    assert _run(seam, lambda g: g.lookup("pi_123", "pi_123:authorize:1")) is None
    assert seam.sent == []
    assert PayPalGateway.idempotency_retention_seconds == 6 * 3600


def test_payer_action_required_at_capture_of_an_order_token_stays_a_decline() -> None:
    """The buyer approves again in PayPal's window and the page confirms again (a new
    attempt); the order is kept as the reference."""
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("APPROVED")),
                 f"POST /v2/checkout/orders/{ORDER}/capture": _unprocessable("PAYER_ACTION_REQUIRED")})
    result = _run(seam, lambda g: g.authorize(_request(), idempotency_key="pi_123:authorize:1"))
    assert (result.status, result.reference) == (GatewayStatus.FAILED, ORDER)
    assert result.decline is not None and result.decline.gateway_code == "PAYER_ACTION_REQUIRED"
    assert seam.calls() == [f"GET /v2/checkout/orders/{ORDER}",
                            f"POST /v2/checkout/orders/{ORDER}/capture"]


def _vault_request(gateway_reference: str | None, capture: bool = True) -> AuthorizeRequest:
    return AuthorizeRequest(amount=Money(1000, "USD"), payment_method_token="card:8kk8451t",
                            capture=capture, reference="pi_123",
                            gateway_reference=gateway_reference)


def test_a_saved_method_charge_the_payer_approved_is_completed_not_charged_again() -> None:
    captured = _order("COMPLETED", payments={"captures": [
        {"id": CAP, "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"}}]})
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("APPROVED")),
                 f"POST /v2/checkout/orders/{ORDER}/capture": httpx.Response(201, json=captured)})
    result = _run(seam, lambda g: g.authorize(_vault_request(ORDER),
                                             idempotency_key="pi_123:authorize:1"))
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED, CAP, 1000)
    assert seam.calls() == [f"GET /v2/checkout/orders/{ORDER}",
                            f"POST /v2/checkout/orders/{ORDER}/capture"]
    assert seam.sent[1].headers["paypal-request-id"] == "pi_123:authorize:1:complete"


def test_a_saved_method_charge_still_waiting_for_the_payer_is_reported_as_such() -> None:
    link = {"rel": "payer-action", "href": "https://www.paypal.com/webapps/helios?action=verify"}
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(
        200, json=_order("PAYER_ACTION_REQUIRED", links=[link]))})
    result = _run(seam, lambda g: g.authorize(_vault_request(ORDER),
                                             idempotency_key="pi_123:authorize:1"))
    assert (result.status, result.reference) == (GatewayStatus.REQUIRES_ACTION, ORDER)
    assert result.next_action is not None
    assert seam.calls() == [f"GET /v2/checkout/orders/{ORDER}"]  # nothing sent


def test_a_saved_method_on_an_order_opened_for_the_js_sdk_makes_a_new_order() -> None:
    new_order = {**_order("COMPLETED", payments={"captures": [
        {"id": CAP, "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"}}]}),
        "id": "8AB12345CD6789012"}
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("CREATED")),
                 "POST /v2/checkout/orders": httpx.Response(201, json=new_order)})
    result = _run(seam, lambda g: g.authorize(_vault_request(ORDER),
                                             idempotency_key="pi_123:authorize:1"))
    assert (result.status, result.reference) == (GatewayStatus.SUCCEEDED, CAP)
    assert seam.calls() == [f"GET /v2/checkout/orders/{ORDER}", "POST /v2/checkout/orders"]
    assert json.loads(seam.sent[1].content)["payment_source"]["card"]["vault_id"] == "8kk8451t"


def test_an_approved_order_is_open_for_the_engine_to_confirm_again() -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("APPROVED"))})
    result = _run(seam, lambda g: g.retrieve(ORDER))
    assert (result.status, result.reference) == (GatewayStatus.OPEN, ORDER)
    assert (result.amount_authorized, result.amount_captured) == (0, 0)


# void ------------------------------------------------------------------------------------

def test_voiding_an_order_nobody_approved_changes_nothing_at_paypal() -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("CREATED"))})
    result = _run(seam, lambda g: g.void(ORDER, idempotency_key="pi_123:cancel"))
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, ORDER)
    assert seam.calls() == [f"POST /v2/payments/authorizations/{ORDER}/void",  # 404: not one
                            f"GET /v2/payments/authorizations/{ORDER}",
                            f"GET /v2/checkout/orders/{ORDER}"]


def test_an_order_id_refused_as_unprocessable_by_the_void_is_still_canceled_as_an_order() -> None:
    seam = Seam({f"POST /v2/payments/authorizations/{ORDER}/void": _unprocessable("INVALID_RESOURCE_ID"),
                 f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("APPROVED"))})
    result = _run(seam, lambda g: g.void(ORDER, idempotency_key="pi_123:cancel"))
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, ORDER)


@pytest.mark.parametrize("status", ["APPROVED", "PAYER_ACTION_REQUIRED", "VOIDED"])
def test_voiding_an_order_never_authorized_or_captured_is_canceled(status: str) -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order(status))})
    result = _run(seam, lambda g: g.void(ORDER, idempotency_key="pi_123:cancel"))
    assert (result.status, result.amount_captured) == (GatewayStatus.CANCELED, 0)
    assert [c for c in seam.calls() if c.startswith("POST")] == [
        f"POST /v2/payments/authorizations/{ORDER}/void"]


def test_voiding_an_authorized_order_voids_its_authorization() -> None:
    authorized = _order("COMPLETED", intent="AUTHORIZE", payments={"authorizations": [
        {"id": AUTH, "status": "CREATED", "amount": {"currency_code": "USD", "value": "10.00"}}]})
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=authorized),
                 f"POST /v2/payments/authorizations/{AUTH}/void": httpx.Response(204)})
    result = _run(seam, lambda g: g.void(ORDER, idempotency_key="pi_123:cancel"))
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, AUTH)
    void = seam.sent[-1]
    assert f"{void.method} {void.url.path}" == f"POST /v2/payments/authorizations/{AUTH}/void"
    assert void.headers["paypal-request-id"] == "pi_123:cancel:authorization"


def test_voiding_an_order_already_captured_reports_the_capture() -> None:
    captured = _order("COMPLETED", payments={"captures": [
        {"id": CAP, "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"}}]})
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=captured)})
    result = _run(seam, lambda g: g.void(ORDER, idempotency_key="pi_123:cancel"))
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED, CAP, 1000)


def test_voiding_an_authorization_captured_meanwhile_reports_the_capture() -> None:
    authorization = {"id": AUTH, "status": "CAPTURED",
                     "amount": {"currency_code": "USD", "value": "10.00"},
                     "supplementary_data": {"related_ids": {"order_id": ORDER}}}
    order = _order("COMPLETED", intent="AUTHORIZE", payments={
        "authorizations": [authorization],
        "captures": [{"id": CAP, "status": "COMPLETED",
                      "amount": {"currency_code": "USD", "value": "7.00"}}]})
    seam = Seam({f"POST /v2/payments/authorizations/{AUTH}/void": _unprocessable("PREVIOUSLY_CAPTURED"),
                 f"GET /v2/payments/authorizations/{AUTH}": httpx.Response(200, json=authorization),
                 f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=order)})
    result = _run(seam, lambda g: g.void(AUTH, idempotency_key="pi_123:cancel"))
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED, CAP, 700)


def test_a_void_refused_while_the_authorization_is_still_held_stays_refused() -> None:
    authorization = {"id": AUTH, "status": "CREATED",
                     "amount": {"currency_code": "USD", "value": "10.00"}}
    seam = Seam({f"POST /v2/payments/authorizations/{AUTH}/void": _unprocessable("AUTHORIZATION_NOT_VOIDABLE"),
                 f"GET /v2/payments/authorizations/{AUTH}": httpx.Response(200, json=authorization)})
    with pytest.raises(GatewayInvalidRequest) as info:
        _run(seam, lambda g: g.void(AUTH, idempotency_key="pi_123:cancel"))
    assert info.value.code == "AUTHORIZATION_NOT_VOIDABLE"


def test_voiding_a_capture_id_reports_the_capture_and_an_unknown_id_is_refused() -> None:
    capture = {"id": CAP, "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"}}
    seam = Seam({f"GET /v2/payments/captures/{CAP}": httpx.Response(200, json=capture)})
    result = _run(seam, lambda g: g.void(CAP, idempotency_key="pi_123:cancel"))
    assert (result.status, result.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)
    with pytest.raises(GatewayInvalidRequest) as info:
        _run(Seam({}), lambda g: g.void("UNKNOWN0000000001", idempotency_key="pi_123:cancel"))
    assert info.value.code == "INVALID_RESOURCE_ID"


# retrieve_refund -------------------------------------------------------------------------

REFUND = {"id": "1JU08902781691411", "status": "COMPLETED", "custom_id": "re_ours",
          "amount": {"currency_code": "USD", "value": "4.00"},
          "links": [{"rel": "up", "href": f"https://api.paypal.com/v2/payments/captures/{CAP}"}]}


def test_a_refund_is_read_by_its_id() -> None:
    seam = Seam({"GET /v2/payments/refunds/1JU08902781691411": httpx.Response(200, json=REFUND)})
    refund = _run(seam, lambda g: g.retrieve_refund("1JU08902781691411", our_id="re_ours",
                                                    payment_reference=CAP))
    assert (refund.status, refund.reference, refund.amount, refund.our_id,
            refund.payment_reference) == ("succeeded", "1JU08902781691411", 400, "re_ours", CAP)


def test_a_refund_without_its_id_is_found_by_ours_in_the_capture_s_order() -> None:
    capture = {"id": CAP, "status": "PARTIALLY_REFUNDED",
               "amount": {"currency_code": "USD", "value": "10.00"},
               "supplementary_data": {"related_ids": {"order_id": ORDER}}}
    other = {**REFUND, "id": "2KV19013892702522", "custom_id": "re_other"}
    order = _order("COMPLETED", payments={"captures": [capture], "refunds": [other, REFUND]})
    seam = Seam({f"GET /v2/payments/captures/{CAP}": httpx.Response(200, json=capture),
                 f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=order)})
    refund = _run(seam, lambda g: g.retrieve_refund(None, our_id="re_ours", payment_reference=CAP))
    assert (refund.reference, refund.our_id, refund.amount) == ("1JU08902781691411", "re_ours", 400)
    none = _run(seam, lambda g: g.retrieve_refund(None, our_id="re_never", payment_reference=CAP))
    assert none is None


def test_a_refund_id_paypal_does_not_know_falls_back_to_ours_and_then_none() -> None:
    capture = {"id": CAP, "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"},
               "supplementary_data": {"related_ids": {"order_id": ORDER}}}
    seam = Seam({f"GET /v2/payments/captures/{CAP}": httpx.Response(200, json=capture),
                 f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("COMPLETED"))})
    assert _run(seam, lambda g: g.retrieve_refund("9ZZ99999999999999", our_id="re_ours",
                                                  payment_reference=CAP)) is None
    assert seam.calls() == ["GET /v2/payments/refunds/9ZZ99999999999999",
                            f"GET /v2/payments/captures/{CAP}", f"GET /v2/checkout/orders/{ORDER}"]
    assert _run(Seam({}), lambda g: g.retrieve_refund(None, our_id="re_ours",
                                                      payment_reference=CAP)) is None


# update_payment --------------------------------------------------------------------------

def test_an_opened_order_s_amount_is_replaced_with_a_json_patch() -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("CREATED")),
                 f"PATCH /v2/checkout/orders/{ORDER}": httpx.Response(204)})
    _run(seam, lambda g: g.update_payment(ORDER, Money(2550, "USD"), True,
                                          idempotency_key="pi_123:update:2550:USD:1"))
    patch = seam.sent[-1]
    assert f"{patch.method} {patch.url.path}" == f"PATCH /v2/checkout/orders/{ORDER}"
    assert json.loads(patch.content) == [{
        "op": "replace", "path": "/purchase_units/@reference_id=='default'/amount",
        "value": {"currency_code": "USD", "value": "25.50"}}]
    assert patch.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("amount", "capture"), [(Money(1000, "USD"), False),
                                                 (Money(1000, "EUR"), True)],
                         ids=["capture to authorize", "USD to EUR"])
def test_an_intent_or_currency_change_is_refused_before_anything_is_sent(
    amount: Money, capture: bool
) -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("CREATED"))})
    with pytest.raises(GatewayInvalidRequest) as info:
        _run(seam, lambda g: g.update_payment(ORDER, amount, capture, idempotency_key="k"))
    assert info.value.code == "update_unsupported"
    assert seam.calls() == [f"GET /v2/checkout/orders/{ORDER}"]


def test_paypal_refusing_the_patch_is_an_invalid_request() -> None:
    seam = Seam({f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=_order("COMPLETED")),
                 f"PATCH /v2/checkout/orders/{ORDER}": _unprocessable("ORDER_ALREADY_COMPLETED")})
    with pytest.raises(GatewayInvalidRequest) as info:
        _run(seam, lambda g: g.update_payment(ORDER, Money(500, "USD"), True, idempotency_key="k"))
    assert info.value.code == "ORDER_ALREADY_COMPLETED"


def _order_for(custom_id: object, amount: object) -> dict[str, object]:
    unit: dict[str, object] = {"reference_id": "default", "amount": amount}
    if custom_id is not ...:
        unit["custom_id"] = custom_id
    return {"id": "5O190127TN364715T", "status": "APPROVED", "purchase_units": [unit]}


USD_20 = {"currency_code": "USD", "value": "20.00"}


@pytest.mark.parametrize(
    ("custom_id", "amount", "refused"),
    [
        ("pi_ours", USD_20, None),  # opened for this payment, same amount
        (..., USD_20, None),  # made outside paymux, same amount and currency
        ("", USD_20, None),  # an empty custom_id names no payment
        ("pi_other", USD_20, "another payment"),  # another payment's order, even same amount
        ("pi_other", {"currency_code": "USD", "value": "5.00"}, "another payment"),
        (..., {"currency_code": "USD", "value": "5.00"}, "amount or currency"),
        (..., {"currency_code": "USD", "value": "20.01"}, "amount or currency"),
        (..., {"currency_code": "EUR", "value": "20.00"}, "amount or currency"),
        ("pi_ours", {"currency_code": "USD", "value": "19.99"}, "amount or currency"),
        (..., {"currency_code": "str", "value": "string"}, None),  # no figure: no reason
        (..., None, None),
    ],
)
def test_an_order_pays_only_the_payment_and_amount_it_was_made_for(
    custom_id: object, amount: object, refused: str | None
) -> None:
    reason = transformers.foreign_order(_order_for(custom_id, amount), "pi_ours", Money(2000, "USD"))
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason
