"""A small stateful fake of PayPal's REST API, on 127.0.0.1, for end-to-end flows.

It implements the endpoints the contract tests validated against PayPal's specs with Prism
(OAuth2 token; orders create/get/capture/authorize; authorizations get/capture/void;
captures get/refund; vault setup-token create/get, payment-token create/get/delete;
verify-webhook-signature), keeps what they create, replays a POST sent again with the same
``PayPal-Request-Id``, fails the next call(s) to a path on request (``fail_next``: a 503, or
an answer lost after the call was done), and honours ``PayPal-Mock-Response: {"mock_application_codes": ...}``
(negative testing in PayPal's sandbox: the call fails with that issue). After each change it
sends the webhook PayPal would send, signed PayPal's way with a certificate from a test CA,
to the registered URL; ``verify-webhook-signature`` answers SUCCESS only for deliveries whose
signature its own key made over exactly that event.

The buyer's part happens in PayPal's window, which a test can't open: ``approve(order_id)``
does it (optionally with the issue the buyer's funding source will be refused with), and
``create_setup_token`` stands for a buyer who approved saving a payment method (and
``approve_setup_token`` for one who approves a setup token the merchant created).
"""

from __future__ import annotations

import base64
import json
import queue
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from paymux.gateways.paypal.webhooks import signed_message
from support.paypal import CERT_URL, TestCA, sign_headers

__all__ = ["FakePayPal", "Hold"]

_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_T = TypeVar("_T")


def _id(n: int = 17) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _issue(status: int, name: str, issue: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"name": name, "message": description, "debug_id": _id(13).lower(),
                    "details": [{"issue": issue, "description": description}]}


def _unprocessable(issue: str) -> tuple[int, dict[str, Any]]:
    return _issue(422, "UNPROCESSABLE_ENTITY", issue, f"The request failed: {issue}.")


def _not_found() -> tuple[int, dict[str, Any]]:
    return _issue(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")


def _cents(value: dict[str, Any]) -> int:
    whole, _, frac = str(value["value"]).partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0")[:2]) if frac else int(whole)


def _take_first(entries: list[tuple[str, str, _T]], method: str, path: str) -> _T | None:
    """Take the first of ``entries`` (method, path, what) for ``method`` ``path``: its what."""
    for i, (m, p, what) in enumerate(entries):
        if (m, p) == (method, path):
            del entries[i]
            return what
    return None


@dataclass
class Hold:
    """A call held by ``FakePayPal.hold_next``: ``arrived`` is set once it waits; it goes on
    once ``released`` is set (``release()``), or after 60 s."""

    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def wait_arrived(self, timeout: float = 60.0) -> None:
        assert self.arrived.wait(timeout), "the held PayPal call never came"

    def release(self) -> None:
        self.released.set()


class FakePayPal:
    def __init__(self, client_id: str, client_secret: str, webhook_id: str) -> None:
        self.client_id, self.client_secret, self.webhook_id = client_id, client_secret, webhook_id
        self.ca = TestCA("fake paypal root")
        self.signer = self.ca.issue()
        self.lock = threading.RLock()
        self.tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.setup_tokens: dict[str, dict[str, Any]] = {}
        self.payment_tokens: dict[str, dict[str, Any]] = {}
        self.replies: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sent: dict[str, bytes] = {}  # transmission id -> body
        self.deliveries: list[tuple[str, int]] = []  # (event type, paymux's status)
        self.webhook_url: str | None = None
        self.faults: list[tuple[str, str, str]] = []  # (method, path, kind): fail_next
        self.holds: list[tuple[str, str, Hold]] = []  # (method, path, gate): hold_next
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("paypal-debug-id", _id(13).lower())
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                hold = fake._take_hold(method, self.path.split("?")[0])
                if hold is not None:  # waits, PayPal having done nothing, until let go
                    hold.arrived.set()
                    hold.released.wait(timeout=60)
                fault = fake._take_fault(method, self.path.split("?")[0])
                if fault == "unavailable":  # refused before PayPal did anything
                    fake.requests.append((method, self.path.split("?")[0], headers))
                    self._answer(503, {"name": "SERVICE_UNAVAILABLE",
                                       "message": "Service Unavailable."})
                    return
                status, body = fake.handle(method, self.path, headers, raw)
                if fault == "lost":  # done at PayPal, the answer never reaches the caller
                    self.close_connection = True
                    return
                self._answer(status, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._deliver_loop, daemon=True)]

    def fail_next(self, method: str, path: str, kind: str, times: int = 1) -> None:
        """The next ``times`` ``method`` calls to ``path`` fail: ``kind`` "unavailable"
        answers 503 before anything is done; "lost" does the call (kept, and replayed for
        its PayPal-Request-Id) then closes the connection without answering."""
        assert kind in ("unavailable", "lost")
        with self.lock:
            self.faults.extend([(method, path, kind)] * times)

    def hold_next(self, method: str, path: str) -> Hold:
        """The next ``method`` call to ``path`` waits, before PayPal does anything (and before
        a ``fail_next`` fault is taken), until the test lets it go: a gate that forces an
        interleaving (the call is in flight while the test does something else)."""
        hold = Hold()
        with self.lock:
            self.holds.append((method, path, hold))
        return hold

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self.lock:
            return _take_first(self.holds, method, path)

    def _take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            return _take_first(self.faults, method, path)

    def start(self) -> FakePayPal:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        self.server.shutdown()
        self.server.server_close()

    # -- the buyer's side ------------------------------------------------------------------
    def approve(self, order_id: str, decline: str | None = None) -> None:
        """The buyer logs in to PayPal and approves the order (``decline``: the issue their
        funding source will be refused with at capture)."""
        with self.lock:
            order = self.orders[order_id]
            order["status"] = "APPROVED"
            order["payment_source"] = {"paypal": {"email_address": "buyer@example.com",
                                                  "account_id": "QYR5Z8XDVJNXQ"}}
            order["_decline"] = decline
        self._emit("CHECKOUT.ORDER.APPROVED", "checkout-order", self._order_view(order))

    def create_setup_token(self, kind: str = "paypal") -> str:
        """A setup token the buyer approved (the JS SDK's vault flow)."""
        token = _id()
        source = ({"paypal": {"email_address": "saver@example.com"}} if kind == "paypal" else
                  {"card": {"brand": "VISA", "last_digits": "1111", "expiry": "2030-12"}})
        with self.lock:
            self.setup_tokens[token] = {"id": token, "status": "APPROVED",
                                        "customer": {"id": _id(10)}, "payment_source": source}
        return token

    def approve_setup_token(self, token: str) -> None:
        """The buyer approves, in PayPal's window, saving their wallet for the setup token
        the merchant created (``POST /v3/vault/setup-tokens``: the JS SDK's vault flow)."""
        with self.lock:
            setup = self.setup_tokens[token]
            setup["status"] = "APPROVED"
            setup["payment_source"] = {"paypal": {"email_address": "saver@example.com",
                                                  "payer_id": "QYR5Z8XDVJNXQ"}}
            setup.pop("links", None)

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str],
               raw: bytes) -> tuple[int, dict[str, Any] | None]:
        path = path.split("?")[0]
        self.requests.append((method, path, headers))
        if path == "/v1/oauth2/token":
            return self._token(headers, raw)
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
        body = json.loads(raw) if raw else {}
        request_id = headers.get("paypal-request-id")
        if method == "POST" and request_id and (path, request_id) in self.replies:
            return self.replies[(path, request_id)]
        mock = headers.get("paypal-mock-response")
        if method == "POST" and mock:
            answer = _unprocessable(json.loads(mock)["mock_application_codes"])
        else:
            with self.lock:
                answer = self._route(method, path, headers, body)
        if method == "POST" and request_id and answer[0] < 500:
            self.replies[(path, request_id)] = answer
        return answer

    def _token(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}" or raw != b"grant_type=client_credentials":
            return 401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        token = "A21AA" + secrets.token_urlsafe(48)
        self.tokens.add(token)
        return 200, {"scope": "https://uri.paypal.com/services/payments/payment",
                     "access_token": token, "token_type": "Bearer",
                     "app_id": "APP-80W284485P519543T", "expires_in": 32400,
                     "nonce": "2024-01-01T00:00:00ZXYZ"}

    def _route(self, method: str, path: str, headers: dict[str, str],
               body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        match method, parts:
            case "POST", ["v2", "checkout", "orders"]:
                return self._create_order(body)
            case "GET", ["v2", "checkout", "orders", order_id]:
                order = self.orders.get(order_id)
                return (200, self._order_view(order)) if order else _not_found()
            case "POST", ["v2", "checkout", "orders", order_id, ("capture" | "authorize") as action]:
                return self._complete(order_id, action)
            case "GET", ["v2", "payments", "authorizations", auth_id]:
                auth = self.authorizations.get(auth_id)
                return (200, auth) if auth else _not_found()
            case "POST", ["v2", "payments", "authorizations", auth_id, "capture"]:
                return self._capture_authorization(auth_id, body)
            case "POST", ["v2", "payments", "authorizations", auth_id, "void"]:
                return self._void(auth_id, headers)
            case "GET", ["v2", "payments", "captures", capture_id]:
                capture = self.captures.get(capture_id)
                return (200, capture) if capture else _not_found()
            case "POST", ["v2", "payments", "captures", capture_id, "refund"]:
                return self._refund(capture_id, body)
            case "POST", ["v3", "vault", "setup-tokens"]:
                return self._create_setup_token(body)
            case "GET", ["v3", "vault", "setup-tokens", token]:
                found = self.setup_tokens.get(token)
                return (200, found) if found else _not_found()
            case "POST", ["v3", "vault", "payment-tokens"]:
                return self._save_token(headers, body)
            case "GET", ["v3", "vault", "payment-tokens", token]:
                found = self.payment_tokens.get(token)
                return (200, found) if found else _not_found()
            case "DELETE", ["v3", "vault", "payment-tokens", token]:
                return (204, None) if self.payment_tokens.pop(token, None) else _not_found()
            case "POST", ["v1", "notifications", "verify-webhook-signature"]:
                return 200, {"verification_status": self._verify(body)}
        return 404, {"name": "NOT_FOUND", "message": f"no route {method} {path}"}

    def _order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if not k.startswith("_")}

    def _create_order(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        unit = body["purchase_units"][0]
        order_id = _id()
        order = {"id": order_id, "intent": body["intent"], "status": "CREATED",
                 "purchase_units": [{"reference_id": "default", "amount": unit["amount"],
                                     "custom_id": unit.get("custom_id"), "payments": {}}],
                 "links": [{"rel": "approve", "method": "GET",
                            "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}"}]}
        self.orders[order_id] = order
        source = body.get("payment_source") or {}
        if source:
            [(kind, details)] = source.items()
            if kind == "card" and "vault_id" not in details:
                # The card fields' order: the card comes later, from PayPal's fields
                # (support/paypal_card_fields.py's submit_card).
                order["payment_source"] = {"card": {}}
                order["_verification"] = (
                    (details.get("attributes") or {}).get("verification") or {}).get("method")
                return 201, self._order_view(order)
            saved = self.payment_tokens.get(details.get("vault_id", ""))
            if saved is None:
                del self.orders[order_id]
                return _unprocessable("INVALID_PAYMENT_SOURCE" if kind else "INVALID_PARAMETER_VALUE")
            order["payment_source"] = saved["payment_source"]
            order["status"] = "APPROVED"
            order["_decline"] = saved.get("_decline")
            return self._complete(order_id, "capture" if body["intent"] == "CAPTURE" else "authorize",
                                  created=True)
        return 201, self._order_view(order)

    def _complete(self, order_id: str, action: str, created: bool = False) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(order_id)
        if order is None:
            return _not_found()
        if order["status"] == "COMPLETED":
            return _unprocessable("ORDER_ALREADY_CAPTURED" if action == "capture" else "ORDER_ALREADY_AUTHORIZED")
        if order["status"] != "APPROVED":
            return _unprocessable("ORDER_NOT_APPROVED")
        if (action == "capture") != (order["intent"] == "CAPTURE"):
            return _unprocessable("ACTION_DOES_NOT_MATCH_INTENT")
        if order.get("_decline"):
            return _unprocessable(order["_decline"])
        unit = order["purchase_units"][0]
        common = {"amount": unit["amount"], "custom_id": unit["custom_id"],
                  "supplementary_data": {"related_ids": {"order_id": order_id}}}
        order["status"] = "COMPLETED"
        if action == "capture":
            capture = {"id": _id(), "status": "COMPLETED", "final_capture": True, **common}
            self.captures[capture["id"]] = capture
            unit["payments"]["captures"] = [capture]
            self._emit("PAYMENT.CAPTURE.COMPLETED", "capture", capture)
        else:
            auth = {"id": _id(), "status": "CREATED", **common,
                    "expiration_time": "2099-01-01T00:00:00Z"}
            self.authorizations[auth["id"]] = auth
            unit["payments"]["authorizations"] = [auth]
            self._emit("PAYMENT.AUTHORIZATION.CREATED", "authorization", auth)
        return 201, self._order_view(order)

    def _capture_authorization(self, auth_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return _not_found()
        if auth["status"] == "VOIDED":
            return _unprocessable("AUTHORIZATION_VOIDED")
        if auth["status"] != "CREATED":
            return _unprocessable("AUTHORIZATION_ALREADY_CAPTURED")
        amount = body.get("amount") or auth["amount"]
        if _cents(amount) > _cents(auth["amount"]):
            return _unprocessable("MAX_CAPTURE_AMOUNT_EXCEEDED")
        capture = {"id": _id(), "status": "COMPLETED", "amount": amount,
                   "final_capture": bool(body.get("final_capture")),
                   "custom_id": auth["custom_id"], "supplementary_data": auth["supplementary_data"]}
        self.captures[capture["id"]] = capture
        auth["status"] = "CAPTURED" if _cents(amount) == _cents(auth["amount"]) else "PARTIALLY_CAPTURED"
        self._emit("PAYMENT.CAPTURE.COMPLETED", "capture", capture)
        return 201, capture

    def _void(self, auth_id: str, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return _not_found()
        if auth["status"] != "CREATED":
            return _unprocessable("PREVIOUSLY_CAPTURED" if "CAPTURED" in auth["status"] else "PREVIOUSLY_VOIDED")
        auth["status"] = "VOIDED"
        self._emit("PAYMENT.AUTHORIZATION.VOIDED", "authorization", auth)
        return (200, auth) if "representation" in headers.get("prefer", "") else (204, None)

    def _refund(self, capture_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        capture = self.captures.get(capture_id)
        if capture is None:
            return _not_found()
        done = sum(_cents(r["amount"]) for r in self.refunds.values() if r["_capture"] == capture_id)
        left = _cents(capture["amount"]) - done
        amount = body.get("amount") or {"currency_code": capture["amount"]["currency_code"],
                                         "value": f"{left // 100}.{left % 100:02d}"}
        if left <= 0:
            return _unprocessable("CAPTURE_FULLY_REFUNDED")
        if _cents(amount) > left:
            return _unprocessable("REFUND_AMOUNT_EXCEEDED")
        refund_id = _id()
        refund = {"id": refund_id, "status": "COMPLETED", "amount": amount, "_capture": capture_id,
                  "links": [{"rel": "self", "method": "GET",
                             "href": f"https://api.sandbox.paypal.com/v2/payments/refunds/{refund_id}"},
                            {"rel": "up", "method": "GET",
                             "href": f"https://api.sandbox.paypal.com/v2/payments/captures/{capture_id}"}]}
        if body.get("custom_id"):
            refund["custom_id"] = body["custom_id"]
        self.refunds[refund["id"]] = refund
        capture["status"] = "REFUNDED" if _cents(amount) == left else "PARTIALLY_REFUNDED"
        view = {k: v for k, v in refund.items() if not k.startswith("_")}
        self._emit("PAYMENT.CAPTURE.REFUNDED", "refund", view)
        return 201, view

    def _create_setup_token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A setup token for the payer's PayPal wallet, waiting for the payer's approval."""
        source = body.get("payment_source") or {}
        wallet = source.get("paypal")
        context = (wallet or {}).get("experience_context") or {}
        if not isinstance(wallet, dict) or not context.get("return_url"):
            return _unprocessable("INVALID_PARAMETER_VALUE")
        token = _id()
        approve = f"https://www.sandbox.paypal.com/agreements/approve?approval_session_id={token}"
        self.setup_tokens[token] = {
            "id": token, "status": "PAYER_ACTION_REQUIRED",
            "customer": {"id": (body.get("customer") or {}).get("id") or _id(10)},
            "payment_source": {"paypal": {"usage_type": wallet.get("usage_type")}},
            "links": [{"rel": "approve", "href": approve, "method": "GET"}]}
        return 201, dict(self.setup_tokens[token])

    def _save_token(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not headers.get("paypal-request-id"):
            return _issue(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", "PayPal-Request-Id is required.")
        token = (body.get("payment_source") or {}).get("token") or {}
        setup = self.setup_tokens.get(token.get("id", ""))
        if token.get("type") != "SETUP_TOKEN" or setup is None:
            return _unprocessable("INVALID_PARAMETER_VALUE")
        if setup["status"] != "APPROVED":
            return _unprocessable("SETUP_TOKEN_NOT_TOKENIZED")
        saved = {"id": _id(10).lower(), "customer": setup["customer"],
                 "payment_source": setup["payment_source"]}
        self.payment_tokens[saved["id"]] = saved
        return 201, saved

    # -- webhooks --------------------------------------------------------------------------
    def _emit(self, event_type: str, resource_type: str, resource: dict[str, Any]) -> None:
        self._outbox.put({"id": f"WH-{_id(17)}-{_id(17)}", "event_version": "1.0",
                          "create_time": "2024-01-01T00:00:00Z", "resource_type": resource_type,
                          "resource_version": "2.0", "event_type": event_type,
                          "summary": event_type, "resource": json.loads(json.dumps(resource))})

    def signed(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event, indent=1).encode()
        headers = sign_headers(body, self.signer.key, self.webhook_id, cert_url=CERT_URL,
                               transmission_id=str(uuid.uuid4()))
        self.sent[headers["paypal-transmission-id"]] = body
        return body, headers

    def _deliver_loop(self) -> None:
        while True:
            event = self._outbox.get()
            if event is None:
                return
            if self.webhook_url is None:
                continue
            body, headers = self.signed(event)
            for _ in range(20):
                try:
                    answer = httpx.post(self.webhook_url, content=body, timeout=10,
                                        headers={**headers, "content-type": "application/json"})
                    self.deliveries.append((event["event_type"], answer.status_code))
                    if answer.status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                threading.Event().wait(0.1)

    def _verify(self, body: dict[str, Any]) -> str:
        sent = self.sent.get(str(body.get("transmission_id")))
        if sent is None or body.get("webhook_id") != self.webhook_id:
            return "FAILURE"
        if body.get("webhook_event") != json.loads(sent):
            return "FAILURE"
        try:
            signature = base64.b64decode(str(body.get("transmission_sig")))
            self.signer.cert.public_key().verify(  # type: ignore[call-arg]
                signature,
                signed_message(str(body["transmission_id"]), str(body["transmission_time"]),
                               self.webhook_id, sent),
                padding.PKCS1v15(), hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return "FAILURE"
        return "SUCCESS"
