"""The API shapes of an endpoint, an attempt and a delivered event (Stripe's where Stripe
has one)."""

from __future__ import annotations

from typing import Any

from paymux.domain.clock import seconds
from paymux.storage.models import WebhookAttempt, WebhookEndpoint

__all__ = ["DEFAULT_API_VERSION", "attempt_view", "endpoint_view", "event_payload"]

# What ``api_version`` says when the endpoint did not pin one (Stripe's current version
# when paymux's event shapes were last checked against Stripe's).
DEFAULT_API_VERSION = "2024-06-20"


def endpoint_view(ep: WebhookEndpoint, *, secret: str | None = None) -> dict[str, Any]:
    """Stripe's webhook_endpoint; ``secret`` only in the answers that create or roll it."""
    view: dict[str, Any] = {
        "id": ep.id,
        "object": "webhook_endpoint",
        "api_version": ep.api_version,
        "application": None,
        "created": seconds(ep.created_us),
        "description": ep.description,
        "enabled_events": list(ep.enabled_events),
        "livemode": bool(ep.livemode),
        "metadata": dict(ep.metadata_ or {}),
        "signature_scheme": ep.signature_scheme,
        "status": ep.status,
        "disabled_reason": ep.disabled_reason,
        "url": ep.url,
    }
    if secret is not None:
        view["secret"] = secret
    return view


def attempt_view(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "webhook_endpoint.attempt",
        "webhook_endpoint": a.endpoint_id,
        "delivery": a.delivery_id,
        "event": a.event_id,
        "event_type": a.event_type,
        "created": seconds(a.created_us),
        "status": a.status,
        "http_status": a.http_status,
        "latency_ms": a.latency_ms,
        "response_body": a.response_body,
        "error": a.error,
    }


def event_payload(
    event_id: str,
    type_: str,
    data: dict[str, Any],
    created_us: int,
    livemode: bool,
    api_version: str | None,
    *,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stripe's event object as a delivery carries it: ``request`` is the API request that
    caused the event (nulls when a worker did, as Stripe's are for automatic changes);
    ``data.previous_attributes`` (``*.updated`` events) the changed fields' old values."""
    body: dict[str, Any] = {"object": data}
    if previous_attributes is not None:
        body["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version or DEFAULT_API_VERSION,
        "created": seconds(created_us),
        "data": body,
        "livemode": bool(livemode),
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type_,
    }
