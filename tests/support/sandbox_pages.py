"""Answering the sandbox's 3-D Secure challenge over plain HTTP, as its page does.

The challenge URL carries a single-use token; the page's form posts it back (the POST takes
it only from the form), so a test reads the page first and submits its form.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urljoin

import httpx

__all__ = ["answer_challenge", "challenge_form"]

_INPUT = re.compile(r'<input type="hidden" name="token" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]*)">')


def challenge_form(url: str) -> tuple[str, str, httpx.Response]:
    """(the form's absolute action URL, its token, the page) of the challenge at ``url``."""
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200, (page.status_code, page.text)
    token, action = _INPUT.search(page.text), _ACTION.search(page.text)
    assert token is not None and action is not None, page.text
    return urljoin(url, html.unescape(action.group(1))), html.unescape(token.group(1)), page


def answer_challenge(url: str, outcome: str, **kw: Any) -> httpx.Response:
    """Open the challenge page at ``url`` and submit its ``outcome`` form."""
    action, token, _ = challenge_form(url)
    return httpx.post(action, data={"token": token, "outcome": outcome}, timeout=10, **kw)
