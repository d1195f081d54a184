"""Which gateways this deployment has, built from settings."""

from __future__ import annotations

from paymux.config import Settings
from paymux.gateways.base import Gateway
from paymux.gateways.sandbox import SandboxGateway, SandboxProcessor
from paymux.gateways.stripe import StripeGateway

__all__ = ["GatewayRegistry", "build_registry"]


class GatewayRegistry(dict[str, Gateway]):
    default: str = "sandbox"

    def sandbox(self) -> SandboxGateway | None:
        gateway = self.get("sandbox")
        return gateway if isinstance(gateway, SandboxGateway) else None


def build_registry(settings: Settings) -> GatewayRegistry:
    registry = GatewayRegistry()
    if settings.sandbox_enabled:
        secret = settings.sandbox_webhook_secret
        processor = SandboxProcessor(settings.sandbox_db, public_url=settings.base_url())
        registry["sandbox"] = SandboxGateway(
            processor,
            latency=settings.sandbox_latency,
            webhook_secrets=[secret.get_secret_value()] if secret else None,
            webhook_delay=settings.sandbox_webhook_delay,
        )
    if settings.stripe_secret_key is not None:
        secrets = settings.stripe_webhook_secrets
        registry["stripe"] = StripeGateway(
            settings.stripe_secret_key.get_secret_value(),
            publishable_key=settings.stripe_publishable_key,
            webhook_secrets=[
                s.strip() for s in (secrets.get_secret_value() if secrets else "").split(",")
                if s.strip()
            ],
            api_base=settings.stripe_api_base,
            webhook_tolerance=settings.webhook_tolerance_seconds,
            timeout=settings.gateway_timeout,
        )
    if settings.paypal_client_id and settings.paypal_client_secret is not None:
        from paymux.gateways.paypal import PayPalGateway

        registry["paypal"] = PayPalGateway.from_settings(settings)
    if settings.square_access_token is not None:
        from paymux.gateways.square import SquareGateway

        registry["square"] = SquareGateway.from_settings(settings)
    registry.default = settings.default_gateway
    return registry
