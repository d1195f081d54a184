"""`paymux serve` runs on uvloop with the httptools parser (dependencies: uvicorn[standard])."""

from __future__ import annotations

from paymux.cli import _event_loop_and_parser


def test_serve_uses_uvloop_and_httptools_when_installed() -> None:
    assert _event_loop_and_parser() == ("uvloop", "httptools")
