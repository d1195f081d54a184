"""Request bodies of /v1/webhook_endpoints (Stripe's parameters, plus ``signature_scheme``
and the manual sends)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt

from paymux.api.schemas import Body, Metadata

__all__ = [
    "CreateWebhookEndpoint",
    "ReplayWebhookEvents",
    "ResendWebhookEvent",
    "RollWebhookSecret",
    "UpdateWebhookEndpoint",
]

EventTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]],
    Field(min_length=1, max_length=256, description="Event types to receive, or ['*']."),
]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Scheme = Literal["standard", "stripe"]
ApiVersion = Annotated[str, Field(max_length=40)]


class CreateWebhookEndpoint(Body):
    url: Url
    enabled_events: EventTypes
    description: Annotated[str, Field(max_length=5000)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    signature_scheme: Scheme = Field(
        default="standard",
        description="standard: Standard Webhooks headers; stripe: a Stripe-Signature header.",
    )
    api_version: ApiVersion | None = None
    connect: StrictBool | None = None  # Stripe's; accepted, no effect (no Connect here)


class UpdateWebhookEndpoint(Body):
    url: Url | None = None
    enabled_events: EventTypes | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    metadata: Metadata | None = None
    signature_scheme: Scheme | None = None
    api_version: ApiVersion | None = None
    disabled: StrictBool | None = None


class RollWebhookSecret(Body):
    grace_period: Annotated[StrictInt, Field(ge=0, le=7 * 24 * 3600)] = Field(
        default=0,
        description="Seconds the old secret keeps signing too (0: replaced at once; at most "
        "7 days).",
    )


class ResendWebhookEvent(Body):
    event: Annotated[str, Field(min_length=1, max_length=40)]


class ReplayWebhookEvents(Body):
    created_gte: StrictInt | None = Field(default=None, description="Epoch seconds, inclusive.")
    created_lte: StrictInt | None = Field(default=None, description="Epoch seconds, inclusive.")
