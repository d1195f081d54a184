"""Stripe's webhook signature scheme, shared by the Stripe connector and the sandbox.

Header ``t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` (Stripe-Signature for Stripe,
Paymux-Sandbox-Signature for the sandbox); the signed bytes are ``"<t>." + raw body``,
HMAC-SHA256 with the endpoint secret, hex. Verification accepts any v1 under any of several
secrets (rotation), compares in constant time, enforces a timestamp tolerance, and only then
parses the body. Each refusal has its own reason code. ``deliver`` is the sending side, used
by the sandbox to post its events.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from paymux.gateways.base import WebhookVerificationError
from paymux.gateways.payloads import load_event

__all__ = ["deliver", "sign_header", "verify_signature"]

log = logging.getLogger(__name__)


def _signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_signature(secret, t, body)}"


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: list[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify the raw bytes, then parse them. Raises WebhookVerificationError with a reason."""
    if not header:
        raise WebhookVerificationError("missing_signature", "No signature header.")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError(
                    "malformed_signature", "The signature timestamp is not a number."
                ) from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError(
            "malformed_signature", "The signature header has no timestamp or no v1 signature."
        )
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            "timestamp_outside_tolerance", "The signature timestamp is outside the tolerance."
        )
    expected = [_signature(secret, timestamp, body) for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise WebhookVerificationError(
            "signature_mismatch", "No signature matches the expected signature for the payload."
        )
    event = load_event(body)
    if "id" not in event or "type" not in event:
        raise WebhookVerificationError("invalid_payload", "The event has no id or type.")
    return event


async def deliver(
    url: str, secret: str, event: dict[str, Any], *, attempts: int = 5, delay: float = 0.0
) -> bool:
    """POST a signed event, retrying with backoff on failure, as a provider does."""
    if delay:
        await asyncio.sleep(delay)
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(timeout=10.0) as client:
        for attempt in range(attempts):
            headers = {
                "content-type": "application/json",
                "paymux-sandbox-signature": sign_header(body, secret),
            }
            try:
                response = await client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    return True
                log.warning("sandbox webhook %s answered %s", event["id"], response.status_code)
            except httpx.HTTPError as exc:
                log.warning("sandbox webhook %s failed: %s", event["id"], type(exc).__name__)
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
    log.error("sandbox webhook %s was not delivered after %d attempts", event["id"], attempts)
    return False
