"""The Stripe connector (official ``stripe`` SDK); its webhooks use Stripe's signature scheme."""

from paymux.gateways.stripe.connector import StripeGateway

__all__ = ["StripeGateway"]
