"""Developers: the account's audit log (``services/audit.py``: every key, connection and
dashboard action, with who did it and the request id), newest first, paged with cursors,
filtered by action, actor and object id. Admins and developers only, as the keys page.

The account's recent API calls (status, latency, redacted bodies) are the request log's page
(``pages_requests.py``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.auth import DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.cursor_page import cursor_page
from paymux.dashboard.render import render

__all__ = ["router"]

router = APIRouter()
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
PAGE_SIZE = 50
FILTERS = ("action", "actor", "object_id")
_TEXT = re.compile(r"[A-Za-z0-9_.:@+\-]{1,120}")
_BAD_TEXT = "Letters, digits and _ . : @ + - only."
_DETAILS_SHOWN = 300  # characters of an entry's details on the page


def _details(entry: dict[str, Any]) -> str:
    text = json.dumps(entry.get("details") or {}, sort_keys=True, separators=(", ", ": "))
    return "" if text == "{}" else text[:_DETAILS_SHOWN]


@router.get("/audit")
async def audit_page(request: Request, user: Developer) -> Response:
    q = request.query_params
    raw = {name: (q.get(name) or "").strip()[:120] for name in FILTERS}
    errors = {n: _BAD_TEXT for n, v in raw.items() if v and not _TEXT.fullmatch(v)}
    wanted = {name: v for name, v in raw.items() if v and name not in errors}
    audit = core(request).audit
    page = await cursor_page(
        q,
        lambda after, before: audit.list(
            user.account_id,
            limit=PAGE_SIZE,
            starting_after=after,
            ending_before=before,
            **wanted,
        ),
        wanted,
    )
    return render(
        request,
        "dashboard/audit.html",
        user=user,
        rows=[{**r, "shown_details": _details(r)} for r in page.rows],
        raw=raw,
        errors=errors,
        older=page.older,
        newer=page.newer,
    )
