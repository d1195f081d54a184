"""POST /webhooks/{connection}: verify the raw bytes, store, answer. Applying happens later.

``{connection}`` is a stored connection's id (``/webhooks/conn_...``, verified with that
connection's secret and stored as its account's) or, as before connections existed and still
for the URLs registered at providers, a gateway's name (``/webhooks/stripe``): the connection
made from the environment variables."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from paymux.api.deps import get_app
from paymux.gateways.base import WebhookVerificationError

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


@router.post("/webhooks/{gateway}")
async def receive_webhook(gateway: str, request: Request) -> JSONResponse:
    app = get_app(request)
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        received = await app.webhooks.receive(gateway, headers, body)
    except WebhookVerificationError as exc:
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
    return JSONResponse({"received": True, "duplicate": received.duplicate})
