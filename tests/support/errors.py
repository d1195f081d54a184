"""Reading an error answer of the API (Stripe's shape: ``{"error": {...}}``) in a test."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["error_of", "status_code_param"]


def error_of(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    """The error object of ``r``, which must have been answered ``status``."""
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


def status_code_param(response: httpx.Response) -> tuple[int, str, str | None]:
    """(HTTP status, error code, param) of an error answer."""
    error = response.json()["error"]
    return response.status_code, error["code"], error.get("param")
