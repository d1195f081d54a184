"""What a Square connection needs: an access token, the location that takes the payments,
and the webhook subscription's signature key and URL."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from paymux.config import Settings

__all__ = ["SquareCredentials", "from_environment"]


class SquareCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: SecretStr  # EAAA...
    location_id: str | None = None  # None: the seller's main location
    # The webhook subscription's signature key; several, comma-separated, during a rotation.
    webhook_signature_key: SecretStr | None = None
    # The notification URL exactly as registered at Square (it is signed); None: the URL
    # paymux receives this connection's webhooks at.
    webhook_url: str | None = None
    api_base: str = "https://connect.squareupsandbox.com"  # live: https://connect.squareup.com
    application_id: str | None = None  # for the Web Payments SDK (sandbox-sq0idb-... / sq0idp-)


def from_environment(settings: Settings) -> SquareCredentials | None:
    """SQUARE_ACCESS_TOKEN, SQUARE_LOCATION_ID, SQUARE_WEBHOOK_SIGNATURE_KEY,
    SQUARE_WEBHOOK_URL, SQUARE_API_BASE, SQUARE_APPLICATION_ID (PAYMUX_-prefixed too); None
    without an access token."""
    if settings.square_access_token is None:
        return None
    return SquareCredentials(
        access_token=settings.square_access_token,
        location_id=settings.square_location_id,
        webhook_signature_key=settings.square_webhook_signature_key,
        webhook_url=settings.square_webhook_url,
        api_base=settings.square_api_base,
        application_id=settings.square_application_id,
    )
