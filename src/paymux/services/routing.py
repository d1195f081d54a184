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
any gateway call, not left to fail at the gateway.

Failover (``open_payment``): a new payment that nothing binds to a connection yet (no
payment method, customer, connection or gateway named; not a retry of a request that already
tried a connection) whose connection could not be reached at all (``GatewayUnreachable`` on
every try: nothing was sent) goes to the account's next connection that takes it, if the
unreachable connection allows it (its ``failover`` setting, off by default). An error after
which the request may have reached the provider (a timeout, a 5xx, a 429) never fails over:
the same payment could then exist at two providers. Each connection is told before it is
tried (``before_each``: the caller records it on the request's Idempotency-Key), so a retry
of the request goes back to the connection its first run last tried, and never fails over;
every connection gets the same key, ``{pi_id}:open``, so a provider account two connections
share opens the payment once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from paymux.domain.errors import PaymuxError
from paymux.gateways.base import Gateway, GatewayUnreachable, OpenedPayment
from paymux.gateways.connectors import connectors
from paymux.money import Money
from paymux.services.context import Context, Routed
from paymux.services.gateway_calls import call_with_retries

__all__ = [
    "choose_gateway",
    "connector_types",
    "missing_capabilities",
    "open_payment",
    "param_of",
    "parse_routes",
    "require_capability",
    "takes_types",
    "unactivated",
]

log = logging.getLogger(__name__)

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


class _Tries:
    """Whether any try of a call may have reached the provider."""

    def __init__(self) -> None:
        self.reached = False


async def _open_once(
    gateway: Gateway, amount: Money, pi_id: str, capture: bool, key: str, tries: _Tries
) -> OpenedPayment | None:
    try:
        return await gateway.open_payment(amount, pi_id, capture, idempotency_key=key)
    except GatewayUnreachable:
        raise
    except BaseException:
        tries.reached = True
        raise


async def open_payment(
    ctx: Context,
    account_id: str,
    routed: Routed,
    amount: Money,
    pi_id: str,
    capture: bool,
    *,
    may_fail_over: bool,
    livemode: bool = False,
    payment_method_types: Sequence[str] | None = None,
    needs: frozenset[str] = frozenset(),
    before_each: Callable[[Routed], Awaitable[None]] | None = None,
) -> tuple[OpenedPayment | None, Routed]:
    """Open the payment ``pi_id`` at its connection's gateway (``Gateway.open_payment``,
    under the retry policy), failing over as the module says when ``may_fail_over``. Returns
    what was opened and the connection that opened it. ``before_each(connection)`` is awaited
    before each connection is tried (and may raise to stop). Every connection's idempotency
    key is ``{pi_id}:open``."""
    key = f"{pi_id}:open"
    tried = [routed.connection_id]
    while True:
        if before_each is not None:
            await before_each(routed)
        tries = _Tries()
        gateway = routed.gateway
        try:
            opened = await call_with_retries(
                ctx.settings,
                lambda: _open_once(gateway, amount, pi_id, capture, key, tries),  # noqa: B023
            )
            return opened, routed
        except GatewayUnreachable:
            if tries.reached or not may_fail_over or ctx.directory is None:
                raise
            nxt = await _next_taker(
                ctx, account_id, routed.connection_id, amount, tried,
                livemode=livemode, payment_method_types=payment_method_types, needs=needs,
            )
            if nxt is None:
                raise
            log.warning(
                "connection %s could not be reached (nothing was sent): %s goes through %s",
                routed.connection_id,
                pi_id,
                nxt.connection_id,
            )
            routed = nxt


async def _next_taker(
    ctx: Context,
    account_id: str,
    failed: str,
    amount: Money,
    tried: list[str],
    *,
    livemode: bool,
    payment_method_types: Sequence[str] | None,
    needs: frozenset[str],
) -> Routed | None:
    """The next connection after ``failed`` whose gateway takes ``amount`` (its currency and
    its size), adding every one asked to ``tried``; None when none is left."""
    assert ctx.directory is not None
    while True:
        nxt = await ctx.directory.fallback(
            account_id,
            failed,
            amount.currency,
            livemode=livemode,
            payment_method_types=payment_method_types,
            needs=needs,
            tried=frozenset(tried),
        )
        if nxt is None:
            return None
        tried.append(nxt.connection_id)
        gateway = nxt.gateway
        if gateway.supports_currency(amount.currency) and gateway.amount_problem(amount) is None:
            return nxt
