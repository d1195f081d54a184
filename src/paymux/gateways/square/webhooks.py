"""Square's webhook signature: verify the raw bytes, then parse them.

Header ``x-square-hmacsha256-signature``: base64 of HMAC-SHA256, keyed with the subscription's
signature key, over the notification URL exactly as registered with Square (scheme, host,
path, query) followed by the raw body, with no separator (square-python-sdk
``square/utils/webhooks_helper.py``). Several keys may be given (a rotation); any one may
match, compared in constant time.

Square's scheme has no timestamp, so there is no tolerance window: a replayed delivery is
caught by the inbox, which stores each ``event_id`` once.

Refusals, each with its own reason: ``missing_signature`` (no header), ``signature_mismatch``
(no key gives this signature; also when no key is configured), ``invalid_payload`` (signed,
but not a Square event: not JSON, or no ``event_id``/``type``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from paymux.gateways.base import WebhookVerificationError
from paymux.gateways.payloads import load_event

__all__ = ["SIGNATURE_HEADER", "sign", "signed_headers", "verify"]

SIGNATURE_HEADER = "x-square-hmacsha256-signature"


def sign(key: str, url: str, body: bytes) -> str:
    """The signature Square sends for ``body`` delivered to ``url``."""
    digest = hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(key: str, url: str, body: bytes) -> dict[str, str]:
    """Headers of a delivery as Square signs it: a helper for tests and local tools."""
    return {"content-type": "application/json", SIGNATURE_HEADER: sign(key, url, body)}


def verify(headers: dict[str, str], body: bytes, *, keys: list[str], url: str) -> dict[str, Any]:
    """Verify the raw bytes (headers lower-cased), then parse them into the event."""
    header = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not header:
        raise WebhookVerificationError("missing_signature", f"No {SIGNATURE_HEADER} header.")
    given = header.encode()
    matched = False
    for key in keys:  # no early exit: every key is tried, in constant time each
        matched |= hmac.compare_digest(sign(key, url, body).encode(), given)
    if not matched:
        raise WebhookVerificationError(
            "signature_mismatch",
            "No signature key gives this signature for the body and the notification URL.",
        )
    event = load_event(body)
    if not isinstance(event.get("event_id"), str) or not isinstance(event.get("type"), str):
        raise WebhookVerificationError("invalid_payload", "The event has no event_id or type.")
    return event
