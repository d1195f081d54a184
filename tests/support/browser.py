"""Browser tests with Playwright for Python driving Debian's chromium (``executable_path``;
nothing is downloaded), and a paymux server that keeps a capture of every request it
received, to show what reached paymux (and what reached the sandbox, which stands in for the
provider: everything under ``/sandbox``, its own path, as a provider's origin would be).

- ``CapturingServer``: conftest's RunningServer whose app is wrapped by ``Capture`` (method,
  path, query, headers and body of each request, before paymux sees it);
- ``launched_chromium()``: a module fixture's body: one browser per module;
- ``axe_source()``: axe-core's script from tests/sdk/node (npm ci installs it);
- ``CARD_RUNS``: how to find a card number in captured bytes;
- the checkout browser modules' shared fixture bodies (``yield from`` them):
  ``capturing_server()`` (a CapturingServer on a new migrated SQLite database),
  ``account_api()`` (an ``Api`` for a fresh account), ``shop_tab()`` (a page whose shop
  URLs are answered, with the console's CSP reports collected).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conftest import RunningServer, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.config import Settings
from support.cdp import find_chromium
from support.processes import free_port
from support.served import account_api

__all__ = [
    "CARD_RUNS",
    "Capture",
    "CapturedRequest",
    "CapturingServer",
    "account_api",
    "axe_source",
    "capturing_server",
    "card_runs",
    "launched_chromium",
    "shop_tab",
]

_AXE = Path(__file__).parent.parent / "sdk" / "node" / "node_modules" / "axe-core" / "axe.min.js"
# A card number as it could travel: 12-19 digits, maybe split by spaces or dashes.
CARD_RUNS = re.compile(rb"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)")
# A digest in hex (a webhook's HMAC signature, a SHA-256): 64 hex characters hold 15 digits in
# a row, a Luhn-valid run of them, about once in a few hundred signatures. Never a card.
_HEX_DIGEST = re.compile(rb"(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])")
# A UUID (a PayPal webhook's transmission id): its groups can join into a Luhn-valid run across
# a dash ("...-c477-251510798f2e" holds "477-251510798"). Never a card either.
_UUID = re.compile(rb"(?<![0-9A-Za-z])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9A-Za-z])")


# An object id of paymux's (``pi_87eaa2962745eba981bf98e3``, ``cs_test_eK67hcua...``; a
# client secret's ``..._secret_...`` part too): a derived id is 24 hex characters, which
# hold a Luhn-valid run of 15 digits about once in a thousand ids (a PayPal webhook's
# custom_id failed a CI run of 2026-12-05). A card travels as digits, never inside one.
_OBJECT_ID = re.compile(rb"(?<![0-9A-Za-z])[a-z]{2,8}(?:_[a-z]+)*_[0-9A-Za-z]{16,}(?![0-9A-Za-z])")


def card_runs(raw: bytes) -> list[bytes]:
    """The runs of ``raw`` that could be a card number (``CARD_RUNS``), hex digests, UUIDs
    and paymux's object ids left out."""
    plain = _OBJECT_ID.sub(b"-", _UUID.sub(b"-", _HEX_DIGEST.sub(b"-", raw)))
    return [m.group(0) for m in CARD_RUNS.finditer(plain)]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def provider_side(self) -> bool:
        """Sent to the sandbox's own path (the provider's stand-in), not to paymux."""
        return self.path == "/sandbox" or self.path.startswith("/sandbox/")

    def raw(self) -> bytes:
        lines = [f"{self.method} {self.path}".encode(), self.query]
        lines += [k + b": " + v for k, v in self.headers]
        return b"\n".join([*lines, self.body])


class Capture:
    """ASGI wrapper: records every HTTP request (its whole body too) then passes it on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[CapturedRequest] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        self.requests.append(
            CapturedRequest(
                scope["method"],
                scope["path"],
                scope.get("query_string", b""),
                tuple((bytes(k), bytes(v)) for k, v in scope["headers"]),
                body,
            )
        )
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CapturingServer(RunningServer):
    """RunningServer (tests/conftest.py) with ``capture`` wrapped around its app."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.capture = Capture(create_app(settings))
        config = uvicorn.Config(
            self.capture, host="127.0.0.1", port=settings.port, log_config=None,
            lifespan="on", timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)


def launched_chromium() -> Iterator[Browser]:
    """Debian's chromium through Playwright, for one module; skipped where it is missing,
    a failure under CI (which installs it)."""
    binary = find_chromium()
    if binary is None:
        if _in_ci():
            pytest.fail("chromium is required under CI but /usr/bin/chromium is missing")
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def axe_source() -> str:
    """axe-core's script (tests/sdk/node/node_modules, from `make` / `npm ci`)."""
    if not _AXE.exists():
        if _in_ci():
            pytest.fail(f"axe-core is required under CI: {_AXE} is missing (npm ci)")
        pytest.skip("axe-core not installed: npm ci --prefix tests/sdk/node")
    return _AXE.read_text()


def capturing_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, **settings: Any
) -> Iterator[CapturingServer]:
    """A module fixture's body: a CapturingServer (test settings, then ``settings``) on a new
    migrated SQLite database in a temporary directory called ``name``; stopped at the end."""
    tmp = tmp_path_factory.mktemp(name)
    url = migrated_database_url("sqlite", tmp, None, name.replace("-", "_"))
    running = CapturingServer(make_settings(url, tmp, free_port(), **settings)).start()
    try:
        yield running
    finally:
        running.stop()


def shop_tab(context: BrowserContext, shop: str) -> Iterator[tuple[Page, list[str]]]:
    """A fixture's body: a page of ``context`` whose URLs under ``shop`` (a merchant origin
    that does not exist) answer a blank shop page, and the list the console's Content
    Security Policy reports are collected in; the context is closed after."""
    tab = context.new_page()
    csp: list[str] = []
    tab.on(
        "console",
        lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tab.route(
        f"{shop}/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<!doctype html><title>Shop</title>"
        ),
    )
    try:
        yield tab, csp
    finally:
        context.close()
