"""The embeddable card entry, ``/js/paymux.js`` (a merchant's page loads it, with its
Subresource Integrity hash, docs/checkout.md), and CORS on the two routes it calls with a
publishable key.

CORS, decided as Stripe's API does it: ``Access-Control-Allow-Origin: *`` and no
``Allow-Credentials``, because the credential is the publishable key the script sends in
``Authorization``, never a cookie; so no origin allow-list to keep, and a page of any origin
holding the key and the intent's client secret can do what the key allows (read the
intent's publishable view, confirm it with a token), and nothing more. Only the publishable
key's routes (api/access.py's ``PUBLISHABLE_ROUTES``: ``GET /v1/payment_intents/{id}`` and
``POST /v1/payment_intents/{id}/confirm``, and the same two of ``/v1/setup_intents``) answer
CORS; every other route sends no CORS header, so a browser keeps other origins' scripts from
reading them.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymux.web.checkout import subresource_integrity

__all__ = ["PAYMUX_JS_INTEGRITY", "PAYMUX_JS_PATH", "PublishableCors", "cors_route", "router"]

PAYMUX_JS_PATH = "/js/paymux.js"
_BODY = (Path(__file__).parent / "static" / "paymux.js").read_bytes()
PAYMUX_JS_INTEGRITY = subresource_integrity(_BODY)
# The publishable key's routes (api/access.py), as paths: /v1/payment_intents/{id}[/confirm]
# and /v1/setup_intents/{id}[/confirm].
_ROUTES = (
    (re.compile(r"/v1/payment_intents/[A-Za-z0-9_]{1,80}"), "GET"),
    (re.compile(r"/v1/payment_intents/[A-Za-z0-9_]{1,80}/confirm"), "POST"),
    (re.compile(r"/v1/setup_intents/[A-Za-z0-9_]{1,80}"), "GET"),
    (re.compile(r"/v1/setup_intents/[A-Za-z0-9_]{1,80}/confirm"), "POST"),
)
_ALLOW_HEADERS = b"authorization, content-type, idempotency-key, stripe-version"
_EXPOSE_HEADERS = b"request-id, idempotent-replayed"
_MAX_AGE = b"600"

router = APIRouter(include_in_schema=False)


@router.get(PAYMUX_JS_PATH)
async def paymux_js() -> Response:
    """The script, for any origin (``crossorigin="anonymous"`` with SRI needs CORS)."""
    return Response(
        _BODY,
        media_type="text/javascript; charset=utf-8",
        headers={
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
            "access-control-allow-origin": "*",
            "cross-origin-resource-policy": "cross-origin",
        },
    )


def cors_route(method: str, path: str) -> bool:
    """Whether ``method path`` is one of the publishable key's routes (CORS applies)."""
    return any(method == m and pattern.fullmatch(path) for pattern, m in _ROUTES)


class PublishableCors:
    """ASGI wrapper: answers the browser's preflight for the publishable key's routes, and
    adds ``Access-Control-Allow-Origin: *`` to their answers; nothing for any other route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope["method"]).upper()
        path = str(scope["path"])
        headers = dict(scope.get("headers") or [])
        if method == "OPTIONS" and b"access-control-request-method" in headers:
            asked = headers[b"access-control-request-method"].decode("latin-1").upper()
            if cors_route(asked, path):
                await _preflight(send, asked)
                return
        if b"origin" not in headers or not cors_route(method, path):
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", _EXPOSE_HEADERS),
                    (b"vary", b"origin"),
                ]
            await send(message)

        await self.app(scope, receive, with_cors)


async def _preflight(send: Send, method: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", method.encode()),
                (b"access-control-allow-headers", _ALLOW_HEADERS),
                (b"access-control-max-age", _MAX_AGE),
                (b"vary", b"origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
