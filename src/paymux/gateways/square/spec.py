"""Square as a connector (see paymux.gateways.connectors)."""

from __future__ import annotations

from paymux.gateways.base import Gateway
from paymux.gateways.connectors import Connector, ConnectorEnv
from paymux.gateways.square.connector import SquareGateway
from paymux.gateways.square.credentials import SquareCredentials, from_environment
from paymux.gateways.square.errors import ROWS

__all__ = ["CONNECTOR", "build"]


def build(credentials: SquareCredentials, env: ConnectorEnv) -> Gateway:
    return SquareGateway.from_credentials(
        credentials, webhook_url=env.webhook_url, timeout=env.settings.gateway_timeout
    )


CONNECTOR = Connector(
    name="square",
    credentials=SquareCredentials,
    build=build,
    from_environment=from_environment,
    # CreatePayment with autocomplete=false then CompletePayment; a partial capture lowers the
    # amount first (card payments with Square's EDIT_AMOUNT_DOWN capability; refused before
    # anything changes otherwise); 3-D Secure through the Web Payments SDK's verifyBuyer token
    # (authentication happens in the browser before CreatePayment, never as requires_action);
    # customers with cards on file; refunds; dispute.* events.
    capabilities=frozenset(
        {"partial_capture", "three_d_secure", "vault", "disputes", "refunds", "manual_capture"}
    ),
    error_codes=ROWS,
    api_hosts=frozenset({"connect.squareup.com", "connect.squareupsandbox.com"}),  # live, sandbox
)
