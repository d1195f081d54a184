"""dashboard/cursor_page.py: the page a dashboard list's query asks for, and its links (the
request log's and the audit log's pages)."""

from __future__ import annotations

import asyncio
from typing import Any

from paymux.dashboard.cursor_page import CursorPage, cursor_page
from paymux.domain.errors import PaymuxError

ROWS = [{"id": "req_c"}, {"id": "req_b"}, {"id": "req_a"}]  # newest first


Asked = list[tuple[str | None, str | None]]


def _page(query: dict[str, str], more: bool, filters: dict[str, str]) -> tuple[CursorPage, Asked]:
    asked: Asked = []

    async def fetch(after: str | None, before: str | None) -> tuple[list[dict[str, Any]], bool]:
        asked.append((after, before))
        return ROWS, more

    return asyncio.run(cursor_page(query, fetch, filters)), asked


def test_the_first_page_links_to_the_older_one_keeping_the_filters() -> None:
    page, asked = _page({"status": "4xx"}, True, {"status": "4xx", "path": "/v1/refunds"})
    assert asked == [(None, None)]
    assert page.rows == ROWS
    assert page.older == "?status=4xx&path=%2Fv1%2Frefunds&starting_after=req_a"
    assert page.newer is None


def test_a_middle_page_links_both_ways_and_the_last_only_back() -> None:
    middle, asked = _page({"starting_after": "req_d"}, True, {})
    assert asked == [("req_d", None)]
    assert (middle.older, middle.newer) == ("?starting_after=req_a", "?ending_before=req_c")
    last, _ = _page({"starting_after": "req_d"}, False, {})
    assert (last.older, last.newer) == (None, "?ending_before=req_c")
    # Going back (ending_before) from the oldest page: newer pages remain only with more.
    back, asked = _page({"ending_before": "req_0"}, False, {})
    assert asked == [(None, "req_0")]
    assert (back.older, back.newer) == ("?starting_after=req_a", None)


def test_an_empty_cursor_is_no_cursor() -> None:
    page, asked = _page({"starting_after": "", "ending_before": ""}, False, {})
    assert asked == [(None, None)]
    assert (page.older, page.newer) == (None, None)


def test_a_cursor_that_is_not_a_row_of_the_list_shows_an_empty_page() -> None:
    async def fetch(after: str | None, before: str | None) -> tuple[list[dict[str, Any]], bool]:
        raise PaymuxError.of("resource_missing", "No such entry", param="starting_after")

    page = asyncio.run(cursor_page({"starting_after": "aud_theirs"}, fetch, {"actor": "cli"}))
    assert page == CursorPage(rows=[], older=None, newer=None)
