"""Small helpers shared by the home, billing, fraud, webhooks and keys pages: the answer to an
action (a 303 back to the page, or the error page for a refused one), the answer to a
``run_action`` result, reading a form field, and a list page's pager cursors."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paymux.dashboard.actions import ActionResult
from paymux.dashboard.auth import CurrentUser
from paymux.dashboard.render import render
from paymux.domain.errors import PaymuxError

__all__ = ["answer", "done", "field", "pager", "refused"]


def done(url: str) -> RedirectResponse:
    """An action's success: back to ``url`` with a GET (post/redirect/get)."""
    return RedirectResponse(url, status_code=303)


def _not_done(request: Request, user: CurrentUser, message: str, status: int = 400) -> HTMLResponse:
    return render(
        request,
        "dashboard/message.html",
        user=user,
        status=status,
        title="Not done",
        message=message,
    )


def refused(request: Request, user: CurrentUser, error: PaymuxError) -> HTMLResponse:
    """A refused action: its message and the field it is about, as a 400 page."""
    data = error.to_dict()
    message = str(data.get("message") or "The action was refused.")
    if data.get("param"):
        message += f" (field: {data['param']})"
    return _not_done(request, user, message)


def answer(request: Request, user: CurrentUser, result: ActionResult, back: str) -> Response:
    """A ``run_action`` result: back to ``back`` when it worked, the error page when not
    (with the API's status: a 4xx refusal, or a 503 when the service could not answer)."""
    if result.ok:
        return done(back)
    return _not_done(request, user, result.error_message, max(result.status, 400))


def field(form: Any, name: str, default: str = "") -> str:
    """A form field as text (a missing or file field: ``default``), stripped."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def pager(
    rows: list[dict[str, Any]], more: bool, after: str | None, before: str | None
) -> tuple[str | None, str | None]:
    """The cursors of a list page's links, given the page's rows (newest first), whether
    more follow, and the cursor it was asked with: (older: the last row's id, for
    ``starting_after``; newer: the first row's id, for ``ending_before``), None when there
    is no such page."""
    older = rows[-1]["id"] if rows and (more or before) else None
    newer = rows[0]["id"] if rows and (after or (before and more)) else None
    return older, newer
