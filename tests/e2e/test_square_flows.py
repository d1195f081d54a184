"""Payments through paymux's API with the Square connector against a stateful fake Square.

The provider is replaced at the HTTP seam only: paymux runs unchanged (RunningServer, SQLite
and PostgreSQL) with SQUARE_API_BASE pointing at ``support.fake_square.FakeSquare``, which
implements the endpoints the contract tests validate against Square's api.json, honours the
sandbox nonces and idempotency keys, and sends webhooks signed as Square signs them to
paymux's /webhooks/square (so SQUARE_WEBHOOK_URL is the paymux server's URL + that path).

The browser's part (the Web Payments SDK turning a card into a ``cnon:`` token) is played by
using Square's sandbox nonces directly.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.gateways.base import (
    AuthorizeRequest,
    GatewayInvalidRequest,
    GatewayStatus,
    GatewayUnavailable,
)
from paymux.gateways.square import SquareGateway
from paymux.money import Money
from paymux.security import configure_logging
from support.fake_square import SANDBOX_NONCES, FakeSquare
from support.pgcluster import PgCluster

ACCESS_TOKEN = "EAAAl9fK2xQ7" + "vR3pT8mW1nZ5" * 5  # the shape of a Square sandbox token
SIGNATURE_KEY = "sq-webhook-key-" + "Zm9vYmFy" * 3
APPLICATION_ID = "sandbox-sq0idb-paymuxE2Etest"
OK = "cnon:card-nonce-ok"


@dataclass
class SquareEnv:
    server: RunningServer
    fake: FakeSquare
    webhook_url: str


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def square(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[SquareEnv]:
    tmp: Path = tmp_path_factory.mktemp(f"square-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"square_{request.param}")
    port = free_port()
    webhook_url = f"http://127.0.0.1:{port}/webhooks/square"
    fake = FakeSquare(access_token=ACCESS_TOKEN, signature_key=SIGNATURE_KEY,
                      webhook_url=webhook_url).start()
    settings = make_settings(
        url, tmp, port, square_access_token=ACCESS_TOKEN, square_location_id=fake.location_id,
        square_webhook_signature_key=SIGNATURE_KEY, square_webhook_url=webhook_url,
        square_api_base=fake.url, square_application_id=APPLICATION_ID,
    )
    running = RunningServer(settings).start()
    try:
        yield SquareEnv(running, fake, webhook_url)
    finally:
        running.stop()
        fake.stop()


@pytest.fixture
def api(square: SquareEnv) -> Iterator[Api]:
    client = Api(square.server)
    try:
        yield client
    finally:
        client.close()


def create(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents",
                  {"amount": 5000, "currency": "usd", "gateway": "square", **params})


def settle(square: SquareEnv, api: Api) -> None:
    """Every webhook the fake has sent so far is delivered and applied (or ignored)."""
    square.fake.wait_idle()
    sent = {d.event["event_id"] for d in square.fake.deliveries}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = square.server.sql(
            "select event_id from webhook_inbox where gateway = 'square' and status = 'received'")
        if not {event_id for (event_id,) in rows} & sent:
            return
        time.sleep(0.05)
    raise AssertionError("square webhooks were not applied")


def events(api: Api, object_id: str, event_type: str) -> list[dict[str, Any]]:
    page = api.ok("GET", "/v1/events", params={"object_id": object_id, "type": event_type})
    return list(page["data"])


def test_create_answers_what_the_web_payments_sdk_needs(api: Api, square: SquareEnv) -> None:
    pi = create(api)
    assert pi["status"] == "requires_payment_method" and pi["gateway"] == "square"
    assert pi["gateway_reference"] is None  # nothing exists at Square before the token
    assert pi["client"] == {
        "gateway": "square", "application_id": APPLICATION_ID,
        "location_id": square.fake.location_id, "environment": "sandbox",
        "sdk_url": "https://sandbox.web.squarecdn.com/v1/square.js"}


def test_authorize_capture_refund_part_and_the_refund_webhook_counts_once(
    api: Api, square: SquareEnv
) -> None:
    pi = create(api, capture_method="manual")
    held = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 5000
    payment = square.fake.state.payments[held["gateway_reference"]]
    assert payment["status"] == "APPROVED" and payment["reference_id"] == pi["id"]
    [sent] = square.fake.calls_to("POST", "/v2/payments")[-1:]
    assert sent.body["autocomplete"] is False
    assert sent.body["idempotency_key"] == f"{pi['id']}:authorize:1"
    # Square's payment.created (APPROVED) is applied before the capture: one that lands while
    # a capture is in flight moves the intent from processing back to requires_capture for a
    # moment (paymux core behaviour, whatever the gateway) and emits a second event.
    settle(square, api)

    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert done["status"] == "succeeded" and done["amount_received"] == 5000
    assert payment["status"] == "COMPLETED"

    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1500})
    assert refund["status"] == "pending"  # Square refunds start PENDING
    assert refund["gateway_reference"].startswith(payment["id"])
    done = api.wait_for(f"/v1/refunds/{refund['id']}", "status", "succeeded")
    settle(square, api)

    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "succeeded"
    assert (after["amount_received"], after["amount_refunded"]) == (5000, 1500)
    refunds = api.ok("GET", "/v1/refunds", params={"payment_intent": pi["id"]})["data"]
    assert [r["amount"] for r in refunds] == [1500]
    assert len(events(api, pi["id"], "payment_intent.succeeded")) == 1
    assert len(events(api, pi["id"], "payment_intent.amount_capturable_updated")) == 1
    assert len(events(api, pi["id"], "charge.refunded")) == 1
    assert len(events(api, refund["id"], "refund.created")) == 1
    types = [d.event["type"] for d in square.fake.deliveries
             if d.event["data"]["id"] in (payment["id"], refund["gateway_reference"])]
    assert {"payment.created", "payment.updated", "refund.created", "refund.updated"} <= set(types)
    rows = square.server.sql(
        "select status, count(*) from webhook_inbox where gateway = 'square' group by status")
    assert {status for status, _ in rows} <= {"applied", "ignored"}


def test_a_partial_capture_lowers_the_square_amount_then_completes(
    api: Api, square: SquareEnv
) -> None:
    pi = create(api, capture_method="manual", amount=3000)
    held = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 2000})
    assert done["status"] == "succeeded" and done["amount_received"] == 2000
    payment = square.fake.state.payments[held["gateway_reference"]]
    assert payment["status"] == "COMPLETED"
    assert payment["amount_money"] == {"amount": 2000, "currency": "USD"}
    settle(square, api)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_received"] == 2000


def test_a_canceled_authorization_is_voided_at_square(api: Api, square: SquareEnv) -> None:
    pi = create(api, capture_method="manual")
    held = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    canceled = api.ok("POST", f"/v1/payment_intents/{pi['id']}/cancel")
    assert canceled["status"] == "canceled"
    assert square.fake.state.payments[held["gateway_reference"]]["status"] == "CANCELED"
    settle(square, api)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "canceled"
    assert len(events(api, pi["id"], "payment_intent.canceled")) == 1


DECLINES = {nonce: code for nonce, code in SANDBOX_NONCES.items() if code}
EXPECTED = {
    "GENERIC_DECLINE": ("card_declined", "generic_decline"),
    "CVV_FAILURE": ("incorrect_cvc", "incorrect_cvc"),
    "ADDRESS_VERIFICATION_FAILURE": ("incorrect_zip", "incorrect_zip"),
    "INVALID_EXPIRATION": ("card_declined", "invalid_expiry_date"),
}


@pytest.mark.parametrize("nonce", sorted(DECLINES))
def test_each_sandbox_nonce_is_declined_with_its_code(
    api: Api, square: SquareEnv, nonce: str
) -> None:
    pi = create(api)
    r = api.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": nonce})
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    square_code = DECLINES[nonce]
    assert (error["code"], error["decline_code"]) == EXPECTED[square_code]
    assert (error["type"], error["gateway"], error["gateway_code"]) == (
        "card_error", "square", square_code)
    assert error["user_message"] and error["message"] == f"Authorization error: '{square_code}'"
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["gateway_code"] == square_code
    # The payer tries again with a good card: same intent, a new idempotency key.
    ok = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    assert ok["status"] == "succeeded"
    keys = [c.body["idempotency_key"] for c in square.fake.calls_to("POST", "/v2/payments")
            if c.body.get("reference_id") == pi["id"]]
    assert keys == [f"{pi['id']}:authorize:1", f"{pi['id']}:authorize:2"]


def test_a_saved_card_is_charged_off_session(api: Api, square: SquareEnv) -> None:
    customer = api.ok("POST", "/v1/customers", {"email": "saved@example.com"})
    saved = api.ok("POST", f"/v1/payment_methods/{OK}/attach",
                   {"customer": customer["id"], "gateway": "square"})
    assert saved["customer"] == customer["id"]
    assert saved["gateway_token"].startswith("ccof:")  # the card on file replaced the nonce
    assert (saved["card"]["brand"], saved["card"]["last4"]) == ("visa", "1111")
    card = square.fake.state.cards[saved["gateway_token"]]
    square_customer = square.fake.state.customers[card["customer_id"]]
    assert square_customer["reference_id"] == customer["id"]
    assert square_customer["email_address"] == "saved@example.com"

    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1200, "currency": "usd", "gateway": "square", "customer": customer["id"],
        "payment_method": saved["id"], "confirm": True, "off_session": True})
    assert pi["status"] == "succeeded" and pi["amount_received"] == 1200
    sent = square.fake.calls_to("POST", "/v2/payments")[-1]
    assert sent.body["source_id"] == saved["gateway_token"]
    assert sent.body["customer_id"] == card["customer_id"]

    again = api.ok("POST", "/v1/payment_intents", {
        "amount": 800, "currency": "usd", "gateway": "square", "customer": customer["id"],
        "payment_method": saved["id"], "confirm": True, "off_session": True})
    assert again["status"] == "succeeded"  # a card on file is reusable, unlike the nonce

    detached = api.ok("POST", f"/v1/payment_methods/{saved['id']}/detach")
    assert detached["customer"] is None
    assert card["enabled"] is False


def test_a_lost_answer_is_retried_with_the_same_key_and_charges_once(
    api: Api, square: SquareEnv
) -> None:
    pi = create(api, amount=2100)
    square.fake.fail_next("POST /v2/payments", "drop")  # Square charged, the answer is lost
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    assert done["status"] == "succeeded" and done["amount_received"] == 2100
    sent = [c for c in square.fake.calls_to("POST", "/v2/payments")
            if c.body.get("reference_id") == pi["id"]]
    assert len(sent) == 2 and len({c.body["idempotency_key"] for c in sent}) == 1
    made = [p for p in square.fake.state.payments.values() if p.get("reference_id") == pi["id"]]
    assert len(made) == 1 and made[0]["id"] == done["gateway_reference"]


def test_a_square_outage_during_capture_is_retried(api: Api, square: SquareEnv) -> None:
    pi = create(api, capture_method="manual", amount=2500)
    held = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    square.fake.fail_next(f"POST /v2/payments/{held['gateway_reference']}/complete", "500")
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert done["status"] == "succeeded"
    completes = square.fake.calls_to("POST", f"/v2/payments/{held['gateway_reference']}/complete")
    assert [c.status for c in completes] == [500, 200]


def test_a_webhook_with_a_bad_signature_or_for_another_url_is_refused(
    api: Api, square: SquareEnv
) -> None:
    body = json.dumps({"event_id": f"e-{uuid.uuid4()}", "type": "customer.created",
                       "data": {"type": "customer", "id": "C1", "object": {}}}).encode()
    url = square.webhook_url
    cases = {
        "missing_signature": {"content-type": "application/json"},
        "signature_mismatch": square.fake.sign(body, url + "/elsewhere"),
    }
    for reason, headers in cases.items():
        r = httpx.post(url, content=body, headers=headers, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["reason"] == reason
    good = httpx.post(url, content=body, headers=square.fake.sign(body), timeout=10)
    assert good.status_code == 200 and good.json() == {"received": True, "duplicate": False}
    replay = httpx.post(url, content=body, headers=square.fake.sign(body), timeout=10)
    assert replay.json() == {"received": True, "duplicate": True}
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status != "ignored":
        [(status,)] = square.server.sql(
            "select status from webhook_inbox where event_id = :e", e=json.loads(body)["event_id"])
        time.sleep(0.05)
    assert status == "ignored"  # verified, stored once, and not acted on


# -- scrubbing ----------------------------------------------------------------------------------------
class _ServerThreadsOnly(logging.Filter):
    def __init__(self, excluded: int) -> None:
        super().__init__()
        self.excluded = excluded

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.excluded


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """paymux's own logging setup (configure_logging, JSON, redaction) at DEBUG, into a buffer;
    records of the test's own thread (its HTTP client) are left out."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = {h: list(h.filters) for h in root.handlers}
    configure_logging(level="DEBUG", json_output=True)
    [handler] = [h for h in root.handlers if h not in saved_handlers]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    handler.addFilter(_ServerThreadsOnly(threading.get_ident()))
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved_level)
        for h, filters in saved_handlers.items():
            h.filters[:] = filters


def test_debug_logs_and_stored_rows_hold_no_square_credential(
    api: Api, square: SquareEnv, debug_logs: io.StringIO
) -> None:
    """Everything paymux logs at DEBUG during Square flows (its own logs, uvicorn, httpx and
    httpcore under the SDK, the worker applying webhooks), and its gateway and webhook rows,
    must hold no access token (not even redacted: nothing may try to log it), no
    Authorization header value and no webhook signature key.

    Web Payments SDK nonces (``cnon:...``) are allowed in logs and in the database: they are
    single-use tokens, not card data (PCI DSS treats them as tokens out of scope), useless
    without the seller's access token, expired after 24 hours, consumed by the charge or by
    CreateCard, and paymux already returns them to API callers as ``gateway_token``. Hiding
    them would only make failed payments harder to trace."""
    pi = create(api, capture_method="manual")
    api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": OK})
    api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 4000})
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000})
    api.wait_for(f"/v1/refunds/{refund['id']}", "status", "succeeded")
    declined = create(api)
    r = api.post(f"/v1/payment_intents/{declined['id']}/confirm",
                 {"payment_method": "cnon:card-nonce-rejected-cvv"})
    assert r.status_code == 402
    customer = api.ok("POST", "/v1/customers", {"email": "scrub@example.com"})
    api.ok("POST", f"/v1/payment_methods/{OK}/attach",
           {"customer": customer["id"], "gateway": "square"})
    settle(square, api)

    text = debug_logs.getvalue()
    assert "/v2/payments" in text and "/v2/refunds" in text and "/v2/cards" in text, (
        "the transcript must cover the calls to Square")
    assert "/webhooks/square" in text
    for secret in (ACCESS_TOKEN, ACCESS_TOKEN[4:24], SIGNATURE_KEY):
        assert secret not in text
    assert "EAAA" not in text  # not logged at all, not merely redacted
    assert "Bearer" not in text
    header_values = re.findall(
        r"""authorization['"]?\s*[:=,]\s*b?['"]?((?:bearer|basic)\s*\S*)""", text, re.I)
    assert header_values == []

    stored = square.server.sql(
        "select request, result, error from gateway_attempts where gateway = 'square'")
    stored += square.server.sql("select payload from webhook_inbox where gateway = 'square'")
    dump = json.dumps([[str(v) for v in row] for row in stored])
    assert ACCESS_TOKEN not in dump and SIGNATURE_KEY not in dump


# -- the connector itself against the fake (no paymux server): what the engine relies on ------
class RecoveringSquare(FakeSquare):
    """The fake, plus what recovery reads (ListPayments, GetPaymentRefund, ListPaymentRefunds,
    with their query strings) and a way to make Square refuse CompletePayment."""

    _ROUTES = [
        ("GET", r"/v2/payments", "list_payments"),
        ("GET", r"/v2/refunds", "list_refunds"),
        ("GET", r"/v2/refunds/(?P<id>[^/]+)", "get_refund"),
        *FakeSquare._ROUTES,
    ]
    _query = threading.local()

    def __init__(self, **kw: Any) -> None:
        self.refuse_completion: dict[str, tuple[int, dict[str, Any]]] = {}
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.held_refunds: list[str] | None = None  # a list: refunds stay PENDING until released
        super().__init__(**kw)

    def _complete_refund(self, refund_id: str) -> None:
        if self.held_refunds is not None:
            self.held_refunds.append(refund_id)
            return
        super()._complete_refund(refund_id)

    def release_refunds(self) -> None:
        held, self.held_refunds = self.held_refunds or [], None
        for refund_id in held:
            super()._complete_refund(refund_id)

    def _handler_class(self) -> type[Any]:
        base = super()._handler_class()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                params = dict(urllib.parse.parse_qsl(query))
                fake._query.params = params
                if query:
                    fake.queries.append((path, params))
                base._serve(self)

            do_GET = do_POST = do_PUT = _serve

        return Handler

    def _page(self, items: list[dict[str, Any]], key: str) -> tuple[int, dict[str, Any]]:
        params = getattr(self._query, "params", {})
        items = sorted(items, key=lambda o: o["created_at"],
                       reverse=params.get("sort_order", "DESC") == "DESC")
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        answer: dict[str, Any] = {key: items[start:start + limit]} if items[start:] else {}
        if start + limit < len(items):
            answer["cursor"] = str(start + limit)
        return 200, answer

    def _list_payments(self, call: Any) -> tuple[int, dict[str, Any]]:
        return self._page(list(self.state.payments.values()), "payments")

    def _list_refunds(self, call: Any) -> tuple[int, dict[str, Any]]:
        return self._page(list(self.state.refunds.values()), "refunds")

    def _get_refund(self, call: Any, id: str) -> tuple[int, dict[str, Any]]:
        refund = self.state.refunds.get(id)
        if refund is None:
            return 404, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
                                     "detail": f"Could not find refund {id}"}]}
        return 200, {"refund": refund}

    def _complete_payment(self, call: Any, id: str) -> tuple[int, dict[str, Any]]:
        if id in self.refuse_completion:
            return self.refuse_completion[id]
        return super()._complete_payment(call, id)


@pytest.fixture(scope="module")
def bare() -> Iterator[RecoveringSquare]:
    nobody = f"http://127.0.0.1:{free_port()}/webhooks/square"  # webhooks go nowhere
    fake = RecoveringSquare(access_token=ACCESS_TOKEN, signature_key=SIGNATURE_KEY,
                            webhook_url=nobody, refund_delay=0.2).start()
    try:
        yield fake
    finally:
        fake.stop()


def connector_run(fake: FakeSquare, call: Any) -> Any:
    async def go() -> Any:
        gateway = SquareGateway(ACCESS_TOKEN, location_id=fake.location_id, api_base=fake.url,
                                timeout=5)
        try:
            return await call(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def held_payment(fake: FakeSquare, pi_id: str, amount: int = 3000) -> str:
    request = AuthorizeRequest(Money(amount, "USD"), OK, False, pi_id)
    held = connector_run(fake, lambda g: g.authorize(request, idempotency_key=f"{pi_id}:authorize:1"))
    assert held.status is GatewayStatus.REQUIRES_CAPTURE
    return str(held.reference)


DECLINED_COMPLETION = (400, {"errors": [{"category": "PAYMENT_METHOD_ERROR",
                                         "code": "CARD_DECLINED", "detail": "Card declined."}]})


def test_a_refused_partial_capture_puts_the_amount_back(bare: RecoveringSquare) -> None:
    payment_id = held_payment(bare, "pi_sq_refused")
    bare.refuse_completion[payment_id] = DECLINED_COMPLETION
    result = connector_run(bare, lambda g: g.capture(
        payment_id, Money(1200, "USD"), idempotency_key="pi_sq_refused:capture"))
    assert (result.status, result.reference) == (GatewayStatus.FAILED, payment_id)
    assert result.decline is not None and result.decline.gateway_code == "CARD_DECLINED"
    payment = bare.state.payments[payment_id]
    assert payment["status"] == "APPROVED"
    assert payment["amount_money"] == {"amount": 3000, "currency": "USD"}  # as authorized
    lower, restore = bare.calls_to("PUT", f"/v2/payments/{payment_id}")
    assert lower.body["payment"]["amount_money"]["amount"] == 1200
    assert restore.body["payment"]["amount_money"]["amount"] == 3000
    assert restore.body["idempotency_key"] != lower.body["idempotency_key"]
    assert [c.status for c in (lower, restore)] == [200, 200]

    # Square accepts it later: the same capture (same key) lowers again and completes.
    del bare.refuse_completion[payment_id]
    done = connector_run(bare, lambda g: g.capture(
        payment_id, Money(1200, "USD"), idempotency_key="pi_sq_refused:capture"))
    assert (done.status, done.amount_captured) == (GatewayStatus.SUCCEEDED, 1200)
    assert bare.state.payments[payment_id]["amount_money"]["amount"] == 1200


def test_a_partial_capture_refused_as_invalid_is_raised_after_the_amount_is_put_back(
    bare: RecoveringSquare,
) -> None:
    payment_id = held_payment(bare, "pi_sq_invalid")
    bare.refuse_completion[payment_id] = (400, {"errors": [{
        "category": "INVALID_REQUEST_ERROR", "code": "BAD_REQUEST",
        "detail": "The payment can't be completed."}]})
    with pytest.raises(GatewayInvalidRequest) as info:
        connector_run(bare, lambda g: g.capture(
            payment_id, Money(1000, "USD"), idempotency_key="pi_sq_invalid:capture"))
    assert info.value.code == "BAD_REQUEST"
    assert bare.state.payments[payment_id]["amount_money"]["amount"] == 3000
    assert bare.state.payments[payment_id]["status"] == "APPROVED"


def test_an_outage_completing_a_partial_capture_leaves_it_for_the_retry(
    bare: RecoveringSquare,
) -> None:
    payment_id = held_payment(bare, "pi_sq_outage")
    bare.fail_next(f"POST /v2/payments/{payment_id}/complete", "500")
    with pytest.raises(GatewayUnavailable):
        connector_run(bare, lambda g: g.capture(
            payment_id, Money(1000, "USD"), idempotency_key="pi_sq_outage:capture"))
    # Unknown outcome: nothing is put back; the retry (same key) completes what was lowered.
    assert len(bare.calls_to("PUT", f"/v2/payments/{payment_id}")) == 1
    assert bare.state.payments[payment_id]["amount_money"]["amount"] == 1000
    done = connector_run(bare, lambda g: g.capture(
        payment_id, Money(1000, "USD"), idempotency_key="pi_sq_outage:capture"))
    assert (done.status, done.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)
    assert len(bare.calls_to("PUT", f"/v2/payments/{payment_id}")) == 1


def test_lookup_finds_the_payment_whose_answer_was_lost(bare: RecoveringSquare) -> None:
    request = AuthorizeRequest(Money(2100, "USD"), OK, True, "pi_sq_lost",
                               verification_token="verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ")
    bare.fail_next("POST /v2/payments", "drop")  # Square charged; the answer never came
    with pytest.raises(GatewayUnavailable):
        connector_run(bare, lambda g: g.authorize(request, idempotency_key="pi_sq_lost:authorize:1"))
    [made] = [p for p in bare.state.payments.values() if p.get("reference_id") == "pi_sq_lost"]
    sent = bare.calls_to("POST", "/v2/payments")[-1]
    assert sent.body["verification_token"] == "verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"
    found = connector_run(bare, lambda g: g.lookup("pi_sq_lost", "pi_sq_lost:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_captured) == (
        GatewayStatus.SUCCEEDED, made["id"], 2100)
    path, params = bare.queries[-1]
    assert path == "/v2/payments" and params["sort_order"] == "DESC"
    assert params["location_id"] == bare.location_id
    assert connector_run(bare, lambda g: g.lookup("pi_sq_never", "pi_sq_never:authorize:1")) is None


def test_lookup_reads_page_after_page(bare: RecoveringSquare) -> None:
    first = held_payment(bare, "pi_sq_oldest", amount=700)
    for n in range(3):  # newer payments of other intents, ahead of ours newest-first
        time.sleep(0.01)  # distinct created_at milliseconds
        held_payment(bare, f"pi_sq_filler_{n}", amount=100)
    limit = SquareGateway._list_page
    before = len(bare.queries)

    async def small_pages(self: SquareGateway, method: Any, since: str, cursor: str | None) -> Any:
        return await self._call(lambda: method(begin_time=since, sort_order="DESC", cursor=cursor,
                                               location_id=self.location_id, limit=2,
                                               request_options={"max_retries": 0}))

    SquareGateway._list_page = small_pages  # type: ignore[method-assign]
    try:
        found = connector_run(bare, lambda g: g.lookup("pi_sq_oldest", "pi_sq_oldest:authorize:1"))
    finally:
        SquareGateway._list_page = limit  # type: ignore[method-assign]
    assert found is not None and found.reference == first
    # Two per page, newest first: the three newer ones fill page one and half of page two.
    assert [p.get("cursor") for _, p in bare.queries[before:]] == [None, "2"]


def test_a_refund_is_found_by_its_id_or_by_ours_pending_or_completed(
    bare: RecoveringSquare,
) -> None:
    request = AuthorizeRequest(Money(4000, "USD"), OK, True, "pi_sq_refund")
    paid = connector_run(bare, lambda g: g.authorize(request, idempotency_key="pi_sq_refund:authorize:1"))
    payment_id = str(paid.reference)
    bare.held_refunds = []
    made = connector_run(bare, lambda g: g.refund(
        payment_id, Money(1500, "USD"), "requested_by_customer",
        idempotency_key="re_sqrefund1:refund"))
    assert made.status == "pending"
    # Pending: not on the payment yet; found among the location's recent refunds.
    pending = connector_run(bare, lambda g: g.retrieve_refund(
        None, our_id="re_sqrefund1", payment_reference=payment_id))
    assert pending is not None
    assert (pending.reference, pending.status, pending.amount, pending.our_id) == (
        made.reference, "pending", 1500, "re_sqrefund1")
    deadline = time.monotonic() + 10
    while bare.held_refunds != [made.reference]:  # Square's completion, due, held back
        assert time.monotonic() < deadline
        time.sleep(0.02)
    bare.release_refunds()  # Square completes it, and lists it on the payment
    assert bare.state.payments[payment_id]["refund_ids"] == [made.reference]
    by_ours = connector_run(bare, lambda g: g.retrieve_refund(
        None, our_id="re_sqrefund1", payment_reference=payment_id))
    assert by_ours is not None and (by_ours.reference, by_ours.status) == (made.reference, "succeeded")
    by_id = connector_run(bare, lambda g: g.retrieve_refund(
        made.reference, our_id="re_sqrefund1", payment_reference=payment_id))
    assert by_id is not None and by_id.status == "succeeded"
    assert connector_run(bare, lambda g: g.retrieve_refund(
        None, our_id="re_sqnever", payment_reference=payment_id)) is None
