"""The sandbox's connection settings. It has no account to log in to: its simulated provider
is this process's (one SQLite file, ``PAYMUX_SANDBOX_DB``), shared by every connection."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from paymux.config import Settings

__all__ = ["MAX_LATENCY_SECONDS", "MAX_WEBHOOK_DELAY_SECONDS", "SandboxCredentials",
           "from_environment"]

# Upper bounds of a connection's simulated delays: each holds a request (latency, on every
# call) or a task (a webhook's delay) open that long, so a typo such as 1e9 must not park a
# server's requests for ever. The same bound as the test control /sandbox/_control/latency.
MAX_LATENCY_SECONDS = 60.0
MAX_WEBHOOK_DELAY_SECONDS = 60.0


class SandboxCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Signs the sandbox's webhooks; None: the secret the sandbox keeps in its own store (as a
    # provider's dashboard would show it).
    webhook_secret: SecretStr | None = None
    # Seconds added to every call, from 0 to MAX_LATENCY_SECONDS (a number, not inf or NaN).
    latency: float = Field(
        default=0.0, ge=0.0, le=MAX_LATENCY_SECONDS, allow_inf_nan=False
    )
    # Seconds before each webhook is sent, from 0 to MAX_WEBHOOK_DELAY_SECONDS.
    webhook_delay: float = Field(
        default=0.0, ge=0.0, le=MAX_WEBHOOK_DELAY_SECONDS, allow_inf_nan=False
    )

    @field_validator("latency", "webhook_delay", mode="before")
    @classmethod
    def _not_a_flag(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read true as 1 second
            raise ValueError("Input should be a number of seconds, not a boolean")
        return value


def from_environment(settings: Settings) -> SandboxCredentials | None:
    """PAYMUX_SANDBOX_*; None when PAYMUX_SANDBOX_ENABLED is off."""
    if not settings.sandbox_enabled:
        return None
    return SandboxCredentials(
        webhook_secret=settings.sandbox_webhook_secret,
        latency=settings.sandbox_latency,
        webhook_delay=settings.sandbox_webhook_delay,
    )
