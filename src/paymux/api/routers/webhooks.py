"""POST /webhooks/{connection}: verify the raw bytes, store, answer. Applying happens later.

``{connection}`` is a stored connection's id (``/webhooks/conn_...``, verified with that
connection's secret and stored as its account's) or, as before connections existed and still
for the URLs registered at providers, a gateway's name (``/webhooks/stripe``): the connection
made from the environment variables."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from paymux.api.deps import get_app
from paymux.gateways.base import WebhookVerificationError

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)

# The two answers (by ``duplicate``), as JSONResponse rendered them, encoded once: hot path.
_ANSWERS = {
    False: b'{"received":true,"duplicate":false}',
    True: b'{"received":true,"duplicate":true}',
}


@router.post("/webhooks/{gateway}")
async def receive_webhook(gateway: str, request: Request) -> Response:
    app = get_app(request)
    body = await request.body()
    # The raw ASGI headers (names arrive lowercased; lowered again for other servers), decoded
    # as Starlette's Headers would, without building that object.
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
    }
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
    return Response(_ANSWERS[received.duplicate], media_type="application/json")
