"""The hosted invoice page and its PDF, on paymux's own origin (``hosted_invoice_url``,
``invoice_pdf``):

- ``GET  /invoices/{token}``       the invoice for people: the merchant, number, dates, lines,
  discounts, tax and totals in the reader's locale (billing/invoice_document.py), its status,
  and for an open invoice a way to pay it through the card-entry component of the gateway
  its payment goes to (``hosted_payments.page_gateway``), mounted as the checkout page mounts
  it (web/checkout.py's ``payment_component``, templates/card_entry.html,
  static/card-entry.js): the sandbox's form in a frame (test mode), Stripe.js's card
  Element, PayPal's buttons, Square's card form with verifyBuyer; 3-D Secure included;
- ``GET  /invoices/{token}/pdf``   the same as a PDF (billing/pdf.py);
- ``POST /invoices/{token}/pay``   JSON ``{"payment_method": <token from the card form>,
  "verification_token"?: <Square's verifyBuyer token>}``: the page's script pays with it
  (billing/hosted_payments.py); an invoice paid already is refused (400
  ``invoice_unexpected_state``), nothing charged again; for PayPal the token is the
  approved order, only the one the next endpoint opened for the invoice;
- ``POST /invoices/{token}/paypal-order`` the PayPal order the buttons' ``createOrder`` hands
  PayPal, opened for what is due (``hosted_payments.paypal_order``; JSON, the page's origin
  only): ``{"order_id": ...}``, the same one when asked again;
- ``GET  /_invoice/{file}``        the page's script and style sheet.

No API key: the token in the URL is the secret (40 random characters), and a draft has none
to show. An unknown token is a 404 page. Every page carries the checkout page's strict
Content-Security-Policy (``checkout_csp``: scripts by a per-response nonce, each of paymux's
with Subresource Integrity, the routed provider's origins only where its SDK needs them), is
never cached and never framed. The pay and order endpoints take JSON only and check ``Origin`` when
the browser sends it, so another site cannot make a payer's browser post to it; a live
invoice is paid over HTTPS only.

The locale: ``?locale=`` (``de``, ``de-DE``), else the browser's Accept-Language, else en_US.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from paymux.api.responses import JSONResponse
from paymux.billing.catalog_views import decimal_number
from paymux.billing.hosted_payments import (
    invoice_by_token,
    page_gateway,
    pay_from_page,
    paypal_order,
    refresh_on_return,
)
from paymux.billing.invoice_document import InvoiceDocument, invoice_document, pick_locale
from paymux.domain.errors import PaymuxError
from paymux.fraud.request import set_browser_payer
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from paymux.money import Money
from paymux.root import Paymux
from paymux.storage.models import Account, Customer, Invoice, TaxRate
from paymux.web.checkout import PAYPAL, Component, checkout_csp, payment_component
from paymux.web.checkout_text import text_for

__all__ = ["invoice_csp", "router"]

_HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_STATIC = {
    path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
    for path in sorted((_HERE / "static").iterdir())
    if path.suffix in _STATIC_TYPES
}
STATIC_PREFIX = "/_invoice"
# Subresource Integrity of each file (sha384), on the page's script and style sheet tags.
_INTEGRITY = {
    name: "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    for name, (body, _) in _STATIC.items()
}
_TOKEN_MAX = 64


def invoice_csp(nonce: str, component: Component | None) -> str:
    """The page's policy: the checkout page's (web/checkout.py), with the routed provider's
    origins where its component needs them."""
    return checkout_csp(nonce, component.sources if component else None)


def _page_headers(nonce: str, component: Component | None = None) -> dict[str, str]:
    # nosniff, Referrer-Policy, no-store and HSTS over TLS: the guard middleware's
    # (security/headers.py), as on every page.
    return {"content-security-policy": invoice_csp(nonce, component), "x-frame-options": "DENY"}


router = APIRouter(include_in_schema=False)


def _app(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


def _missing() -> HTMLResponse:
    body = _TEMPLATES.get_template("invoice_missing.html").render(static=STATIC_PREFIX)
    return HTMLResponse(body, status_code=404, headers=_page_headers(secrets.token_urlsafe(18)))


async def _document(app: Paymux, invoice: Invoice, locale: str) -> InvoiceDocument:
    async with app.ctx.db.read() as s:
        account = await s.get(Account, invoice.account_id)
        customer = await s.get(Customer, invoice.customer_id)
        view = await app.invoices.view_in(s, invoice)
        rate_ids = {str(t.get("tax_rate")) for t in view.get("total_tax_amounts") or []}
        labels: dict[str, str] = {}
        if rate_ids:
            rows = await s.execute(select(TaxRate).where(TaxRate.id.in_(rate_ids)))
            for rate in rows.scalars():
                labels[rate.id] = f"{rate.display_name} {decimal_number(rate.percentage)}%"
    who = None
    if customer is not None:
        who = customer.name or customer.email
    return invoice_document(
        view,
        account.name if account is not None else "",
        locale,
        tax_rate_labels=labels,
        customer_label=who,
    )


def _page_url(app: Paymux, token: str) -> str:
    return f"{app.ctx.settings.base_url().rstrip('/')}/invoices/{quote(token, safe='')}"


async def _component(app: Paymux, invoice: Invoice) -> Component | None:
    """The card-entry component that takes what the open invoice's payer owes, as the
    checkout page's takes a payment; None where there is nothing to pay or no component can
    take it. PayPal's buttons ask the page's order endpoint for their order when clicked."""
    if invoice.status != "open" or invoice.amount_remaining <= 0:
        return None
    found = await page_gateway(app, invoice)
    if found is None:
        return None
    due = Money(int(invoice.amount_remaining), invoice.currency)
    return payment_component(
        app.ctx.settings,
        found.name,
        found.client,
        due,
        live=invoice.livemode,
        order_on_demand=found.name == PAYPAL,
    )


@router.get("/_invoice/{name}")
async def invoice_static(name: str) -> Response:
    found = _STATIC.get(name)
    if found is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    body, media_type = found
    return Response(
        body,
        media_type=media_type,
        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
    )


@router.get("/invoices/{token}")
async def invoice_page(token: str, request: Request) -> HTMLResponse:
    app = _app(request)
    invoice = await invoice_by_token(app, token) if len(token) <= _TOKEN_MAX else None
    if invoice is None:
        return _missing()
    back_from = request.query_params.get("payment_intent")
    message = None
    if back_from:
        await refresh_on_return(app, invoice, back_from)
        invoice = await invoice_by_token(app, token)
        assert invoice is not None
        if invoice.status == "open" and request.query_params.get("outcome") == "failed":
            message = "The card's authentication failed. Try again or use another card."
    locale = pick_locale(request.query_params.get("locale"), request.headers.get("accept-language"))
    doc = await _document(app, invoice, locale)
    component = await _component(app, invoice) if doc.payable else None
    nonce = secrets.token_urlsafe(18)
    body = _TEMPLATES.get_template("invoice.html").render(
        doc=doc,
        lang=locale.split("_", 1)[0],
        static=STATIC_PREFIX,
        message=message,
        pay=component is not None,
        component=component,
        nonce=nonce,
        t=text_for(locale)[1],
        setup=False,
        pay_label=f"Pay {doc.amount_due}",
        # The gateway whose form the page mounts: a payment routed elsewhere meanwhile (a
        # dunning try waiting on another gateway) is refused, never sent another's token.
        pay_url=f"/invoices/{quote(token, safe='')}/pay"
        + (f"?gateway={quote(component.gateway)}" if component is not None else ""),
        pdf_url=f"/invoices/{quote(token, safe='')}/pdf?locale={quote(locale)}",
        order_url=f"/invoices/{quote(token, safe='')}/paypal-order",
        card_form_url="/sandbox/elements",
        integrity=_INTEGRITY,
    )
    return HTMLResponse(body, headers=_page_headers(nonce, component))


@router.get("/invoices/{token}/pdf")
async def invoice_pdf_file(token: str, request: Request) -> Response:
    app = _app(request)
    invoice = await invoice_by_token(app, token) if len(token) <= _TOKEN_MAX else None
    if invoice is None:
        return _missing()
    locale = pick_locale(request.query_params.get("locale"), request.headers.get("accept-language"))
    doc = await _document(app, invoice, locale)
    name = f"Invoice-{doc.number}.pdf".replace('"', "")
    return Response(
        await asyncio.to_thread(_draw_pdf, doc),
        media_type="application/pdf",
        headers={
            "content-disposition": f'inline; filename="{name}"',
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
        },
    )


def _draw_pdf(doc: InvoiceDocument) -> bytes:
    """The PDF, drawn in a thread: drawing (and, the first time, importing ReportLab, about
    0.4 s) would otherwise hold every request of the process. Imported here, not at start:
    ReportLab and the PIL it pulls in are about 6 MiB of every API process's memory, and
    only this page draws PDFs."""
    from paymux.billing.pdf import render_pdf

    return render_pdf(doc)


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"status": "failed", "code": code, "message": message},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _gateway_down() -> JSONResponse:
    """The gateway could not be reached before anything was recorded (opening the order,
    describing the payment method): retryable, as the API answers it (api/deps.py)."""
    down = PaymuxError.of("gateway_unavailable")
    return _refusal(
        down.http_status, down.code, "The payment provider could not be reached. Try again."
    )


def _post_problem(app: Paymux, request: Request) -> JSONResponse | None:
    """The page's own posts: JSON (no form a foreign page could send without CORS) from the
    page's own origin when the browser names one."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return _refusal(415, "parameter_invalid", "Send JSON.")
    origin = request.headers.get("origin")
    ours = urlsplit(app.ctx.settings.base_url())
    if origin is not None and origin != f"{ours.scheme}://{ours.netloc}":
        return _refusal(403, "parameter_invalid", "This page pays from its own origin only.")
    return None


@router.post("/invoices/{token}/paypal-order")
async def invoice_paypal_order(token: str, request: Request) -> JSONResponse:
    """PayPal's buttons' ``createOrder``: the order for what the invoice's payer owes (opened
    at PayPal the first time, outside any transaction, under a key derived from the invoice
    and its intent); the payer approves it in PayPal's window, then ``onApprove`` pays with
    its id at ``/invoices/{token}/pay``."""
    app = _app(request)
    problem = _post_problem(app, request)
    if problem is not None:
        return problem
    invoice = await invoice_by_token(app, token) if len(token) <= _TOKEN_MAX else None
    if invoice is None:
        return _refusal(404, "resource_missing", "No such invoice.")
    if invoice.livemode and request.url.scheme != "https":
        return _refusal(403, "tls_required", "A live payment is made over HTTPS only.")
    component = await _component(app, invoice)
    if component is None or component.gateway != PAYPAL:
        return _refusal(400, "invoice_unexpected_state", "This invoice is not paid with PayPal.")
    try:
        order_id = await paypal_order(app, token)
    except PaymuxError as exc:
        return _refusal(exc.http_status, exc.code, exc.user_message or exc.message)
    except (GatewayUnavailable, GatewayRateLimited):
        return _gateway_down()
    return JSONResponse({"order_id": order_id}, headers={"cache-control": "no-store"})


@router.post("/invoices/{token}/pay")
async def invoice_pay(token: str, request: Request) -> JSONResponse:
    app = _app(request)
    problem = _post_problem(app, request)
    if problem is not None:
        return problem
    try:
        raw: Any = json.loads(await request.body())
    except ValueError:
        return _refusal(400, "parameter_invalid", "The body is not JSON.")
    card = raw.get("payment_method") if isinstance(raw, dict) else None
    if not isinstance(card, str) or not 1 <= len(card) <= 255:
        return _refusal(400, "parameter_missing", "A payment_method token is required.")
    verification = raw.get("verification_token")  # Square's verifyBuyer token, if any
    if verification is not None and (
        not isinstance(verification, str) or not 1 <= len(verification) <= 2048
    ):
        return _refusal(400, "parameter_invalid", "The verification_token is not valid.")
    invoice = await invoice_by_token(app, token) if len(token) <= _TOKEN_MAX else None
    if invoice is None:
        return _refusal(404, "resource_missing", "No such invoice.")
    if invoice.livemode and request.url.scheme != "https":  # proxy-told scheme: uvicorn's
        return _refusal(403, "tls_required", "A live payment is made over HTTPS only.")
    if await _component(app, invoice) is None:
        return _refusal(400, "invoice_unexpected_state", "This invoice cannot be paid here.")
    set_browser_payer(  # the payer's browser, for the fraud rules (fraud/request.py)
        request.headers,
        request.client.host if request.client else None,
        behind_trusted_proxy=bool(app.ctx.settings.trusted_proxy_list()),
    )
    try:
        outcome = await pay_from_page(
            app,
            token,
            card,
            _page_url(app, token),
            verification_token=verification,
            form_gateway=request.query_params.get("gateway"),
        )
    except PaymuxError as exc:
        message = exc.user_message or exc.message
        return _refusal(exc.http_status, exc.code, message)
    except (GatewayUnavailable, GatewayRateLimited):
        return _gateway_down()
    answer: dict[str, Any] = {"status": outcome.status}
    if outcome.redirect_url:
        answer["redirect_url"] = outcome.redirect_url
    elif outcome.status == "requires_action" and outcome.return_url:
        # Stripe's 3-D Secure: Stripe.js shows the challenge with the secret, then the page
        # goes back to itself (``?payment_intent=``), which asks Stripe.
        answer["client_secret"] = outcome.client_secret
        answer["return_url"] = outcome.return_url
    if outcome.status == "open":
        answer["message"] = "The payment did not go through. Try another card."
    elif outcome.status == "processing":  # never "try another card": it may yet be paid
        answer["message"] = (
            "The payment is being processed. Reload this page in a minute to see whether "
            "it went through; do not pay again."
        )
    return JSONResponse(answer, headers={"cache-control": "no-store"})
