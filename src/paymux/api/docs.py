"""/docs (Swagger UI) and /redoc served from paymux itself: the assets come from the
fastapi-offline package (MIT) on this machine, never a CDN, so the pages work offline and
under a strict Content-Security-Policy (no inline script or style, nothing from another
origin)."""

from __future__ import annotations

import secrets
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "REDOC_STATIC_STYLES", "install_docs", "redoc_csp"]

_VENDOR = Path(fastapi_offline.__file__).parent / "static"
_OURS = Path(__file__).parent / "static"

# Scripts and styles only from paymux's own files: Swagger UI needs nothing inline.
_CSP_REST = (
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DOCS_CSP = f"default-src 'none'; script-src 'self'; style-src 'self'; {_CSP_REST}"
# ReDoc writes its styles into <style> elements at run time (styled-components). Those take
# the page's one-time nonce (ReDoc's ``nonce`` option, redoc-init.js); the one fixed style
# sheet its bundle inserts while loading, before any option is read (perfect-scrollbar's CSS,
# through style-loader), is allowed by its hash, as is an empty <style> element (the hash of
# ""; nothing in it to apply). Pinned to the vendored bundle: if an upgrade changes the sheet,
# chromium reports the refusal (tests/e2e/test_docs_csp.py).
REDOC_STATIC_STYLES = (
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # an empty sheet
)


def redoc_csp(nonce: str) -> str:
    """The /redoc page's policy: no 'unsafe-inline'; styles from paymux's files, the
    elements that carry ``nonce``, and ReDoc's one fixed sheet."""
    styles = " ".join(("'self'", f"'nonce-{nonce}'", *REDOC_STATIC_STYLES))
    return f"default-src 'none'; script-src 'self'; style-src {styles}; {_CSP_REST}"


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
<body><div id="redoc" data-spec="/openapi.json" data-nonce="{nonce}"></div>
<script src="/_docs/vendor/redoc.standalone.js"></script>
<script src="/_docs/redoc-init.js"></script></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages (the app is made with docs_url=redoc_url=None)."""
    app.mount("/_docs/vendor", StaticFiles(directory=_VENDOR), name="docs-vendor")

    @app.get("/_docs/docs-init.js", include_in_schema=False)
    async def docs_init() -> HTMLResponse:
        body = (_OURS / "docs-init.js").read_text()
        return HTMLResponse(body, media_type="text/javascript", headers=_HEADERS)

    @app.get("/_docs/redoc-init.js", include_in_schema=False)
    async def redoc_init() -> HTMLResponse:
        body = (_OURS / "redoc-init.js").read_text()
        return HTMLResponse(body, media_type="text/javascript", headers=_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return HTMLResponse(_SWAGGER, headers=_HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        # A fresh nonce per answer (the page is never cached: security/headers.py).
        nonce = secrets.token_urlsafe(18)
        headers = {**_HEADERS, "Content-Security-Policy": redoc_csp(nonce)}
        return HTMLResponse(_REDOC.replace("{nonce}", nonce), headers=headers)
