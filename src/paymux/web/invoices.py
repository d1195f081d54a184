"""The hosted invoice page and its PDF, on paymux's own origin (``hosted_invoice_url``,
``invoice_pdf``):

- ``GET  /invoices/{token}``       the invoice for people: the merchant, number, dates, lines,
  discounts, tax and totals in the reader's locale (billing/invoice_document.py), its status,
  and for an open test-mode invoice a way to pay it: the gateway's own card form in a frame
  (the sandbox's, the one gateway with a hosted form today), 3-D Secure included;
- ``GET  /invoices/{token}/pdf``   the same as a PDF (billing/pdf.py);
- ``POST /invoices/{token}/pay``   JSON ``{"payment_method": <token from the card form>}``:
  the page's script pays with it (billing/hosted_payments.py);
- ``GET  /_invoice/{file}``        the page's script and style sheet.

No API key: the token in the URL is the secret (40 random characters), and a draft has none
to show. An unknown token is a 404 page. Every page carries a Content-Security-Policy without
``unsafe-inline`` (the only frame it loads is the card form, from this origin), is never
cached and never framed. The pay endpoint takes JSON only and checks ``Origin`` when the
browser sends it, so another site cannot make a payer's browser post to it.

The locale: ``?locale=`` (``de``, ``de-DE``), else the browser's Accept-Language, else en_US.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from paymux.billing.catalog_views import decimal_number
from paymux.billing.hosted_payments import (
    invoice_by_token,
    pay_from_page,
    refresh_on_return,
)
from paymux.billing.invoice_document import InvoiceDocument, invoice_document, pick_locale
from paymux.domain.errors import PaymuxError
from paymux.fraud.request import set_browser_payer
from paymux.services import Paymux
from paymux.storage.models import Account, Customer, Invoice, TaxRate

__all__ = ["INVOICE_PAGE_CSP", "router"]

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
INVOICE_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; report-uri /c/csp-reports"  # web/checkout.py's CSP_REPORT_PATH
)
# nosniff, Referrer-Policy, no-store and HSTS over TLS: the guard middleware's
# (security/headers.py), as on every page.
_PAGE_HEADERS = {"content-security-policy": INVOICE_PAGE_CSP, "x-frame-options": "DENY"}
_TOKEN_MAX = 64

router = APIRouter(include_in_schema=False)


def _app(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


def _missing() -> HTMLResponse:
    body = _TEMPLATES.get_template("invoice_missing.html").render(static=STATIC_PREFIX)
    return HTMLResponse(body, status_code=404, headers=_PAGE_HEADERS)


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


def _can_pay_here(app: Paymux, invoice: Invoice, doc: InvoiceDocument) -> bool:
    """The page takes a card where the gateway's hosted form exists: the sandbox, so a test
    mode invoice on a deployment that serves it."""
    return doc.payable and not invoice.livemode and bool(app.ctx.settings.sandbox_enabled)


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
    pay = _can_pay_here(app, invoice, doc)
    body = _TEMPLATES.get_template("invoice.html").render(
        doc=doc,
        lang=locale.split("_", 1)[0],
        static=STATIC_PREFIX,
        message=message,
        pay=pay,
        pay_url=f"/invoices/{quote(token, safe='')}/pay",
        pdf_url=f"/invoices/{quote(token, safe='')}/pdf?locale={quote(locale)}",
        card_form_url="/sandbox/elements",
        integrity=_INTEGRITY,
    )
    return HTMLResponse(body, headers=_PAGE_HEADERS)


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


@router.post("/invoices/{token}/pay")
async def invoice_pay(token: str, request: Request) -> JSONResponse:
    app = _app(request)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return _refusal(415, "parameter_invalid", "Send JSON.")
    origin = request.headers.get("origin")
    ours = urlsplit(app.ctx.settings.base_url())
    if origin is not None and origin != f"{ours.scheme}://{ours.netloc}":
        return _refusal(403, "parameter_invalid", "This page pays from its own origin only.")
    try:
        raw: Any = json.loads(await request.body())
    except ValueError:
        return _refusal(400, "parameter_invalid", "The body is not JSON.")
    card = raw.get("payment_method") if isinstance(raw, dict) else None
    if not isinstance(card, str) or not 1 <= len(card) <= 255:
        return _refusal(400, "parameter_missing", "A payment_method token is required.")
    invoice = await invoice_by_token(app, token) if len(token) <= _TOKEN_MAX else None
    if invoice is None:
        return _refusal(404, "resource_missing", "No such invoice.")
    doc_payable = invoice.status == "open" and invoice.amount_remaining > 0
    if not doc_payable or invoice.livemode or not app.ctx.settings.sandbox_enabled:
        return _refusal(400, "invoice_unexpected_state", "This invoice cannot be paid here.")
    set_browser_payer(  # the payer's browser, for the fraud rules (fraud/request.py)
        request.headers,
        request.client.host if request.client else None,
        behind_trusted_proxy=bool(app.ctx.settings.trusted_proxy_list()),
    )
    try:
        outcome = await pay_from_page(app, token, card, _page_url(app, token))
    except PaymuxError as exc:
        message = exc.user_message or exc.message
        return _refusal(exc.http_status, exc.code, message)
    answer: dict[str, Any] = {"status": outcome.status}
    if outcome.redirect_url:
        answer["redirect_url"] = outcome.redirect_url
    if outcome.status == "open":
        answer["message"] = "The payment did not go through. Try another card."
    return JSONResponse(answer, headers={"cache-control": "no-store"})
