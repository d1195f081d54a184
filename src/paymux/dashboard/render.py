"""Rendering a dashboard page: Jinja2 (autoescaped), a fresh CSP nonce per response, the
signed-in user's CSRF token in the context, the checkout pages' security headers.

``render(request, "dashboard/payments.html", user=user, **values)``: templates live in
``dashboard/templates/`` (name them ``dashboard/<page>.html``) and extend
``dashboard/base.html``. Every template gets ``nonce``, ``csrf_token``, ``user``, ``mode``
(``"test"``/``"live"``), ``static`` (the static prefix), ``path`` (the request's path, for
the nav) and the helpers ``money(amount, currency)`` and ``when(epoch_seconds)``. Forms use
the ``csrf_field()`` macro of ``dashboard/_macros.html``.

Static files: ``/dashboard/static/<name>``, only the files in ``dashboard/static/`` (read
once at import; no path from the URL reaches the disk).
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.dashboard.auth import CurrentUser
from paymux.dashboard.nav import nav_for
from paymux.dashboard.render_paths import PREFIX, STATIC_PREFIX
from paymux.money import Money

__all__ = [
    "PREFIX",
    "STATIC_PREFIX",
    "dashboard_csp",
    "money",
    "render",
    "static_file",
    "when",
]

_HERE = Path(__file__).parent
_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_STATIC = {
    p.name: p.read_bytes()
    for p in sorted((_HERE / "static").glob("*"))
    if p.is_file() and p.suffix in _TYPES
}


def dashboard_csp(nonce: str) -> str:
    """Scripts by nonce only, this origin's style sheets and images, never framed."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def money(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return ""
    return Money(int(amount), currency).format("en_US")


def when(epoch_seconds: int | None) -> str:
    if epoch_seconds is None:
        return ""
    return datetime.fromtimestamp(int(epoch_seconds), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# The CSRF token of the page being rendered (set around each render: the form macro reads it,
# imported with or without the template's context).
_CSRF: ContextVar[str] = ContextVar("dashboard_csrf", default="")


def current_csrf_token() -> str:
    return _CSRF.get()


_ENV.globals.update(
    money=money,
    when=when,
    static=STATIC_PREFIX,
    prefix=PREFIX,
    current_csrf_token=current_csrf_token,
)


def render(
    request: Request,
    template: str,
    *,
    user: CurrentUser | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    csrf = user.csrf_token if user else str(context.pop("csrf_token", ""))
    token = _CSRF.set(csrf)
    try:
        body = _render_body(template, nonce, csrf, user, request, context)
    finally:
        _CSRF.reset(token)
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "content-security-policy": dashboard_csp(nonce),
            "x-frame-options": "DENY",
            "cache-control": "no-store",
            # Not no-referrer (the other pages'): with it a browser sends ``Origin: null`` on
            # this page's own form posts, and the CSRF check needs the real origin. The
            # referrer never leaves the origin either way.
            "referrer-policy": "same-origin",
        },
    )


def _render_body(
    template: str,
    nonce: str,
    csrf: str,
    user: CurrentUser | None,
    request: Request,
    context: dict[str, Any],
) -> str:
    return _ENV.get_template(template).render(
        nonce=nonce,
        csrf_token=csrf,
        user=user,
        mode=("live" if user.livemode else "test") if user else "test",
        path=request.url.path,
        nav=nav_for(user),
        **context,
    )


def static_file(name: str) -> Response:
    body = _STATIC.get(name)
    if body is None:
        return Response("not found", status_code=404, media_type="text/plain")
    suffix = name[name.rfind(".") :]
    return Response(
        body, media_type=_TYPES[suffix], headers={"cache-control": "public, max-age=3600"}
    )
