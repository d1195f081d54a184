"""Use cases. Each opens its own transactions, never calls a gateway inside one, and writes
an event with every state change.

``Paymux``, the library face that builds every service (the same services the HTTP API is a
thin shell over), is the composition root in ``paymux.root``: it sits above services/ and the
packages that import services (billing, checkout, fraud, webhooks, outbound).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paymux.root import Paymux

__all__ = ["Paymux"]


def __getattr__(name: str) -> Any:
    """``from paymux.services import Paymux``, the import users' code and older releases
    use, keeps working: the one compatibility path to the root, imported on first use (at
    this package's import it would be a cycle, since the root imports every package that
    imports services). New code imports ``paymux.root``."""
    if name == "Paymux":
        from paymux.root import Paymux

        return Paymux
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
