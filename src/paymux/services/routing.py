"""Which connection takes a payment: the gateway or connection named on it, else the route
for its currency (PAYMUX_ROUTES, e.g. ``EUR=paypal,GBP=square,USD=stripe``), else the
account's own connections that take the currency, by priority, else the deployment's default
gateway (PAYMUX_DEFAULT_GATEWAY). services/connections.py decides among connections."""

from __future__ import annotations

from paymux.domain.errors import PaymuxError
from paymux.money import Money
from paymux.services.context import Context, Routed

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


async def choose_gateway(
    ctx: Context, account_id: str, requested: str | None, amount: Money, *, livemode: bool = False
) -> Routed:
    """The connection for a payment, once its gateway is known to take this currency and
    amount. ``requested`` names a gateway or a connection (``conn_...``)."""
    if ctx.directory is not None:
        routed = await ctx.directory.route(
            account_id, requested, amount.currency, livemode=livemode
        )
    else:
        name = requested or parse_routes(ctx.settings.routes).get(amount.currency)
        gateway = await ctx.gateway(name)
        routed = Routed(gateway, "conn_env_" + gateway.name)
    gateway = routed.gateway
    if not gateway.supports_currency(amount.currency):
        raise PaymuxError.of(
            "currency_not_supported",
            f"The {gateway.name} gateway does not support {amount.currency}.",
            param="currency",
        )
    problem = gateway.amount_problem(amount)
    if problem:
        raise PaymuxError.of("amount_invalid", problem, param="amount")
    return routed
