"""PayPal as a connector (see paymux.gateways.connectors)."""

from __future__ import annotations

from paymux.gateways.base import Gateway
from paymux.gateways.connectors import Connector, ConnectorEnv
from paymux.gateways.paypal.connector import PayPalGateway
from paymux.gateways.paypal.credentials import PayPalCredentials, from_environment
from paymux.gateways.paypal.errors import ROWS

__all__ = ["CONNECTOR", "build"]


def build(credentials: PayPalCredentials, env: ConnectorEnv) -> Gateway:
    return PayPalGateway.from_credentials(credentials, timeout=env.settings.gateway_timeout)


CONNECTOR = Connector(
    name="paypal",
    credentials=PayPalCredentials,
    build=build,
    from_environment=from_environment,
    # Orders with intent AUTHORIZE and a capture of part or all of the authorization,
    # 3-D Secure and payer approval (PAYER_ACTION_REQUIRED -> requires_action), Vault v3
    # payment tokens, refunds of captures, CUSTOMER.DISPUTE.* events.
    capabilities=frozenset(
        {"partial_capture", "three_d_secure", "vault", "disputes", "refunds", "manual_capture"}
    ),
    error_codes=ROWS,
    payment_method_types=frozenset({"card", "paypal"}),  # cards and PayPal wallets
    # REST API hosts, live and sandbox (api-m.*; the older api.* names still answer).
    api_hosts=frozenset(
        {"api-m.paypal.com", "api-m.sandbox.paypal.com", "api.paypal.com", "api.sandbox.paypal.com"}
    ),
)
