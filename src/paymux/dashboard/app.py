"""The dashboard's routes, mounted under /dashboard by ``install(app)`` (api/app.py).

Page modules are included by name (``PAGE_MODULES``); one that does not exist (yet) is
skipped, so pages land one at a time. The error answers of the framework: no session, a
redirect to the login page; a role that may not, or a POST without its CSRF token, a 403
page; a NUL in the path, query or form, a 400 page.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from paymux.dashboard.auth import BadInput, CsrfRefused, Forbidden, LoginRequired
from paymux.dashboard.render import PREFIX, render, static_file

__all__ = ["PAGE_MODULES", "install", "loaded_pages"]

PAGE_MODULES = (
    "pages_session",
    "pages_home",
    "pages_payments",
    "pages_customers",
    "pages_billing",
    "pages_fraud",
    "pages_webhooks",
    "pages_keys",
    "pages_audit",
    "pages_connections",
    "pages_requests",
)


def loaded_pages() -> list[tuple[str, ModuleType]]:
    """The page modules that exist, in ``PAGE_MODULES`` order."""
    found = []
    for name in PAGE_MODULES:
        full = f"paymux.dashboard.{name}"
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise  # the module exists and something it imports is missing: a bug
            continue
        found.append((name, module))
    return found


def _router() -> APIRouter:
    """Every page module's routes, and the static files, under /dashboard (each included
    with the prefix: a page's own path may be empty, as the home page's)."""
    router = APIRouter(include_in_schema=False)
    pages = dict(loaded_pages())
    own = APIRouter()

    @own.get("/static/{name}")
    async def static(name: str) -> Response:
        return static_file(name)

    if "pages_home" not in pages:

        @own.get("")
        async def home() -> RedirectResponse:
            return RedirectResponse(f"{PREFIX}/payments", status_code=303)

    router.include_router(own, prefix=PREFIX)
    for module in pages.values():
        router.include_router(module.router, prefix=PREFIX)
    return router


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = f"{PREFIX}/login"
    if exc.next_path.startswith(PREFIX):
        target += "?next=" + quote(exc.next_path, safe="/")
    return RedirectResponse(target, status_code=303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    message = (
        "This form has expired or did not come from this dashboard. Go back, reload the page "
        "and try again."
        if isinstance(exc, CsrfRefused)
        else "Your role does not allow this page or action."
    )
    return render(
        request, "dashboard/message.html", status=403, title="Not allowed", message=message
    )


async def _bad_input(request: Request, exc: Exception) -> Response:
    return render(
        request,
        "dashboard/message.html",
        status=400,
        title="Not done",
        message="The address or a form field holds a character no value may hold (NUL).",
    )


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app`` (its routes and its error answers)."""
    app.include_router(_router())
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(CsrfRefused, _forbidden)
    app.add_exception_handler(BadInput, _bad_input)
