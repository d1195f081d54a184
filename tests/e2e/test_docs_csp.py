"""/docs and /redoc under a Content-Security-Policy without 'unsafe-inline' at all (SQLite and
PostgreSQL servers): Swagger UI needs no inline style; ReDoc's run-time <style> elements carry
a one-time nonce, fresh on every answer, and its one fixed sheet is allowed by hash. In
headless chromium both pages render with no refusal but ReDoc's CDN badge image (which shows
that nothing is fetched from elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conftest import Api
from support.cdp import Browser, csp_refusals, started_browser


def directives(csp: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        found[name] = values
    return found


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_allow_no_inline_style_or_script(api: Api, path: str) -> None:
    r = httpx.get(f"{api.server.url}{path}", timeout=10)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    found = directives(csp)
    assert found["script-src"] == ["'self'"]
    assert found["frame-ancestors"] == ["'none'"]
    assert "<script>" not in r.text and "<style" not in r.text and " style=" not in r.text
    if path == "/docs":
        assert found["style-src"] == ["'self'"]
        return
    nonces = [v for v in found["style-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = nonces[0].removeprefix("'nonce-").removesuffix("'")
    assert len(nonce) >= 22  # 128+ bits
    assert f'data-nonce="{nonce}"' in r.text  # handed to ReDoc for its <style> elements
    again = httpx.get(f"{api.server.url}{path}", timeout=10)
    assert nonce not in again.headers["content-security-policy"]  # one-time
    assert again.headers["cache-control"] == "no-store"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from started_browser()




@pytest.mark.browser
@pytest.mark.parametrize(("path", "rendered", "styled"), [
    ("/docs", "document.querySelector('.swagger-ui .info .title')?.textContent",
     # Swagger UI's own style sheet applies: the operations are laid out as blocks.
     "document.querySelectorAll('.opblock').length > 0 && "
     "getComputedStyle(document.querySelector('.opblock')).borderStyle === 'solid'"),
    ("/redoc", "document.querySelector('h1')?.textContent",
     # ReDoc's run-time styles apply: its side menu is fixed, the default being static.
     "getComputedStyle(document.querySelector('.menu-content')).position === 'fixed'"),
])
def test_the_docs_render_and_are_styled_under_the_policy(
    browser: Browser, api: Api, path: str, rendered: str, styled: str
) -> None:
    page = browser.page()
    page.send("Log.enable")
    try:
        page.navigate(f"{api.server.url}{path}")
        title = page.wait_for(f"({rendered} || '').includes('paymux') && {rendered}", timeout=30)
        assert "paymux" in str(title)
        assert page.wait_for(styled, timeout=10) is True
        refused = csp_refusals(page)
        # Only ReDoc's badge image from its CDN; no style, no script.
        assert all("https://cdn.redoc.ly/" in t and "image" in t for t in refused), refused
        if path == "/docs":
            assert refused == []
    finally:
        page.close()
