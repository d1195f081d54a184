"""The sandbox as a connector (see paymux.gateways.connectors)."""

from __future__ import annotations

import os
import threading
import weakref

from paymux.gateways.base import Gateway
from paymux.gateways.connectors import Connector, ConnectorEnv
from paymux.gateways.sandbox.connector import SandboxGateway
from paymux.gateways.sandbox.credentials import SandboxCredentials, from_environment
from paymux.gateways.sandbox.errors import ROWS
from paymux.gateways.sandbox.processor import SandboxProcessor

__all__ = ["CONNECTOR", "build", "shared_processor"]

# Every sandbox connection of every account talks to the same simulated provider: one
# processor per database file (and public URL) while any gateway uses it.
_processors: weakref.WeakValueDictionary[tuple[str, str], SandboxProcessor] = (
    weakref.WeakValueDictionary()
)
_processors_lock = threading.Lock()


def shared_processor(path: str, public_url: str) -> SandboxProcessor:
    """The process's processor on the database ``path``, opened on first use."""
    key = (path if path.startswith(":") else os.path.abspath(path), public_url)
    with _processors_lock:
        processor = _processors.get(key)
        if processor is None:
            processor = SandboxProcessor(path, public_url=public_url)
            _processors[key] = processor
        return processor


def build(credentials: SandboxCredentials, env: ConnectorEnv) -> Gateway:
    secret = credentials.webhook_secret
    return SandboxGateway(
        shared_processor(env.settings.sandbox_db, env.settings.base_url()),
        latency=credentials.latency,
        webhook_secrets=[secret.get_secret_value()] if secret else None,
        webhook_url=env.webhook_url,
        webhook_delay=credentials.webhook_delay,
    )


CONNECTOR = Connector(
    name="sandbox",
    credentials=SandboxCredentials,
    build=build,
    from_environment=from_environment,
    # Holds an authorization and captures part of it or all (capture <= authorized), 3-D
    # Secure challenges on its test cards, customers with saved cards, refunds (full or
    # partial). No disputes: it never opens one.
    capabilities=frozenset(
        {"partial_capture", "three_d_secure", "vault", "refunds", "manual_capture"}
    ),
    error_codes=ROWS,
    test_only=True,
)
