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
    "Address",
    "AttachPaymentMethod",
    "BillingDetails",
    "CancelPaymentIntent",
    "CapturePaymentIntent",
    "ConfirmPaymentIntent",
    "CreateConnection",
    "CreateCustomer",
    "CreateKey",
    "CreatePaymentIntent",
    "CreatePaymentMethod",
    "CreateRefund",
    "CreatedFilter",
    "EventsQuery",
    "ExpandQuery",
    "Expandable",
    "InvoiceSettings",
    "ListQuery",
    "NoParams",
    "PaymentMethodData",
    "RollKey",
    "Shipping",
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


# -- contact details (Stripe's address, shipping and billing_details) -------------------------
# Free text, never card data: the card-number guard (api/middleware.py) reads every value of
# the body, these included, before any model does.
Line = Annotated[str, Field(max_length=200)]
Phone = Annotated[str, Field(max_length=40)]


class Address(Body):
    """Stripe's address: every field optional (``country`` is free text, as on Stripe's
    customer; two letters where a tax or shipping rule needs it)."""

    line1: Line | None = None
    line2: Line | None = None
    city: Line | None = None
    state: Line | None = None
    postal_code: Annotated[str, Field(max_length=40)] | None = None
    country: Annotated[str, Field(max_length=64)] | None = None


class CustomerShipping(Body):
    """A customer's shipping details: ``name`` and ``address`` required, as on Stripe."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    address: Address
    phone: Phone | None = None


class Shipping(CustomerShipping):
    """A PaymentIntent's shipping: a customer's, plus who carries it and its tracking number."""

    carrier: Line | None = None
    tracking_number: Line | None = None


class BillingDetails(Body):
    """Stripe's ``billing_details`` of a payment method (the payer's, not the card's)."""

    name: Annotated[str, Field(max_length=256)] | None = None
    email: Annotated[str, Field(max_length=512)] | None = None
    phone: Phone | None = None
    address: Address | None = None


class CardToken(Body):
    """``card`` when making a payment method: a gateway's token only (``tok_visa``, a token
    the gateway's browser form made). There is no field for a card number, expiry or CVC:
    ``card[number]``, ``card[cvc]``, ``card[exp_month]`` are unknown parameters (and a card
    number anywhere is refused by the guard first). ``token`` is checked as required by the
    service (``TokenData.of``), so that a body with only ``card[number]`` is answered with
    that parameter unknown, not with the token missing."""

    token: Annotated[str, Field(min_length=1, max_length=255)] | None = None


class PaymentMethodData(Body):
    """``payment_method_data`` of a PaymentIntent or SetupIntent create or confirm: a payment
    method made from a token, as ``POST /v1/payment_methods`` makes one, and used at once."""

    type: Literal["card"]
    card: CardToken
    billing_details: BillingDetails | None = None
    metadata: Metadata = Field(default_factory=dict)


class CreatePaymentMethod(Expandable):
    """``POST /v1/payment_methods``: a detached payment method from a gateway token."""

    type: Literal["card"]
    card: CardToken
    billing_details: BillingDetails | None = None
    metadata: Metadata = Field(default_factory=dict)
    gateway: Id | None = Field(
        default=None,
        description="paymux's: the name of the gateway whose token it is (default: the "
        "deployment's).",
    )


class CardPaymentMethodOptions(Body):
    # Stripe's: automatic (3-D Secure where required), any (ask the issuer), challenge.
    request_three_d_secure: Literal["automatic", "any", "challenge"] | None = None

    @field_validator("request_three_d_secure", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # As on Stripe, an empty form value (``...[request_three_d_secure]=``) is not given.
        return None if value == "" else value


class PaymentMethodOptions(Body):
    """Stripe's ``payment_method_options`` (only ``card`` here)."""

    card: CardPaymentMethodOptions | None = None


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
    payment_method_data: PaymentMethodData | None = None
    shipping: Shipping | None = None
    payment_method_options: PaymentMethodOptions | None = None


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
    # "" removes it, as on Stripe.
    shipping: Shipping | Literal[""] | None = None


class ConfirmPaymentIntent(Expandable):
    payment_method: Id | None = None
    payment_method_data: PaymentMethodData | None = None
    off_session: StrictBool | None = None
    return_url: Annotated[str, Field(max_length=2048)] | None = None
    setup_future_usage: Literal["on_session", "off_session"] | None = None
    # Square's verifyBuyer token (SCA), passed to the gateway as it is.
    verification_token: Annotated[str, Field(max_length=2048)] | None = None
    payment_method_options: PaymentMethodOptions | None = None
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
    phone: Phone | None = None
    address: Address | None = None
    shipping: CustomerShipping | None = None
    payment_method: Id | None = Field(
        default=None, description="A payment method (or test token) to attach, as attach does."
    )


class UpdateCustomer(Expandable):
    email: Annotated[str, Field(max_length=512)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Text | None = None
    metadata: Metadata | None = None
    default_payment_method: Id | None = None
    invoice_settings: InvoiceSettings | None = None
    # "" removes each, as on Stripe.
    phone: Phone | None = None
    address: Address | Literal[""] | None = None
    shipping: CustomerShipping | Literal[""] | None = None


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
