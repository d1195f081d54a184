"""The Stripe connector (official ``stripe`` SDK); its webhooks use Stripe's signature scheme.

``StripeGateway`` is imported on first use, not with the package: the SDK (with the
``requests`` it probes for) adds ~4.8 MiB to a process, which one that never talks to Stripe
should not carry (issue 10's memory target; docs/operations.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paymux.gateways.stripe.connector import StripeGateway

__all__ = ["StripeGateway"]


def __getattr__(name: str) -> Any:
    if name == "StripeGateway":
        from paymux.gateways.stripe.connector import StripeGateway

        return StripeGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
