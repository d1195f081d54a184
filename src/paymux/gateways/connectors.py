"""Connectors: what each gateway brings to paymux, found without a list of them anywhere.

A connector is a ``Connector`` object: the gateway's name, its credentials model (the fields
a connection needs, secrets as ``SecretStr``, unknown fields refused), how to build the
``Gateway`` from credentials, how to read today's environment variables into credentials, its
capabilities and its error-code rows. Two ways to be found:

- built in: a subpackage of ``paymux.gateways`` with a module ``spec`` that defines
  ``CONNECTOR`` (``paymux/gateways/stripe/spec.py``);
- a plugin: an installed distribution with an entry point in the group ``paymux.connectors``
  naming a ``Connector`` object (``mypay = "paymux_mypay:CONNECTOR"``).

``connectors()`` discovers them once per process and registers each one's error-code rows
with ``paymux.domain.errors.register_gateway_codes``. Adding a gateway touches no file here,
in ``registry.py``, ``config.py`` or ``domain/``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from paymux.config import Settings
from paymux.domain.errors import register_gateway_codes
from paymux.gateways.base import Gateway

__all__ = [
    "CAPABILITIES",
    "ENTRY_POINT_GROUP",
    "SPEC_MODULE",
    "Connector",
    "ConnectorEnv",
    "DuplicateConnectorError",
    "clear_connector_cache",
    "connectors",
]

ENTRY_POINT_GROUP = "paymux.connectors"
SPEC_MODULE = "spec"  # paymux.gateways.<name>.spec defines CONNECTOR
CAPABILITIES = frozenset(
    {"partial_capture", "three_d_secure", "vault", "disputes", "refunds", "manual_capture"}
)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # goes into URLs (/webhooks/{name}) and ids


@dataclass(frozen=True)
class ConnectorEnv:
    """What building a gateway needs from the deployment (never a secret)."""

    settings: Settings
    # Where this connection's webhooks arrive: {base_url}/webhooks/{connection_id}, or
    # /webhooks/{gateway} for the default account's connections from the environment.
    webhook_url: str


@dataclass(frozen=True)
class Connector:
    """Everything paymux needs to know about one gateway."""

    name: str  # "stripe": the gateway's name everywhere (intents, webhooks, error rows)
    credentials: type[BaseModel]  # the fields a connection needs; extra="forbid"
    build: Callable[[Any, ConnectorEnv], Gateway]  # a credentials instance -> a Gateway
    # Today's environment variables (through Settings) -> credentials; None: not configured.
    from_environment: Callable[[Settings], BaseModel | None]
    capabilities: frozenset[str] = frozenset()  # a subset of CAPABILITIES
    # What its payments can be paid with (Stripe's payment_method_types): routing sends a
    # payment only to a connection whose connector takes every type it names.
    payment_method_types: frozenset[str] = frozenset({"card"})
    error_codes: Sequence[tuple[str, str, str | None]] = ()  # (theirs, our code, decline code)
    test_only: bool = False  # True for the sandbox: it has no live mode
    # The provider's published API hosts: the only ones a connection's ``api_base`` may
    # name (https), unless the operator allows others (paymux.security.gateway_hosts).
    api_hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"connector name {self.name!r}: lower-case letters, digits and _ only")
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise ValueError(f"connector {self.name!r}: unknown capabilities {sorted(unknown)}")
        if self.credentials.model_config.get("extra") != "forbid":
            raise ValueError(
                f"connector {self.name!r}: its credentials model must refuse unknown fields "
                '(model_config = ConfigDict(extra="forbid"))'
            )

    def secret_fields(self) -> list[str]:
        """The credential fields that hold a secret (``SecretStr``, alone, optional or in a
        list): shown masked, never in clear."""
        return [
            name
            for name, field in self.credentials.model_fields.items()
            if _holds_secret(field.annotation)
        ]


class DuplicateConnectorError(ValueError):
    """Two connectors have the same name (a plugin shadowing a built-in one, or two plugins)."""


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


_lock = threading.RLock()
_found: dict[str, Connector] | None = None
_discovering = False


def connectors() -> dict[str, Connector]:
    """Every connector this process knows, by name: the built-in ones, then the plugins.

    Discovered on the first call (and after ``clear_connector_cache``), which also registers
    their error-code rows. Raises ``DuplicateConnectorError`` when two share a name, and
    TypeError for a spec module or entry point that does not give a ``Connector``.
    """
    global _found, _discovering
    with _lock:
        if _found is None:
            if _discovering:
                raise RuntimeError("a connector's module called connectors() while being found")
            _discovering = True
            try:
                found = _discover()
            finally:
                _discovering = False
            for connector in found.values():
                register_gateway_codes(connector.name, connector.error_codes)
            _found = found
        return dict(_found)


def clear_connector_cache() -> None:
    """Forget what was discovered, and the error rows it registered (for tests, or after
    installing a plugin); the next ``connectors()`` discovers again."""
    global _found
    with _lock:
        for name in _found or {}:
            register_gateway_codes(name, ())
        _found = None


def _discover() -> dict[str, Connector]:
    found: dict[str, Connector] = {}
    origins: dict[str, str] = {}

    def add(value: object, origin: str) -> None:
        if not isinstance(value, Connector):
            raise TypeError(f"{origin} is a {type(value).__name__}, not a paymux Connector")
        if value.name in found and found[value.name] is not value:
            raise DuplicateConnectorError(
                f"two connectors are named {value.name!r}: {origins[value.name]} and {origin}"
            )
        found[value.name] = value
        origins[value.name] = origin

    package = importlib.import_module("paymux.gateways")
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        name = f"{info.name}.{SPEC_MODULE}"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            add(_connector_of(module), f"{name}.CONNECTOR")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry.dist.name if entry.dist is not None else "?"
        add(entry.load(), f"entry point {entry.name} = {entry.value} (from {dist})")
    return found


def _connector_of(module: ModuleType) -> object:
    try:
        return module.CONNECTOR
    except AttributeError:
        raise TypeError(f"{module.__name__} defines no CONNECTOR") from None
