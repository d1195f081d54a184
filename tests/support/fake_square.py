"""A small stateful fake of Square's API on 127.0.0.1, for end-to-end flows.

It implements the endpoints the Square connector uses and that tests/contract checks against
Square's api.json with Prism (CreatePayment, GetPayment, UpdatePayment, CompletePayment,
CancelPayment, RefundPayment, CreateCustomer, CreateCard, RetrieveCard, DisableCard), with
Square's JSON shapes and these behaviours:

- ``Authorization: Bearer <access token>`` is required (401 UNAUTHORIZED otherwise);
- idempotency keys: the same key with the same body replays the first answer (no second
  payment, no second webhook); with another body it is 400 IDEMPOTENCY_KEY_REUSED; keys
  longer than 45 characters are 400 VALUE_TOO_LONG, as at Square;
- the sandbox nonces decline with their codes (``cnon:card-nonce-declined`` ->
  GENERIC_DECLINE, ...), as a 400 PAYMENT_METHOD_ERROR carrying the FAILED payment; any other
  ``cnon:`` token is a good card used once (CARD_TOKEN_USED the second time);
- cards on file (``ccof:``) need their customer and must be enabled;
- payments: APPROVED (delayed capture) or COMPLETED; amount lowered by UpdatePayment (EDIT_AMOUNT_DOWN);
  completed/canceled once (DELAYED_TRANSACTION_* afterwards);
- refunds start PENDING and complete ``refund_delay`` seconds later;
- webhooks (payment.created/updated, refund.created/updated), signed the way Square signs them
  (webhooks.sign: HMAC-SHA256 over notification URL + body, base64), delivered in order from
  one background thread, retried on failure.

Faults for retry tests: ``fail_next("POST /v2/payments", "drop")`` processes the next such
request and closes the connection without answering (the answer is lost); ``"500"`` answers
500 without processing it.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from paymux.gateways.square import webhooks

__all__ = ["SANDBOX_NONCES", "FakeSquare"]

SANDBOX_NONCES: dict[str, str | None] = {
    "cnon:card-nonce-ok": None,
    "cnon:card-nonce-declined": "GENERIC_DECLINE",
    "cnon:card-nonce-rejected-cvv": "CVV_FAILURE",
    "cnon:card-nonce-rejected-postalcode": "ADDRESS_VERIFICATION_FAILURE",
    "cnon:card-nonce-rejected-expiration": "INVALID_EXPIRATION",
}

Answer = tuple[int, dict[str, Any]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id(n: int = 27) -> str:
    return secrets.token_urlsafe(n)[:n].replace("-", "A").replace("_", "B")


def _error(status: int, code: str, category: str = "INVALID_REQUEST_ERROR",
           detail: str | None = None, field: str | None = None) -> Answer:
    error: dict[str, Any] = {"category": category, "code": code, "detail": detail or code}
    if field:
        error["field"] = field
    return status, {"errors": [error]}


class _Problem(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer[1]["errors"][0]["code"])
        self.answer = answer


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int | None = None


@dataclass
class _State:
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    used_nonces: set[str] = field(default_factory=set)
    keys: dict[tuple[str, str], tuple[str, Answer]] = field(default_factory=dict)


class FakeSquare:
    def __init__(self, *, access_token: str, signature_key: str, webhook_url: str,
                 location_id: str = "LFAKE0000001", currency: str = "USD",
                 refund_delay: float = 0.2) -> None:
        self.access_token = access_token
        self.signature_key = signature_key
        self.webhook_url = webhook_url
        self.location_id = location_id
        self.currency = currency
        self.refund_delay = refund_delay
        self.state = _State()
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = 0
        self._wake = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._deliver_forever, daemon=True),
        ]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeSquare:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with self._wake:
            self._wake.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, route: str, mode: str) -> None:
        """``route`` like ``"POST /v2/payments"``; mode ``"drop"`` or ``"500"``."""
        with self._lock:
            self._faults.setdefault(route, []).append(mode)

    def calls_to(self, method: str, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path == path]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every webhook due so far has been delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                if not self._queue and not self._busy:
                    return
            time.sleep(0.02)
        raise AssertionError("fake Square still has webhooks to deliver")

    # -- HTTP ---------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"__invalid__": True}
                path = self.path.split("?")[0]
                call = Call(self.command, path, {k.lower(): v for k, v in self.headers.items()},
                            body if isinstance(body, dict) else {})
                with fake._lock:
                    fake.calls.append(call)
                status, answer, drop = fake._handle(call)
                call.status = status
                if drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

        return Handler

    _ROUTES: list[tuple[str, str, str]] = [
        ("POST", r"/v2/payments", "create_payment"),
        ("GET", r"/v2/payments/(?P<id>[^/]+)", "get_payment"),
        ("PUT", r"/v2/payments/(?P<id>[^/]+)", "update_payment"),
        ("POST", r"/v2/payments/(?P<id>[^/]+)/complete", "complete_payment"),
        ("POST", r"/v2/payments/(?P<id>[^/]+)/cancel", "cancel_payment"),
        ("POST", r"/v2/refunds", "refund_payment"),
        ("POST", r"/v2/customers", "create_customer"),
        ("POST", r"/v2/cards", "create_card"),
        ("GET", r"/v2/cards/(?P<id>[^/]+)", "get_card"),
        ("POST", r"/v2/cards/(?P<id>[^/]+)/disable", "disable_card"),
    ]

    def _handle(self, call: Call) -> tuple[int, dict[str, Any], bool]:
        if call.headers.get("authorization") != f"Bearer {self.access_token}":
            status, body = _error(401, "UNAUTHORIZED", "AUTHENTICATION_ERROR")
            return status, body, False
        for method, pattern, name in self._ROUTES:
            match = re.fullmatch(pattern, call.path)
            if method != call.method or not match:
                continue
            with self._lock:
                faults = self._faults.get(f"{method} {call.path}") or []
                fault = faults.pop(0) if faults else None
            if fault == "500":
                status, body = _error(500, "INTERNAL_SERVER_ERROR", "API_ERROR")
                return status, body, False
            handler: Callable[..., Answer] = getattr(self, f"_{name}")
            args = match.groupdict()
            with self._lock:
                status, body = self._idempotent(
                    name, call, lambda h=handler, a=args: h(call, **a)  # type: ignore[misc]
                )
            return status, body, fault == "drop"
        status, body = _error(404, "NOT_FOUND")
        return status, body, False

    def _idempotent(self, name: str, call: Call, run: Callable[[], Answer]) -> Answer:
        key = call.body.get("idempotency_key")
        if not isinstance(key, str):
            return self._guarded(run)
        if not key or len(key) > 45:
            return _error(400, "VALUE_TOO_LONG", field="idempotency_key",
                          detail="Field must not be greater than 45 length")
        canonical = json.dumps(call.body, sort_keys=True)
        stored = self.state.keys.get((name, key))
        if stored is not None:
            first, answer = stored
            if first != canonical:
                return _error(400, "IDEMPOTENCY_KEY_REUSED", field="idempotency_key")
            return answer
        answer = self._guarded(run)
        if answer[0] < 500:
            self.state.keys[(name, key)] = (canonical, answer)
        return answer

    @staticmethod
    def _guarded(run: Callable[[], Answer]) -> Answer:
        try:
            return run()
        except _Problem as problem:
            return problem.answer

    # -- payments -------------------------------------------------------------------------------------
    def _money(self, value: Any, name: str) -> dict[str, Any]:
        if (not isinstance(value, dict) or not isinstance(value.get("amount"), int)
                or value["amount"] < 1):
            raise _Problem(_error(400, "INVALID_VALUE", field=f"{name}.amount"))
        if value.get("currency") != self.currency:
            raise _Problem(_error(400, "INVALID_VALUE", field=f"{name}.currency",
                                  detail=f"This location takes {self.currency}"))
        return {"amount": value["amount"], "currency": value["currency"]}

    def _card_for_source(self, body: dict[str, Any], *, for_payment: bool) -> dict[str, Any]:
        source = str(body.get("source_id") or "")
        if source.startswith("ccof:"):
            card = self.state.cards.get(source)
            if card is None:
                raise _Problem(_error(404, "NOT_FOUND", field="source_id"))
            if for_payment and body.get("customer_id") != card["customer_id"]:
                raise _Problem(_error(400, "INVALID_VALUE", field="customer_id",
                                      detail="A card on file needs its customer_id"))
            if not card["enabled"]:
                raise _Problem(_error(400, "CARD_DECLINED", "PAYMENT_METHOD_ERROR",
                                      detail="The card on file is disabled."))
            return {k: card[k] for k in ("card_brand", "last_4", "exp_month", "exp_year",
                                         "card_type", "fingerprint", "prepaid_type")}
        if not source.startswith("cnon:"):
            raise _Problem(_error(400, "INVALID_VALUE", field="source_id"))
        if source not in SANDBOX_NONCES:
            if source in self.state.used_nonces:
                raise _Problem(_error(400, "CARD_TOKEN_USED", field="source_id"))
            self.state.used_nonces.add(source)
        return {"card_brand": "VISA", "last_4": "1111", "exp_month": 12, "exp_year": 2030,
                "card_type": "CREDIT", "prepaid_type": "NOT_PREPAID",
                "fingerprint": "sq-1-" + source.encode().hex()[:40]}

    def _create_payment(self, call: Call) -> Answer:
        body = call.body
        amount = self._money(body.get("amount_money"), "amount_money")
        if len(str(body.get("reference_id") or "")) > 40:
            return _error(400, "VALUE_TOO_LONG", field="reference_id")
        if body.get("location_id") not in (None, self.location_id):
            return _error(404, "NOT_FOUND", field="location_id")
        card = self._card_for_source(body, for_payment=True)
        decline = SANDBOX_NONCES.get(str(body.get("source_id")))
        autocomplete = body.get("autocomplete", True) is not False
        payment: dict[str, Any] = {
            "id": _id(29),
            "created_at": _now(),
            "updated_at": _now(),
            "amount_money": amount,
            "approved_money": dict(amount),
            "total_money": dict(amount),
            "status": "COMPLETED" if autocomplete else "APPROVED",
            "source_type": "CARD",
            "card_details": {"status": "CAPTURED" if autocomplete else "AUTHORIZED",
                             "card": card, "entry_method": "ON_FILE"
                             if str(body.get("source_id")).startswith("ccof:") else "KEYED",
                             "cvv_status": "CVV_ACCEPTED", "avs_status": "AVS_ACCEPTED"},
            "location_id": self.location_id,
            "risk_evaluation": {"created_at": _now(), "risk_level": "NORMAL"},
            "delay_action": "CANCEL",
            "delay_duration": "PT168H",
            "version_token": _id(40),
            "capabilities": [] if autocomplete else ["EDIT_AMOUNT_UP", "EDIT_AMOUNT_DOWN",
                                                     "EDIT_TIP_AMOUNT_UP", "EDIT_TIP_AMOUNT_DOWN"],
        }
        for name in ("reference_id", "customer_id", "note"):
            if body.get(name):
                payment[name] = body[name]
        self.state.payments[payment["id"]] = payment
        if decline:
            errors = [{"code": decline, "detail": f"Authorization error: '{decline}'",
                       "category": "PAYMENT_METHOD_ERROR"}]
            payment.update(status="FAILED", approved_money={"amount": 0, "currency": self.currency},
                           capabilities=[])
            payment["card_details"].update(status="FAILED", errors=errors)
            self._emit("payment.created", "payment", payment)
            return 400, {"errors": errors, "payment": payment}
        self._emit("payment.created", "payment", payment)
        return 200, {"payment": payment}

    def _payment(self, payment_id: str) -> dict[str, Any]:
        payment = self.state.payments.get(payment_id)
        if payment is None:
            raise _Problem(_error(404, "NOT_FOUND", detail=f"Could not find payment {payment_id}"))
        return payment

    def _get_payment(self, call: Call, id: str) -> Answer:
        return 200, {"payment": self._payment(id)}

    def _settled_error(self, payment: dict[str, Any]) -> Answer:
        code = {"COMPLETED": "DELAYED_TRANSACTION_CAPTURED",
                "CANCELED": "DELAYED_TRANSACTION_CANCELED",
                "FAILED": "DELAYED_TRANSACTION_FAILED"}.get(payment["status"], "BAD_REQUEST")
        return _error(400, code)

    def _check_version(self, payment: dict[str, Any], token: Any) -> None:
        if token is not None and token != payment["version_token"]:
            raise _Problem(_error(400, "VERSION_MISMATCH", field="version_token"))

    def _update_payment(self, call: Call, id: str) -> Answer:
        payment = self._payment(id)
        change = call.body.get("payment") or {}
        if payment["status"] != "APPROVED":
            return self._settled_error(payment)
        self._check_version(payment, change.get("version_token"))
        if "amount_money" in change:
            amount = self._money(change["amount_money"], "payment.amount_money")
            if amount["amount"] > payment["approved_money"]["amount"]:
                return _error(400, "VALUE_TOO_HIGH", field="payment.amount_money.amount")
            payment.update(amount_money=amount, total_money=dict(amount))
        payment.update(version_token=_id(40), updated_at=_now())
        self._emit("payment.updated", "payment", payment)
        return 200, {"payment": payment}

    def _complete_payment(self, call: Call, id: str) -> Answer:
        payment = self._payment(id)
        if payment["status"] != "APPROVED":
            return self._settled_error(payment)
        self._check_version(payment, call.body.get("version_token"))
        payment.update(status="COMPLETED", version_token=_id(40), updated_at=_now(),
                       capabilities=[])
        payment["card_details"]["status"] = "CAPTURED"
        self._emit("payment.updated", "payment", payment)
        return 200, {"payment": payment}

    def _cancel_payment(self, call: Call, id: str) -> Answer:
        payment = self._payment(id)
        if payment["status"] != "APPROVED":
            return self._settled_error(payment)
        payment.update(status="CANCELED", version_token=_id(40), updated_at=_now(),
                       capabilities=[])
        payment["card_details"]["status"] = "VOIDED"
        self._emit("payment.updated", "payment", payment)
        return 200, {"payment": payment}

    # -- refunds ----------------------------------------------------------------------------------------
    def _refund_payment(self, call: Call) -> Answer:
        body = call.body
        payment = self._payment(str(body.get("payment_id")))
        amount = self._money(body.get("amount_money"), "amount_money")
        if payment["status"] != "COMPLETED":
            return _error(400, "REFUND_ERROR_PAYMENT_NEEDS_COMPLETION")
        refunded = sum(r["amount_money"]["amount"] for r in self.state.refunds.values()
                       if r["payment_id"] == payment["id"] and r["status"] != "FAILED")
        if refunded + amount["amount"] > payment["amount_money"]["amount"]:
            return _error(400, "REFUND_AMOUNT_INVALID", "REFUND_ERROR")
        refund: dict[str, Any] = {
            "id": f"{payment['id']}_{_id(40)}",
            "status": "PENDING",
            "amount_money": amount,
            "payment_id": payment["id"],
            "location_id": self.location_id,
            "created_at": _now(),
            "updated_at": _now(),
        }
        if body.get("reason"):
            refund["reason"] = body["reason"]
        self.state.refunds[refund["id"]] = refund
        self._emit("refund.created", "refund", refund)
        threading.Timer(self.refund_delay, self._complete_refund, args=(refund["id"],)).start()
        return 200, {"refund": refund}

    def _complete_refund(self, refund_id: str) -> None:
        with self._lock:
            refund = self.state.refunds[refund_id]
            refund.update(status="COMPLETED", updated_at=_now())
            payment = self.state.payments[refund["payment_id"]]
            done = payment.get("refunded_money", {}).get("amount", 0)
            payment["refunded_money"] = {"amount": done + refund["amount_money"]["amount"],
                                         "currency": self.currency}
            payment.setdefault("refund_ids", []).append(refund_id)
            payment.update(version_token=_id(40), updated_at=_now())
            self._emit("refund.updated", "refund", refund)
            self._emit("payment.updated", "payment", payment)

    # -- customers and cards ----------------------------------------------------------------------------------
    def _create_customer(self, call: Call) -> Answer:
        customer = {"id": _id(26).upper(), "created_at": _now(), "updated_at": _now(),
                    "creation_source": "THIRD_PARTY", "version": 0,
                    "preferences": {"email_unsubscribed": False}}
        for name in ("reference_id", "email_address", "given_name", "family_name"):
            if call.body.get(name):
                customer[name] = call.body[name]
        self.state.customers[str(customer["id"])] = customer
        return 200, {"customer": customer}

    def _create_card(self, call: Call) -> Answer:
        wanted = call.body.get("card") or {}
        customer_id = wanted.get("customer_id")
        if customer_id not in self.state.customers:
            return _error(400, "CUSTOMER_NOT_FOUND", field="card.customer_id")
        details = self._card_for_source(call.body, for_payment=False)
        decline = SANDBOX_NONCES.get(str(call.body.get("source_id")))
        if decline:
            return _error(400, decline, "PAYMENT_METHOD_ERROR",
                          detail=f"Card verification failed: '{decline}'")
        card = {"id": "ccof:" + _id(20), "customer_id": customer_id, "enabled": True,
                "merchant_id": "MLFAKE", "version": 1, "bin": "411111", "hsa_fsa": False,
                **details}
        if wanted.get("reference_id"):
            card["reference_id"] = wanted["reference_id"]
        self.state.cards[str(card["id"])] = card
        return 200, {"card": card}

    def _get_card(self, call: Call, id: str) -> Answer:
        card = self.state.cards.get(id)
        if card is None:
            return _error(404, "NOT_FOUND")
        return 200, {"card": card}

    def _disable_card(self, call: Call, id: str) -> Answer:
        card = self.state.cards.get(id)
        if card is None:
            return _error(404, "NOT_FOUND")
        card.update(enabled=False, version=card["version"] + 1)
        return 200, {"card": card}

    # -- webhooks ----------------------------------------------------------------------------------------
    def _emit(self, event_type: str, data_type: str, obj: dict[str, Any]) -> None:
        event = {
            "merchant_id": "MLFAKE",
            "type": event_type,
            "event_id": str(uuid.uuid4()),
            "created_at": _now(),
            "data": {"type": data_type, "id": obj["id"],
                     "object": {data_type: json.loads(json.dumps(obj))}},
        }
        with self._wake:
            self._seq += 1
            heapq.heappush(self._queue, (time.monotonic() + 0.02, self._seq, event))
            self._wake.notify_all()

    def sign(self, body: bytes, url: str | None = None) -> dict[str, str]:
        return webhooks.signed_headers(self.signature_key, url or self.webhook_url, body)

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stopping:
                with self._wake:
                    if not self._queue:
                        self._wake.wait(0.1)
                        continue
                    due, _, event = self._queue[0]
                    if due > time.monotonic():
                        self._wake.wait(due - time.monotonic())
                        continue
                    heapq.heappop(self._queue)
                    self._busy += 1
                try:
                    self._deliver(client, event)
                finally:
                    with self._wake:
                        self._busy -= 1

    def _deliver(self, client: httpx.Client, event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        delivery = Delivery(event)
        with self._lock:
            self.deliveries.append(delivery)
        for attempt in range(5):
            try:
                response = client.post(self.webhook_url, content=body, headers=self.sign(body))
                delivery.status = response.status_code
                if response.status_code < 300:
                    return
            except httpx.HTTPError:
                delivery.status = None
            time.sleep(0.1 * 2**attempt)
