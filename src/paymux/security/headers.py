"""The security headers of paymux's web responses, decided in one place.

Every response outside the JSON API (``/docs``, ``/redoc``, the hosted invoice page and its
PDF, the sandbox's pages, their assets) carries ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``; every response that came over TLS, the API's too, carries
``Strict-Transport-Security``. "Over TLS" is the request's scheme as the server saw it: https
itself, or ``X-Forwarded-Proto: https`` from a proxy named in ``PAYMUX_TRUSTED_PROXIES``
(uvicorn rewrites the scheme only for those), so a client can't switch HSTS on over plain
HTTP. An HTML page is never cached, and one that set no Content-Security-Policy of its own
gets the strictest (``frame-ancestors 'none'``) with ``X-Frame-Options: DENY``; a page that
sets its own policy (the docs, the invoice page, the sandbox's framed card form) keeps it.

The sandbox's app wraps itself in ``PageSecurityHeaders`` (it can run on its own); paymux's
app adds the same headers in its guard middleware (``secure_headers``), so no page needs a
list of its own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_PAGE_CSP",
    "HSTS",
    "PAGE_CSP_BASE",
    "PageSecurityHeaders",
    "page_headers",
    "secure_headers",
]

HSTS = "max-age=31536000; includeSubDomains"

# A page's own resources only: no inline script or style, no plugins, no <base>.
PAGE_CSP_BASE = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'"
)
DEFAULT_PAGE_CSP = f"{PAGE_CSP_BASE}; form-action 'self'; frame-ancestors 'none'"

_HSTS_HEADER = (b"strict-transport-security", HSTS.encode())


def page_headers(scheme: str) -> dict[str, str]:
    """The headers every page response gets (HSTS only when it came over TLS)."""
    headers = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
    if scheme == "https":
        headers["strict-transport-security"] = HSTS
    return headers


def secure_headers(
    headers: list[tuple[bytes, bytes]], scheme: str, *, page: bool = True
) -> list[tuple[bytes, bytes]]:
    """``headers`` (a response's, as ASGI sends them) with what is missing of the security
    headers added: ``page`` for a web page or asset, else (the JSON API) HSTS alone over TLS.
    A header the response set itself is kept as it is."""
    if not page:
        if scheme == "https" and all(n.lower() != _HSTS_HEADER[0] for n, _ in headers):
            return [*headers, _HSTS_HEADER]
        return headers
    present = {name.lower() for name, _ in headers}
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), None)
    added = page_headers(scheme)
    if content_type is not None and content_type.lower().startswith(b"text/html"):
        added["cache-control"] = "no-store"
        if b"content-security-policy" not in present:
            added["content-security-policy"] = DEFAULT_PAGE_CSP
            added["x-frame-options"] = "DENY"
    out = list(headers)
    for name, value in added.items():
        if name.encode() not in present:
            out.append((name.encode(), value.encode()))
    return out


class PageSecurityHeaders:
    """ASGI wrapper: ``secure_headers`` on every response of the app it wraps (all pages)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only "https" counts: an absent scheme (ASGI's default is http) is no TLS either.
        scheme = str(scope.get("scheme"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = secure_headers(list(message.get("headers", [])), scheme)
            await send(message)

        await self.app(scope, receive, send_with_headers)
