"""Requests for the tenancy walks (tests/e2e/test_tenancy_*.py), which send many in a row on
one key: past the key's request rate, a 429 is waited out as its Retry-After says and the
request sent again (the rate limit is not what those walks check)."""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

__all__ = ["ok", "send"]


class _Client(Protocol):
    http: httpx.Client


def send(
    api: _Client, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    """One request, sent again as told after a 429 (at most five times)."""
    for _ in range(5):
        r = api.http.request(method, path, json=body, **kw)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers.get("retry-after", "1")))
    return r


def ok(
    api: _Client, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """``send``, which must answer 200; its JSON."""
    r = send(api, method, path, body, **kw)
    assert r.status_code == 200, (path, r.text)
    data: dict[str, Any] = r.json()
    return data
