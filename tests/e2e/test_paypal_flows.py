"""Payments through paymux's API with the PayPal connector against a stateful fake PayPal
(tests/support/paypal_fake.py: PayPal replaced at the HTTP seam, on 127.0.0.1), whose signed
webhooks arrive at paymux's /webhooks/paypal and are verified through the fake's
verify-webhook-signature, as PayPal's API would. SQLite and PostgreSQL.

The buyer's approval in PayPal's window is the one step a test can't do through a browser:
``fake.approve(order_id)`` stands for it, between paymux's create (whose ``client.order_id``
the PayPal JS SDK's ``createOrder`` returns) and paymux's confirm (called from ``onApprove``
with ``payment_method`` = the order id).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.gateways.base import (
    AuthorizeRequest,
    DisputeUpdate,
    GatewayInvalidRequest,
    GatewayStatus,
)
from paymux.gateways.paypal import PayPalGateway
from paymux.money import Money
from paymux.security import configure_logging
from support.paypal_fake import FakePayPal
from support.pgcluster import PgCluster

CLIENT_ID = "AYfakeclientid"
CLIENT_SECRET = "EPfake-client-secret-do-not-log-9f3k2"
WEBHOOK_ID = "4JH86294D6297924G"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[tuple[FakePayPal, RunningServer]]:
    tmp: Path = tmp_path_factory.mktemp(f"paypal-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"paypal_{request.param}")
    fake = FakePayPal(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID).start()
    port = free_port()
    settings = make_settings(
        url, tmp, port, paypal_client_id=CLIENT_ID, paypal_client_secret=CLIENT_SECRET,
        paypal_webhook_id=WEBHOOK_ID, paypal_api_base=fake.url, default_gateway="paypal",
    )
    fake.webhook_url = f"http://127.0.0.1:{port}/webhooks/paypal"
    running = RunningServer(settings).start()
    try:
        yield fake, running
    finally:
        running.stop()
        fake.stop()


@pytest.fixture
def fake(env: tuple[FakePayPal, RunningServer]) -> FakePayPal:
    return env[0]


@pytest.fixture
def papi(env: tuple[FakePayPal, RunningServer]) -> Iterator[Api]:
    client = Api(env[1])
    try:
        yield client
    finally:
        client.close()


def create(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents",
                  {"amount": 2000, "currency": "usd", "gateway": "paypal", **params})


def inbox(api: Api, needle: str) -> list[tuple[str, str, str | None]]:
    rows = api.server.sql(
        "select type, status, error from webhook_inbox where gateway = 'paypal' and payload like :p",
        p=f"%{needle}%")
    return [tuple(r) for r in rows]


def wait_applied(api: Api, needle: str, event_type: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = inbox(api, needle)
        # "stale": processed, and older than what paymux knew (e.g. overtaken by a capture)
        if any(t == event_type and s in ("applied", "ignored", "stale") for t, s, _ in rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"{event_type} not applied for {needle}: {inbox(api, needle)}")


def events(api: Api, object_id: str, event_type: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", "/v1/events",
                       params={"object_id": object_id, "type": event_type})["data"])


def test_create_answers_what_the_paypal_js_sdk_needs(papi: Api, fake: FakePayPal) -> None:
    pi = create(papi, currency="eur", capture_method="manual")
    client = pi["client"]
    assert client["gateway"] == "paypal" and client["client_id"] == CLIENT_ID
    assert client["order_id"] == pi["gateway_reference"]
    assert (client["intent"], client["currency"]) == ("authorize", "EUR")
    order = fake.orders[client["order_id"]]
    assert order["intent"] == "AUTHORIZE"
    assert order["purchase_units"][0]["custom_id"] == pi["id"]
    assert order["purchase_units"][0]["amount"] == {"currency_code": "EUR", "value": "20.00"}


def test_a_paypal_payment_captures_and_the_capture_webhook_finds_the_intent(
    papi: Api, fake: FakePayPal
) -> None:
    pi = create(papi)
    order_id = pi["client"]["order_id"]
    fake.approve(order_id)
    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": order_id})
    assert done["status"] == "succeeded" and done["amount_received"] == 2000
    [capture] = fake.orders[order_id]["purchase_units"][0]["payments"]["captures"]
    assert done["gateway_reference"] == capture["id"]
    pm = papi.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
    assert (pm["type"], pm["gateway_token"]) == ("paypal", order_id)
    wait_applied(papi, capture["id"], "PAYMENT.CAPTURE.COMPLETED")
    assert all(error is None for _, _, error in inbox(papi, pi["id"]))
    assert len(events(papi, pi["id"], "payment_intent.succeeded")) == 1


def test_manual_capture_of_part_then_a_partial_refund_counted_once(
    papi: Api, fake: FakePayPal
) -> None:
    pi = create(papi, amount=5000, capture_method="manual")
    fake.approve(pi["client"]["order_id"])
    held = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": pi["client"]["order_id"]})
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 5000
    auth_id = held["gateway_reference"]
    assert fake.authorizations[auth_id]["status"] == "CREATED"

    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 3000})
    assert done["status"] == "succeeded" and done["amount_received"] == 3000
    capture_id = done["gateway_reference"]
    assert fake.captures[capture_id]["amount"] == {"currency_code": "USD", "value": "30.00"}
    assert fake.captures[capture_id]["final_capture"] is True
    assert fake.authorizations[auth_id]["status"] == "PARTIALLY_CAPTURED"

    refund = papi.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000})
    assert refund["status"] == "succeeded"
    [paypal_refund] = [r for r in fake.refunds.values() if r["_capture"] == capture_id]
    assert refund["gateway_reference"] == paypal_refund["id"]
    assert paypal_refund["custom_id"] == refund["id"]

    wait_applied(papi, paypal_refund["id"], "PAYMENT.CAPTURE.REFUNDED")
    after = papi.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["amount_refunded"] == 1000 and after["status"] == "succeeded"
    assert len(papi.ok("GET", "/v1/refunds", params={"payment_intent": pi["id"]})["data"]) == 1
    assert len(events(papi, refund["id"], "refund.updated")) == 1
    assert len(events(papi, pi["id"], "charge.refunded")) == 1
    assert len(events(papi, pi["id"], "payment_intent.succeeded")) == 1
    wait_applied(papi, auth_id, "PAYMENT.AUTHORIZATION.CREATED")


def test_canceling_an_authorized_payment_voids_it(papi: Api, fake: FakePayPal) -> None:
    pi = create(papi, capture_method="manual")
    fake.approve(pi["client"]["order_id"])
    held = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": pi["client"]["order_id"]})
    canceled = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/cancel")
    assert canceled["status"] == "canceled"
    assert fake.authorizations[held["gateway_reference"]]["status"] == "VOIDED"
    wait_applied(papi, held["gateway_reference"], "PAYMENT.AUTHORIZATION.VOIDED")
    assert papi.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "canceled"


@pytest.mark.parametrize(("issue", "code", "decline_code"), [
    ("INSTRUMENT_DECLINED", "card_declined", "generic_decline"),
    ("TRANSACTION_REFUSED", "card_declined", "generic_decline"),
    ("PAYER_ACTION_REQUIRED", "authentication_required", "authentication_required"),
    ("PAYER_ACCOUNT_RESTRICTED", "card_declined", "restricted_card"),
    ("ORDER_NOT_APPROVED", "authentication_required", None),
])
def test_a_refusal_is_a_402_and_the_buyer_can_approve_again(
    papi: Api, fake: FakePayPal, issue: str, code: str, decline_code: str | None
) -> None:
    pi = create(papi)
    order_id = pi["client"]["order_id"]
    if issue != "ORDER_NOT_APPROVED":  # that one: confirm before the buyer approved
        fake.approve(order_id, decline=issue)
    r = papi.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": order_id})
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert (error["code"], error["decline_code"]) == (code, decline_code)
    assert (error["gateway"], error["gateway_code"]) == ("paypal", issue)
    after = papi.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method"
    assert after["gateway_reference"] == order_id
    # The buyer picks another funding source in PayPal's window; confirm again.
    fake.approve(order_id)
    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": order_id})
    assert done["status"] == "succeeded"


def test_another_payments_approved_order_pays_nothing_and_stays_its_own(
    papi: Api, fake: FakePayPal
) -> None:
    """A buyer holding two payments' client secrets approves the cheap one's order and names
    it to confirm the other (same amount here, so only the order's ``custom_id`` tells):
    refused before any capture; the order still pays its own payment, once."""
    dear, cheap = create(papi), create(papi)
    order_id = cheap["client"]["order_id"]
    fake.approve(order_id)
    r = papi.post(f"/v1/payment_intents/{dear['id']}/confirm", {"payment_method": order_id})
    assert r.status_code == 400, r.text
    assert "another payment" in r.json()["error"]["message"]
    assert papi.ok("GET", f"/v1/payment_intents/{dear['id']}")["status"] != "succeeded"
    assert fake.orders[order_id]["purchase_units"][0]["payments"] == {}  # nothing captured
    done = papi.ok("POST", f"/v1/payment_intents/{cheap['id']}/confirm",
                   {"payment_method": order_id})
    assert done["status"] == "succeeded" and done["amount_received"] == 2000
    assert len(fake.orders[order_id]["purchase_units"][0]["payments"]["captures"]) == 1


def test_an_order_made_outside_paymux_must_be_for_the_payments_amount(
    papi: Api, fake: FakePayPal
) -> None:
    """An order the merchant's own PayPal code made (no ``custom_id``) for 5.00 can't pay a
    payment of 20.00: refused before any capture. One for 20.00 USD pays it, and only it."""
    pi = create(papi)
    with fake.lock:
        _, small = fake._create_order(
            {"intent": "CAPTURE",
             "purchase_units": [{"amount": {"currency_code": "USD", "value": "5.00"}}]})
        _, exact = fake._create_order(
            {"intent": "CAPTURE",
             "purchase_units": [{"amount": {"currency_code": "USD", "value": "20.00"}}]})
    fake.approve(small["id"])
    r = papi.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": small["id"]})
    assert r.status_code == 400, r.text
    assert "amount or currency" in r.json()["error"]["message"]
    assert fake.orders[small["id"]]["purchase_units"][0]["payments"] == {}
    fake.approve(exact["id"])
    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": exact["id"]})
    assert done["status"] == "succeeded" and done["amount_received"] == 2000
    # Paid once, it can't pay a second payment of the same amount (PayPal says "already
    # captured" to the second capture: another request paid it, not this payment's).
    second = create(papi)
    r = papi.post(f"/v1/payment_intents/{second['id']}/confirm", {"payment_method": exact["id"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "payment_method"
    assert "already paid" in r.json()["error"]["message"]
    assert papi.ok("GET", f"/v1/payment_intents/{second['id']}")["status"] != "succeeded"
    assert len(fake.orders[exact["id"]]["purchase_units"][0]["payments"]["captures"]) == 1
    # The first payment, confirmed again, is still answered with its own capture.
    again = papi.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert again["status"] == "succeeded" and again["amount_received"] == 2000


def test_a_reviewed_paypal_order_is_captured_as_opened_and_rejecting_refunds_it(
    papi: Api, fake: FakePayPal
) -> None:
    """A ``review`` rule can't hold a PayPal order the payer approved for capture (the JS
    SDK approved an order of that intent; authorizing it is PayPal's
    ACTION_DOES_NOT_MATCH_INTENT): the payment is captured as opened, its review opens on
    the captured money, and rejecting it refunds the capture at PayPal."""
    rule = papi.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: = 2345"})
    try:
        pi = create(papi, amount=2345)
        order_id = pi["client"]["order_id"]
        fake.approve(order_id)
        done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                       {"payment_method": order_id})
        assert (done["status"], done["amount_received"]) == ("succeeded", 2345)
        [capture] = fake.orders[order_id]["purchase_units"][0]["payments"]["captures"]
        [review] = [r for r in papi.ok("GET", "/v1/reviews", params={"open": "true"})["data"]
                    if r["payment_intent"] == pi["id"]]
        rejected = papi.ok("POST", f"/v1/reviews/{review['id']}/reject")
        assert (rejected["open"], rejected["closed_reason"]) == (False, "refunded")
        refunds = papi.ok("GET", "/v1/refunds", params={"payment_intent": pi["id"]})["data"]
        assert [(r["amount"], r["status"], r["reason"]) for r in refunds] == [
            (2345, "succeeded", "fraudulent")]
        at_paypal = [r for r in fake.refunds.values() if r["_capture"] == capture["id"]]
        assert [r["amount"]["value"] for r in at_paypal] == ["23.45"]
    finally:
        papi.ok("DELETE", f"/v1/fraud/rules/{rule['id']}")


def test_a_saved_paypal_wallet_is_charged_off_session(papi: Api, fake: FakePayPal) -> None:
    customer = papi.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    setup_token = fake.create_setup_token("paypal")
    saved = papi.ok("POST", f"/v1/payment_methods/{setup_token}/attach",
                    {"customer": customer["id"], "gateway": "paypal"})
    vault_id = saved["gateway_token"].removeprefix("paypal:")
    assert saved["gateway_token"] == f"paypal:{vault_id}" and vault_id in fake.payment_tokens
    assert saved["customer"] == customer["id"]
    pi = papi.ok("POST", "/v1/payment_intents", {
        "amount": 1200, "currency": "usd", "gateway": "paypal", "customer": customer["id"],
        "payment_method": saved["id"], "confirm": True, "off_session": True})
    assert pi["status"] == "succeeded" and pi["amount_received"] == 1200
    [order] = [o for o in fake.orders.values()
               if o["purchase_units"][0]["custom_id"] == pi["id"]]
    assert order["status"] == "COMPLETED"
    detached = papi.ok("POST", f"/v1/payment_methods/{saved['id']}/detach")
    assert detached["customer"] is None and vault_id not in fake.payment_tokens


def test_a_saved_card_is_authorized_off_session_then_captured(papi: Api, fake: FakePayPal) -> None:
    customer = papi.ok("POST", "/v1/customers", {"email": "card@example.com"})
    saved = papi.ok("POST", f"/v1/payment_methods/{fake.create_setup_token('card')}/attach",
                    {"customer": customer["id"], "gateway": "paypal"})
    assert saved["gateway_token"].startswith("card:")
    assert (saved["card"]["brand"], saved["card"]["last4"]) == ("visa", "1111")
    pi = papi.ok("POST", "/v1/payment_intents", {
        "amount": 700, "currency": "usd", "gateway": "paypal", "customer": customer["id"],
        "payment_method": saved["id"], "confirm": True, "off_session": True,
        "capture_method": "manual"})
    assert pi["status"] == "requires_capture"
    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert done["status"] == "succeeded" and done["amount_received"] == 700


def test_a_webhook_with_a_forged_signature_is_refused(papi: Api, fake: FakePayPal) -> None:
    event = {"id": "WH-FORGED", "event_type": "PAYMENT.CAPTURE.COMPLETED",
             "resource_type": "capture", "resource": {"id": "X", "status": "COMPLETED"}}
    body, headers = fake.signed(event)
    forged = body.replace(b"COMPLETED", b"COMPLETED ")
    r = httpx.post(f"{papi.server.url}/webhooks/paypal", content=forged, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["reason"] == "signature_mismatch"
    r = httpx.post(f"{papi.server.url}/webhooks/paypal", content=body,
                   headers={k: v for k, v in headers.items() if k != "paypal-transmission-sig"})
    assert r.status_code == 400 and r.json()["error"]["reason"] == "missing_headers"
    r = httpx.post(f"{papi.server.url}/webhooks/paypal", content=body,
                   headers={**headers, "paypal-cert-url": "https://evil.example.com/c.pem"})
    assert r.status_code == 400 and r.json()["error"]["reason"] == "cert_url_not_allowed"
    r = httpx.post(f"{papi.server.url}/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 200  # the genuine delivery


class _MockResponse(httpx.AsyncBaseTransport):
    """Adds PayPal's negative-testing header to every request, as a sandbox test harness would."""

    def __init__(self, code: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.header = json.dumps({"mock_application_codes": code})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["paypal-mock-response"] = self.header
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("code", ["INSTRUMENT_DECLINED", "TRANSACTION_REFUSED"])
def test_paypal_mock_response_declines_a_capture_like_the_sandbox(fake: FakePayPal, code: str) -> None:
    order_id = fake._create_order({"intent": "CAPTURE", "purchase_units": [
        {"amount": {"currency_code": "USD", "value": "5.00"}, "custom_id": "pi_mock"}]})[1]["id"]
    fake.approve(order_id)

    async def run() -> None:
        gateway = PayPalGateway(CLIENT_ID, CLIENT_SECRET, api_base=fake.url,
                                transport=_MockResponse(code))
        try:
            result = await gateway.authorize(AuthorizeRequest(
                amount=Money(500, "USD"), payment_method_token=order_id, capture=True,
                reference="pi_mock", gateway_reference=order_id), idempotency_key="pi_mock:a:1")
        finally:
            await gateway.aclose()
        assert result.status is GatewayStatus.FAILED and result.reference == order_id
        assert result.decline is not None and result.decline.gateway_code == code

    asyncio.run(run())
    assert fake.orders[order_id]["status"] == "APPROVED"  # nothing captured


# -- no secret in the logs -----------------------------------------------------------------

class _OtherThreads(logging.Filter):
    def __init__(self, excluded: int) -> None:
        super().__init__()
        self.excluded = excluded

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.excluded


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """paymux's own logging setup (as ``paymux serve``) at DEBUG, into a buffer."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = {h: list(h.filters) for h in root.handlers}
    configure_logging(level="DEBUG", json_output=True)
    [handler] = [h for h in root.handlers if h not in saved_handlers]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    handler.addFilter(_OtherThreads(threading.get_ident()))
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved_level)
        for h, filters in saved_handlers.items():
            h.filters[:] = filters


def test_the_debug_transcript_has_no_secret_token_or_authorization_value(
    papi: Api, fake: FakePayPal, debug_logs: io.StringIO
) -> None:
    pi = create(papi, capture_method="manual")
    fake.approve(pi["client"]["order_id"])
    papi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
            {"payment_method": pi["client"]["order_id"]})
    done = papi.ok("POST", f"/v1/payment_intents/{pi['id']}/capture")
    papi.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 500})
    wait_applied(papi, done["gateway_reference"], "PAYMENT.CAPTURE.REFUNDED")
    text = debug_logs.getvalue()
    assert "paypal POST /v2/checkout/orders" in text  # the connector's DEBUG lines are there
    assert "/v1/notifications/verify-webhook-signature" in text
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert CLIENT_SECRET not in text and basic not in text
    assert fake.tokens
    for token in fake.tokens:
        assert token not in text and token[5:25] not in text
    assert "Bearer A21AA" not in text and "Basic " + basic[:8] not in text


# -- the connector itself against the fake (no paymux server): what the engine relies on ------
class RecoveringPayPal(FakePayPal):
    """The fake, plus: order PATCH, GET of a refund, refunds listed in their order (as PayPal's
    order shows them), and saved-method orders that wait for the payer (PAYER_ACTION_REQUIRED,
    as PayPal answers when 3-D Secure or the payer's approval is needed)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.payer_action = False
        self.server.RequestHandlerClass.do_PATCH = (  # type: ignore[attr-defined]
            lambda handler: handler._handle("PATCH"))

    def _route(self, method: str, path: str, headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        match method, parts:
            case "PATCH", ["v2", "checkout", "orders", order_id]:
                return self._patch(order_id, body)
            case "GET", ["v2", "payments", "refunds", refund_id]:
                refund = self.refunds.get(refund_id)
                if refund is None:
                    return 404, {"name": "RESOURCE_NOT_FOUND", "details": [
                        {"issue": "INVALID_RESOURCE_ID", "description": "Not found."}]}
                return 200, {k: v for k, v in refund.items() if not k.startswith("_")}
        return super()._route(method, path, headers, body)

    def _patch(self, order_id: str, patch: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
        order = self.orders.get(order_id)
        if order is None:
            return 404, {"name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}]}
        if order["status"] not in ("CREATED", "APPROVED"):
            return 422, {"name": "UNPROCESSABLE_ENTITY",
                         "details": [{"issue": "ORDER_ALREADY_COMPLETED"}]}
        for op in patch:
            assert op["op"] == "replace"
            assert op["path"] == "/purchase_units/@reference_id=='default'/amount"
            order["purchase_units"][0]["amount"] = op["value"]
        return 204, None

    def _refund(self, capture_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, view = super()._refund(capture_id, body)
        if status == 201:
            order_id = self.captures[capture_id]["supplementary_data"]["related_ids"]["order_id"]
            payments = self.orders[order_id]["purchase_units"][0]["payments"]
            payments.setdefault("refunds", []).append(view)
        return status, view

    def _create_order(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        source = body.get("payment_source") or {}
        if not (self.payer_action and source):
            return super()._create_order(body)
        _, order = super()._create_order({k: v for k, v in body.items()
                                          if k != "payment_source"})
        stored = self.orders[order["id"]]
        [details] = source.values()
        stored["status"] = "PAYER_ACTION_REQUIRED"
        stored["payment_source"] = self.payment_tokens[details["vault_id"]]["payment_source"]
        stored["links"] = [{"rel": "payer-action", "method": "GET",
                            "href": f"https://www.sandbox.paypal.com/webapps/helios?action=verify&flow=3ds&cart_id={order['id']}"}]
        return 200, self._order_view(stored)


@pytest.fixture(scope="module")
def bare() -> Iterator[RecoveringPayPal]:
    fake = RecoveringPayPal(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID).start()  # no webhook URL
    try:
        yield fake
    finally:
        fake.stop()


def connector_run(fake: FakePayPal, call: Any) -> Any:
    async def go() -> Any:
        gateway = PayPalGateway(CLIENT_ID, CLIENT_SECRET, api_base=fake.url,
                                webhook_id=WEBHOOK_ID, timeout=5)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def opened_order(fake: FakePayPal, pi_id: str, capture: bool = True, amount: int = 2000) -> str:
    opened = connector_run(fake, lambda g: g.open_payment(
        Money(amount, "USD"), pi_id, capture, idempotency_key=f"{pi_id}:open"))
    assert opened is not None
    return str(opened.reference)


def confirm(fake: FakePayPal, pi_id: str, token: str, key: str, *, capture: bool = True,
            gateway_reference: str | None = None, amount: int = 2000) -> Any:
    request = AuthorizeRequest(amount=Money(amount, "USD"), payment_method_token=token,
                               capture=capture, reference=pi_id,
                               gateway_reference=gateway_reference)
    return connector_run(fake, lambda g: g.authorize(request, idempotency_key=key))


def test_a_saved_method_payment_waiting_for_the_payer_completes_once_they_act(
    bare: RecoveringPayPal,
) -> None:
    saved = connector_run(bare, lambda g: g.attach_payment_method(
        bare.create_setup_token("card"), "pmx_c", idempotency_key="pm_pp_3ds:attach"))
    bare.payer_action = True
    try:
        first = confirm(bare, "pi_pp_3ds", saved.token, "pi_pp_3ds:authorize:1")
    finally:
        bare.payer_action = False
    order_id = str(first.reference)
    assert first.status is GatewayStatus.REQUIRES_ACTION
    assert first.next_action is not None
    assert "helios" in first.next_action["redirect_to_url"]["url"]
    # Confirming again before the payer acted: still waiting, nothing charged or created.
    orders_before = len(bare.orders)
    waiting = confirm(bare, "pi_pp_3ds", saved.token, "pi_pp_3ds:authorize:1",
                      gateway_reference=order_id)
    assert (waiting.status, waiting.reference) == (GatewayStatus.REQUIRES_ACTION, order_id)
    assert len(bare.orders) == orders_before
    assert not bare.orders[order_id]["purchase_units"][0]["payments"].get("captures")

    bare.approve(order_id)  # the payer passed 3-D Secure
    assert connector_run(bare, lambda g: g.retrieve(order_id)).status is GatewayStatus.OPEN
    done = confirm(bare, "pi_pp_3ds", saved.token, "pi_pp_3ds:authorize:1",
                   gateway_reference=order_id)
    [capture] = bare.orders[order_id]["purchase_units"][0]["payments"]["captures"]
    assert (done.status, done.reference, done.amount_captured) == (
        GatewayStatus.SUCCEEDED, capture["id"], 2000)
    assert len(bare.orders) == orders_before, "the waiting order was completed, no new one"
    [headers] = [h for _, path, h in bare.requests
                 if path == f"/v2/checkout/orders/{order_id}/capture"]
    assert headers["paypal-request-id"] == "pi_pp_3ds:authorize:1:complete"
    # Asked again (a lost answer): the capture is read back, not made twice.
    again = confirm(bare, "pi_pp_3ds", saved.token, "pi_pp_3ds:authorize:1",
                    gateway_reference=order_id)
    assert (again.status, again.reference) == (GatewayStatus.SUCCEEDED, capture["id"])
    assert len(bare.orders[order_id]["purchase_units"][0]["payments"]["captures"]) == 1


def test_canceling_an_order_nobody_approved_needs_nothing_at_paypal(
    bare: RecoveringPayPal,
) -> None:
    order_id = opened_order(bare, "pi_pp_cancel_open")
    result = connector_run(bare, lambda g: g.void(order_id, idempotency_key="pi_pp_cancel_open:cancel"))
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, order_id)
    assert bare.orders[order_id]["status"] == "CREATED"  # left to expire


def test_canceling_an_authorized_order_voids_its_authorization(bare: RecoveringPayPal) -> None:
    order_id = opened_order(bare, "pi_pp_cancel_auth", capture=False)
    bare.approve(order_id)
    held = confirm(bare, "pi_pp_cancel_auth", order_id, "pi_pp_cancel_auth:authorize:1",
                   capture=False, gateway_reference=order_id)
    assert held.status is GatewayStatus.REQUIRES_CAPTURE
    result = connector_run(bare, lambda g: g.void(order_id, idempotency_key="pi_pp_cancel_auth:cancel"))
    assert (result.status, result.reference) == (GatewayStatus.CANCELED, held.reference)
    assert bare.authorizations[str(held.reference)]["status"] == "VOIDED"
    # Again (a lost answer): still canceled, nothing more to void.
    again = connector_run(bare, lambda g: g.void(order_id, idempotency_key="pi_pp_cancel_auth:cancel"))
    assert again.status is GatewayStatus.CANCELED


def test_canceling_an_order_already_captured_reports_the_capture(bare: RecoveringPayPal) -> None:
    order_id = opened_order(bare, "pi_pp_cancel_paid")
    bare.approve(order_id)
    paid = confirm(bare, "pi_pp_cancel_paid", order_id, "pi_pp_cancel_paid:authorize:1",
                   gateway_reference=order_id)
    for reference in (order_id, str(paid.reference)):
        result = connector_run(bare, lambda g, r=reference: g.void(
            r, idempotency_key="pi_pp_cancel_paid:cancel"))
        assert (result.status, result.reference, result.amount_captured) == (
            GatewayStatus.SUCCEEDED, paid.reference, 2000)


def test_canceling_an_authorization_captured_meanwhile_reports_the_capture(
    bare: RecoveringPayPal,
) -> None:
    order_id = opened_order(bare, "pi_pp_cancel_late", capture=False)
    bare.approve(order_id)
    held = confirm(bare, "pi_pp_cancel_late", order_id, "pi_pp_cancel_late:authorize:1",
                   capture=False, gateway_reference=order_id)
    captured = connector_run(bare, lambda g: g.capture(
        str(held.reference), Money(1500, "USD"), idempotency_key="pi_pp_cancel_late:capture"))
    bare.orders[order_id]["purchase_units"][0]["payments"]["captures"] = [
        bare.captures[str(captured.reference)]]  # PayPal's order lists its captures
    result = connector_run(bare, lambda g: g.void(
        str(held.reference), idempotency_key="pi_pp_cancel_late:cancel"))
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED, captured.reference, 1500)


def test_an_opened_order_s_amount_is_updated_and_an_intent_change_refused(
    bare: RecoveringPayPal,
) -> None:
    order_id = opened_order(bare, "pi_pp_update")
    connector_run(bare, lambda g: g.update_payment(
        order_id, Money(3550, "USD"), True, idempotency_key="pi_pp_update:update:3550:USD:1"))
    assert bare.orders[order_id]["purchase_units"][0]["amount"] == {
        "currency_code": "USD", "value": "35.50"}
    with pytest.raises(GatewayInvalidRequest) as info:
        connector_run(bare, lambda g: g.update_payment(
            order_id, Money(3550, "USD"), False, idempotency_key="k"))
    assert info.value.code == "update_unsupported"
    bare.approve(order_id)
    done = confirm(bare, "pi_pp_update", order_id, "pi_pp_update:authorize:1",
                   gateway_reference=order_id, amount=3550)
    assert (done.status, done.amount_captured) == (GatewayStatus.SUCCEEDED, 3550)
    with pytest.raises(GatewayInvalidRequest) as info:
        connector_run(bare, lambda g: g.update_payment(
            order_id, Money(100, "USD"), True, idempotency_key="k2"))
    assert info.value.code == "ORDER_ALREADY_COMPLETED"


def test_a_refund_is_found_by_its_id_or_by_ours(bare: RecoveringPayPal) -> None:
    order_id = opened_order(bare, "pi_pp_refund")
    bare.approve(order_id)
    paid = confirm(bare, "pi_pp_refund", order_id, "pi_pp_refund:authorize:1",
                   gateway_reference=order_id)
    capture_id = str(paid.reference)
    made = connector_run(bare, lambda g: g.refund(
        capture_id, Money(500, "USD"), None, idempotency_key="re_pprefund1:refund"))
    by_ours = connector_run(bare, lambda g: g.retrieve_refund(
        None, our_id="re_pprefund1", payment_reference=capture_id))
    assert by_ours is not None
    assert (by_ours.reference, by_ours.status, by_ours.amount, by_ours.our_id) == (
        made.reference, "succeeded", 500, "re_pprefund1")
    by_id = connector_run(bare, lambda g: g.retrieve_refund(
        made.reference, our_id="re_pprefund1", payment_reference=capture_id))
    assert by_id is not None and (by_id.reference, by_id.payment_reference) == (
        made.reference, capture_id)
    assert connector_run(bare, lambda g: g.retrieve_refund(
        None, our_id="re_ppnever", payment_reference=capture_id)) is None


def test_a_verified_dispute_webhook_is_a_dispute_on_the_capture(bare: RecoveringPayPal) -> None:
    event = {"id": "WH-4M0448861G563140B-9EX36365822141321", "event_version": "1.0",
             "create_time": "2018-06-21T13:36:33.000Z", "resource_type": "dispute",
             "event_type": "CUSTOMER.DISPUTE.CREATED",
             "summary": "A new dispute opened with Case # PP-000-042-663-135",
             "resource": {"dispute_id": "PP-000-042-663-135",
                          "disputed_transactions": [{"seller_transaction_id": "6T496768GW863311H",
                                                     "seller_protection_eligible": True}],
                          "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", "status": "OPEN",
                          "dispute_amount": {"currency_code": "USD", "value": "3.00"},
                          "dispute_life_cycle_stage": "CHARGEBACK"}}
    body, headers = bare.signed(event)

    async def verify_and_interpret(g: PayPalGateway) -> Any:
        return g.interpret_event(await g.verify_webhook(headers, body))

    change = connector_run(bare, verify_and_interpret)
    assert isinstance(change, DisputeUpdate)
    assert (change.reference, change.payment_reference, change.amount, change.currency,
            change.status) == ("PP-000-042-663-135", "6T496768GW863311H", 300, "USD",
                               "needs_response")
