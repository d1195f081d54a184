"""Developers: the account's request log (``services/request_log.py``): its recent API calls
of the session's mode, newest first, 50 a page with cursors, each with its status, latency,
request id, the key's id and the body as the logs redact it. Filtered by status class
(2xx, 4xx, ...), method and path prefix. Admins and developers only, as the keys page.

A call shows once its process's log has flushed (every second, or every 200 calls).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.auth import DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.cursor_page import cursor_page
from paymux.dashboard.render import render
from paymux.services.request_log import STATUS_CLASSES, RequestLog

__all__ = ["METHODS", "router"]

router = APIRouter()
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
PAGE_SIZE = 50
METHODS = ("GET", "POST", "DELETE")
_BAD_PATH = "A path starting with / (letters, digits and _ / . - { } only)."


def _log_of(request: Request) -> RequestLog:
    """The app's request log (made at start-up), or a reader of the same table."""
    found = getattr(request.app.state, "request_log", None)
    return found if isinstance(found, RequestLog) else RequestLog(core(request).ctx)


@router.get("/requests")
async def requests_page(request: Request, user: Developer) -> Response:
    q = request.query_params
    raw = {n: (q.get(n) or "").strip()[:200] for n in ("status", "method", "path")}
    errors = {}
    if raw["status"] and raw["status"] not in STATUS_CLASSES:
        errors["status"] = "One of " + ", ".join(STATUS_CLASSES) + "."
    if raw["method"] and raw["method"].upper() not in METHODS:
        errors["method"] = "One of " + ", ".join(METHODS) + "."
    if raw["path"] and not RequestLog.valid_path_filter(raw["path"]):
        errors["path"] = _BAD_PATH
    wanted = {n: v for n, v in raw.items() if v and n not in errors}
    calls = _log_of(request)
    page = await cursor_page(
        q,
        lambda after, before: calls.list(
            user.account_id,
            limit=PAGE_SIZE,
            starting_after=after,
            ending_before=before,
            status_class=wanted.get("status"),
            method=wanted.get("method"),
            path=wanted.get("path"),
        ),
        wanted,
    )
    return render(
        request,
        "dashboard/requests.html",
        user=user,
        rows=page.rows,
        raw=raw,
        errors=errors,
        statuses=STATUS_CLASSES,
        methods=METHODS,
        older=page.older,
        newer=page.newer,
    )
