"""Every request the PayPal connector sends, checked by Prism against PayPal's own OpenAPI specs
(Orders v2, Payments v2, Vault v3, Webhooks v1, merged), and every placeholder answer parsed.

The connector's real methods run with their base URL pointed at Prism. A transport wrapper
added here (not a mock of our code) records each exchange, so each test can assert that
Prism found no request violation (no 422, nothing in ``sl-violations`` located in the
request). ``POST /v1/oauth2/token`` is in none of the five specs (Prism answers 404), so the
wrapper answers it itself, after checking the request has the documented shape (basic auth,
``grant_type=client_credentials``). Prism is stateless: a capture does not know the order;
these tests check shapes, the flows are in tests/e2e/test_paypal_flows.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from paymux.gateways.base import AuthorizeRequest, GatewayInvalidRequest, GatewayStatus
from paymux.gateways.paypal import PayPalGateway, transformers
from paymux.money import Money
from support.sandboxes import Prism, violations

T = TypeVar("T")

CLIENT_ID, CLIENT_SECRET = "AYpaymuxclient", "EPpaymuxsecret"
ORDER_ID = "5O190127TN364715T"
# What Prism fills a string field of an answer with (the payment an order was opened for).
PLACEHOLDER = "string"
AUTHORIZATION_ID = "0VF52814937998046"
CAPTURE_ID = "2GG279541U471931P"
SETUP_TOKEN = "5C991763VB2781612"
VAULT_ID = "8kk8451t"
WEBHOOK_ID = "1JE4291016473214C"


def _required() -> bool:
    return os.environ.get("CI") in ("true", "1") or (
        os.environ.get("PAYMUX_TEST_SANDBOXES") == "required"
    )


@pytest.fixture(scope="module")
def prism() -> Iterator[Prism]:
    reason = Prism.unavailable("paypal")
    if reason:
        if _required():
            pytest.fail(reason)
        pytest.skip(reason)
    server = Prism("paypal").start()
    try:
        yield server
    finally:
        server.stop()


def request_violations(response: httpx.Response) -> list[Any]:
    """Prism's request-side violations. When there are many (response-side ones from its own
    placeholder bodies) Prism sends ``Too many violations! [...]`` cut short, which the shared
    helper can't parse: then look for request locations in the text."""
    raw = response.headers.get("sl-violations") or ""
    try:
        return violations(response)
    except ValueError:
        return re.findall(r'\{"location":\["request"[^}]*\}', raw)


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to Prism and keeps every exchange; answers the OAuth2 token request itself."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []
        self.tokens = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            assert request.method == "POST"
            assert request.headers["authorization"] == f"Basic {expected}"
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            assert await request.aread() == b"grant_type=client_credentials"
            self.tokens += 1
            return httpx.Response(200, json={"access_token": "A21AAprism", "token_type": "Bearer",
                                             "expires_in": 32400, "app_id": "APP-80W284485P519543T"})
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r, _ in self.exchanges]

    def assert_all_valid(self) -> None:
        assert self.exchanges
        for request, response in self.exchanges:
            what = f"{request.method} {request.url.path}"
            assert response.status_code != 422, (what, response.headers.get("sl-violations"))
            assert request_violations(response) == [], what
            assert 200 <= response.status_code < 300, (what, response.status_code)
            if request.method == "POST":
                assert request.headers.get("paypal-request-id"), what


def run(prism: Prism, call: Callable[[PayPalGateway], Awaitable[T]],
        **kw: Any) -> tuple[T, Recorder]:
    recorder = Recorder()

    async def go() -> T:
        gateway = PayPalGateway(CLIENT_ID, CLIENT_SECRET, api_base=prism.url,
                                transport=recorder, **kw)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go()), recorder


def _authorize(token: str, capture: bool, gateway_reference: str | None = None,
               off_session: bool = False) -> AuthorizeRequest:
    return AuthorizeRequest(amount=Money(1000, "USD"), payment_method_token=token,
                            capture=capture, reference="pi_contract", off_session=off_session,
                            gateway_reference=gateway_reference, description="Order 42")


@pytest.mark.parametrize(("capture", "intent"), [(True, "CAPTURE"), (False, "AUTHORIZE")])
def test_creating_an_order_is_valid(prism: Prism, capture: bool, intent: str) -> None:
    opened, rec = run(prism, lambda g: g.open_payment(
        Money(1050, "EUR"), "pi_contract", capture, idempotency_key="pi_contract:open"))
    rec.assert_all_valid()
    [(request, _)] = rec.exchanges
    body = json.loads(request.content)
    assert body == {"intent": intent, "purchase_units": [
        {"amount": {"currency_code": "EUR", "value": "10.50"}, "custom_id": "pi_contract"}]}
    assert request.headers["paypal-request-id"] == "pi_contract:open"
    assert opened is not None and opened.reference == "string"  # Prism's placeholder id
    assert opened.client == {"order_id": "string", "client_id": CLIENT_ID,
                             "intent": intent.lower(), "currency": "EUR"}
    assert rec.tokens == 1


def test_creating_an_order_in_whole_units_is_valid(prism: Prism) -> None:
    _, rec = run(prism, lambda g: g.open_payment(
        Money(105000, "HUF"), "pi_huf", True, idempotency_key="pi_huf:open"))
    rec.assert_all_valid()
    assert json.loads(rec.exchanges[0][0].content)["purchase_units"][0]["amount"]["value"] == "1050"


# An approved card order whose 3-D Secure PayPal's table says to continue with (liability
# POSSIBLE after an authenticated challenge): what the capture or authorize is then sent with.
_AUTHENTICATED = {"id": ORDER_ID, "status": "APPROVED", "payment_source": {"card": {
    "authentication_result": {"liability_shift": "POSSIBLE", "three_d_secure": {
        "enrollment_status": "Y", "authentication_status": "Y"}}}}}


def test_capturing_an_approved_order_is_valid_and_its_placeholder_parses(prism: Prism) -> None:
    result, rec = run(prism, lambda g: g._complete_order(
        ORDER_ID, True, "pi_contract:authorize:1", 1000, _AUTHENTICATED))
    rec.assert_all_valid()
    assert rec.calls() == [f"POST /v2/checkout/orders/{ORDER_ID}/capture"]
    # Prism's order holds a COMPLETED capture with id "string" and an unreadable amount.
    assert (result.status, result.reference) == (GatewayStatus.SUCCEEDED, "string")
    assert result.amount_captured == 1000  # the requested amount, as the placeholder has none


def test_authorizing_an_approved_order_is_valid(prism: Prism) -> None:
    result, rec = run(prism, lambda g: g._complete_order(
        ORDER_ID, False, "pi_contract:authorize:1", 1000, _AUTHENTICATED))
    rec.assert_all_valid()
    assert rec.calls() == [f"POST /v2/checkout/orders/{ORDER_ID}/authorize"]
    assert (result.status, result.reference) == (GatewayStatus.REQUIRES_CAPTURE, "string")
    assert result.amount_authorized == 1000


@pytest.mark.parametrize("capture", [True, False])
def test_an_approved_order_is_read_first_and_its_3ds_result_decides(
    prism: Prism, capture: bool
) -> None:
    """Confirming with an order reads it first (GET, valid against PayPal's spec).
    Prism's placeholder card says liability_shift NO after enrollment Y / authentication Y,
    which PayPal's recommended action says not to continue with, but the placeholder order
    is not an APPROVED one with no payment (status CREATED, holding payments): the refusal
    applies only to an approved, unpaid order, so the capture or authorize is sent and
    PayPal's answer decides (an order already paid is reported as it stands). Prism's
    placeholder order was opened (``custom_id``) for the payment "string": the request is
    that payment's (an order opened for another payment is refused, below)."""
    request = dataclasses.replace(_authorize(ORDER_ID, capture, ORDER_ID), reference=PLACEHOLDER)
    result, rec = run(prism, lambda g: g.authorize(
        request, idempotency_key="pi_contract:authorize:1"))
    rec.assert_all_valid()
    action = "capture" if capture else "authorize"
    get = json.loads(rec.exchanges[0][1].content)
    assert (get["status"], bool(get["purchase_units"][0]["payments"])) == ("CREATED", True)
    assert rec.calls() == [
        f"GET /v2/checkout/orders/{ORDER_ID}",
        f"POST /v2/checkout/orders/{ORDER_ID}/{action}",
    ]
    assert result.decline is None
    assert result.status is (
        GatewayStatus.SUCCEEDED if capture else GatewayStatus.REQUIRES_CAPTURE
    )


def test_an_order_opened_for_another_payment_is_read_and_never_captured(prism: Prism) -> None:
    """The same placeholder order named to pay the payment "pi_contract": its ``custom_id``
    names another payment, so the connector refuses it after the GET (a 400 naming
    ``payment_method`` at the API), and sends no capture."""
    recorder = Recorder()

    async def go() -> None:
        gateway = PayPalGateway(CLIENT_ID, CLIENT_SECRET, api_base=prism.url, transport=recorder)
        try:
            await gateway.authorize(
                _authorize(ORDER_ID, True, ORDER_ID), idempotency_key="pi_contract:authorize:1"
            )
        finally:
            await gateway.aclose()

    with pytest.raises(GatewayInvalidRequest) as refused:
        asyncio.run(go())
    recorder.assert_all_valid()
    assert recorder.calls() == [f"GET /v2/checkout/orders/{ORDER_ID}"]
    got = json.loads(recorder.exchanges[0][1].content)
    assert got["purchase_units"][0]["custom_id"] == PLACEHOLDER
    assert refused.value.param == "payment_method"
    assert "another payment" in str(refused.value)


def test_a_saved_card_order_asking_for_3ds_and_a_merchant_initiated_one_are_valid(
    prism: Prism,
) -> None:
    """payment_source.card.attributes.verification.method (SCA_ALWAYS) on session, and
    stored_credential.previous_network_transaction_reference off session, against the spec."""
    on = AuthorizeRequest(amount=Money(1000, "USD"), payment_method_token=f"card:{VAULT_ID}",
                          capture=True, reference="pi_contract", request_three_d_secure="any")
    off = AuthorizeRequest(amount=Money(1000, "USD"), payment_method_token=f"card:{VAULT_ID}",
                           capture=True, reference="pi_contract", off_session=True,
                           network_transaction_id="120242545218431")
    for request in (on, off):
        _, rec = run(prism, lambda g, r=request: g.authorize(
            r, idempotency_key="pi_contract:authorize:1"))
        rec.assert_all_valid()
        sent = json.loads(rec.exchanges[0][0].content)["payment_source"]["card"]
        if request is on:
            assert sent["attributes"] == {"verification": {"method": "SCA_ALWAYS"}}
        else:
            assert sent["stored_credential"]["previous_network_transaction_reference"] == {
                "id": "120242545218431"}


@pytest.mark.parametrize(("token", "kind"), [(f"paypal:{VAULT_ID}", "paypal"),
                                             (f"card:{VAULT_ID}", "card"),
                                             (f"venmo:{VAULT_ID}", "venmo")])
@pytest.mark.parametrize("capture", [True, False])
def test_charging_a_saved_method_off_session_is_valid(
    prism: Prism, token: str, kind: str, capture: bool
) -> None:
    result, rec = run(prism, lambda g: g.authorize(
        _authorize(token, capture, off_session=True), idempotency_key="pi_contract:authorize:1"))
    rec.assert_all_valid()
    [(request, _)] = rec.exchanges
    body = json.loads(request.content)
    assert body["payment_source"][kind]["vault_id"] == VAULT_ID
    assert body["purchase_units"][0]["custom_id"] == "pi_contract"
    expected = GatewayStatus.SUCCEEDED if capture else GatewayStatus.REQUIRES_CAPTURE
    assert result.status is expected


def test_capturing_part_of_an_authorization_is_valid(prism: Prism) -> None:
    result, rec = run(prism, lambda g: g.capture(
        AUTHORIZATION_ID, Money(600, "USD"), idempotency_key="pi_contract:capture"))
    rec.assert_all_valid()
    [(request, _)] = rec.exchanges
    assert request.url.path == f"/v2/payments/authorizations/{AUTHORIZATION_ID}/capture"
    assert json.loads(request.content) == {
        "amount": {"currency_code": "USD", "value": "6.00"}, "final_capture": True}
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED, "string", 600)


def test_voiding_an_authorization_is_valid(prism: Prism) -> None:
    result, rec = run(prism, lambda g: g.void(AUTHORIZATION_ID,
                                              idempotency_key="pi_contract:cancel"))
    rec.assert_all_valid()
    [(request, _)] = rec.exchanges
    assert request.url.path == f"/v2/payments/authorizations/{AUTHORIZATION_ID}/void"
    assert request.content == b""  # void takes no body
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, AUTHORIZATION_ID)


@pytest.mark.parametrize("amount", [1000, 250])
def test_refunding_a_capture_in_full_or_in_part_is_valid(prism: Prism, amount: int) -> None:
    refund, rec = run(prism, lambda g: g.refund(
        CAPTURE_ID, Money(amount, "USD"), "requested_by_customer",
        idempotency_key="re_contract:refund"))
    rec.assert_all_valid()
    [(request, _)] = rec.exchanges
    assert request.url.path == f"/v2/payments/captures/{CAPTURE_ID}/refund"
    assert json.loads(request.content) == {
        "amount": {"currency_code": "USD", "value": Money(amount, "USD").to_decimal_string()},
        "custom_id": "re_contract"}
    # Prism's refund is CANCELLED (the first status in the spec's list) with an unreadable amount.
    assert (refund.status, refund.reference, refund.amount) == ("canceled", "string", amount)
    assert refund.payment_reference == CAPTURE_ID and refund.our_id == "re_contract"


def test_a_refund_of_what_remains_sends_no_amount_and_is_valid(prism: Prism) -> None:
    async def full(g: PayPalGateway) -> dict[str, Any]:
        return await g._call("POST", f"/v2/payments/captures/{CAPTURE_ID}/refund",
                             body=transformers.refund_request(None, "re_full"),
                             key="re_full:refund")

    _, rec = run(prism, full)
    rec.assert_all_valid()
    assert json.loads(rec.exchanges[0][0].content) == {"custom_id": "re_full"}


def test_saving_a_setup_token_differs_from_the_old_spec_only_in_the_token_type(
    prism: Prism,
) -> None:
    """PayPal takes ``"type": "SETUP_TOKEN"`` (its current server SDKs name only that type);
    the spec snapshot (Vault v3 3.1, 2024-02) still lists only BILLING_AGREEMENT. Prism
    refuses exactly that one value; with it swapped, the same request is valid and PayPal's
    answer (the spec's example) parses into a saved method."""
    from paymux.gateways.base import GatewayInvalidRequest

    async def attach(g: PayPalGateway) -> object:
        try:
            return await g.attach_payment_method(SETUP_TOKEN, "pmx_customer",
                                                 idempotency_key="pm_contract:attach:cus_1")
        except GatewayInvalidRequest as exc:
            return exc

    _, rec = run(prism, attach)
    [(request, response)] = rec.exchanges
    assert request.url.path == "/v3/vault/payment-tokens"
    assert request.headers["paypal-request-id"] == "pm_contract:attach:cus_1"
    assert response.status_code == 422
    [violation] = request_violations(response)
    assert violation["location"] == ["request", "body", "payment_source", "token", "type"]
    assert violation["code"] == "enum"

    old_spec_body = json.loads(request.content)
    old_spec_body["payment_source"]["token"]["type"] = "BILLING_AGREEMENT"
    answer = httpx.post(f"{prism.url}/v3/vault/payment-tokens", json=old_spec_body, headers={
        "authorization": "Bearer x", "paypal-request-id": "pm_contract:attach:cus_1",
        "prefer": "return=representation"})
    assert answer.status_code in (200, 201) and request_violations(answer) == []
    saved = transformers.card_details_from_vault(answer.json())  # the spec's own example
    assert (saved.token, saved.brand, saved.last4, saved.exp_month, saved.exp_year) == (
        "card:8kk8451t", "visa", "1111", 2, 2027)


def test_describing_retrieving_and_deleting_are_valid(prism: Prism) -> None:
    async def calls(g: PayPalGateway) -> list[Any]:
        return [
            await g.describe_payment_method(ORDER_ID),
            await g.describe_payment_method(f"card:{VAULT_ID}"),
            await g.retrieve(CAPTURE_ID),
            await g.attach_payment_method(f"paypal:{VAULT_ID}", "pmx_c",
                                          idempotency_key="pm_x:attach"),
            await g.detach_payment_method(f"card:{VAULT_ID}", idempotency_key="pm_x:detach"),
        ]

    (order, card, retrieved, attached, _), rec = run(prism, calls)
    rec.assert_all_valid()
    assert rec.calls() == [
        f"GET /v2/checkout/orders/{ORDER_ID}", f"GET /v3/vault/payment-tokens/{VAULT_ID}",
        f"GET /v2/checkout/orders/{CAPTURE_ID}", f"GET /v3/vault/payment-tokens/{VAULT_ID}",
        f"DELETE /v3/vault/payment-tokens/{VAULT_ID}"]
    assert order is not None and order.token == ORDER_ID
    assert card is not None and card.token.endswith(f":{VAULT_ID}")
    assert retrieved.reference == "string"
    assert attached.token.endswith(f":{VAULT_ID}")


def test_verifying_a_webhook_by_the_api_is_valid(prism: Prism) -> None:
    body = json.dumps({
        "id": "WH-2WR32451HC0233532-67976317FL4543714", "event_version": "1.0",
        "create_time": "2024-02-18T20:01:35Z", "resource_type": "capture",
        "event_type": "PAYMENT.CAPTURE.COMPLETED", "summary": "Payment completed",
        "resource": {"id": CAPTURE_ID, "status": "COMPLETED", "custom_id": "pi_contract",
                     "amount": {"currency_code": "USD", "value": "10.00"}},
    }, indent=1).encode()
    headers = {
        "paypal-transmission-id": "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
        "paypal-transmission-time": "2024-02-18T20:01:35Z",
        "paypal-transmission-sig": "lmI95Jx3Y9nhR5SJWlHVIWpg4AgFk7n9bCHSRxbrd8A9zrhdu2rMy==",
        "paypal-cert-url": "https://api.paypal.com/v1/notifications/certs/CERT-360caa42",
        "paypal-auth-algo": "SHA256withRSA",
    }
    event, rec = run(prism, lambda g: g.verify_webhook(headers, body), webhook_id=WEBHOOK_ID)
    rec.assert_all_valid()
    [(request, response)] = rec.exchanges
    assert request.url.path == "/v1/notifications/verify-webhook-signature"
    sent = json.loads(request.content)
    assert sent["webhook_id"] == WEBHOOK_ID and sent["webhook_event"] == json.loads(body)
    assert response.json() == {"verification_status": "SUCCESS"}
    assert (event.event_id, event.type) == ("WH-2WR32451HC0233532-67976317FL4543714",
                                            "PAYMENT.CAPTURE.COMPLETED")


def test_replacing_an_order_s_amount_is_a_valid_patch(prism: Prism) -> None:
    async def patch(g: PayPalGateway) -> dict[str, Any]:
        body = json.dumps(transformers.update_order_patch(Money(2550, "EUR"))).encode()
        return await g._call("PATCH", f"/v2/checkout/orders/{ORDER_ID}", content=body)

    _, rec = run(prism, patch)
    [(request, response)] = rec.exchanges
    assert request.method == "PATCH" and request.url.path == f"/v2/checkout/orders/{ORDER_ID}"
    assert response.status_code == 204 and request_violations(response) == []
    assert json.loads(request.content) == [{
        "op": "replace", "path": "/purchase_units/@reference_id=='default'/amount",
        "value": {"currency_code": "EUR", "value": "25.50"}}]


def test_reading_a_refund_and_a_capture_s_order_for_a_refund_is_valid(prism: Prism) -> None:
    async def reads(g: PayPalGateway) -> list[Any]:
        return [
            await g.retrieve_refund("1JU08902781691411", our_id="re_contract",
                                    payment_reference=CAPTURE_ID),
            await g.retrieve_refund(None, our_id="re_contract", payment_reference=CAPTURE_ID),
        ]

    (by_id, _), rec = run(prism, reads)
    # The third call reads the order the capture names: Prism's placeholder capture names
    # order "string", which its own spec's id pattern refuses; the two reads of ours are valid.
    assert rec.calls() == ["GET /v2/payments/refunds/1JU08902781691411",
                           f"GET /v2/payments/captures/{CAPTURE_ID}",
                           "GET /v2/checkout/orders/string"]
    for request, response in rec.exchanges[:2]:
        assert response.status_code == 200 and request_violations(response) == [], request.url
    assert by_id is not None and by_id.payment_reference == CAPTURE_ID


def test_a_setup_token_for_the_payer_s_wallet_is_a_valid_request(prism: Prism) -> None:
    """SetupIntents on PayPal with no token: a Vault v3 setup token for the PayPal wallet,
    keyed by the setup's step. Prism answers the spec's example (an APPROVED card setup token),
    which the connector then exchanges: that second request is the SETUP_TOKEN type the old
    spec refuses (see above), so it stops there with PayPal's 422 as an invalid request."""
    from paymux.gateways.base import GatewayInvalidRequest, SetupRequest

    request = SetupRequest(payment_method_token="", customer_token="pmx_customer",
                           reference="seti_contract", return_url="https://shop.example/saved")

    async def setup(g: PayPalGateway) -> object:
        try:
            return await g.setup(request, idempotency_key="seti_contract:setup:1")
        except GatewayInvalidRequest as exc:
            return exc

    outcome, rec = run(prism, setup)
    (create, created), (save, _) = rec.exchanges
    assert f"{create.method} {create.url.path}" == "POST /v3/vault/setup-tokens"
    assert created.status_code in (200, 201) and request_violations(created) == []
    assert create.headers["paypal-request-id"] == "seti_contract:setup:1"
    assert json.loads(create.content) == {
        "payment_source": {"paypal": {"usage_type": "MERCHANT", "experience_context": {
            "return_url": "https://shop.example/saved",
            "cancel_url": "https://shop.example/saved"}}},
        "customer": {"id": "pmx_customer"}}
    assert f"{save.method} {save.url.path}" == "POST /v3/vault/payment-tokens"
    assert save.headers["paypal-request-id"] == "seti_contract:setup:1:attach"
    assert json.loads(save.content)["payment_source"]["token"]["id"] == SETUP_TOKEN
    assert isinstance(outcome, GatewayInvalidRequest)
