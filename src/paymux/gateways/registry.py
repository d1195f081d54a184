"""Which gateways this deployment has, built from settings through the connectors."""

from __future__ import annotations

from paymux.config import Settings
from paymux.gateways.base import Gateway
from paymux.gateways.connectors import ConnectorEnv, connectors
from paymux.gateways.sandbox import SandboxGateway

__all__ = ["GatewayRegistry", "build_registry"]


class GatewayRegistry(dict[str, Gateway]):
    default: str = "sandbox"

    def sandbox(self) -> SandboxGateway | None:
        gateway = self.get("sandbox")
        return gateway if isinstance(gateway, SandboxGateway) else None


def build_registry(settings: Settings) -> GatewayRegistry:
    """A gateway for every connector the environment configures (its ``from_environment``
    gives credentials), its webhooks at ``{base_url}/webhooks/{name}``."""
    registry = GatewayRegistry()
    base_url = settings.base_url()
    for name, connector in connectors().items():
        credentials = connector.from_environment(settings)
        if credentials is not None:
            env = ConnectorEnv(settings=settings, webhook_url=f"{base_url}/webhooks/{name}")
            registry[name] = connector.build(credentials, env)
    registry.default = settings.default_gateway
    return registry
