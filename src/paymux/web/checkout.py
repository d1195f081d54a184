"""The hosted checkout page (a Checkout Session's ``url``), on paymux's own origin:

- ``GET  /c/pay/{session_id}``          the order (line items and total in the payer's
  locale, Babel) and, while the session is open, the routed gateway's own component: the
  sandbox's hosted form in a frame, Stripe.js's card Element, PayPal's JS SDK buttons, or
  Square's Web Payments SDK card form (with ``verifyBuyer``); back from 3-D Secure
  (``?payment_intent=`` / ``?setup_intent=``) it asks the gateway at once and, the session
  complete, sends the payer to ``success_url`` (``{CHECKOUT_SESSION_ID}`` replaced);
- ``POST /c/pay/{session_id}/confirm``  JSON ``{"payment_method": <token from the card
  form>, "verification_token"?: <Square's verifyBuyer token>}``: the shared card-entry
  script (static/card-entry.js) pays with it (for PayPal the token is the approved order);
- ``POST /c/pay/{session_id}/paypal-order`` the PayPal order the buttons' ``createOrder``
  hands PayPal (opened with the session's payment; JSON, the page's origin only);
- ``POST /c/pay/{session_id}/paypal-card-order`` the PayPal order the card fields'
  ``createOrder`` hands PayPal (``paypal.CardFields``, beside the buttons where the session
  takes cards): ours (``custom_id``), 3-D Secure as the payment asks (SCA_WHEN_REQUIRED by
  default); ``onApprove`` confirms with its id, and the authentication result is read
  before the capture;
- ``POST /c/pay/{session_id}/stripe-setup`` in setup mode on Stripe, the client secret of
  Stripe's SetupIntent, for Stripe.js's ``confirmCardSetup`` with the card Element (made by
  confirming the session's SetupIntent without a card); then
  ``POST /c/pay/{session_id}/stripe-setup/outcome``: paymux reads the outcome from Stripe
  and answers as the confirm URL does (the card is saved once, the PaymentMethod Stripe.js
  made);
- ``POST /c/pay/{session_id}/paypal-setup-token`` in setup mode, the PayPal setup token the
  buttons' ``createVaultSetupToken`` hands PayPal (made by confirming the session's
  SetupIntent; ``onApprove`` then posts it to the confirm URL, which saves the wallet);
- ``GET  /_checkout/{file}``            the page's script and style sheet.

No API key: the session id in the URL (30 random characters, about 178 bits, after
``cs_test_``; every id paymux stores fits 40 characters) is the secret, as Stripe's.
Every page carries a strict Content-Security-Policy: scripts only by a per-response nonce
(no ``unsafe-inline``, no host allow-list), each script tag with Subresource Integrity, the
card form the only frame, ``frame-ancestors 'none'``, violations reported to
``/c/csp-reports`` (csp_reports.py). The confirm endpoint takes JSON only and checks
``Origin`` when the browser sends it, so another site cannot make a payer's browser post.

The locale: ``?locale=``, else the session's ``locale``, else Accept-Language, else en_US.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.api.responses import JSONResponse
from paymux.billing.invoice_document import pick_locale
from paymux.checkout import rules
from paymux.checkout.csp_reports import parse_reports
from paymux.checkout.rules import COMPLETE
from paymux.checkout.service import PAGE_PREFIX, PageOutcome
from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.fraud.request import set_browser_payer
from paymux.gateways.browser_sdk import paypal_sdk_url, square_sdk_url
from paymux.money import Money
from paymux.root import Paymux
from paymux.storage.models import Account, CheckoutSession, PaymentIntent, SetupIntent
from paymux.web.checkout_text import text_for

__all__ = [
    "CSP_REPORT_PATH",
    "PAGE_SCRIPTS",
    "STATIC_PREFIX",
    "Component",
    "ProviderSources",
    "checkout_csp",
    "payment_component",
    "router",
    "subresource_integrity",
]

_HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The only files /_checkout serves (read once; no path from the URL reaches the disk).
_FILES = ("card-entry.js", "checkout.css")
_STATIC = {name: (_HERE / "static" / name).read_bytes() for name in _FILES}
STATIC_PREFIX = "/_checkout"
CSP_REPORT_PATH = "/c/csp-reports"
# The scripts the checkout page loads (docs/pci/script-inventory.md lists each, with why).
PAGE_SCRIPTS = ("card-entry.js",)
CARD_FORM_PATH = "/sandbox/elements"
SANDBOX = "sandbox"  # its hosted form, framed from /sandbox/elements
STRIPE = "stripe"  # Stripe.js's card Element
PAYPAL = "paypal"  # the JS SDK's buttons
SQUARE = "square"  # the Web Payments SDK's card form, with verifyBuyer


def subresource_integrity(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


_INTEGRITY = {name: subresource_integrity(body) for name, body in _STATIC.items()}


@dataclass(frozen=True)
class ProviderSources:
    """The origins a provider's browser SDK needs, each only in the directives its CSP guide
    names it in: ``script`` (the SDK), ``connect`` (its calls), ``frame`` (its card form,
    buttons and 3-D Secure frames), ``img`` (its images). ``styled``: the SDK inserts style
    elements, which carry the page's nonce (PayPal's ``data-csp-nonce``)."""

    script: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    frame: tuple[str, ...] = ()
    img: tuple[str, ...] = ()
    styled: bool = False

    def replaced_by(self, origin: str) -> ProviderSources:
        """A stand-in served from ``origin`` (a test's fake SDK on loopback, configured by
        PAYMUX_*_JS_URL / PAYMUX_STRIPE_API_BASE): that origin alone, in the same directives."""
        one = (origin,)
        return ProviderSources(
            script=one if self.script else (),
            connect=one if self.connect else (),
            frame=one if self.frame else (),
            img=one if self.img else (),
            styled=self.styled,
        )


def _sources(found: tuple[str, ...]) -> str:
    return "".join(f" {source}" for source in found)


def checkout_csp(nonce: str, provider: ProviderSources | None = None) -> str:
    """The page's policy: its own style sheet, scripts by nonce only, the gateway's card form
    the only frame, never framed itself. ``provider``: the routed gateway's browser SDK's
    origins (Stripe.js, PayPal's, Square's), each in the directives it needs; None for the
    sandbox, whose form is served on this origin."""
    p = provider or ProviderSources()
    style = f" 'nonce-{nonce}'" if p.styled else ""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'{_sources(p.script)}; "
        f"style-src 'self'{style}; img-src 'self'{_sources(p.img)}; "
        f"connect-src 'self'{_sources(p.connect)}; frame-src 'self'{_sources(p.frame)}; "
        "form-action 'self'; base-uri 'none'; "
        f"frame-ancestors 'none'; report-uri {CSP_REPORT_PATH}"
    )


@dataclass(frozen=True)
class Component:
    """The card-entry component a page (checkout's, the hosted invoice's) loads for the
    gateway its payment goes through (templates/card_entry.html mounts it)."""

    gateway: str
    script: str | None = None  # the provider's SDK (no SRI: the provider versions it)
    sources: ProviderSources | None = None  # its origins, named in the CSP
    publishable_key: str | None = None
    # What the provider's SDK is given (data-* attributes of its mount point): Square's
    # application and location ids, and verifyBuyer's intent (CHARGE, with the amount and
    # currency; STORE in setup mode, where nothing is charged).
    params: tuple[tuple[str, str], ...] = ()
    # PayPal: the JS SDK's card fields beside its buttons (the payment takes cards).
    card_fields: bool = False

    @property
    def styled(self) -> bool:
        return self.sources is not None and self.sources.styled


# Stripe's CSP guide (docs.stripe.com/security/guide#content-security-policy, Stripe.js and
# Elements): Stripe.js from js.stripe.com and its subdomains; its frames from those and
# hooks.stripe.com (the 3-D Secure challenge's frame, inside which the issuer's page runs);
# its calls to api.stripe.com. No image or style of Stripe's on the page itself.
STRIPE_SOURCES = ProviderSources(
    script=("https://js.stripe.com", "https://*.js.stripe.com"),
    connect=("https://api.stripe.com",),
    frame=("https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"),
)


def _stripe_js(settings: Settings) -> tuple[str, ProviderSources]:
    """Stripe.js and its CSP sources: js.stripe.com, or the fake Stripe.js that a Stripe
    stand-in at ``PAYMUX_STRIPE_API_BASE`` serves at the same path (localstripe)."""
    base = (settings.stripe_api_base or "").rstrip("/")
    if not base:
        return "https://js.stripe.com/v3/", STRIPE_SOURCES
    return f"{base}/js.stripe.com/v3/", STRIPE_SOURCES.replaced_by(_origin_of(base))


# PayPal's CSP guide (developer.paypal.com/sdk/js/best-practices, the nonce variant): the SDK,
# its frames (buttons, PayPal's window), its calls and its images from *.paypal.com and
# *.paypalobjects.com; its style elements carry the page's nonce.
_PAYPAL = ("https://*.paypal.com", "https://*.paypalobjects.com")  # www.paypal.com included
PAYPAL_SOURCES = ProviderSources(
    script=_PAYPAL, connect=_PAYPAL, frame=_PAYPAL, img=_PAYPAL, styled=True
)
# Square's CSP guide (developer.squareup.com/docs/web-payments/content-security-policy): the
# SDK from web.squarecdn.com (script-src), its card form framed from there (frame-src), its
# calls to it and to pci-connect (the card) and connect (verifyBuyer's verification) hosts
# (connect-src). verifyBuyer's 3-D Secure frames are another matter: Square's SDK puts
# Cardinal Commerce's device-data frame (*.cardinalcommerce.com) and then the ISSUER's
# challenge page (its access control server, at an origin each issuer chooses, thousands of
# them) in frames on this page. No list can name the issuers, so Square's page allows frames
# from any https origin (``https:``, the scheme alone, which also covers web.squarecdn.com
# and Cardinal's); a frame runs in its own origin and cannot read or script this page, and
# PCI SSC's guidance on 6.4.3 leaves the 3-D Secure frames out of the payment page's script
# inventory. Scripts stay nonce-only and named: no issuer's script runs on this page.
THREE_D_SECURE_FRAMES = ("https:",)
SQUARE_SOURCES = {
    "production": ProviderSources(
        script=("https://web.squarecdn.com",),
        connect=(
            "https://web.squarecdn.com",
            "https://pci-connect.squareup.com",
            "https://connect.squareup.com",
        ),
        frame=THREE_D_SECURE_FRAMES,
    ),
    "sandbox": ProviderSources(
        script=("https://sandbox.web.squarecdn.com",),
        connect=(
            "https://sandbox.web.squarecdn.com",
            "https://pci-connect.squareupsandbox.com",
            "https://connect.squareupsandbox.com",
        ),
        frame=THREE_D_SECURE_FRAMES,
    ),
}


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _paypal_js(
    settings: Settings, client: dict[str, Any], *, card_fields: bool = False
) -> tuple[str, ProviderSources]:
    """PayPal's JS SDK URL for this payment (client id, currency and intent must match the
    order's; gateways/browser_sdk.py, as paymux.js gets it; ``card_fields``: with the card
    fields component) and the CSP's sources (the card fields' frames are PayPal's, already
    in frame-src); ``PAYMUX_PAYPAL_JS_URL`` replaces PayPal's (a test's fake SDK on
    loopback), and its origin alone is named."""
    url = paypal_sdk_url(settings, client, card_fields=card_fields)
    if settings.paypal_js_url:
        return url, PAYPAL_SOURCES.replaced_by(_origin_of(settings.paypal_js_url))
    return url, PAYPAL_SOURCES


def _square_js(settings: Settings, environment: str) -> tuple[str, ProviderSources]:
    """Square's Web Payments SDK and the CSP's sources; ``PAYMUX_SQUARE_JS_URL`` replaces
    Square's, and its origin alone is named."""
    env = "production" if environment == "production" else "sandbox"
    url = square_sdk_url(settings, env)
    if settings.square_js_url:
        return url, SQUARE_SOURCES[env].replaced_by(_origin_of(url))
    return url, SQUARE_SOURCES[env]


router = APIRouter(include_in_schema=False)


def _app(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


def _headers(nonce: str, provider: ProviderSources | None = None) -> dict[str, str]:
    # nosniff, Referrer-Policy, no-store and HSTS over TLS: the guard middleware's.
    return {
        "content-security-policy": checkout_csp(nonce, provider),
        "x-frame-options": "DENY",
        "cache-control": "no-store",
    }


@dataclass(frozen=True)
class _Line:
    description: str
    quantity: int
    unit: str
    amount: str


def _render(
    name: str, status: int, provider: ProviderSources | None = None, **values: Any
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    body = _TEMPLATES.get_template(name).render(
        static=STATIC_PREFIX, nonce=nonce, integrity=_INTEGRITY, **values
    )
    return HTMLResponse(body, status_code=status, headers=_headers(nonce, provider))


def _locale(request: Request, row: CheckoutSession | None) -> str:
    explicit = request.query_params.get("locale") or (row.locale if row else None)
    return pick_locale(explicit, request.headers.get("accept-language"))


def _missing(request: Request) -> HTMLResponse:
    lang, words = text_for(_locale(request, None))
    return _render("checkout_message.html", 404, lang=lang, t=words, kind="missing", back=None)


def _lines(row: CheckoutSession, locale: str) -> list[_Line]:
    out = []
    for item in row.line_items or []:
        currency = str(item["currency"])
        unit = (item.get("price") or {}).get("unit_amount") or 0
        out.append(
            _Line(
                str(item.get("description") or ""),
                int(item["quantity"]),
                Money(int(unit), currency).format(locale),
                Money(int(item["amount_total"]), currency).format(locale),
            )
        )
    return out


async def _merchant(app: Paymux, row: CheckoutSession) -> str:
    async with app.ctx.db.read() as s:
        account = await s.get(Account, row.account_id)
    return account.name if account is not None and account.name else "the merchant"


def _square_component(
    settings: Settings, client: dict[str, Any], verify: tuple[tuple[str, str], ...]
) -> Component | None:
    """Square's card form: its SDK, the application and location ids, and what verifyBuyer
    is asked (``verify``); None without both ids (SQUARE_APPLICATION_ID, the location)."""
    if not client.get("application_id") or not client.get("location_id"):
        return None
    script, sources = _square_js(settings, str(client.get("environment") or "sandbox"))
    ids = (
        ("application-id", str(client["application_id"])),
        ("location-id", str(client["location_id"])),
    )
    return Component(SQUARE, script, sources, params=ids + verify)


async def _setup_component(app: Paymux, row: CheckoutSession, gateway: str) -> Component | None:
    """Setup mode (save a payment method, nothing charged): Stripe.js's card Element (the
    page asks its ``stripe-setup`` URL for the secret of Stripe's SetupIntent, and Stripe.js's
    ``confirmCardSetup`` makes the PaymentMethod, confirms and runs 3-D Secure);
    Square's card form, whose verifyBuyer asks for intent STORE (its verification token goes
    with the card's token to CreateCard); PayPal's buttons saving the payer's wallet (a
    session for ``payment_method_types`` ``[paypal]``: ``createVaultSetupToken`` asks the
    page's ``paypal-setup-token`` URL)."""
    if gateway not in (STRIPE, SQUARE, PAYPAL) or row.setup_intent_id is None:
        return None
    async with app.ctx.db.read() as s:
        si = await s.get(SetupIntent, row.setup_intent_id)
    if si is None:
        return None
    if gateway == PAYPAL and list(si.payment_method_types or []) != ["paypal"]:
        return None  # PayPal's buttons save a wallet; a card saved at PayPal isn't on the page
    try:
        provider = await app.ctx.gateway_of(si)
    except PaymuxError:  # its connection is gone or not configured here: no component
        return None
    client = provider.browser_params(si.id)
    if gateway == STRIPE:
        key = client.get("publishable_key")
        if not key:
            return None
        script, sources = _stripe_js(app.ctx.settings)
        return Component(STRIPE, script, sources, str(key))
    if gateway == PAYPAL:
        if not client.get("client_id"):
            return None
        script, sources = _paypal_js(app.ctx.settings, client)  # the client id alone
        return Component(PAYPAL, script, sources)
    return _square_component(app.ctx.settings, client, (("intent", "STORE"),))


def payment_component(
    settings: Settings,
    gateway: str | None,
    client: dict[str, Any],
    amount: Money,
    *,
    live: bool,
    order_on_demand: bool = False,
    card_fields: bool = False,
) -> Component | None:
    """The card-entry component that takes a payment of ``amount`` through ``gateway``, on
    any of paymux's pages (the checkout page, the hosted invoice page): the sandbox's hosted
    form (test mode, on a deployment that serves it), Stripe.js's card Element (with the
    publishable key), PayPal's buttons (for the order already opened: ``client``'s
    ``order_id``; with ``order_on_demand``, for the order the page's ``createOrder`` opens
    when the payer clicks, a captured one for ``amount``, as the hosted invoice page does) or
    Square's card form (verifyBuyer intent CHARGE, with the amount). ``card_fields``: PayPal's
    card fields too, beside its buttons (the checkout page's). ``client``: what the
    payment's gateway gives the browser (``browser_params`` and the intent's
    ``gateway_client``). None where no component can take it."""
    if gateway == SANDBOX:
        return Component(SANDBOX) if not live and settings.sandbox_enabled else None
    if gateway == STRIPE:
        key = client.get("publishable_key")
        if not key:
            return None
        script, sources = _stripe_js(settings)
        return Component(STRIPE, script, sources, str(key))
    if gateway == PAYPAL:
        if order_on_demand and client.get("client_id"):
            # The SDK's currency and intent must be the order's that createOrder opens.
            client = {**client, "currency": amount.currency, "intent": "capture"}
        elif not client.get("order_id") or not client.get("client_id"):
            return None  # no order opened: nothing for the buttons to approve
        script, sources = _paypal_js(settings, client, card_fields=card_fields)
        # the client id is in its URL
        return Component(PAYPAL, script, sources, card_fields=card_fields)
    if gateway == SQUARE:
        return _square_component(
            settings,
            client,
            (
                ("intent", "CHARGE"),
                ("amount", amount.to_decimal_string()),
                ("currency", amount.currency.upper()),
            ),
        )
    return None


async def _component(app: Paymux, row: CheckoutSession) -> Component | None:
    """The card-entry component for the session's gateway, None where the page has none:
    for a payment, ``payment_component``; in setup mode, ``_setup_component``."""
    gateway = await app.checkout.gateway_of(row)
    settings = app.ctx.settings
    if gateway == SANDBOX:
        return Component(SANDBOX) if not row.livemode and settings.sandbox_enabled else None
    if gateway not in (STRIPE, PAYPAL, SQUARE):
        return None
    if row.mode == "setup":
        return await _setup_component(app, row, gateway)
    if row.mode != "payment" or row.payment_intent_id is None:
        return None
    async with app.ctx.db.read() as s:
        pi = await s.get(PaymentIntent, row.payment_intent_id)
    if pi is None:
        return None
    client = dict(pi.gateway_client or {})
    if gateway != STRIPE:  # Stripe's key is on the intent; the others' from the connection
        try:
            provider = await app.ctx.gateway_of(pi)
        except PaymuxError:  # its connection is gone or not configured here: no component
            return None
        client = {**provider.browser_params(pi.id), **client}
    return payment_component(
        settings,
        gateway,
        client,
        Money(int(pi.amount), pi.currency),
        live=row.livemode,
        card_fields=gateway == PAYPAL and "card" in (row.payment_method_types or ["card"]),
    )


async def _can_pay_here(app: Paymux, row: CheckoutSession) -> bool:
    return await _component(app, row) is not None


@router.get(STATIC_PREFIX + "/{name}")
async def checkout_static(name: str) -> Response:
    body = _STATIC.get(name)
    if body is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return Response(
        body,
        media_type=_TYPES[Path(name).suffix],
        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
    )


@router.get(PAGE_PREFIX + "/{session_id}")
async def checkout_page(session_id: str, request: Request) -> Response:
    app = _app(request)
    row = await app.checkout.page_session(session_id)
    if row is None:
        return _missing(request)
    message = None
    back_from = request.query_params.get("payment_intent") or request.query_params.get(
        "setup_intent"
    )
    if back_from and back_from in (row.payment_intent_id, row.setup_intent_id):
        await app.checkout.refresh_on_return(row)
        row = await app.checkout.page_session(session_id)
        assert row is not None
        if row.status == "open" and (
            request.query_params.get("outcome") == "failed"
            or await app.checkout.page_state(row.id) == PageOutcome("open")
        ):
            message = "auth_failed"  # back, and the intent waits for another card
    success = app.checkout.success_redirect(row)
    locale = _locale(request, row)
    lang, words = text_for(locale)
    if row.status == "complete" and success is not None:
        if back_from:
            # Back from the challenge, whose form's CSP (form-action) governs this response's
            # redirects too: a page that moves on by itself (a 0 s refresh, no script) with
            # a link, rather than a redirect the challenge's policy would stop.
            return _render("checkout_done.html", 200, lang=lang, t=words, success=success)
        return RedirectResponse(success, status_code=303, headers={"cache-control": "no-store"})
    merchant = await _merchant(app, row)
    back = words["back"].format(merchant=merchant) if row.cancel_url else None
    expired = row.status == "expired" or app.ctx.now_us() >= row.expires_us
    if row.status != "open" or expired:
        return _render(
            "checkout_message.html",
            410 if expired else 200,
            lang=lang,
            t=words,
            kind="expired" if expired else "complete",
            back=back,
            cancel_url=row.cancel_url,
        )
    total = (
        Money(int(row.amount_total), str(row.currency)).format(locale)
        if row.amount_total is not None and row.currency
        else None
    )
    component = await _component(app, row)
    return _render(
        "checkout.html",
        200,
        provider=component.sources if component else None,
        component=component,
        lang=lang,
        t=words,
        row=row,
        merchant=merchant,
        lines=_lines(row, locale),
        total=total,
        message=words[message] if message else None,
        pay=component is not None,
        pay_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/confirm",
        order_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/paypal-order",
        card_order_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/paypal-card-order",
        setup_token_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/paypal-setup-token",
        stripe_setup_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/stripe-setup",
        status_url=f"{PAGE_PREFIX}/{quote(row.id, safe='')}/status",
        card_form_url=CARD_FORM_PATH,
        back=back,
        cancel_url=row.cancel_url,
        scripts=PAGE_SCRIPTS,
    )


def _refusal(status: int, code: str, message: str, action: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": "failed", "code": code, "message": message, "action": action},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _page_post_problem(app: Paymux, request: Request) -> JSONResponse | None:
    """The page's own posts: JSON (no form a foreign page could send without CORS) from the
    page's own origin when the browser names one."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return _refusal(415, "parameter_invalid", "Send JSON.")
    origin = request.headers.get("origin")
    if origin is not None and not rules.same_origin(origin, app.ctx.settings.base_url()):
        return _refusal(403, "parameter_invalid", "This page pays from its own origin only.")
    return None


async def _open_paypal_session(
    app: Paymux, request: Request, session_id: str
) -> CheckoutSession | JSONResponse:
    """The open session of a page's PayPal call (from the page's own origin, as JSON), or
    the refusal to answer: no such session, no longer open, not paid through PayPal."""
    problem = _page_post_problem(app, request)
    if problem is not None:
        return problem
    row = await app.checkout.page_session(session_id)
    if row is None:
        return _refusal(404, "resource_missing", "No such checkout session.")
    if row.status != "open" or app.ctx.now_us() >= row.expires_us:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout session is no longer open."
        )
    component = await _component(app, row)
    if component is None or component.gateway != PAYPAL:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout is not paid with PayPal."
        )
    return row


@router.post(PAGE_PREFIX + "/{session_id}/paypal-order")
async def checkout_paypal_order(session_id: str, request: Request) -> JSONResponse:
    """PayPal's buttons' ``createOrder``: the order opened with the session's payment (its
    ``gateway_reference``; the payer approves it in PayPal's window, then ``onApprove``
    confirms with its id). No gateway call: the order exists since the session's create."""
    app = _app(request)
    found = await _open_paypal_session(app, request, session_id)
    if isinstance(found, JSONResponse):
        return found
    row = found
    if row.payment_intent_id is None:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout is not paid with PayPal."
        )
    async with app.ctx.db.read() as s:
        pi = await s.get(PaymentIntent, row.payment_intent_id)
    order_id = (pi.gateway_client or {}).get("order_id") if pi is not None else None
    if not order_id:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout is not paid with PayPal."
        )
    return JSONResponse({"order_id": str(order_id)}, headers={"cache-control": "no-store"})


@router.post(PAGE_PREFIX + "/{session_id}/paypal-card-order")
async def checkout_paypal_card_order(session_id: str, request: Request) -> JSONResponse:
    """PayPal's card fields' ``createOrder``: an order of ours for the session's payment, for
    the card the payer enters in PayPal's fields (opened at PayPal, keyed by the payment and
    its confirmation count: a second click answers the same order, a try after a refusal a
    new one). Every order handed out is a card tried: the payer limits apply."""
    app = _app(request)
    found = await _open_paypal_session(app, request, session_id)
    if isinstance(found, JSONResponse):
        return found
    row = found
    component = await _component(app, row)
    if component is None or not component.card_fields:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout takes no card at PayPal."
        )
    _, words = text_for(_locale(request, row))
    try:
        await app.rate_limiter.check_payer(
            request.client.host if request.client else None,
            row.account_id,
            per_address=app.ctx.settings.checkout_payer_address_limit,
            per_account=app.ctx.settings.checkout_payer_account_limit,
        )
        order_id = await app.checkout.paypal_card_order(session_id)
    except PaymuxError as exc:
        generic = words["rate_limited" if exc.code == "rate_limited" else "failed"]
        return _refusal(exc.http_status, exc.code, exc.user_message or generic, str(exc.action))
    return JSONResponse({"order_id": order_id}, headers={"cache-control": "no-store"})


@router.post(PAGE_PREFIX + "/{session_id}/paypal-setup-token")
async def checkout_paypal_setup_token(session_id: str, request: Request) -> JSONResponse:
    """PayPal's buttons' ``createVaultSetupToken`` in setup mode: the setup token the payer
    approves in PayPal's window (``onApprove`` then posts it to the confirm URL). The first
    call confirms the session's SetupIntent, for which PayPal makes the token (a keyed call,
    outside any transaction); later ones answer the same token."""
    app = _app(request)
    found = await _open_paypal_session(app, request, session_id)
    if isinstance(found, JSONResponse):
        return found
    row = found
    if row.setup_intent_id is None:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout does not save PayPal."
        )
    _, words = text_for(_locale(request, row))
    try:
        token = await app.checkout.paypal_setup_token(session_id, app.checkout.page_url(row.id))
    except PaymuxError as exc:
        return _refusal(exc.http_status, exc.code, exc.user_message or words["failed"])
    return JSONResponse({"setup_token": token}, headers={"cache-control": "no-store"})


async def _open_stripe_setup(
    app: Paymux, request: Request, session_id: str
) -> CheckoutSession | JSONResponse:
    """The open setup-mode session routed to Stripe of a page's Stripe.js call (from the
    page's own origin, as JSON, over HTTPS when live), or the refusal to answer."""
    problem = _page_post_problem(app, request)
    if problem is not None:
        return problem
    row = await app.checkout.page_session(session_id)
    if row is None:
        return _refusal(404, "resource_missing", "No such checkout session.")
    if row.livemode and request.url.scheme != "https":
        return _refusal(403, "tls_required", "A live card is saved over HTTPS only.")
    if row.status == COMPLETE:
        return row  # saved already (a second tab, a lost answer): the caller says so
    if row.status != "open" or app.ctx.now_us() >= row.expires_us:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout session is no longer open."
        )
    component = await _component(app, row)
    if component is None or component.gateway != STRIPE or row.setup_intent_id is None:
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout does not save with Stripe."
        )
    return row


@router.post(PAGE_PREFIX + "/{session_id}/stripe-setup")
async def checkout_stripe_setup(session_id: str, request: Request) -> JSONResponse:
    """Setup mode on Stripe, before Stripe.js's ``confirmCardSetup``: the client secret of
    Stripe's SetupIntent for this session (made on the first call, by confirming the
    session's SetupIntent without a card: a keyed call, outside any transaction) and the
    page's return URL. Only this session's secret, only to this page's origin."""
    app = _app(request)
    found = await _open_stripe_setup(app, request, session_id)
    if isinstance(found, JSONResponse):
        return found
    row = found
    if row.status == COMPLETE:
        return _outcome_answer(app.checkout.success_redirect(row), "complete")
    _, words = text_for(_locale(request, row))
    try:  # card testing: every Stripe SetupIntent handed out is a card tried
        await app.rate_limiter.check_payer(
            request.client.host if request.client else None,
            row.account_id,
            per_address=app.ctx.settings.checkout_payer_address_limit,
            per_account=app.ctx.settings.checkout_payer_account_limit,
        )
        outcome = await app.checkout.stripe_setup_secret(session_id, app.checkout.page_url(row.id))
    except PaymuxError as exc:
        generic = words["rate_limited" if exc.code == "rate_limited" else "failed"]
        return _refusal(exc.http_status, exc.code, exc.user_message or generic, str(exc.action))
    if outcome.status != "requires_action":
        return _outcome_answer(outcome.redirect_url, outcome.status)
    return JSONResponse(
        {
            "status": "requires_action",
            "client_secret": outcome.client_secret,
            "return_url": outcome.return_url,
        },
        headers={"cache-control": "no-store"},
    )


@router.post(PAGE_PREFIX + "/{session_id}/stripe-setup/outcome")
async def checkout_stripe_setup_outcome(session_id: str, request: Request) -> JSONResponse:
    """After Stripe.js's ``confirmCardSetup``: paymux reads the outcome from Stripe (never
    the browser's word) and answers as the confirm URL does: complete (with where to go),
    a decline or failed challenge (the taxonomy's message and action), or requires_action
    (Stripe still waits for the payer)."""
    app = _app(request)
    found = await _open_stripe_setup(app, request, session_id)
    if isinstance(found, JSONResponse):
        return found
    _, words = text_for(_locale(request, found))
    try:
        outcome = await app.checkout.stripe_setup_outcome(session_id)
    except PaymuxError as exc:
        return _refusal(
            exc.http_status, exc.code, exc.user_message or words["failed"], str(exc.action)
        )
    return _outcome_answer(outcome.redirect_url, outcome.status)


@router.post(PAGE_PREFIX + "/{session_id}/confirm")
async def checkout_confirm(session_id: str, request: Request) -> JSONResponse:
    app = _app(request)
    problem = _page_post_problem(app, request)
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
    row = await app.checkout.page_session(session_id)
    if row is None:
        return _refusal(404, "resource_missing", "No such checkout session.")
    if row.livemode and request.url.scheme != "https":  # proxy-told scheme: uvicorn's
        return _refusal(403, "tls_required", "A live payment is made over HTTPS only.")
    if row.status == COMPLETE:  # a lost answer, or a second tab: paid already, say so
        return _outcome_answer(app.checkout.success_redirect(row), "complete")
    if not await _can_pay_here(app, row):
        return _refusal(
            400, "checkout_session_unexpected_state", "This checkout cannot be paid here."
        )
    try:  # card testing across sessions: every card sent counts, whatever comes of it
        await app.rate_limiter.check_payer(
            request.client.host if request.client else None,
            row.account_id,
            per_address=app.ctx.settings.checkout_payer_address_limit,
            per_account=app.ctx.settings.checkout_payer_account_limit,
        )
    except PaymuxError as exc:
        return _refusal(
            exc.http_status, exc.code, text_for(_locale(request, row))[1]["rate_limited"]
        )
    set_browser_payer(  # the payer's browser, for the fraud rules (fraud/request.py)
        request.headers,
        request.client.host if request.client else None,
        behind_trusted_proxy=bool(app.ctx.settings.trusted_proxy_list()),
    )
    _, words = text_for(_locale(request, row))
    return_url = app.checkout.page_url(row.id)
    try:
        outcome = await app.checkout.pay_from_page(
            session_id, card, return_url, verification_token=verification
        )
    except PaymuxError as exc:
        # Another tab paid, or this one's first answer was lost: what stands now, not a
        # failure shown to a payer who paid.
        state = await app.checkout.page_state(session_id)
        if state is not None and state.status in ("complete", "processing"):
            return _outcome_answer(state.redirect_url, state.status)
        # Words for the payer only: the taxonomy's user_message, else the page's own (an
        # API message may name parameters and internals).
        generic = words["rate_limited" if exc.code == "rate_limited" else "failed"]
        shown = exc.user_message or generic
        return _refusal(exc.http_status, exc.code, shown, str(exc.action))
    if outcome.status == "open":
        return JSONResponse(
            {"status": "open", "message": words["failed"], "action": "retry"},
            headers={"cache-control": "no-store"},
        )
    if outcome.status == "requires_action" and outcome.redirect_url is None:
        # Stripe's 3-D Secure: Stripe.js shows the challenge (confirmCardPayment with the
        # secret), then the page returns to ``return_url`` (which asks Stripe at once).
        # Never "retry": the payment waits for the payer's authentication.
        return JSONResponse(
            {
                "status": "requires_action",
                "client_secret": outcome.client_secret,
                "return_url": outcome.return_url,
            },
            headers={"cache-control": "no-store"},
        )
    return _outcome_answer(outcome.redirect_url, outcome.status)


def _outcome_answer(redirect_url: str | None, status: str) -> JSONResponse:
    answer: dict[str, Any] = {"status": status}
    if redirect_url:
        answer["redirect_url"] = redirect_url
    return JSONResponse(answer, headers={"cache-control": "no-store"})


@router.get(PAGE_PREFIX + "/{session_id}/status")
async def checkout_status(session_id: str, request: Request) -> JSONResponse:
    """Where the page's session stands (the page asks while its payment is processing):
    ``{"status": complete|processing|requires_action|open|expired, "redirect_url"?}``;
    never a card, never an amount."""
    state = await _app(request).checkout.page_state(session_id)
    if state is None:
        return _refusal(404, "resource_missing", "No such checkout session.")
    return _outcome_answer(state.redirect_url, state.status)


@router.post(CSP_REPORT_PATH)
async def csp_report(request: Request) -> Response:
    """Browsers' CSP violation reports (any of paymux's pages): kept for the operator
    (``GET /v1/admin/csp_reports``). Always 204: a browser does nothing with the answer."""
    app = _app(request)
    body = await request.body()
    found = parse_reports(body, request.headers.get("content-type", ""))
    if found:
        await app.csp_reports.record(found, request.client.host if request.client else None)
    return Response(status_code=204)
