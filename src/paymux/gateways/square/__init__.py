"""The Square connector (official ``squareup`` SDK); its webhooks use Square's HMAC scheme."""

from paymux.gateways.square.connector import SquareGateway

__all__ = ["SquareGateway"]
