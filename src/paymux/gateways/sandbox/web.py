"""The sandbox's own web pages and endpoints, served under ``/sandbox`` like a provider's origin.

- ``GET  /sandbox/elements``      the hosted card form (embed it in an iframe, as Elements)
- ``POST /sandbox/v1/tokens``     card details -> token (the only place a number is accepted)
- ``GET  /sandbox/3ds/{charge}``  the 3-D Secure challenge page; ``POST`` answers it
- ``GET  /sandbox/test-cards``    the test card table
- ``/sandbox/_control/...``       knobs for tests: injected faults, latency, charge listing

None of this is paymux's merchant API: paymux's ``/v1`` refuses card numbers outright.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from paymux.gateways.sandbox.connector import FAULT_MODES, SandboxGateway

__all__ = ["build_sandbox_app"]

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox card form</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:1rem auto}
label{display:block;margin:.5rem 0}input{width:100%;padding:.4rem;font-size:1rem}
button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}#result{margin-top:1rem}</style>
</head><body>
<h1>Sandbox card</h1>
<p>Test mode: use a test card such as 4242 4242 4242 4242. The number goes to the sandbox
gateway only; the merchant receives a token.</p>
<form id="card-form" autocomplete="off">
<label>Card number <input id="number" name="number" inputmode="numeric" required></label>
<label>Expiry month <input id="exp_month" name="exp_month" value="12" required></label>
<label>Expiry year <input id="exp_year" name="exp_year" value="__YEAR__" required></label>
<label>CVC <input id="cvc" name="cvc" inputmode="numeric" required></label>
<label>Postal code <input id="postal_code" name="postal_code"></label>
<button id="submit" type="submit">Tokenize</button>
</form>
<div id="result" role="status"></div>
<script>
document.getElementById('card-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const fields = ['number', 'exp_month', 'exp_year', 'cvc', 'postal_code'];
  const body = {};
  for (const f of fields) body[f] = document.getElementById(f).value;
  const response = await fetch('__TOKENS__', {method: 'POST',
    headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
  const data = await response.json();
  const out = document.getElementById('result');
  if (response.ok) {
    out.textContent = 'token: ' + data.id;
    out.dataset.token = data.id;
    if (window.parent !== window) window.parent.postMessage(
      {type: 'paymux.sandbox.token', token: data.id, card: data.card}, '*');
  } else {
    out.textContent = 'error: ' + data.error.code + ': ' + data.error.message;
    out.dataset.error = data.error.code;
  }
  for (const f of ['number', 'cvc']) document.getElementById(f).value = '';
});
</script></body></html>"""

_CHALLENGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3-D Secure test challenge</title></head>
<body style="font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto">
<h1>3-D Secure challenge (sandbox)</h1>
<p>Payment of <strong>{amount}</strong> to a test merchant. Approve or fail it as the
payer's bank would.</p>
<form method="post"><input type="hidden" name="outcome" value="complete">
<button id="complete" type="submit">Complete authentication</button></form>
<form method="post"><input type="hidden" name="outcome" value="fail">
<button id="fail" type="submit">Fail authentication</button></form>
</body></html>"""

_DONE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Authentication finished</title></head><body style="font-family:system-ui,sans-serif">
<h1 id="outcome">{outcome}</h1><p>You can close this window.</p></body></html>"""


def _error(code: str, message: str, param: str | None = None, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "type": "card_error" if status == 402 else "invalid_request_error",
                "code": code,
                "param": param,
                "message": message,
            }
        },
        status_code=status,
    )


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def build_sandbox_app(gateway: SandboxGateway) -> Starlette:
    processor = gateway.processor

    async def elements(request: Request) -> HTMLResponse:
        page = _FORM.replace("__TOKENS__", "/sandbox/v1/tokens").replace(
            "__YEAR__", str(time.gmtime().tm_year + 3)
        )
        return HTMLResponse(
            page,
            headers={
                "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors *",
                "cache-control": "no-store",
            },
        )

    async def tokens(request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                raw: Any = json.loads(await request.body())
            except ValueError:
                return _error("parameter_invalid", "The body is not JSON.")
        else:
            raw = dict(await request.form())
        if not isinstance(raw, dict):
            return _error("parameter_invalid", "Send an object of card fields.")
        number = "".join(ch for ch in str(raw.get("number", "")) if ch.isdigit())
        if not 12 <= len(number) <= 19 or not _luhn(number):
            return _error("incorrect_number", "Your card number is incorrect.", "number", 402)
        try:
            exp_month, exp_year = int(raw.get("exp_month", 0)), int(raw.get("exp_year", 0))
        except (TypeError, ValueError):
            return _error(
                "invalid_expiry_month", "Your card's expiration date is invalid.", "exp_month", 402
            )
        if exp_year < 100:
            exp_year += 2000
        now = time.gmtime()
        if not 1 <= exp_month <= 12:
            return _error(
                "invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month", 402
            )
        if (exp_year, exp_month) < (now.tm_year, now.tm_mon):
            return _error("expired_card", "Your card has expired.", "exp_year", 402)
        cvc = str(raw.get("cvc", ""))
        if not (cvc.isdigit() and 3 <= len(cvc) <= 4):
            return _error("incorrect_cvc", "Your card's security code is invalid.", "cvc", 402)
        postal = raw.get("postal_code") or None
        token = processor.tokenize(number, exp_month, exp_year, str(postal) if postal else None)
        del number, cvc, raw
        data = processor.describe(token) or {}
        card = {
            k: v
            for k, v in (data.get("card") or {}).items()
            if k in ("brand", "last4", "exp_month", "exp_year", "funding", "country")
        }
        return JSONResponse({"id": token, "object": "token", "card": card})

    async def challenge(request: Request) -> Response:
        charge_id = request.path_params["charge_id"]
        try:
            charge = processor.retrieve(charge_id)
        except Exception:
            return HTMLResponse("<h1>Unknown challenge</h1>", status_code=404)
        if request.method == "GET":
            amount = f"{charge['amount']} {str(charge['currency']).upper()} (minor units)"
            return HTMLResponse(_CHALLENGE.format(amount=html.escape(amount)))
        form = await request.form()
        success = form.get("outcome") == "complete"
        updated = processor.complete_3ds(charge_id, success)
        gateway.notify("charge.updated", updated)
        return_url = (charge.get("next_action") or {}).get("redirect_to_url", {}).get("return_url")
        if return_url:
            sep = "&" if "?" in return_url else "?"
            query = urlencode({"payment_intent": charge["reference"], "outcome": updated["status"]})
            return RedirectResponse(f"{return_url}{sep}{query}", status_code=303)
        outcome = "Authentication complete" if success else "Authentication failed"
        return HTMLResponse(_DONE.format(outcome=outcome))

    async def test_cards(request: Request) -> JSONResponse:
        return JSONResponse({"data": processor.card_table()})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            processor.clear_faults()
            return JSONResponse({"deleted": True})
        body = await request.json()
        mode = body.get("mode")
        if mode not in FAULT_MODES:
            return _error(
                "parameter_invalid", f"mode must be one of {', '.join(FAULT_MODES)}", "mode"
            )
        processor.add_fault(
            str(body.get("operation", "*")),
            mode,
            int(body.get("count", 1)),
            body.get("retry_after"),
        )
        return JSONResponse({"ok": True})

    async def latency(request: Request) -> JSONResponse:
        body = await request.json()
        gateway.latency = float(body.get("seconds", 0.0))
        return JSONResponse({"latency": gateway.latency})

    async def charges(request: Request) -> JSONResponse:
        reference = request.query_params.get("reference", "")
        return JSONResponse({"data": processor.charges_for(reference)})

    return Starlette(
        routes=[
            Route("/elements", elements),
            Route("/v1/tokens", tokens, methods=["POST"]),
            Route("/3ds/{charge_id}", challenge, methods=["GET", "POST"]),
            Route("/test-cards", test_cards),
            Route("/_control/faults", faults, methods=["POST", "DELETE"]),
            Route("/_control/latency", latency, methods=["POST"]),
            Route("/_control/charges", charges),
        ]
    )
