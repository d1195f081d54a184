"""Which connection takes a payment: the gateway or connection named on it, else the route
for its currency (PAYMUX_ROUTES, e.g. ``EUR=paypal,GBP=square,USD=stripe``), else the
account's own connections that take the currency and the payment method types, by priority,
else the deployment's default gateway (PAYMUX_DEFAULT_GATEWAY). services/connections.py
decides among connections; the rules here are pure.

A connection takes a payment method type when its connector does
(``Connector.payment_method_types``) and the connection has it enabled (its own
``payment_method_types``; none set: every type of its connector). An operation that needs a
capability a connector does not declare (``Connector.capabilities``: partial_capture,
manual_capture, three_d_secure, vault, disputes, refunds) is refused with a clear 400 before
any gateway call, not left to fail at the gateway."""

from __future__ import annotations

from collections.abc import Sequence

from paymux.domain.errors import PaymuxError
from paymux.gateways.connectors import connectors
from paymux.money import Money
from paymux.services.context import Context, Routed

__all__ = [
    "choose_gateway",
    "connector_types",
    "missing_capabilities",
    "param_of",
    "parse_routes",
    "require_capability",
    "takes_types",
    "unactivated",
]

# What a capability lets a payment do, for the refusal's message.
_WHAT = {
    "partial_capture": "capture part of an authorization",
    "manual_capture": "authorize now and capture later (capture_method=manual)",
    "three_d_secure": "run 3-D Secure",
    "vault": "save a payment method for later",
    "disputes": "report disputes",
    "refunds": "refund",
}


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


def connector_types(gateway: str) -> frozenset[str]:
    """The payment method types a gateway's connector takes (cards, unless it says more)."""
    connector = connectors().get(gateway)
    return connector.payment_method_types if connector is not None else frozenset({"card"})


def takes_types(
    gateway: str, enabled: Sequence[str] | None, wanted: Sequence[str] | None
) -> bool:
    """Whether a connection to ``gateway`` with ``enabled`` types (None: all its connector
    takes) takes every type in ``wanted`` (None or empty: a card payment, which every
    connector takes)."""
    if not wanted:
        return True
    offered = connector_types(gateway)
    if enabled is not None:
        offered = offered & frozenset(enabled)
    return all(kind in offered for kind in wanted)


def missing_capabilities(gateway: str, needs: frozenset[str]) -> list[str]:
    """The capabilities in ``needs`` the gateway's connector does not declare. A gateway with
    no connector (one handed to ``Paymux(gateways=...)`` by a library user) is trusted."""
    connector = connectors().get(gateway)
    if connector is None:
        return []
    return sorted(needs - connector.capabilities)


def require_capability(gateway: str, capability: str, *, param: str | None = None) -> None:
    """Refuse (400 ``capability_not_supported``) an operation whose gateway's connector does
    not declare ``capability``, before anything is recorded or sent."""
    if missing_capabilities(gateway, frozenset({capability})):
        raise PaymuxError.of(
            "capability_not_supported",
            f"The {gateway} gateway cannot {_WHAT.get(capability, capability)} "
            f"(it does not support {capability}).",
            param=param,
        )


def unactivated(wanted: Sequence[str], currency: str, where: str) -> PaymuxError:
    """The refusal of a payment no enabled connection can take: ``parameter_invalid`` on
    ``payment_method_types``, as a type the gateway does not take was refused before."""
    return PaymuxError.of(
        "parameter_invalid",
        f"No enabled {where} takes payment method type"
        f"{'s' if len(wanted) > 1 else ''} {', '.join(wanted)} in {currency}: enable "
        "it on a connection (payment_method_types), or use another type.",
        param="payment_method_types",
    )


async def choose_gateway(
    ctx: Context,
    account_id: str,
    requested: str | None,
    amount: Money,
    *,
    livemode: bool = False,
    payment_method_types: Sequence[str] | None = None,
    needs: frozenset[str] = frozenset(),
) -> Routed:
    """The connection for a payment, once its gateway is known to take this currency and
    amount, every payment method type in ``payment_method_types``, and to declare the
    capabilities in ``needs`` (``manual_capture``...). ``requested`` names a gateway or a
    connection (``conn_...``). Nothing is sent to a gateway here."""
    if ctx.directory is not None:
        routed = await ctx.directory.route(
            account_id,
            requested,
            amount.currency,
            livemode=livemode,
            payment_method_types=payment_method_types,
            needs=needs,
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
    if payment_method_types and not takes_types(gateway.name, None, payment_method_types):
        raise unactivated(list(payment_method_types), amount.currency, "connection")
    for capability in sorted(needs):
        require_capability(gateway.name, capability, param=param_of(capability))
    problem = gateway.amount_problem(amount)
    if problem:
        raise PaymuxError.of("amount_invalid", problem, param="amount")
    return routed


def param_of(capability: str) -> str | None:
    """The request parameter that asks for ``capability``, named in its refusal."""
    return {"manual_capture": "capture_method"}.get(capability)
