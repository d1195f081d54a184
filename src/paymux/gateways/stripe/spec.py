"""Stripe as a connector (see paymux.gateways.connectors)."""

from __future__ import annotations

from paymux.gateways.base import Gateway
from paymux.gateways.connectors import Connector, ConnectorEnv
from paymux.gateways.stripe.credentials import StripeCredentials, from_environment
from paymux.gateways.stripe.errors import ROWS

__all__ = ["CONNECTOR", "build"]


def build(credentials: StripeCredentials, env: ConnectorEnv) -> Gateway:
    # The SDK is imported with the first Stripe connection built, not at discovery: a
    # process without one does not carry it (4.8 MiB with requests; paymux.gateways.stripe).
    from paymux.gateways.stripe.connector import StripeGateway

    return StripeGateway(
        credentials.secret_key.get_secret_value(),
        publishable_key=credentials.publishable_key,
        webhook_secrets=[secret.get_secret_value() for secret in credentials.webhook_secrets],
        api_base=credentials.api_base,
        webhook_tolerance=env.settings.webhook_tolerance_seconds,
        timeout=env.settings.gateway_timeout,
    )


CONNECTOR = Connector(
    name="stripe",
    credentials=StripeCredentials,
    build=build,
    from_environment=from_environment,
    # PaymentIntents with capture_method=manual and amount_to_capture, 3-D Secure
    # (requires_action / next_action), customers with attached payment methods, refunds,
    # and charge.dispute.* events.
    capabilities=frozenset(
        {"partial_capture", "three_d_secure", "vault", "disputes", "refunds", "manual_capture"}
    ),
    error_codes=ROWS,
    api_hosts=frozenset({"api.stripe.com"}),
)
