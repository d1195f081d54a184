"""What a PayPal connection needs: a REST app's client id and secret, and how to check its
webhooks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from paymux.config import Settings

__all__ = ["PayPalCredentials", "from_environment"]


class PayPalCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: SecretStr
    webhook_id: str | None = None  # the id PayPal gave the webhook registered for us
    api_base: str = "https://api-m.sandbox.paypal.com"  # live: https://api-m.paypal.com
    # "api": ask PayPal (verify-webhook-signature); "offline": check the certificate chain.
    webhook_verification: Literal["api", "offline"] = "api"
    trust_roots: str | None = None  # PEM file of CA roots for "offline"; None: certifi's


def from_environment(settings: Settings) -> PayPalCredentials | None:
    """PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET, PAYPAL_WEBHOOK_ID, PAYPAL_API_BASE (PAYMUX_-
    prefixed too), PAYMUX_PAYPAL_WEBHOOK_VERIFICATION, PAYMUX_PAYPAL_TRUST_ROOTS; None without
    a client id and secret."""
    if not settings.paypal_client_id or settings.paypal_client_secret is None:
        return None
    return PayPalCredentials(
        client_id=settings.paypal_client_id,
        client_secret=settings.paypal_client_secret,
        webhook_id=settings.paypal_webhook_id,
        api_base=settings.paypal_api_base,
        webhook_verification=settings.paypal_webhook_verification,
        trust_roots=settings.paypal_trust_roots,
    )
