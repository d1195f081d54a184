"""paymux: one payments integration for Stripe, PayPal, Square and a built-in sandbox.

The library face: ``from paymux import Paymux`` (the composition root, ``paymux.root``).

Layers (imports point down only)::

    root.py                  the composition root: builds every service (``Paymux``)
    api/ web/ cli            entry points, no business rules
    services/ webhooks/ jobs/  use cases, one transaction each, emit events
    gateways/                the Gateway Protocol and one package per provider
    domain/                  state machines, error taxonomy; pure
    money/                   Money and ISO 4217 currencies; pure
    storage/                 SQLAlchemy models, unit of work, Alembic migrations
    security/ config.py      redaction, PAN detection, settings
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paymux.root import Paymux

__version__ = "0.1.0"
__all__ = ["Paymux", "__version__"]


def __getattr__(name: str) -> Any:
    """``from paymux import Paymux``: the root, imported on first use (importing it here
    would import every package at ``import paymux``, and each of them imports this one)."""
    if name == "Paymux":
        from paymux.root import Paymux

        return Paymux
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
