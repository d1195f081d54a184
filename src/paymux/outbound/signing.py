"""Signing a delivery, in the scheme the endpoint chose.

- ``standard`` (Standard Webhooks, signed with the ``standardwebhooks`` package):
  ``webhook-id`` (the event id, the same on every retry), ``webhook-timestamp`` and
  ``webhook-signature`` = space-separated ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``,
  the key being the base64 after ``whsec_``.
- ``stripe``: ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of ts.body>``, the key being
  the whole ``whsec_...`` string, as stripe-python's ``Webhook.construct_event`` checks it.

During a secret roll's grace period both secrets sign (one signature each): a receiver that
knows either verifies.
"""

from __future__ import annotations

import base64
import secrets as random_secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

from paymux.gateways.signing import sign_header

__all__ = ["SCHEMES", "new_secret", "signed_headers"]

SCHEMES = ("standard", "stripe")
SECRET_BYTES = 32


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: a valid Standard Webhooks secret, and as a
    string, a Stripe endpoint secret."""
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(
    scheme: str, event_id: str, timestamp: int, body: bytes, secrets: list[str]
) -> dict[str, str]:
    """The signature headers of one request (``secrets``: the current one first)."""
    if scheme == "stripe":
        parts = [sign_header(body, secret, timestamp) for secret in secrets]
        v1s = [p.split(",", 1)[1] for p in parts]
        return {"Stripe-Signature": ",".join([f"t={timestamp}", *v1s])}
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    text = body.decode()
    signatures = [Webhook(secret).sign(event_id, when, text) for secret in secrets]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
