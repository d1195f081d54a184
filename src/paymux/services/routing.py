"""Which gateway takes a payment: the one named on it, else the route for its currency, else
the default (PAYMUX_DEFAULT_GATEWAY). Routes come from PAYMUX_ROUTES, e.g.
``EUR=paypal,GBP=square,USD=stripe``."""

from __future__ import annotations

from paymux.domain.errors import PaymuxError
from paymux.gateways.base import Gateway
from paymux.money import Money
from paymux.services.context import Context

__all__ = ["choose_gateway", "parse_routes"]


def parse_routes(text: str) -> dict[str, str]:
    routes: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        currency, sep, gateway = item.partition("=")
        if not sep or not currency.strip() or not gateway.strip():
            raise ValueError(f"bad route {item!r}: use CURRENCY=gateway")
        routes[currency.strip().upper()] = gateway.strip().lower()
    return routes


def choose_gateway(ctx: Context, requested: str | None, amount: Money) -> Gateway:
    """The gateway for a payment, once it is known to take this currency and amount."""
    name = requested or parse_routes(ctx.settings.routes).get(amount.currency)
    gateway = ctx.gateway(name)
    if not gateway.supports_currency(amount.currency):
        raise PaymuxError.of(
            "currency_not_supported",
            f"The {gateway.name} gateway does not support {amount.currency}.",
            param="currency",
        )
    problem = gateway.amount_problem(amount)
    if problem:
        raise PaymuxError.of("amount_invalid", problem, param="amount")
    return gateway
