"""The Stripe connector over the real stripe SDK, against code paymux did not write.

- localstripe (a fake Stripe; GPL, run as a separate process, one server for this module):
  payments, declines, 3-D Secure, manual capture, refunds, customers, saved cards, what goes on
  the wire (through a recording loopback proxy) and localstripe's signed webhooks. Skipped when
  localstripe is not installed, unless CI or PAYMUX_TEST_SANDBOXES=required: then it fails.
- a tiny stdlib HTTP server answering what localstripe cannot (429 with Retry-After, 409, 5xx,
  Stripe's error bodies): how each answer is translated into the Gateway Protocol's terms.

The tests talk to localstripe directly (stripe SDK) only to play the browser's part: creating
PaymentMethods from test card numbers, which paymux itself never sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
import stripe

from paymux.domain.errors import card_error
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayStatus,
    GatewayUnavailable,
    PaymentUpdate,
)
from paymux.gateways.connectors import connectors
from paymux.gateways.stripe import StripeGateway
from paymux.money import Money
from support.sandboxes import LocalStripe

connectors()  # registers each connector's code rows, as a running paymux has them

T = TypeVar("T")

# stripe-python's HTTPXClient posts bytes with ``data=``; httpx 0.28 warns about it on every
# request, and under this project's filterwarnings=error the SDK reports the warning as a
# network error (APIConnectionError). Harmless outside the tests.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)
SECRET_KEY = "sk_test_paymux_integration_5fQw"
CARD_NUMBERS = ("4242424242424242", "4000000000000341", "4000002760003184", "4000000000000002")


class Session:
    """A StripeGateway and the one event loop its HTTP connections live on."""

    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()

    def run(self, awaitable: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run(self.gateway.aclose())
        self.loop.close()


@contextmanager
def session(api_base: str, **options: Any) -> Iterator[Session]:
    s = Session(StripeGateway(SECRET_KEY, api_base=api_base, **options))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def gw(localstripe: LocalStripe) -> Iterator[Session]:
    with session(localstripe.url, timeout=10) as s:
        yield s


@pytest.fixture
def browser(localstripe: LocalStripe) -> stripe.StripeClient:
    """Stripe.js's part: turning a card number into a PaymentMethod at the provider."""
    return stripe.StripeClient(
        "sk_test_browser_part", base_addresses={"api": localstripe.url}, max_network_retries=0
    )


def card(browser: stripe.StripeClient, number: str) -> str:
    pm = browser.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(pm.id)


def request(
    token: str,
    *,
    amount: int = 1000,
    capture: bool = True,
    reference: str = "pi_ours_1",
    **fields: Any,
) -> AuthorizeRequest:
    return AuthorizeRequest(Money(amount, "USD"), token, capture, reference, **fields)


# -- payments ---------------------------------------------------------------------------------
def test_a_payment_with_pm_card_visa_succeeds(gw: Session, browser: stripe.StripeClient) -> None:
    result = gw.run(
        gw.gateway.authorize(
            request("pm_card_visa", reference="pi_ours_visa"),
            idempotency_key="pi_ours_visa:authorize:1",
        )
    )
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.reference is not None and result.reference.startswith("pi_")
    assert (result.amount_authorized, result.amount_captured) == (1000, 1000)
    assert result.decline is None and result.next_action is None
    stored = browser.v1.payment_intents.retrieve(result.reference)
    assert stored.metadata["paymux_id"] == "pi_ours_visa"
    assert (stored.amount, stored.currency, stored.capture_method) == (1000, "usd", "automatic")
    again = gw.run(gw.gateway.retrieve(str(result.reference)))
    assert (again.status, again.reference) == (GatewayStatus.SUCCEEDED, result.reference)


@pytest.mark.parametrize("how", ["raw number 4000000000000341", "pm_card_chargeCustomerFail"])
def test_a_decline_at_charge_time_is_a_failed_result(
    gw: Session, browser: stripe.StripeClient, how: str
) -> None:
    token = card(browser, "4000000000000341") if how.startswith("raw") else how
    result = gw.run(gw.gateway.authorize(request(token), idempotency_key=f"k-decline-{how}"))
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None and result.decline.gateway_code == "generic_decline"
    error = card_error("stripe", result.decline.gateway_code, result.decline.message)
    assert (error.code, error.decline_code) == ("card_declined", "generic_decline")
    # localstripe's 402 body names the charge, not the payment intent (real Stripe sends
    # error.payment_intent; see test_a_402_card_error_keeps_stripe_s_payment_intent_id).
    assert result.reference is None or result.reference.startswith("pi_")


def test_3d_secure_required_then_authenticated(
    gw: Session, localstripe: LocalStripe, browser: stripe.StripeClient
) -> None:
    token = card(browser, "4000002760003184")
    result = gw.run(gw.gateway.authorize(request(token), idempotency_key="k-3ds-ok"))
    assert result.status is GatewayStatus.REQUIRES_ACTION
    assert result.reference is not None and result.next_action is not None
    assert result.next_action["type"] == "use_stripe_sdk"
    client_secret = result.next_action["client_secret"]
    assert client_secret.startswith(f"{result.reference}_secret_")
    localstripe.authenticate(result.reference, client_secret, True)
    after = gw.run(gw.gateway.retrieve(str(result.reference)))
    assert after.status is GatewayStatus.SUCCEEDED
    assert after.amount_captured == 1000 and after.next_action is None


def test_3d_secure_failed(
    gw: Session, localstripe: LocalStripe, browser: stripe.StripeClient
) -> None:
    token = card(browser, "4000002760003184")
    result = gw.run(gw.gateway.authorize(request(token), idempotency_key="k-3ds-fail"))
    assert result.status is GatewayStatus.REQUIRES_ACTION and result.next_action is not None
    localstripe.authenticate(str(result.reference), result.next_action["client_secret"], False)
    after = gw.run(gw.gateway.retrieve(str(result.reference)))
    assert after.status is GatewayStatus.FAILED
    assert after.decline is not None
    assert after.decline.gateway_code == "payment_intent_authentication_failure"
    assert card_error("stripe", after.decline.gateway_code).code == (
        "payment_intent_authentication_failure"
    )


def test_manual_capture(gw: Session) -> None:
    held = gw.run(
        gw.gateway.authorize(request("pm_card_visa", capture=False), idempotency_key="k-manual-1")
    )
    assert held.status is GatewayStatus.REQUIRES_CAPTURE
    assert (held.amount_authorized, held.amount_captured) == (1000, 0)
    captured = gw.run(
        gw.gateway.capture(
            str(held.reference), Money(1000, "USD"), idempotency_key="k-manual-1-capture"
        )
    )
    assert (captured.status, captured.reference) == (GatewayStatus.SUCCEEDED, held.reference)
    assert captured.amount_captured == 1000


def test_void_of_an_authorization(gw: Session) -> None:
    held = gw.run(
        gw.gateway.authorize(request("pm_card_visa", capture=False), idempotency_key="k-void-1")
    )
    voided = gw.run(gw.gateway.void(str(held.reference), idempotency_key="k-void-1-void"))
    assert (voided.status, voided.reference) == (GatewayStatus.CANCELED, held.reference)


def test_full_refund(gw: Session) -> None:
    paid = gw.run(gw.gateway.authorize(request("pm_card_visa"), idempotency_key="k-refund-full"))
    refund = gw.run(
        gw.gateway.refund(
            str(paid.reference), Money(1000, "USD"), None, idempotency_key="re_ours_full:refund"
        )
    )
    assert (refund.status, refund.amount) == ("succeeded", 1000)
    assert refund.reference is not None and refund.reference.startswith("re_")
    assert (refund.payment_reference, refund.our_id) == (paid.reference, "re_ours_full")


def test_partial_refunds(gw: Session) -> None:
    paid = gw.run(gw.gateway.authorize(request("pm_card_visa"), idempotency_key="k-refund-part"))
    first = gw.run(
        gw.gateway.refund(
            str(paid.reference), Money(300, "USD"), None, idempotency_key="re_ours_a:refund"
        )
    )
    second = gw.run(
        gw.gateway.refund(
            str(paid.reference), Money(700, "USD"), None, idempotency_key="re_ours_b:refund"
        )
    )
    assert [(r.status, r.amount, r.our_id) for r in (first, second)] == [
        ("succeeded", 300, "re_ours_a"),
        ("succeeded", 700, "re_ours_b"),
    ]
    assert first.reference != second.reference


# -- customers and saved cards ----------------------------------------------------------------
def test_customer_saved_card_and_an_off_session_payment(
    gw: Session, browser: stripe.StripeClient
) -> None:
    customer = gw.run(
        gw.gateway.create_customer(
            "cus_ours_1", "payer@example.com", idempotency_key="cus_ours_1:create_customer"
        )
    )
    assert customer.startswith("cus_")
    assert browser.v1.customers.retrieve(customer).metadata["paymux_id"] == "cus_ours_1"
    token = card(browser, "4242424242424242")
    details = gw.run(
        gw.gateway.attach_payment_method(token, customer, idempotency_key="pm_ours_1:attach")
    )
    assert isinstance(details, CardDetails)
    assert (details.token, details.brand, details.last4) == (token, "visa", "4242")
    assert (details.exp_month, details.exp_year) == (12, 2034)
    result = gw.run(
        gw.gateway.authorize(
            request(token, customer_token=customer, off_session=True, reference="pi_ours_mit"),
            idempotency_key="pi_ours_mit:authorize:1",
        )
    )
    assert result.status is GatewayStatus.SUCCEEDED and result.amount_captured == 1000
    assert browser.v1.payment_intents.retrieve(str(result.reference)).customer == customer
    gw.run(gw.gateway.detach_payment_method(token, idempotency_key="pm_ours_1:detach"))


def test_attaching_a_declined_card_is_a_decline(gw: Session, browser: stripe.StripeClient) -> None:
    customer = gw.run(gw.gateway.create_customer("cus_ours_2", None, idempotency_key="k-cus-2"))
    token = card(browser, "4000000000000002")
    outcome = gw.run(gw.gateway.attach_payment_method(token, customer, idempotency_key="k-att"))
    assert isinstance(outcome, Decline)
    assert outcome.gateway_code == "generic_decline"


def test_describe_payment_method(gw: Session) -> None:
    details = gw.run(gw.gateway.describe_payment_method("pm_card_visa"))
    assert details is not None
    assert (details.type, details.brand, details.last4) == ("card", "visa", "4242")
    assert details.token.startswith("pm_")
    assert gw.run(gw.gateway.describe_payment_method("pm_unknown_to_stripe")) is None


# -- recovery, cancel and update of an opened payment (localstripe) -----------------------------
def test_stripe_keeps_idempotency_keys_24_hours() -> None:
    assert StripeGateway.idempotency_retention_seconds == 86400


def test_lookup_finds_the_payment_intent_a_lost_call_made(
    gw: Session, browser: stripe.StripeClient
) -> None:
    """localstripe has no Search API (it answers 404): the scan of recent PaymentIntents
    finds it, by our id and the key recorded in the metadata."""
    made = gw.run(
        gw.gateway.authorize(
            request("pm_card_visa", capture=False, reference="pi_ours_lost"),
            idempotency_key="pi_ours_lost:authorize:1",
        )
    )
    stored = browser.v1.payment_intents.retrieve(str(made.reference))
    assert stored.metadata["paymux_key"] == "pi_ours_lost:authorize:1"
    found = gw.run(gw.gateway.lookup("pi_ours_lost", "pi_ours_lost:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        made.reference,
        1000,
    )
    # Another attempt's key, or an intent of ours Stripe never saw: nothing.
    assert gw.run(gw.gateway.lookup("pi_ours_lost", "pi_ours_lost:authorize:2")) is None
    assert gw.run(gw.gateway.lookup("pi_ours_never_sent", "pi_ours_never_sent:authorize:1")) is None


def test_lookup_of_a_declined_attempt_reports_the_decline(
    gw: Session, browser: stripe.StripeClient
) -> None:
    token = card(browser, "4000000000000341")
    declined = gw.run(
        gw.gateway.authorize(
            request(token, reference="pi_ours_lost_decline"),
            idempotency_key="pi_ours_lost_decline:authorize:1",
        )
    )
    assert declined.status is GatewayStatus.FAILED
    found = gw.run(
        gw.gateway.lookup("pi_ours_lost_decline", "pi_ours_lost_decline:authorize:1")
    )
    assert found is not None and found.status is GatewayStatus.FAILED
    assert found.decline is not None and found.decline.gateway_code == "generic_decline"


def test_an_opened_payment_is_updated_then_confirmed_for_the_new_amount(
    gw: Session, browser: stripe.StripeClient
) -> None:
    opened = gw.run(
        gw.gateway.open_payment(
            Money(1000, "USD"), "pi_ours_upd", True, idempotency_key="pi_ours_upd:open"
        )
    )
    assert opened is not None
    gw.run(
        gw.gateway.update_payment(
            opened.reference,
            Money(2500, "EUR"),
            False,
            idempotency_key="pi_ours_upd:update:2500:EUR:0",
        )
    )
    stored = browser.v1.payment_intents.retrieve(opened.reference)
    assert (int(stored.amount), stored.currency, stored.capture_method) == (2500, "eur", "manual")
    held = gw.run(
        gw.gateway.authorize(
            AuthorizeRequest(
                Money(2500, "EUR"), "pm_card_visa", False, "pi_ours_upd",
                gateway_reference=opened.reference,
            ),
            idempotency_key="pi_ours_upd:authorize:1",
        )
    )
    assert (held.status, held.reference, held.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        opened.reference,
        2500,
    )
    # The confirming attempt's key is recorded on the PaymentIntent it confirmed.
    assert browser.v1.payment_intents.retrieve(opened.reference).metadata.to_dict() == {
        "paymux_id": "pi_ours_upd",
        "paymux_key": "pi_ours_upd:authorize:1",
    }


def test_voiding_an_opened_payment_nobody_confirmed_cancels_it(
    gw: Session, browser: stripe.StripeClient
) -> None:
    opened = gw.run(
        gw.gateway.open_payment(
            Money(1000, "USD"), "pi_ours_void_open", True, idempotency_key="pi_ours_void_open:open"
        )
    )
    assert opened is not None
    before = gw.run(gw.gateway.retrieve(opened.reference))
    assert before.status is GatewayStatus.OPEN
    voided = gw.run(gw.gateway.void(opened.reference, idempotency_key="pi_ours_void_open:cancel"))
    assert (voided.status, voided.reference) == (GatewayStatus.CANCELED, opened.reference)
    assert browser.v1.payment_intents.retrieve(opened.reference).status == "canceled"


def test_voiding_a_payment_that_succeeded_reports_the_money_instead_of_failing(
    gw: Session,
) -> None:
    paid = gw.run(gw.gateway.authorize(request("pm_card_visa"), idempotency_key="k-void-paid"))
    truth = gw.run(gw.gateway.void(str(paid.reference), idempotency_key="k-void-paid:cancel"))
    assert (truth.status, truth.reference, truth.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        paid.reference,
        1000,
    )


def test_a_refund_is_found_by_its_id_or_by_ours(gw: Session) -> None:
    paid = gw.run(gw.gateway.authorize(request("pm_card_visa"), idempotency_key="k-rr"))
    pi = str(paid.reference)
    for our_id, amount in (("re_ours_rr_a", 300), ("re_ours_rr_b", 200)):
        gw.run(
            gw.gateway.refund(pi, Money(amount, "USD"), None, idempotency_key=f"{our_id}:refund")
        )
    by_ours = gw.run(gw.gateway.retrieve_refund(None, our_id="re_ours_rr_b", payment_reference=pi))
    assert by_ours is not None
    assert (by_ours.amount, by_ours.our_id, by_ours.payment_reference) == (200, "re_ours_rr_b", pi)
    assert by_ours.reference is not None and by_ours.reference.startswith("re_")
    by_id = gw.run(
        gw.gateway.retrieve_refund(by_ours.reference, our_id="re_ours_rr_b", payment_reference=pi)
    )
    assert by_id is not None and (by_id.reference, by_id.amount) == (by_ours.reference, 200)
    unknown_id = gw.run(
        gw.gateway.retrieve_refund("re_unknown", our_id="re_ours_rr_a", payment_reference=pi)
    )
    assert unknown_id is not None and unknown_id.amount == 300  # found by ours instead
    none = gw.run(gw.gateway.retrieve_refund(None, our_id="re_ours_never", payment_reference=pi))
    assert none is None


# -- what goes on the wire --------------------------------------------------------------------
@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Upstream:
    url: str
    records: list[Recorded] = field(default_factory=list)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@contextmanager
def recording_proxy(upstream_url: str) -> Iterator[tuple[str, list[Recorded]]]:
    """A loopback proxy in front of localstripe that records every request it forwards."""
    records: list[Recorded] = []
    hop = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}

    class Proxy(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            records.append(Recorded(self.command, self.path, headers, body.decode()))
            response = httpx.request(
                self.command,
                upstream_url + self.path,
                content=body,
                timeout=10,
                headers={k: v for k, v in headers.items() if k not in hop},
            )
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in hop:
                    self.send_header(key, value)
            self.send_header("content-length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve(Proxy) as url:
        yield url, records


def test_every_mutating_call_sends_its_idempotency_key_and_no_secret_or_card_data(
    localstripe: LocalStripe, browser: stripe.StripeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stripe")
    token = card(browser, "4242424242424242")  # the browser's part, not through the proxy
    caplog.clear()  # ... and not paymux's log either
    with recording_proxy(localstripe.url) as (url, records), session(url, timeout=10) as proxied:
        gw = proxied.gateway

        async def scenario() -> None:
            customer = await gw.create_customer("cus_ours_w", None, idempotency_key="K-customer")
            await gw.attach_payment_method(token, customer, idempotency_key="K-attach")
            paid = await gw.authorize(
                request(token, customer_token=customer, capture=False),
                idempotency_key="K-authorize",
            )
            await gw.capture(str(paid.reference), Money(1000, "USD"), idempotency_key="K-capture")
            await gw.refund(
                str(paid.reference), Money(250, "USD"), None, idempotency_key="re_ours_w:refund"
            )
            held = await gw.authorize(
                request("pm_card_visa", capture=False), idempotency_key="K-authorize-2"
            )
            await gw.void(str(held.reference), idempotency_key="K-void")
            await gw.retrieve(str(paid.reference))
            await gw.describe_payment_method(token)
            await gw.detach_payment_method(token, idempotency_key="K-detach")

        proxied.run(scenario())

    posts = [r for r in records if r.method == "POST"]
    keys = [r.headers.get("idempotency-key") for r in posts]
    assert keys == [
        "K-customer",
        "K-attach",
        "K-authorize",
        "K-capture",
        "re_ours_w:refund",
        "K-authorize-2",
        "K-void",
        "K-detach",
    ]
    for r in records:
        if r.method == "GET":
            assert "idempotency-key" not in r.headers
        assert r.headers["authorization"] == f"Bearer {SECRET_KEY}"
        for secret in (SECRET_KEY, *CARD_NUMBERS):
            assert secret not in r.path and secret not in r.body
        assert "cvc" not in r.body and "card[number]" not in r.body
    authorize = next(r for r in posts if r.headers.get("idempotency-key") == "K-authorize")
    assert authorize.path == "/v1/payment_intents"
    assert f"payment_method={token}" in authorize.body and "confirm=true" in authorize.body
    logged = caplog.text
    assert "Request to Stripe api" in logged, "the SDK's debug log was captured"
    for secret in (SECRET_KEY, *CARD_NUMBERS):
        assert secret not in logged


# -- error translation (a fake Stripe answering what localstripe can't) ------------------------
@dataclass
class Answer:
    status: int
    body: bytes | dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@contextmanager
def fake_stripe(answer: Answer) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Fake(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append(f"{self.command} {self.path}")
            if answer.delay:
                time.sleep(answer.delay)
            body = (
                answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            )
            self.send_response(answer.status)
            headers = {"content-type": "application/json", "request-id": "req_fake123"}
            headers.update(answer.headers)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve(Fake) as url:
        yield url, seen


def error_body(type_: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **fields}}


def authorize_against(answer: Answer, **gateway_options: Any) -> tuple[Any, list[str]]:
    with fake_stripe(answer) as (url, seen), session(url, **gateway_options) as fake:
        try:
            outcome: Any = fake.run(
                fake.gateway.authorize(request("pm_card_visa"), idempotency_key="k-fake")
            )
        except Exception as exc:  # the assertion is on the exception itself
            outcome = exc
    return outcome, seen


def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with session(f"http://127.0.0.1:{port}", timeout=5) as closed:
        with pytest.raises(GatewayUnavailable):
            closed.run(
                closed.gateway.authorize(request("pm_card_visa"), idempotency_key="k-closed")
            )
        with pytest.raises(GatewayUnavailable):
            closed.run(closed.gateway.retrieve("pi_123"))


def test_a_timeout_is_unavailable() -> None:
    outcome, _ = authorize_against(Answer(200, {}, delay=2.0), timeout=0.3)
    assert isinstance(outcome, GatewayUnavailable)


def test_429_is_rate_limited_with_retry_after() -> None:
    outcome, seen = authorize_against(
        Answer(
            429,
            error_body("invalid_request_error", "Too many requests.", code="rate_limit"),
            {"retry-after": "7"},
        )
    )
    assert isinstance(outcome, GatewayRateLimited)
    assert outcome.retry_after == 7
    assert outcome.request_id == "req_fake123"
    assert len(seen) == 1, "the SDK's own retries are off"


def test_429_without_retry_after() -> None:
    outcome, _ = authorize_against(
        Answer(429, error_body("invalid_request_error", "Slow down.", code="lock_timeout"))
    )
    assert isinstance(outcome, GatewayRateLimited) and outcome.retry_after is None


@pytest.mark.parametrize(
    "answer",
    [
        Answer(500, error_body("api_error", "Something went wrong on Stripe's end.")),
        Answer(503, error_body("api_error", "Service unavailable.")),
        Answer(502, b"<html><body>Bad gateway</body></html>", {"content-type": "text/html"}),
        Answer(
            409,
            error_body(
                "invalid_request_error",
                "There is currently another in-progress request using this Stripe API key.",
                code="lock_timeout",
            ),
        ),
        Answer(
            409,
            error_body(
                "idempotency_error",
                "A request with this key is in progress.",
                code="idempotency_key_in_use",
            ),
        ),
    ],
    ids=["500", "503", "502-html", "409-lock", "409-idempotency-key-in-use"],
)
def test_409_and_5xx_are_unavailable_and_not_retried_by_the_sdk(answer: Answer) -> None:
    outcome, seen = authorize_against(answer)
    assert isinstance(outcome, GatewayUnavailable), outcome
    assert len(seen) == 1, "paymux's own policy retries, with the same key"


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            Answer(
                400,
                error_body(
                    "invalid_request_error",
                    "Received unknown parameter: foo",
                    code="parameter_unknown",
                    param="foo",
                ),
            ),
            "parameter_unknown",
        ),
        (
            Answer(
                400,
                error_body(
                    "idempotency_error",
                    "Keys for idempotent requests can only be "
                    "used with the same parameters they were first used with.",
                ),
            ),
            "IdempotencyError",
        ),
        (
            Answer(
                401, error_body("invalid_request_error", "Invalid API Key provided: sk_test_***")
            ),
            "AuthenticationError",
        ),
        (
            Answer(
                403, error_body("invalid_request_error", "The provided key does not have access.")
            ),
            "PermissionError",
        ),
        (
            Answer(
                404,
                error_body(
                    "invalid_request_error",
                    "No such PaymentMethod: 'pm_x'",
                    code="resource_missing",
                    param="payment_method",
                ),
            ),
            "resource_missing",
        ),
        (
            Answer(413, error_body("invalid_request_error", "Request entity too large.")),
            "api_error",
        ),
    ],
    ids=["400", "400-idempotency", "401", "403", "404", "413"],
)
def test_other_4xx_are_invalid_requests(answer: Answer, code: str) -> None:
    outcome, seen = authorize_against(answer)
    assert isinstance(outcome, GatewayInvalidRequest), outcome
    assert outcome.code == code
    assert len(seen) == 1


def test_a_402_card_error_keeps_stripe_s_payment_intent_id() -> None:
    answer = Answer(
        402,
        error_body(
            "card_error",
            "Your card has insufficient funds.",
            code="card_declined",
            decline_code="insufficient_funds",
            payment_intent={
                "id": "pi_3Real",
                "object": "payment_intent",
                "status": "requires_payment_method",
                "amount": 1000,
            },
        ),
    )
    outcome, _ = authorize_against(answer)
    assert outcome.status is GatewayStatus.FAILED
    assert outcome.reference == "pi_3Real"
    assert outcome.decline == Decline("insufficient_funds", "Your card has insufficient funds.")
    assert outcome.raw == {"request_id": "req_fake123"}


def test_an_unknown_payment_method_is_described_as_none() -> None:
    answer = Answer(
        404,
        error_body(
            "invalid_request_error", "No such PaymentMethod: 'pm_x'", code="resource_missing"
        ),
    )
    with fake_stripe(answer) as (url, _), session(url) as fake:
        assert fake.run(fake.gateway.describe_payment_method("pm_x")) is None


# -- Search, and Stripe's refusals, answered by a fake Stripe at the HTTP seam ----------------
def _search_pi(pi_id: str, key: str, status: str = "succeeded") -> dict[str, Any]:
    """A PaymentIntent as Stripe's Search API returns it (trimmed to what lookup reads)."""
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 1000,
        "amount_capturable": 0,
        "amount_received": 1000 if status == "succeeded" else 0,
        "created": 1711000000,
        "currency": "usd",
        "last_payment_error": None,
        "metadata": {"paymux_id": "pi_ours_s", "paymux_key": key},
        "status": status,
    }


def _listing(*items: dict[str, Any], url: str, search: bool = False) -> dict[str, Any]:
    page: dict[str, Any] = {
        "object": "search_result" if search else "list",
        "data": list(items),
        "has_more": False,
        "url": url,
    }
    if search:
        page["next_page"] = None
    return page


@contextmanager
def routed_stripe(routes: dict[str, Answer]) -> Iterator[tuple[str, list[str]]]:
    """A fake Stripe answering ``"METHOD /path"`` from ``routes`` (404 otherwise); records
    each request as ``"METHOD /path?query"``."""
    seen: list[str] = []
    missing = Answer(404, error_body("invalid_request_error", "Unrecognized request URL."))

    class Fake(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append(f"{self.command} {self.path}")
            answer = routes.get(f"{self.command} {self.path.split('?')[0]}", missing)
            body = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("content-type", "application/json")
            self.send_header("request-id", "req_routed")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve(Fake) as url:
        yield url, seen


def test_lookup_asks_the_search_api_and_stops_when_it_has_this_key() -> None:
    search = _listing(
        _search_pi("pi_3Older", "pi_ours_s:authorize:1", "requires_payment_method"),
        _search_pi("pi_3Mine", "pi_ours_s:authorize:2"),
        url="/v1/payment_intents/search",
        search=True,
    )
    with routed_stripe({"GET /v1/payment_intents/search": Answer(200, search)}) as (url, seen):
        with session(url) as fake:
            found = fake.run(fake.gateway.lookup("pi_ours_s", "pi_ours_s:authorize:2"))
    assert found is not None
    assert (found.status, found.reference, found.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        "pi_3Mine",
        1000,
    )
    [only] = seen
    path, _, query = only.partition("?")
    assert path == "GET /v1/payment_intents/search"
    assert parse_qs(query) == {"query": ["metadata['paymux_id']:'pi_ours_s'"], "limit": ["100"]}


def test_lookup_scans_recent_payment_intents_when_search_has_not_indexed_it_yet() -> None:
    empty = _listing(url="/v1/payment_intents/search", search=True)
    recent = _listing(
        _search_pi("pi_3Fresh", "pi_ours_s:authorize:1", "requires_capture")
        | {"amount_capturable": 1000},
        url="/v1/payment_intents",
    )
    routes = {
        "GET /v1/payment_intents/search": Answer(200, empty),
        "GET /v1/payment_intents": Answer(200, recent),
    }
    with routed_stripe(routes) as (url, seen), session(url) as fake:
        found = fake.run(fake.gateway.lookup("pi_ours_s", "pi_ours_s:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        "pi_3Fresh",
        1000,
    )
    assert [s.split("?")[0] for s in seen] == [
        "GET /v1/payment_intents/search",
        "GET /v1/payment_intents",
    ]


def test_lookup_through_an_outage_is_unavailable_not_none() -> None:
    routes = {
        "GET /v1/payment_intents/search": Answer(
            503, error_body("api_error", "Service unavailable.")
        )
    }
    with routed_stripe(routes) as (url, _), session(url) as fake:
        with pytest.raises(GatewayUnavailable):
            fake.run(fake.gateway.lookup("pi_ours_s", "pi_ours_s:authorize:1"))


def test_stripe_refusing_to_update_a_confirmed_payment_is_an_invalid_request() -> None:
    refused = Answer(
        400,
        error_body(
            "invalid_request_error",
            "This PaymentIntent's amount could not be updated because it has a status of "
            "succeeded. You may only update the amount of a PaymentIntent with one of the "
            "following statuses: requires_payment_method, requires_confirmation, "
            "requires_action.",
            code="payment_intent_unexpected_state",
        ),
    )
    routes = {"POST /v1/payment_intents/pi_3Paid": refused}
    with routed_stripe(routes) as (url, seen), session(url) as fake:
        with pytest.raises(GatewayInvalidRequest) as info:
            fake.run(
                fake.gateway.update_payment(
                    "pi_3Paid", Money(500, "USD"), True, idempotency_key="pi_x:update:500:USD:1"
                )
            )
    assert info.value.code == "payment_intent_unexpected_state"
    assert seen == ["POST /v1/payment_intents/pi_3Paid"]


def test_a_cancel_stripe_refuses_on_a_succeeded_payment_reports_it_as_succeeded() -> None:
    refused = Answer(
        400,
        error_body(
            "invalid_request_error",
            "You cannot cancel this PaymentIntent because it has a status of succeeded.",
            code="payment_intent_unexpected_state",
        ),
    )
    paid = _search_pi("pi_3Paid", "pi_x:authorize:1")
    routes = {
        "POST /v1/payment_intents/pi_3Paid/cancel": refused,
        "GET /v1/payment_intents/pi_3Paid": Answer(200, paid),
    }
    with routed_stripe(routes) as (url, _), session(url) as fake:
        truth = fake.run(fake.gateway.void("pi_3Paid", idempotency_key="pi_x:cancel"))
    assert (truth.status, truth.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)


def test_a_cancel_refused_for_a_payment_still_held_stays_refused() -> None:
    refused = Answer(
        400, error_body("invalid_request_error", "Something else.", code="parameter_invalid")
    )
    held = _search_pi("pi_3Held", "pi_x:authorize:1", "requires_capture")
    routes = {
        "POST /v1/payment_intents/pi_3Held/cancel": refused,
        "GET /v1/payment_intents/pi_3Held": Answer(200, held),
    }
    with routed_stripe(routes) as (url, _), session(url) as fake:
        with pytest.raises(GatewayInvalidRequest) as info:
            fake.run(fake.gateway.void("pi_3Held", idempotency_key="pi_x:cancel"))
    assert info.value.code == "parameter_invalid"


# -- localstripe's own signed webhooks (kept last: the registration lasts for the module) -------
def test_localstripe_s_signed_webhook_verifies_and_is_interpreted(
    localstripe: LocalStripe,
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    whsec = "whsec_localstripe_integration"
    with serve(Receiver) as url, session(localstripe.url, webhook_secrets=[whsec]) as ws:
        localstripe.register_webhook(f"{url}/webhooks/stripe", whsec, name="paymux-it")
        gw = ws.gateway
        paid = ws.run(
            gw.authorize(
                request("pm_card_visa", reference="pi_ours_webhook"),
                idempotency_key="pi_ours_webhook:authorize:1",
            )
        )
        deadline = time.monotonic() + 15
        update: PaymentUpdate | None = None
        while update is None and time.monotonic() < deadline:
            for headers, body in list(received):
                event = gw.verify(headers, body)
                interpreted = gw.interpret_event(event)
                if (
                    event.type == "payment_intent.succeeded"
                    and isinstance(interpreted, PaymentUpdate)
                    and interpreted.result.reference == paid.reference
                ):
                    update = interpreted
            time.sleep(0.1)
    assert update is not None, f"no payment_intent.succeeded among {len(received)} deliveries"
    assert update.reference == "pi_ours_webhook"
    assert update.result.status is GatewayStatus.SUCCEEDED
    assert all("stripe-signature" in headers for headers, _ in received)


def test_a_failed_browser_setup_is_canceled_so_its_secret_cannot_try_more_cards() -> None:
    """Real Stripe leaves a SetupIntent whose card was declined (or whose challenge failed)
    at ``requires_payment_method``, confirmable again with its client secret, which the
    payer's browser holds (Stripe.js setup mode): reading that outcome records the failure
    AND cancels it at Stripe, keyed, so the secret cannot try card after card past paymux's
    limits (localstripe cancels it itself, so only a Stripe-shaped server shows this)."""
    declined = {
        "id": "seti_failed1",
        "object": "setup_intent",
        "status": "requires_payment_method",
        "customer": "cus_1",
        "payment_method": None,
        "last_setup_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
        },
    }
    with fake_stripe(Answer(200, declined)) as (url, seen), session(url) as fake:
        outcome = fake.run(fake.gateway.retrieve_setup("seti_failed1", idempotency_key="k-read"))
    assert outcome.status == GatewayStatus.FAILED
    assert seen == ["GET /v1/setup_intents/seti_failed1", "POST /v1/setup_intents/seti_failed1/cancel"]
    # Still waiting for the payer (no error yet): nothing canceled.
    waiting = dict(declined, last_setup_error=None)
    with fake_stripe(Answer(200, waiting)) as (url, seen), session(url) as fake:
        fake.run(fake.gateway.retrieve_setup("seti_failed1", idempotency_key="k-read"))
    assert seen == ["GET /v1/setup_intents/seti_failed1"]
