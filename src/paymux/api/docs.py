"""/docs (Swagger UI) and /redoc served from paymux itself: the assets come from the
fastapi-offline package (MIT) on this machine, never a CDN, so the pages work offline and
under a strict Content-Security-Policy (no inline script, nothing from another origin)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "install_docs"]

_VENDOR = Path(fastapi_offline.__file__).parent / "static"
_OURS = Path(__file__).parent / "static"

# Scripts only from paymux's own files. Styles: Swagger UI and ReDoc inject <style> elements
# from their scripts (ReDoc through styled-components), which no nonce can reach, so these two
# pages allow inline *styles*; no inline script runs anywhere.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# nosniff, Referrer-Policy and HSTS over TLS: the guard middleware's (security/headers.py).
_HEADERS = {"Content-Security-Policy": DOCS_CSP, "X-Frame-Options": "DENY"}

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paymux API</title>
<link rel="stylesheet" href="/_docs/vendor/swagger-ui.css">
<link rel="icon" href="/_docs/vendor/favicon.png"></head>
<body><div id="swagger-ui" data-spec="/openapi.json"></div>
<script src="/_docs/vendor/swagger-ui-bundle.js"></script>
<script src="/_docs/docs-init.js"></script></body></html>
"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paymux API</title>
<link rel="icon" href="/_docs/vendor/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/_docs/vendor/redoc.standalone.js"></script></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages (the app is made with docs_url=redoc_url=None)."""
    app.mount("/_docs/vendor", StaticFiles(directory=_VENDOR), name="docs-vendor")

    @app.get("/_docs/docs-init.js", include_in_schema=False)
    async def docs_init() -> HTMLResponse:
        body = (_OURS / "docs-init.js").read_text()
        return HTMLResponse(body, media_type="text/javascript", headers=_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return HTMLResponse(_SWAGGER, headers=_HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC, headers=_HEADERS)
