"""The sandbox's own web pages and endpoints, served under ``/sandbox`` like a provider's origin.

- ``GET  /sandbox/elements``      the hosted card form (embed it in an iframe, as Elements);
  ``?origin=https://shop.example`` names the page that frames it: the only origin allowed to
  frame it (besides paymux's own) and the only one its token message is posted to
- ``POST /sandbox/v1/tokens``     card details -> token (the only place a number is accepted)
- ``GET  /sandbox/3ds/{charge}?token=...``  the 3-D Secure challenge page; its form ``POST``
  answers it, once: the single-use token travels in the form (and only there), so it is the
  page's CSRF token too
- ``GET  /sandbox/test-cards``    the test card table
- ``GET  /sandbox/static/...``    the pages' script and style sheet (no inline script or style)
- ``/sandbox/_control/...``       knobs for tests: injected faults, latency, charge listing;
  served only with ``PAYMUX_SANDBOX_CONTROLS=true`` (they take no key), else 404

Every response carries ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
no-referrer`` (and HSTS over TLS); every HTML page a Content-Security-Policy without
``unsafe-inline``, with ``frame-ancestors``. None of this is paymux's merchant API: paymux's
``/v1`` refuses card numbers outright.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from paymux.domain.errors import PaymuxError
from paymux.gateways.sandbox.connector import FAULT_MODES, SandboxGateway
from paymux.security.headers import PAGE_CSP_BASE, PageSecurityHeaders, page_headers

__all__ = ["CONTROL_OPERATIONS", "PageSecurityHeaders", "build_sandbox_app", "page_headers"]

_HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
# The only files /sandbox/static serves (read once; no path from the URL reaches the disk).
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_STATIC = {
    path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
    for path in sorted((_HERE / "static").iterdir())
    if path.suffix in _STATIC_TYPES
}
STATIC_PREFIX = "/sandbox/static"

# The operations the connector asks the processor for (its fault seam), "*" for any.
CONTROL_OPERATIONS = (
    "*",
    "authorize",
    "capture",
    "void",
    "refund",
    "retrieve",
    "lookup",
    "retrieve_refund",
    "describe",
    "create_customer",
    "attach",
    "detach",
    "setup",
    "retrieve_setup",
)
MAX_LATENCY_SECONDS = 60.0
MAX_FAULT_COUNT = 1000

# A page's own resources only (the one definition: security/headers.py).
_CSP_BASE = PAGE_CSP_BASE


def _render(
    name: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> HTMLResponse:
    body = _TEMPLATES.get_template(name).render(static=STATIC_PREFIX, **values)
    return HTMLResponse(body, status_code=status, headers=headers)


def _message(status: int, heading: str, text: str) -> HTMLResponse:
    return _render("message.html", status, title=heading, heading=heading, text=text)


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


def _api_error(
    request: Request, code: str, message: str | None = None, param: str | None = None
) -> JSONResponse:
    """paymux's own error shape (``{"error": {...}}`` with the request id)."""
    error = PaymuxError.of(code, message, param=param)
    error.request_id = getattr(request.state, "request_id", None)
    return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)


def parse_origin(value: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) origin, normalized; None if ``value`` is not
    exactly an origin (a path, query, fragment or credentials are refused, not dropped)."""
    if not value or len(value) > 300 or any(ch.isspace() or ord(ch) < 32 for ch in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if (
        parts.scheme not in ("http", "https")
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "*" in host
        or not all(ch.isalnum() or ch in ".-[]:" for ch in host)
    ):
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def build_sandbox_app(gateway: SandboxGateway, *, controls: bool = False) -> ASGIApp:
    """The sandbox's pages and endpoints; the ``/_control`` knobs only when ``controls``."""
    processor = gateway.processor

    async def elements(request: Request) -> Response:
        raw_origin = request.query_params.get("origin")
        origin = parse_origin(raw_origin) if raw_origin is not None else None
        if raw_origin is not None and origin is None:
            return _api_error(
                request,
                "parameter_invalid",
                "origin must be the http(s) origin of the page that frames the form, "
                "e.g. https://shop.example.",
                "origin",
            )
        ancestors = f"'self' {origin}" if origin else "'self'"
        headers = {
            "content-security-policy": f"{_CSP_BASE}; form-action 'self'; "
            f"frame-ancestors {ancestors}",
            "cache-control": "no-store",
        }
        if origin is None:
            headers["x-frame-options"] = "SAMEORIGIN"
        return _render(
            "elements.html",
            headers=headers,
            tokens_url="/sandbox/v1/tokens",
            parent_origin=origin or "",
            year=time.gmtime().tm_year + 3,
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
        if request.method == "GET":
            charge = processor.challenge(charge_id, request.query_params.get("token", ""))
            if charge is None:
                return _message(
                    404,
                    "Unknown challenge",
                    "This authentication link is not valid, was used already, or the "
                    "payment no longer waits for it.",
                )
            if charge.get("object") == "setup_attempt":
                amount = "0 (saving the card for later payments, no charge)"
            else:
                amount = f"{charge['amount']} {str(charge['currency']).upper()} (minor units)"
            return _render(
                "challenge.html",
                headers={
                    "content-security-policy": _challenge_csp(charge),
                    "x-frame-options": "DENY",
                },
                amount=amount,
                action=f"/sandbox/3ds/{quote(charge_id, safe='')}",
                token=request.query_params.get("token", ""),
            )
        form = await request.form()
        token, outcome = form.get("token"), form.get("outcome")
        if outcome not in ("complete", "fail"):
            return _message(400, "Unknown answer", "Choose to complete or to fail it.")
        # The token counts only from the form: a link (or a cross-site form without the
        # token, which only this page has) answers nothing.
        token = token if isinstance(token, str) else ""
        waiting = processor.challenge(charge_id, token)
        updated = (
            processor.answer_challenge(charge_id, token, outcome == "complete")
            if waiting is not None
            else None
        )
        if updated is None:
            answered = processor.answered_challenge(charge_id, token)
            if answered is not None:
                # A replay (a second click, the back button, a resent form): it changes
                # nothing, and says how the challenge really ended, whatever it asks for.
                heading, text = _challenge_state(answered)
                return _message(
                    409,
                    heading,
                    f"{text} This challenge was answered already; answering "
                    "it again changes nothing.",
                )
            return _message(
                403,
                "Challenge refused",
                "This authentication link is not valid, was used already, or the payment "
                "no longer waits for it.",
            )
        is_setup = updated.get("object") == "setup_attempt"
        gateway.notify("setup_attempt.updated" if is_setup else "charge.updated", updated)
        return_url = _return_url(waiting) if waiting is not None else None
        if return_url:
            sep = "&" if "?" in return_url else "?"
            query = urlencode(
                {
                    "setup_intent" if is_setup else "payment_intent": updated["reference"],
                    "outcome": updated["status"],
                }
            )
            return RedirectResponse(f"{return_url}{sep}{query}", status_code=303)
        heading, text = _challenge_state(updated)
        return _message(200, heading, f"{text} You can close this window.")

    async def test_cards(request: Request) -> JSONResponse:
        return JSONResponse({"data": processor.card_table()})

    async def static(request: Request) -> Response:
        found = _STATIC.get(request.path_params["name"])
        if found is None:
            return _api_error(
                request, "url_invalid", f"Unrecognized request URL (GET: {request.url.path})."
            )
        body, media_type = found
        return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

    async def control_body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body: Any = json.loads(await request.body() or b"{}")
        except ValueError:
            return _api_error(request, "parameter_invalid", "The body must be a JSON object.")
        if not isinstance(body, dict):
            return _api_error(request, "parameter_invalid", "The body must be a JSON object.")
        return body

    async def faults(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            processor.clear_faults()
            return JSONResponse({"deleted": True})
        body = await control_body(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = sorted(set(body) - {"mode", "operation", "count", "retry_after"})
        if unknown:
            return _api_error(
                request,
                "parameter_unknown",
                f"Received unknown parameter: {unknown[0]}.",
                unknown[0],
            )
        mode = body.get("mode")
        if mode is None:
            return _api_error(request, "parameter_missing", "Missing required param: mode.", "mode")
        if not isinstance(mode, str) or mode not in FAULT_MODES:
            return _api_error(
                request,
                "parameter_invalid",
                f"mode must be one of {', '.join(FAULT_MODES)}.",
                "mode",
            )
        operation = body.get("operation", "*")
        if not isinstance(operation, str) or operation not in CONTROL_OPERATIONS:
            return _api_error(
                request,
                "parameter_invalid",
                f"operation must be one of {', '.join(CONTROL_OPERATIONS)}.",
                "operation",
            )
        count = body.get("count", 1)
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not (1 <= count <= MAX_FAULT_COUNT)
        ):
            return _api_error(
                request,
                "parameter_invalid",
                f"count must be an integer from 1 to {MAX_FAULT_COUNT}.",
                "count",
            )
        retry_after = body.get("retry_after")
        if retry_after is not None and not _seconds(retry_after):
            return _api_error(
                request,
                "parameter_invalid",
                "retry_after must be a number of seconds, or null.",
                "retry_after",
            )
        processor.add_fault(
            operation, mode, count, float(retry_after) if retry_after is not None else None
        )
        return JSONResponse({"ok": True})

    async def latency(request: Request) -> JSONResponse:
        body = await control_body(request)
        if isinstance(body, JSONResponse):
            return body
        seconds = body.get("seconds", 0.0)
        if not _seconds(seconds) or float(seconds) > MAX_LATENCY_SECONDS:
            return _api_error(
                request,
                "parameter_invalid",
                f"seconds must be a number from 0 to {MAX_LATENCY_SECONDS:g}.",
                "seconds",
            )
        gateway.latency = float(seconds)
        return JSONResponse({"latency": gateway.latency})

    async def charges(request: Request) -> JSONResponse:
        reference = request.query_params.get("reference")
        if not reference:
            return _api_error(
                request, "parameter_missing", "Missing required param: reference.", "reference"
            )
        return JSONResponse({"data": processor.charges_for(reference)})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            error = PaymuxError.of(
                "parameter_invalid", f"{request.method} is not allowed on {request.url.path}."
            )
            error.http_status = 405
            error.request_id = getattr(request.state, "request_id", None)
            return JSONResponse({"error": error.to_dict()}, status_code=405)
        return _api_error(
            request,
            "url_invalid",
            f"Unrecognized request URL ({request.method}: {request.url.path}).",
        )

    routes = [
        Route("/elements", elements),
        Route("/v1/tokens", tokens, methods=["POST"]),
        Route("/3ds/{charge_id}", challenge, methods=["GET", "POST"]),
        Route("/test-cards", test_cards),
        Route("/static/{name}", static),
    ]
    if controls:
        routes += [
            Route("/_control/faults", faults, methods=["POST", "DELETE"]),
            Route("/_control/latency", latency, methods=["POST"]),
            Route("/_control/charges", charges),
        ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    return PageSecurityHeaders(app)


def _seconds(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _challenge_state(charge: dict[str, Any]) -> tuple[str, str]:
    """(heading, text) saying how a charge's challenge ended, from the charge as it stands."""
    status, code = charge.get("status"), charge.get("decline_code")
    if status == "succeeded" and charge.get("object") == "setup_attempt":
        return "Authentication complete", "The card is saved."
    if status in ("succeeded", "requires_capture"):
        return "Authentication complete", "The payment went through."
    if status == "failed" and code == "authentication_failed":
        return "Authentication failed", "The payment was not made."
    if status == "failed":
        return "Authentication complete", f"The card was then declined ({code})."
    if status == "canceled":
        return "Payment canceled", "The payment was canceled; no authentication is needed."
    return "Authentication pending", "The payment still waits for authentication."


def _return_url(charge: dict[str, Any]) -> str | None:
    redirect = (charge.get("next_action") or {}).get("redirect_to_url") or {}
    url = redirect.get("return_url")
    return str(url) if url else None


def _challenge_csp(charge: dict[str, Any]) -> str:
    """The challenge page: never framed; its forms post here, then (a redirect, which
    form-action also governs) to the merchant's return URL."""
    targets = "'self'"
    return_url = _return_url(charge)
    if return_url:
        try:
            parts = urlsplit(return_url)
            origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
        except ValueError:
            origin = None
        if origin:
            targets += f" {origin}"
    return f"{_CSP_BASE}; form-action {targets}; frame-ancestors 'none'"
