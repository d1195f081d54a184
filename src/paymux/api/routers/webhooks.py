"""POST /webhooks/{connection}: verify the raw bytes, store, answer. Applying happens later.

``{connection}`` is a stored connection's id (``/webhooks/conn_...``, verified with that
connection's secret and stored as its account's) or, as before connections existed and still
for the URLs registered at providers, a gateway's name (``/webhooks/stripe``): the connection
made from the environment variables.

Deliveries come fastest of all requests, so ``WebhookDispatch`` (mounted by api/app.py as the
innermost middleware: inside the guard, which gives them their request id, metrics, span,
TLS rule, body limits and headers, as for any request) answers ``POST /webhooks/{segment}``
itself, without FastAPI's router, dependency solving and request objects (issue 10: they were
a good part of a delivery's CPU). It does what the route below does, with the same answers;
an exception other than a refused signature is answered by the app's own exception handlers
(a ``PaymuxError`` as its 4xx, a database that is down as 503 + Retry-After), as the
router's exception middleware would; anything else goes to the guard (logged once, 500).
Every other request (another method, a deeper path) goes on to the router: the route below
stays the one the OpenAPI document lists, and answers if the dispatch is not mounted.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from paymux.api.deps import get_app
from paymux.api.responses import JSONResponse
from paymux.gateways.base import WebhookVerificationError
from paymux.root import Paymux

__all__ = ["WebhookDispatch", "router"]

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)

_PREFIX = "/webhooks/"
# The two answers (by ``duplicate``), as JSONResponse rendered them, encoded once: hot path.
_ANSWERS = {
    False: b'{"received":true,"duplicate":false}',
    True: b'{"received":true,"duplicate":true}',
}
# The headers Starlette's ``Response(body, media_type="application/json")`` sends.
_ANSWER_HEADERS = {
    duplicate: [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]
    for duplicate, body in _ANSWERS.items()
}


def _refusal(gateway: str, exc: WebhookVerificationError) -> JSONResponse:
    log.warning("webhook from %s refused: %s", gateway, exc.reason)
    return JSONResponse(
        {
            "error": {
                "type": "invalid_request_error",
                "code": "webhook_signature_invalid",
                "reason": exc.reason,
                "message": str(exc),
            }
        },
        status_code=400,
    )


def _headers(scope: Scope) -> dict[str, str]:
    """The raw ASGI headers (names arrive lowercased; lowered again for other servers),
    decoded as Starlette's Headers would, without building that object."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


@router.post("/webhooks/{gateway}")
async def receive_webhook(gateway: str, request: Request) -> Response:
    app = get_app(request)
    body = await request.body()
    try:
        received = await app.webhooks.receive(gateway, _headers(request.scope), body)
    except WebhookVerificationError as exc:
        return _refusal(gateway, exc)
    return Response(_ANSWERS[received.duplicate], media_type="application/json")


_ROUTE: BaseRoute = router.routes[0]


def _segment(scope: Scope) -> str | None:
    """``{gateway}`` of a ``POST /webhooks/{gateway}`` the route would match, else None."""
    if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("root_path"):
        return None
    path: str = scope.get("path", "")
    if not path.startswith(_PREFIX):
        return None
    segment = path[len(_PREFIX) :]
    return segment if segment and "/" not in segment else None


class WebhookDispatch:
    """ASGI middleware: ``POST /webhooks/{gateway}`` answered without the router (above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        segment = _segment(scope)
        if segment is None:
            await self.app(scope, receive, send)
            return
        # What the router would have set: the guard's metrics and span name the route.
        scope["route"] = _ROUTE
        scope["endpoint"] = receive_webhook
        scope["path_params"] = {"gateway": segment}
        body = b""
        more = True
        while more:  # (the guard has read it already: one message)
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nothing stored, nobody to answer
            body += message.get("body", b"")
            more = message.get("more_body", False)
        core: Paymux = scope["app"].state.paymux
        try:
            received = await core.webhooks.receive(segment, _headers(scope), body)
        except WebhookVerificationError as exc:
            await _refusal(segment, exc)(scope, receive, send)
            return
        except Exception as exc:
            handler = _handler(scope["app"], exc)
            if handler is None:
                raise  # the guard logs it once and answers 500
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": list(_ANSWER_HEADERS[received.duplicate]),
            }
        )
        await send({"type": "http.response.body", "body": _ANSWERS[received.duplicate]})


def _handler(app: Any, exc: Exception) -> Any:
    """The app's handler for ``exc``, as Starlette's ExceptionMiddleware looks it up (the
    handlers of ``Exception`` and 500 are the server-error middleware's, not its)."""
    handlers: dict[Any, Any] = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
