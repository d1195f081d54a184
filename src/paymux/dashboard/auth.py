"""Who is signed in: ``require_role(*roles)``, a FastAPI dependency giving the ``CurrentUser``.

- No session (no cookie, an unknown one, idle or absolute timeout): ``LoginRequired``, which
  the dashboard answers with a redirect to ``/dashboard/login?next=<path>``.
- A role not among ``roles`` (none given: any role): ``Forbidden``, a 403 page.
- A POST: its form's ``csrf_token`` must equal the session's (``CsrfRefused``, a 403 page,
  otherwise), and an ``Origin`` header, when the browser sends one, must be this host.
- A NUL character in the path, the query or a form field: ``BadInput``, a 400 page (no
  stored value holds one, and PostgreSQL refuses one in a query).
- The session's mode (test or live) is set for the services (``current_livemode``), as an
  API key's is: what the page lists and does is of that mode only.

Role sets: ``ANY`` (every role), ``MONEY`` (refund, capture, cancel, reviews: admin and
support), ``DEVELOPERS`` (keys, webhooks, fraud rules, test clocks: admin and developer),
``ADMIN`` (subscription and invoice actions).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from paymux.root import Paymux
from paymux.services.context import current_livemode
from paymux.services.dashboard_users import ROLES, DashboardUsers, SessionInfo

__all__ = [
    "ADMIN",
    "ANY",
    "CSRF_FIELD",
    "DEVELOPERS",
    "LOGIN_COOKIE",
    "MONEY",
    "SESSION_COOKIE",
    "BadInput",
    "CsrfRefused",
    "CurrentUser",
    "Forbidden",
    "LoginRequired",
    "check_origin",
    "core",
    "require_role",
    "users_of",
]

ANY = ROLES
MONEY = ("admin", "support")
DEVELOPERS = ("admin", "developer")
ADMIN = ("admin",)
SESSION_COOKIE = "paymux_dashboard"
LOGIN_COOKIE = "paymux_dashboard_login"  # the sign-in form's CSRF token (before a session)
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__("login required")
        self.next_path = next_path


class Forbidden(Exception):
    """The signed-in user's role may not do this."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token, or from another origin."""


class BadInput(Exception):
    """A NUL character in the request's path, query or form."""


def _has_nul(request: Request, form: Any | None) -> bool:
    texts = [request.url.path, *request.query_params.keys(), *request.query_params.values()]
    if form is not None:
        texts += [v for k, v in form.multi_items() if isinstance(v, str)] + list(form.keys())
    return any("\x00" in t for t in texts)


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    email: str
    role: str
    account_id: str
    livemode: bool
    csrf_token: str
    session_id: str

    @property
    def actor(self) -> str:
        """How the audit log names this user."""
        return f"dashboard:{self.email}"[:64]

    def can(self, roles: tuple[str, ...]) -> bool:
        return self.role in roles

    @classmethod
    def of(cls, info: SessionInfo) -> CurrentUser:
        return cls(
            info.user_id,
            info.email,
            info.role,
            info.account_id,
            info.livemode,
            info.csrf_token,
            info.session_id,
        )


def core(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


def users_of(request: Request) -> DashboardUsers:
    """The users service of this app (made once, on the Paymux's context and keyring)."""
    state = request.app.state
    found: DashboardUsers | None = getattr(state, "dashboard_users", None)
    if found is None:
        app = core(request)
        found = DashboardUsers(app.ctx, app.connections.keyring)
        state.dashboard_users = found
    return found


def check_origin(request: Request) -> bool:
    """No Origin header (a same-origin form post may send none), or this very host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


def require_role(*roles: str) -> Callable[[Request], Awaitable[CurrentUser]]:
    allowed = tuple(roles) or ANY

    async def current_user(request: Request) -> CurrentUser:
        token = request.cookies.get(SESSION_COOKIE, "")
        info = await users_of(request).session(token) if token else None
        if info is None:
            raise LoginRequired(request.url.path if request.method == "GET" else "")
        user = CurrentUser.of(info)
        form = await request.form() if request.method == "POST" else None
        if form is not None:
            sent = form.get(CSRF_FIELD)
            if (
                not isinstance(sent, str)
                or not hmac.compare_digest(sent.encode(), user.csrf_token.encode())
                or not check_origin(request)
            ):
                raise CsrfRefused()
        if not user.can(allowed):
            raise Forbidden()
        if _has_nul(request, form):
            raise BadInput()
        current_livemode.set(user.livemode)
        return user

    return current_user
