"""The PayPal connector (REST API over httpx; not paypal-server-sdk, whose licence is not
Apache-2.0-compatible). Orders v2, Payments v2, Vault v3; webhooks verified by PayPal's API or
offline (CRC32 message, SHA256withRSA, certificate chain)."""

from paymux.gateways.paypal.connector import PayPalApiError, PayPalGateway

__all__ = ["PayPalApiError", "PayPalGateway"]
