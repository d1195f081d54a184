"""Signing in and out, and the test/live switch.

The sign-in form carries its own CSRF token (a random value in a short-lived cookie and in a
hidden field: there is no session yet to hold one); a sign-in from another origin or without
the token is refused. The session cookie: HttpOnly, SameSite=Strict, path /dashboard, Secure
when the request came over TLS.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paymux.api.deps import client_address
from paymux.dashboard.auth import (
    ANY,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    check_origin,
    core,
    require_role,
    users_of,
)
from paymux.dashboard.render import PREFIX, render
from paymux.services.dashboard_users import ABSOLUTE_US, LoginRefused

__all__ = ["router"]

router = APIRouter()

_MESSAGES = {
    "invalid": "That e-mail, password and code do not match. Try again.",
    "locked": "Too many failed attempts. Wait 15 minutes, then try again.",
}


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if (
        value
        and value.startswith(PREFIX)
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()
    ):
        return value
    return PREFIX


def _login_page(
    request: Request, *, status: int = 200, error: str | None = None, email: str = ""
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "dashboard/login.html",
        status=status,
        error=error,
        email=email,
        login_csrf=token,
        next=_safe_next(request.query_params.get("next")),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    sent = str(form.get("csrf_token") or "")
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if (
        not expected
        or not hmac.compare_digest(sent.encode(), expected.encode())
        or (not check_origin(request))
    ):
        return render(
            request,
            "dashboard/message.html",
            status=403,
            title="Not allowed",
            message="This sign-in form has expired. Reload the page and try again.",
        )
    email = str(form.get("email") or "")
    try:
        token = await users_of(request).login(
            email,
            str(form.get("password") or ""),
            str(form.get("code") or ""),
            client_address(request),
        )
    except LoginRefused as refused:
        status = 429 if refused.reason == "locked" else 401
        return _login_page(request, status=status, error=_MESSAGES[refused.reason], email=email)
    response = RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ABSOLUTE_US // 1_000_000,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(
    request: Request, user: Annotated[CurrentUser, Depends(require_role(*ANY))]
) -> Response:
    await users_of(request).end(user.session_id)
    await _audit_session(request, user, "dashboard_session.logout")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.post("/mode")
async def switch_mode(
    request: Request, user: Annotated[CurrentUser, Depends(require_role(*ANY))]
) -> Response:
    form = await request.form()
    livemode = form.get("mode") == "live"
    await users_of(request).set_mode(user.session_id, livemode)
    await core(request).audit.record(
        account_id=user.account_id,
        actor=user.actor,
        action="dashboard_session.mode",
        livemode=livemode,
        request_id=getattr(request.state, "request_id", None),
    )
    return RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)


async def _audit_session(request: Request, user: CurrentUser, action: str) -> None:
    """A sign-out in the audit log, with the user (never the session's token); a sign-in is
    audited by the service (``dashboard_session.create``)."""
    await core(request).audit.record(
        account_id=user.account_id,
        actor=user.actor,
        action=action,
        object_type="dashboard_user",
        object_id=user.id,
        livemode=user.livemode,
        request_id=getattr(request.state, "request_id", None),
    )
