"""``paymux serve`` in front of localstripe: the Stripe connector pointed at the fake Stripe,
localstripe's webhooks registered to ``/webhooks/stripe`` and signed with ``webhook_secret``.
The module fixtures of the Stripe e2e tests (flows, fraud on Stripe, metadata) are each one
call of ``localstripe_server``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from support.pgcluster import PgCluster
from support.sandboxes import LocalStripe

__all__ = ["localstripe_server"]


def localstripe_server(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
    localstripe: LocalStripe,
    *,
    name: str,
    webhook_secret: str,
    **settings: Any,
) -> Iterator[RunningServer]:
    """A running server on a fresh ``backend`` database named after ``name``; ``settings``
    go to ``make_settings`` (``default_gateway``, ``routes``, ...). Stopped at the end."""
    tmp = tmp_path_factory.mktemp(f"{name}-{backend}")
    url = migrated_database_url(backend, tmp, pg_cluster, f"{name}_{backend}")
    port = free_port()
    made = make_settings(
        url, tmp, port, stripe_secret_key="sk_test_paymux", stripe_api_base=localstripe.url,
        stripe_publishable_key="pk_test_paymux", stripe_webhook_secrets=webhook_secret,
        **settings,
    )
    localstripe.register_webhook(
        f"http://127.0.0.1:{port}/webhooks/stripe", webhook_secret, name=f"paymux-{name}{port}"
    )
    running = RunningServer(made).start()
    try:
        yield running
    finally:
        running.stop()
