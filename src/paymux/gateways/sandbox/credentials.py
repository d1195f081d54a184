"""The sandbox's connection settings. It has no account to log in to: its simulated provider
is this process's (one SQLite file, ``PAYMUX_SANDBOX_DB``), shared by every connection."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from paymux.config import Settings

__all__ = ["SandboxCredentials", "from_environment"]


class SandboxCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Signs the sandbox's webhooks; None: the secret the sandbox keeps in its own store (as a
    # provider's dashboard would show it).
    webhook_secret: SecretStr | None = None
    latency: float = 0.0  # seconds added to every call
    webhook_delay: float = 0.0  # seconds before each webhook is sent


def from_environment(settings: Settings) -> SandboxCredentials | None:
    """PAYMUX_SANDBOX_*; None when PAYMUX_SANDBOX_ENABLED is off."""
    if not settings.sandbox_enabled:
        return None
    return SandboxCredentials(
        webhook_secret=settings.sandbox_webhook_secret,
        latency=settings.sandbox_latency,
        webhook_delay=settings.sandbox_webhook_delay,
    )
