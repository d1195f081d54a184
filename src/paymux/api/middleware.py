"""ASGI middleware that runs before anything else sees a request.

- A request id (``Request-Id`` header, ``req_...``) for every response and every log record.
- The card-number guard: any value in the query string or JSON body that looks like a card
  number (13-19 digits, Luhn-valid, spaces or dashes allowed) is refused with 400
  ``card_number_not_allowed`` naming the parameter; so is one in the URL path (no param)
  or in the ``Idempotency-Key`` header (which is stored). The value is never echoed, logged
  or stored: the request stops here, and the path and query that uvicorn's access log prints
  are masked first (percent-encoded separators would defeat the log redaction). The
  sandbox's own tokenization endpoint (``/sandbox``, the "provider's" origin) is the one
  place a number may be sent.
- A body size limit (413).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.security import find_pan_param, looks_like_pan, mask_pans, request_id_var

__all__ = ["GuardMiddleware", "error_response_body"]

MAX_BODY = 1024 * 1024
# Provider origins and signed provider payloads (refusing a webhook would lose it).
_UNGUARDED_PREFIXES = ("/sandbox/", "/webhooks/")
# A form field name worth naming in an error; anything else (a text or multipart body
# parsed as a form) is reported as "body" rather than echoing the body back.
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.*\[\]-]{1,100}")


def error_response_body(error: PaymuxError) -> bytes:
    return json.dumps({"error": error.to_dict()}).encode()


class GuardMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req", 20)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            path: str = scope.get("path", "")
            guarded = not path.startswith(_UNGUARDED_PREFIXES)
            query = scope.get("query_string", b"").decode("latin-1")
            if guarded:
                found = _head_pan_param(path, query, scope.get("headers", []))
                if found is not None:
                    _mask_request_line(scope, query)
                    await self._refuse(send_with_id, request_id, found or None)
                    return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                body = b""
                more = True
                while more:
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body:
                        err = PaymuxError.of("request_too_large")
                        err.request_id = request_id
                        await _send_json(send_with_id, 413, error_response_body(err))
                        return
                param = _body_pan_param(body) if guarded else None
                if param is not None:
                    await self._refuse(send_with_id, request_id, param)
                    return
                receive = _replay(body)
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    async def _refuse(self, send: Send, request_id: str, param: str | None) -> None:
        err = PaymuxError.of("card_number_not_allowed", param=param)
        err.request_id = request_id
        await _send_json(send, 400, error_response_body(err))


def _head_pan_param(path: str, query: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The param holding a card number in the URL or Idempotency-Key; "" for the path."""
    if looks_like_pan(path):
        return ""
    if query:
        param = find_pan_param(dict(parse_qsl(query, keep_blank_values=True)))
        if param is not None:
            return param
    for name, value in headers:
        if name.lower() == b"idempotency-key" and looks_like_pan(value.decode("latin-1")):
            return "Idempotency-Key"
    return None


def _mask_request_line(scope: Scope, query: str) -> None:
    """Mask card numbers in the scope's path and query, which uvicorn's access log prints."""
    path = mask_pans(scope.get("path", ""))
    scope["path"] = path
    scope["raw_path"] = quote(path).encode()
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = urlencode([(mask_pans(k), mask_pans(v)) for k, v in pairs], safe="*")
    scope["query_string"] = masked.encode()


def _body_pan_param(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        form = find_pan_param(dict(parse_qsl(text, keep_blank_values=True)))
        if form is not None:
            return form if _FIELD_NAME.fullmatch(form) else "body"
        return find_pan_param({"body": text}) and "body"
    return find_pan_param(data)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
