"""The dashboard's URL prefixes (a module of their own: nav.py and render.py both need them)."""

from __future__ import annotations

__all__ = ["PREFIX", "STATIC_PREFIX"]

PREFIX = "/dashboard"
STATIC_PREFIX = f"{PREFIX}/static"
