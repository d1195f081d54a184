"""One page of a list the dashboard shows newest first, paged with cursors
(``starting_after`` / ``ending_before`` in the page's query, as the API's lists): the rows
and the links to the older and the newer page, the page's filters kept in them. The request
log's and the audit log's pages read their lists so (pages_requests.py, pages_audit.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from paymux.dashboard.page_helpers import pager
from paymux.domain.errors import PaymuxError

__all__ = ["CursorPage", "Fetch", "cursor_page"]

# (starting_after, ending_before) -> (the page's rows, newest first; whether more follow)
Fetch = Callable[[str | None, str | None], Awaitable[tuple[list[dict[str, Any]], bool]]]


@dataclass(frozen=True, slots=True)
class CursorPage:
    rows: list[dict[str, Any]]
    older: str | None  # the link ("?...") to the older page; None: this is the last
    newer: str | None  # the link to the newer page; None: this is the first


async def cursor_page(
    query: Mapping[str, str], fetch: Fetch, filters: Mapping[str, str]
) -> CursorPage:
    """The page the request's ``query`` asks for. A cursor that is not a row of the list
    (another account's, a mode's, a made-up one) shows an empty page, not an error."""
    after = query.get("starting_after") or None
    before = query.get("ending_before") or None
    try:
        rows, more = await fetch(after, before)
    except PaymuxError:
        rows, more = [], False
    older, newer = pager(rows, more, after, before)

    def link(**cursor: str) -> str:
        return "?" + urlencode({**filters, **cursor})

    return CursorPage(
        rows=rows,
        older=link(starting_after=older) if older else None,
        newer=link(ending_before=newer) if newer else None,
    )
