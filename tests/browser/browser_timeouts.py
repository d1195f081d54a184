"""The browser tests' timeouts: 20 s for every Playwright ``expect`` (set on import) and for
the actions and navigations of the contexts ``timed`` is given (Playwright's 5 s default is
too short on a loaded CI machine, where a page, its card form frame and a gateway round trip
share two cores; a real failure still fails, only later).

A module of its own, not a ``conftest.py``: the tests import ``conftest`` (tests/conftest.py)
by name, which a second conftest here would shadow."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, expect

TIMEOUT_MS = 20_000

expect.set_options(timeout=TIMEOUT_MS)


def timed(context: BrowserContext) -> BrowserContext:
    """``context`` with the 20 s default for its pages' actions and navigations."""
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context
