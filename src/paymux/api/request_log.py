"""Noting each authenticated API call for the request log (services/request_log.py).

``RequestLogMiddleware`` sits inside ``GuardMiddleware`` (so it sees the body as the guard let
it through: a card number refused, loose numbers masked) and, for a ``/v1/`` request whose key
was accepted (``caller`` in api/deps.py sets ``api_caller`` in the request's state: account,
key id, mode), hands the call to the app's ``RequestLog`` once it is answered: the method,
the route template, the path, the status, the time it took, the request id and the first
``BODY_SCANNED`` bytes of the body. No I/O here; the log's own task writes in batches.

Not noted: a request without an accepted key (no account to show it to: a 401, or one the
guard refused before any key was looked at, such as a card number in the body) and
everything outside ``/v1/`` (the dashboard, pages, webhooks from providers, the sandbox).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymux.services.request_log import BODY_SCANNED, ApiCall, RequestLog

__all__ = ["CALLER_STATE", "RequestLogMiddleware"]

CALLER_STATE = "api_caller"  # (account_id, key_id, livemode), set by api/deps.py's caller


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()

        async def noting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < BODY_SCANNED:
                body.extend(message.get("body", b"")[: BODY_SCANNED - len(body)])
            return message

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, noting_receive, noting_send)
        except Exception:  # answered 500 by the guard outside (unless an answer had started)
            _note(scope, status, time.perf_counter() - started, bytes(body))
            raise
        # (A request cancelled midway, its client gone, is not noted.)
        _note(scope, status, time.perf_counter() - started, bytes(body))


def _note(scope: Scope, status: int, seconds: float, body: bytes) -> None:
    state: dict[str, Any] = scope.get("state") or {}
    caller = state.get(CALLER_STATE)
    app = scope.get("app")
    request_log = getattr(getattr(app, "state", None), "request_log", None)
    if caller is None or not isinstance(request_log, RequestLog):
        return
    account_id, key_id, livemode = caller
    route = getattr(scope.get("route"), "path", None)
    request_log.note(
        ApiCall(
            account_id=account_id,
            livemode=bool(livemode),
            key_id=key_id,
            method=str(scope.get("method", "")),
            route=route if isinstance(route, str) else "unmatched",
            path=str(scope.get("path", "")),
            status=status,
            duration_us=int(seconds * 1_000_000),
            request_id=state.get("request_id"),
            body=body,
            at_us=request_log.ctx.now_us(),
        )
    )
