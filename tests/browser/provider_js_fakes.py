"""Small fakes of the providers' browser SDKs (PayPal's JS SDK, Square's Web Payments SDK),
served on a loopback origin of their own, as the providers serve theirs from theirs: the
checkout page loads them through PAYMUX_PAYPAL_JS_URL / PAYMUX_SQUARE_JS_URL, and its CSP
names this origin instead of the providers' (the page code is the real one).

The provider's side of the buyer's steps is here too, at this origin (where the card goes):
- ``POST /paypal/approve``  the buyer approves the order in "PayPal's window" (the fake
  PayPal API's ``approve``, optionally with the issue the funding source is refused with);
- ``POST /paypal/approve-setup`` the buyer approves saving their wallet for the merchant's
  setup token (the fake PayPal API's ``approve_setup_token``; the JS SDK's vault flow);
- ``GET /paypal/card-field?name=`` one of PayPal's card fields (name, number, expiry, cvv):
  a frame of this origin on the page, its input unreadable by the page; asked by the SDK
  (postMessage), it posts its value here (``POST /paypal/card-fields/field``, under the
  submit's id);
- ``POST /paypal/card-fields/submit`` the card fields' submit: the fields' values for the
  order go to the fake PayPal (support/paypal_card_fields.py: 3-D Secure per test card, the
  challenge's outcome as the payer chose it);
- ``POST /square/tokenize`` the card's fields -> a card nonce the fake Square API takes
  (``cnon:card-nonce-declined`` for 4000000000000002, Square's sandbox decline nonce);
- ``POST /square/verify``   verifyBuyer: a verification token, with the details recorded;
  for the challenge card's nonce, first ``{"challenge": true}`` (the SDK shows the issuer's
  challenge), then, asked again with ``challenge: passed``, the token (``challenged``).
Every request's body is kept (``received``), to show where the card number went.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route

from support.paypal_card_fields import submit_card
from support.paypal_fake import FakePayPal

__all__ = ["ProviderScripts", "hold_square_attach"]

_HERE = Path(__file__).parent / "fake_provider_js"
_SCRIPTS = {
    "/sdk/js": (_HERE / "paypal-sdk.js").read_bytes(),
    "/v1/square.js": (_HERE / "square.js").read_bytes(),
}
DECLINED_CARD = "4000000000000002"
# One PayPal card field: its value goes from this frame to this origin, never to the page.
_CARD_FIELD = b"""<!doctype html><html lang="en"><meta charset="utf-8"><title>card field</title>
<style>body{margin:0}input{font:16px sans-serif;width:95%;padding:.4em}</style>
<input id="field" aria-label="card field" autocomplete="off">
<script>
'use strict';
const name = new URLSearchParams(location.search).get('name');
const input = document.getElementById('field');
input.name = name;
window.addEventListener('message', async (event) => {
  const data = event.data || {};
  if (event.source !== window.parent || data.type !== 'paypal.card-fields.store') return;
  await fetch('/paypal/card-fields/field', {method: 'POST',
    body: JSON.stringify({submit_id: data.submitId, name: name, value: input.value})});
  window.parent.postMessage({type: 'paypal.card-fields.stored', submitId: data.submitId,
                             name: name}, event.origin);
});
</script></html>"""
CHALLENGE_CARD = "4000002760003184"  # verifyBuyer shows the issuer's challenge first


class ProviderScripts:
    def __init__(self, paypal: FakePayPal) -> None:
        self.paypal = paypal
        self.received: list[tuple[str, bytes]] = []
        self.verifications: dict[str, dict[str, Any]] = {}  # token -> verifyBuyer's details
        self.challenged: set[str] = set()  # verification tokens given after a challenge
        self.card_fields: dict[str, dict[str, str]] = {}  # PayPal submit id -> its fields
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                # The page (another loopback origin) calls this one, as it calls the provider.
                self.send_header("access-control-allow-origin", "*")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                fake.received.append((f"GET {self.path}", b""))
                if path == "/paypal/card-field":
                    self._send(200, _CARD_FIELD, "text/html; charset=utf-8")
                    return
                script = _SCRIPTS.get(path)
                if script is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, script, "text/javascript; charset=utf-8")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                fake.received.append((f"POST {self.path}", raw))
                answer = fake.answer(self.path, json.loads(raw or b"{}"))
                self._send(200, json.dumps(answer).encode(), "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/paypal/approve":
            self.paypal.approve(str(body["order_id"]), decline=body.get("decline"))
            return {"ok": True}
        if path == "/paypal/approve-setup":
            self.paypal.approve_setup_token(str(body["setup_token"]))
            return {"ok": True}
        if path == "/paypal/card-fields/field":
            with self.lock:
                fields = self.card_fields.setdefault(str(body["submit_id"]), {})
                fields[str(body["name"])] = str(body.get("value") or "")
            return {"ok": True}
        if path == "/paypal/card-fields/submit":
            with self.lock:
                fields = dict(self.card_fields.get(str(body["submit_id"])) or {})
            return submit_card(self.paypal, str(body["order_id"]), fields,
                               body.get("challenge"))
        if path == "/square/tokenize":
            number = "".join(ch for ch in str(body.get("number") or "") if ch.isdigit())
            if len(number) < 12:
                return {}
            if number == DECLINED_CARD:
                return {"token": "cnon:card-nonce-declined"}
            if number == CHALLENGE_CARD:
                return {"token": "cnon:challenge-" + secrets.token_hex(12)}
            return {"token": "cnon:" + secrets.token_hex(12)}
        if path == "/square/verify":
            challenge = str(body.get("token") or "").startswith("cnon:challenge-")
            if challenge and body.get("challenge") != "passed":
                return {"challenge": True}
            token = "verf:" + secrets.token_hex(12)
            self.verifications[token] = dict(body.get("details") or {})
            if challenge:
                self.challenged.add(token)
            return {"token": token}
        return {}

    def start(self) -> ProviderScripts:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The fake Square SDK's attach, held once its fields are in the page until the page calls
# ``window.releaseAttach()``: Square's real attach resolves only once its frame has loaded,
# after the fields show, and the pay button's handler comes after it.
_ATTACH_LOOP_END = "fields[name] = input;\n            }\n"
_HELD_ATTACH = "await new Promise((resolve) => { window.releaseAttach = resolve; });\n"


def hold_square_attach(page: Page, scripts_url: str) -> None:
    """Serve ``page`` the fake Square SDK (at ``scripts_url``) with its attach held."""

    def held(route: Route) -> None:
        body = route.fetch().text()
        assert _ATTACH_LOOP_END in body  # the fake's text this patches
        route.fulfill(body=body.replace(_ATTACH_LOOP_END, _ATTACH_LOOP_END + _HELD_ATTACH),
                      content_type="application/javascript")

    page.route(f"{scripts_url}/v1/square.js", held)
