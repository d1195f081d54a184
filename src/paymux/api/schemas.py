"""Request bodies. Unknown parameters are refused (``extra="forbid"``), so there is no field
that can carry a card number; amounts are strict integers (a float or a string is a 400)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

__all__ = [
    "AttachPaymentMethod",
    "CancelPaymentIntent",
    "CapturePaymentIntent",
    "ConfirmPaymentIntent",
    "CreateConnection",
    "CreateCustomer",
    "CreateKey",
    "CreatePaymentIntent",
    "CreateRefund",
    "CreatedFilter",
    "EventsQuery",
    "ExpandQuery",
    "Expandable",
    "InvoiceSettings",
    "ListQuery",
    "NoParams",
    "RollKey",
    "UpdateConnection",
    "UpdateCustomer",
    "UpdateMetadata",
    "UpdatePaymentIntent",
]


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50:
        raise ValueError("metadata can have at most 50 keys")
    for key, item in value.items():
        if "\x00" in key or "\x00" in item:
            raise ValueError("metadata must not contain NUL characters")
        if not key or len(key) > 40:
            raise ValueError("metadata keys must be 1 to 40 characters")
        if len(item) > 500:
            raise ValueError("metadata values must be at most 500 characters")
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
Currency = Annotated[str, Field(min_length=3, max_length=3)]
Id = Annotated[str, Field(min_length=1, max_length=255)]
Descriptor = Annotated[str, Field(max_length=22)]
Text = Annotated[str, Field(max_length=1000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold U+0000: refused here as a 400, not a 500 from the driver.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


Email = Annotated[str, Field(min_length=3, max_length=512, pattern=r"^[^@\s]+@[^@\s]+$")]
PaymentMethodTypes = Annotated[
    list[Literal["card", "paypal"]],
    Field(min_length=1, max_length=5, description="What the payer may pay with (Stripe's)."),
]


# "automatic_async" (Stripe's default since API version 2024-06-20) captures as "automatic"
# does here: at once, when the payment is authorized.
CaptureMethod = Literal["automatic", "automatic_async", "manual"]


class AutomaticPaymentMethods(Body):
    enabled: StrictBool
    allow_redirects: Literal["always", "never"] | None = None


ExpandPaths = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]],
    Field(max_length=20, description="Ids to replace by the objects they name (Stripe's)."),
]


class Expandable(Body):
    """A request whose answer can expand ids into objects (``expand[]=customer``)."""

    expand: ExpandPaths | None = None


class CreatedFilter(BaseModel):
    """``created[gt|gte|lt|lte]``, epoch seconds."""

    model_config = ConfigDict(extra="forbid")
    gt: StrictInt | None = None
    gte: StrictInt | None = None
    lt: StrictInt | None = None
    lte: StrictInt | None = None


class ExpandQuery(BaseModel):
    """The query of a retrieve: ``expand[]``."""

    model_config = ConfigDict(extra="forbid")
    expand: ExpandPaths | None = None


class ListQuery(ExpandQuery):
    """The bracket-form query of a list: ``expand[]=data.customer``, ``created[gte]``."""

    created: CreatedFilter | None = None


class EventsQuery(BaseModel):
    """Events also filter by several types at once: ``types[]=a&types[]=b``."""

    model_config = ConfigDict(extra="forbid")

    types: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=20)] | None = None


class NoParams(Body):
    """The body of a POST that takes no parameters: any parameter sent is unknown."""


class CreatePaymentIntent(Expandable):
    amount: StrictInt | None = None
    amount_decimal: Annotated[str, Field(max_length=40)] | None = Field(
        default=None,
        description="The amount as a decimal string in major units (e.g. '10.50'); an "
        "alternative to `amount`. More decimals than the currency has is an error.",
    )
    currency: Currency
    capture_method: CaptureMethod = "automatic"
    customer: Id | None = None
    payment_method: Id | None = None
    gateway: Id | None = None
    confirm: StrictBool = False
    off_session: StrictBool = False
    setup_future_usage: Literal["on_session", "off_session"] | None = None
    return_url: Annotated[str, Field(max_length=2048)] | None = None
    description: Text | None = None
    statement_descriptor: Descriptor | None = None
    statement_descriptor_suffix: Descriptor | None = None
    receipt_email: Email | None = None
    payment_method_types: PaymentMethodTypes | None = None
    automatic_payment_methods: AutomaticPaymentMethods | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdatePaymentIntent(Expandable):
    amount: StrictInt | None = None
    currency: Currency | None = None
    customer: Id | None = None
    payment_method: Id | None = None
    capture_method: CaptureMethod | None = None
    setup_future_usage: Literal["on_session", "off_session"] | None = None
    description: Text | None = None
    statement_descriptor: Descriptor | None = None
    statement_descriptor_suffix: Descriptor | None = None
    receipt_email: Email | None = None
    payment_method_types: PaymentMethodTypes | None = None
    metadata: Metadata | None = None


class ConfirmPaymentIntent(Expandable):
    payment_method: Id | None = None
    off_session: StrictBool | None = None
    return_url: Annotated[str, Field(max_length=2048)] | None = None
    setup_future_usage: Literal["on_session", "off_session"] | None = None
    # Square's verifyBuyer token (SCA), passed to the gateway as it is.
    verification_token: Annotated[str, Field(max_length=2048)] | None = None
    # The intent's client secret: what a publishable key (a checkout page) confirms with.
    client_secret: Annotated[str, Field(max_length=100)] | None = None


class CapturePaymentIntent(Expandable):
    amount_to_capture: StrictInt | None = None
    currency: Currency | None = None


class CancelPaymentIntent(Expandable):
    # Checked by the service against the one list, domain.attempts.CANCELLATION_REASONS.
    cancellation_reason: str | None = None


class CreateRefund(Expandable):
    payment_intent: Id | None = None
    charge: Id | None = Field(
        default=None, description="The charge to refund (its payment intent's): or payment_intent."
    )
    amount: StrictInt | None = None
    currency: Currency | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


class InvoiceSettings(Body):
    """Stripe's ``invoice_settings``: the payment method invoices charge ("" unsets it)."""

    default_payment_method: Annotated[str, Field(max_length=255)] | None = None


class CreateCustomer(Expandable):
    email: Annotated[str, Field(max_length=512)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Text | None = None
    metadata: Metadata = Field(default_factory=dict)
    invoice_settings: InvoiceSettings | None = None
    test_clock: Id | None = None


class UpdateCustomer(Expandable):
    email: Annotated[str, Field(max_length=512)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Text | None = None
    metadata: Metadata | None = None
    default_payment_method: Id | None = None
    invoice_settings: InvoiceSettings | None = None


class AttachPaymentMethod(Expandable):
    customer: Id
    gateway: Id | None = None


class CreateKey(Body):
    account: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None, description="The account; a new one when left out."
    )
    type: Literal["secret", "publishable", "restricted"] = "secret"
    livemode: StrictBool = False
    name: Annotated[str, Field(max_length=200)] | None = None
    permissions: dict[str, str] | None = Field(
        default=None,
        description="A restricted key's grants: {resource: 'read' | 'write'}, resources being "
        "payment_intents, refunds, customers, payment_methods, events, disputes, connections, "
        "audit_log.",
    )


class RollKey(Body):
    expires_in: Annotated[StrictInt, Field(ge=0, le=7 * 24 * 3600)] = Field(
        default=0,
        description="Seconds the old key keeps working (0: refused at once; at most 7 days).",
    )


Credentials = Annotated[
    dict[str, str | list[str] | float | int | bool],
    Field(
        description="The gateway's credential fields (see GET /v1/connections/gateways for "
        "each gateway's): write-only, sealed at rest, never shown again but for a masked hint.",
        max_length=20,
    ),
]


class CreateConnection(Body):
    gateway: Annotated[str, Field(min_length=1, max_length=32)]
    credentials: Credentials
    livemode: StrictBool = False
    name: Annotated[str, Field(max_length=200)] | None = None
    currencies: list[Currency] | None = Field(
        default=None, description="ISO 4217 codes it takes; null: every one the gateway takes."
    )
    payment_method_types: list[Annotated[str, Field(max_length=32)]] | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=1000)] = Field(
        default=0, description="Routing order among the account's connections: lowest first."
    )
    failover: StrictBool = False
    disabled: StrictBool = False
    metadata: Metadata | None = None


class UpdateConnection(Body):
    credentials: Credentials | None = Field(
        default=None, description="Fields given replace the stored ones; others are kept."
    )
    name: Annotated[str, Field(max_length=200)] | None = None
    currencies: list[Currency] | None = None
    payment_method_types: list[Annotated[str, Field(max_length=32)]] | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    failover: StrictBool | None = None
    disabled: StrictBool | None = None
    metadata: Metadata | None = None


class UpdateMetadata(Expandable):
    """What a refund or a payment method lets change: its metadata."""

    metadata: Metadata | None = None
