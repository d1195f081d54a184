"""What a Stripe connection needs: an API key, and the endpoint secrets of its webhooks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from paymux.config import Settings

__all__ = ["StripeCredentials", "from_environment", "split_secrets"]


def split_secrets(value: str) -> list[str]:
    """A comma-separated string (as in an environment variable) as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class StripeCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret_key: SecretStr  # sk_test_... / sk_live_... (or a restricted rk_...)
    publishable_key: str | None = None  # pk_...: goes to the browser, not a secret
    # whsec_... of each webhook endpoint; several during a rotation. A list, or one string
    # with commas.
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    api_base: str | None = None  # another Stripe API origin (stripe-mock, tests)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return split_secrets(value) if isinstance(value, str) else value


def from_environment(settings: Settings) -> StripeCredentials | None:
    """STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRETS (PAYMUX_-prefixed too)
    and PAYMUX_STRIPE_API_BASE; None without a secret key."""
    if settings.stripe_secret_key is None:
        return None
    secrets = settings.stripe_webhook_secrets
    return StripeCredentials(
        secret_key=settings.stripe_secret_key,
        publishable_key=settings.stripe_publishable_key,
        webhook_secrets=[
            SecretStr(secret)
            for secret in split_secrets(secrets.get_secret_value() if secrets else "")
        ],
        api_base=settings.stripe_api_base,
    )
