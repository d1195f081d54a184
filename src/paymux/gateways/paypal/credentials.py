"""What a PayPal connection needs: a REST app's client id and secret, and how to check its
webhooks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from paymux.config import Settings

__all__ = ["MAX_PEM_CHARS", "PEM_MARK", "PayPalCredentials", "from_environment"]

PEM_MARK = "-----BEGIN CERTIFICATE-----"
MAX_PEM_CHARS = 1_000_000


class PayPalCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: SecretStr
    webhook_id: str | None = None  # the id PayPal gave the webhook registered for us
    api_base: str = "https://api-m.sandbox.paypal.com"  # live: https://api-m.paypal.com
    # "api": ask PayPal (verify-webhook-signature); "offline": check the certificate chain.
    webhook_verification: Literal["api", "offline"] = "api"
    # For "offline": the CA roots as PEM text; None: certifi's. Never a file path: a merchant's
    # connection must not name a file on paymux's server (the operator's environment may).
    trust_roots: str | None = None

    @field_validator("trust_roots")
    @classmethod
    def _pem_text_only(cls, value: str | None) -> str | None:
        if value is not None and (PEM_MARK not in value or len(value) > MAX_PEM_CHARS):
            raise ValueError(
                "give the CA roots as PEM text (-----BEGIN CERTIFICATE-----...), at most "
                f"{MAX_PEM_CHARS} characters; a file path is not accepted"
            )
        if value is not None:
            try:
                x509.load_pem_x509_certificates(value.encode())
            except ValueError:
                raise ValueError("trust_roots holds no readable PEM certificate") from None
        return value


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
        trust_roots=(
            Path(settings.paypal_trust_roots).read_text()  # the operator's own file
            if settings.paypal_trust_roots
            else None
        ),
    )
