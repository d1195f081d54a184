"""Request bodies and list queries of the billing API, one section per resource (each billing
router adds its own section). The rules of api/schemas.py hold here too: unknown parameters are
refused (``extra="forbid"``), amounts are strict integers (a float, or a string in JSON, is a
400), and the same model reads a JSON body and a form-encoded one in Stripe's bracket notation
(``recurring[interval]=month``, ``tiers[1][up_to]=inf``). Checks that need more than a field's
type (tiers in order, a percentage's places) are the services', with the same stable codes."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from paymux.api.schemas import (
    Body,
    Currency,
    Expandable,
    Id,
    Metadata,
    PaymentMethodData,
    PaymentMethodTypes,
    Text,
)

__all__ = [
    "CancelSetupIntent",
    "ConfirmSetupIntent",
    "CouponAppliesTo",
    "CreateBalanceTransaction",
    "CreateCoupon",
    "CreatePrice",
    "CreateProduct",
    "CreatePromotionCode",
    "CreateSetupIntent",
    "CreateTaxRate",
    "DefaultPriceData",
    "PriceListQuery",
    "PriceRecurring",
    "PriceTier",
    "ProductData",
    "PromotionCodeRestrictions",
    "PromotionRef",
    "UpdateCoupon",
    "UpdatePrice",
    "UpdateProduct",
    "UpdatePromotionCode",
    "UpdateSetupIntent",
    "UpdateTaxRate",
]

# A whole amount in minor units (the service checks its range and names the parameter).
Amount = Annotated[StrictInt, Field(ge=0)]
# Stripe's ``*_decimal`` amounts: a decimal string; paymux takes whole minor units only.
DecimalAmount = Annotated[str, Field(max_length=40, pattern=r"^[0-9]{1,20}(\.[0-9]{1,12})?$")]
UnixSeconds = Annotated[StrictInt, Field(ge=0)]
Count = Annotated[StrictInt, Field(ge=1)]
# A percentage: a JSON number or a decimal string (form bodies have only strings); the
# service keeps it as exact decimal text and checks its range and places.
Percentage = Annotated[Decimal, Field(allow_inf_nan=False)]


# -- products (/v1/products) -------------------------------------------------------------------


class PriceRecurring(Body):
    interval: Annotated[str, Field(max_length=16)]
    interval_count: StrictInt | None = None
    usage_type: Literal["licensed", "metered"] | None = None
    meter: Id | None = None


class DefaultPriceData(Body):
    """A product's first price, made with it (``default_price_data[...]``)."""

    currency: Currency
    unit_amount: Amount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    recurring: PriceRecurring | None = None
    tax_behavior: Literal["exclusive", "inclusive", "unspecified"] | None = None
    metadata: Metadata | None = None


ProductName = Annotated[str, Field(min_length=1, max_length=250)]
UnitLabel = Annotated[str, Field(max_length=12)]


class CreateProduct(Expandable):
    name: ProductName
    description: Text | None = None
    active: StrictBool = True
    unit_label: UnitLabel | None = None
    metadata: Metadata = Field(default_factory=dict)
    default_price_data: DefaultPriceData | None = None


class UpdateProduct(Expandable):
    name: ProductName | None = None
    description: Text | None = None
    active: StrictBool | None = None
    unit_label: UnitLabel | None = None
    metadata: Metadata | None = None
    default_price: Annotated[str, Field(max_length=255)] | None = Field(
        default=None, description="One of the product's active prices; '' unsets it."
    )


# -- prices (/v1/prices) -----------------------------------------------------------------------


def _up_to(value: Any) -> Any:
    """Stripe's literal ``inf`` (the last tier, unbounded) is None here."""
    return None if value == "inf" else value


class PriceTier(Body):
    up_to: Annotated[Annotated[StrictInt, Field(ge=1)] | None, BeforeValidator(_up_to)] = Field(
        description="The tier's last quantity (inclusive), or 'inf' for the last tier."
    )
    unit_amount: Amount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    flat_amount: Amount | None = None
    flat_amount_decimal: DecimalAmount | None = None


class ProductData(Body):
    """A new product made with the price (``product_data[name]``)."""

    name: ProductName
    active: StrictBool = True
    unit_label: UnitLabel | None = None
    metadata: Metadata | None = None


LookupKey = Annotated[str, Field(max_length=200)]
TaxBehavior = Literal["exclusive", "inclusive", "unspecified"]


class CreatePrice(Expandable):
    currency: Currency
    product: Id | None = None
    product_data: ProductData | None = None
    unit_amount: Amount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    tiers_mode: Literal["graduated", "volume"] | None = None
    tiers: Annotated[list[PriceTier], Field(max_length=250)] | None = None
    recurring: PriceRecurring | None = None
    lookup_key: LookupKey | None = None
    transfer_lookup_key: StrictBool = False
    nickname: Annotated[str, Field(max_length=250)] | None = None
    tax_behavior: TaxBehavior | None = None
    active: StrictBool = True
    metadata: Metadata = Field(default_factory=dict)


class UpdatePrice(Expandable):
    """What a price lets change (its money terms are immutable, as on Stripe)."""

    active: StrictBool | None = None
    nickname: Annotated[str, Field(max_length=250)] | None = None
    lookup_key: LookupKey | None = None
    transfer_lookup_key: StrictBool = False
    tax_behavior: TaxBehavior | None = None
    metadata: Metadata | None = None


class RecurringFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: Literal["day", "week", "month", "year"] | None = None
    usage_type: Literal["licensed", "metered"] | None = None


class PriceListQuery(BaseModel):
    """The bracket-form filters of ``GET /v1/prices``: ``lookup_keys[]``, ``recurring[...]``."""

    model_config = ConfigDict(extra="forbid")
    lookup_keys: Annotated[list[LookupKey], Field(max_length=10)] | None = None
    recurring: RecurringFilter | None = None


# -- coupons (/v1/coupons) ---------------------------------------------------------------------


class CouponAppliesTo(Body):
    products: Annotated[list[Id], Field(max_length=100)] | None = None


class CreateCoupon(Expandable):
    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s/?#]+$")] | None = Field(
        default=None, description="The merchant's own id (e.g. SUMMER25); else generated."
    )
    percent_off: Percentage | None = None
    amount_off: StrictInt | None = None
    currency: Currency | None = None
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_in_months: Annotated[StrictInt, Field(ge=1, le=1200)] | None = None
    max_redemptions: Count | None = None
    redeem_by: UnixSeconds | None = None
    name: Annotated[str, Field(max_length=40)] | None = None
    applies_to: CouponAppliesTo | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdateCoupon(Expandable):
    name: Annotated[str, Field(max_length=40)] | None = None
    metadata: Metadata | None = None


# -- promotion codes (/v1/promotion_codes) -----------------------------------------------------


class PromotionRef(Body):
    """``promotion[type]=coupon&promotion[coupon]=...`` (Stripe's API since 2025-09)."""

    type: Literal["coupon"] = "coupon"
    coupon: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class PromotionCodeRestrictions(Body):
    first_time_transaction: StrictBool | None = None
    minimum_amount: StrictInt | None = None
    minimum_amount_currency: Currency | None = None


class CreatePromotionCode(Expandable):
    coupon: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="The coupon (older API versions); or promotion[coupon]."
    )
    promotion: PromotionRef | None = None
    code: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")] | None = (
        None
    )
    active: StrictBool = True
    customer: Id | None = None
    max_redemptions: Count | None = None
    expires_at: UnixSeconds | None = None
    restrictions: PromotionCodeRestrictions | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdatePromotionCode(Expandable):
    active: StrictBool | None = None
    restrictions: PromotionCodeRestrictions | None = None
    metadata: Metadata | None = None


# -- tax rates (/v1/tax_rates) -----------------------------------------------------------------

TaxType = Literal[
    "amusement_tax",
    "communications_tax",
    "gst",
    "hst",
    "igst",
    "jct",
    "lease_tax",
    "pst",
    "qst",
    "retail_delivery_fee",
    "rst",
    "sales_tax",
    "service_tax",
    "vat",
]
Country = Annotated[str, Field(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")]


class CreateTaxRate(Expandable):
    display_name: Annotated[str, Field(min_length=1, max_length=50)]
    percentage: Percentage
    inclusive: StrictBool
    active: StrictBool = True
    country: Country | None = None
    state: Annotated[str, Field(max_length=50)] | None = None
    jurisdiction: Annotated[str, Field(max_length=50)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    tax_type: TaxType | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdateTaxRate(Expandable):
    """Everything but the percentage and inclusive (fixed once made, as on Stripe)."""

    display_name: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    active: StrictBool | None = None
    country: Country | None = None
    state: Annotated[str, Field(max_length=50)] | None = None
    jurisdiction: Annotated[str, Field(max_length=50)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    tax_type: TaxType | None = None
    metadata: Metadata | None = None


# -- setup intents (/v1/setup_intents) ---------------------------------------------------------
# (Rebuilt by the catalog helper from the router and services/setup_intents.py after it
# overwrote this file by mistake: the setup intents' owner should check these four.)

ReturnUrl = Annotated[str, Field(max_length=2048)]


class CreateSetupIntent(Expandable):
    customer: Id | None = None
    payment_method: Id | None = None
    payment_method_data: PaymentMethodData | None = None  # a token only, as on a PaymentIntent
    confirm: StrictBool = False
    usage: Literal["on_session", "off_session"] = "off_session"
    payment_method_types: PaymentMethodTypes | None = None
    return_url: ReturnUrl | None = None
    gateway: Id | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdateSetupIntent(Expandable):
    customer: Id | None = None
    payment_method: Id | None = None
    metadata: Metadata | None = None


class ConfirmSetupIntent(Expandable):
    payment_method: Id | None = None
    payment_method_data: PaymentMethodData | None = None
    return_url: ReturnUrl | None = None
    # Square's verifyBuyer token for storing the card (intent STORE), passed on as it is.
    verification_token: Annotated[str, Field(max_length=2048)] | None = None
    # Required with a publishable key (paymux.js), checked as a PaymentIntent's.
    client_secret: Annotated[str, Field(max_length=100)] | None = None


class CancelSetupIntent(Expandable):
    # Checked by the service against services/setup_intents.CANCELLATION_REASONS.
    cancellation_reason: Annotated[str, Field(max_length=64)] | None = None


# -- customer balance (/v1/customers/{id}/balance_transactions) --------------------------------
# (Rebuilt by the catalog helper, as above: the balance's owner should check it.)


class CreateBalanceTransaction(Body):
    amount: StrictInt
    currency: Currency
    description: Annotated[str, Field(max_length=350)] | None = None


# -- meters (/v1/billing/meters, /v1/billing/meter_events) --------------------------------------
MeterKey = Annotated[str, Field(min_length=1, max_length=100)]
MeterPayloadValue = Annotated[str, Field(max_length=500)]


class MeterAggregation(Body):
    formula: Literal["sum", "count", "last"]


class MeterCustomerMapping(Body):
    event_payload_key: MeterKey
    type: Literal["by_id"]


class MeterValueSettings(Body):
    event_payload_key: MeterKey


class CreateMeter(Expandable):
    display_name: Annotated[str, Field(min_length=1, max_length=250)]
    event_name: MeterKey
    default_aggregation: MeterAggregation
    customer_mapping: MeterCustomerMapping | None = None
    value_settings: MeterValueSettings | None = None
    # Pre-aggregated events (Stripe's "hour" / "day"): not offered; the service says so.
    event_time_window: Literal["hour", "day"] | None = None


class UpdateMeter(Expandable):
    display_name: Annotated[str, Field(min_length=1, max_length=250)] | None = None


class CreateMeterEvent(Expandable):
    """One usage report. ``payload`` is Stripe's map of strings: the meter's customer key
    (``stripe_customer_id``) and value key (``value``, an integer as a string)."""

    event_name: MeterKey
    payload: Annotated[dict[MeterKey, MeterPayloadValue], Field(max_length=50)]
    identifier: MeterKey | None = None
    timestamp: StrictInt | None = None


# -- invoice items (/v1/invoiceitems) (H6) -----------------------------------------------------
class Period(Body):
    start: Annotated[StrictInt, Field(ge=0)]
    end: Annotated[StrictInt, Field(ge=0)]


InvoiceItemAmount = Annotated[StrictInt, Field(ge=-999_999_999_999, le=999_999_999_999)]
TaxRateIds = Annotated[list[Id], Field(max_length=10)]


class CreateInvoiceItem(Expandable):
    """One of ``amount`` (with ``currency``), ``price`` (+ ``quantity``) or ``unit_amount``
    (+ ``quantity``, with ``currency``). A negative amount is a credit."""

    customer: Id
    amount: InvoiceItemAmount | None = None
    currency: Currency | None = None
    price: Id | None = None
    quantity: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = None
    unit_amount: InvoiceItemAmount | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    period: Period | None = None
    discountable: StrictBool | None = None
    tax_rates: TaxRateIds | None = None
    invoice: Id | None = None
    subscription: Id | None = None
    metadata: Metadata = Field(default_factory=dict)


class UpdateInvoiceItem(Expandable):
    amount: InvoiceItemAmount | None = None
    price: Id | None = None
    quantity: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = None
    unit_amount: InvoiceItemAmount | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    period: Period | None = None
    discountable: StrictBool | None = None
    tax_rates: TaxRateIds | None = None
    metadata: Metadata | None = None


# -- invoices (/v1/invoices) (H6) --------------------------------------------------------------
class InvoiceDiscount(Body):
    coupon: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    promotion_code: Id | None = None


CollectionMethod = Literal["charge_automatically", "send_invoice"]
DaysUntilDue = Annotated[StrictInt, Field(ge=0, le=3650)]


class CreateInvoice(Expandable):
    """A one-off invoice (a draft). Its items: the customer's pending ones with
    ``pending_invoice_items_behavior=include``, or added later with ``/v1/invoiceitems``."""

    customer: Id
    currency: Currency | None = None
    collection_method: CollectionMethod = "charge_automatically"
    days_until_due: DaysUntilDue | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    auto_advance: StrictBool | None = None
    pending_invoice_items_behavior: Literal["include", "exclude"] = "exclude"
    metadata: Metadata = Field(default_factory=dict)
    default_tax_rates: Annotated[list[Id], Field(max_length=10)] | None = None
    default_payment_method: Id | None = None
    coupon: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    discounts: Annotated[list[InvoiceDiscount], Field(max_length=1)] | None = None


class UpdateInvoice(Expandable):
    """A draft's terms (a finalized invoice: its metadata only)."""

    description: Annotated[str, Field(max_length=1000)] | None = None
    metadata: Metadata | None = None
    auto_advance: StrictBool | None = None
    collection_method: CollectionMethod | None = None
    days_until_due: DaysUntilDue | None = None
    default_payment_method: Annotated[str, Field(max_length=255)] | None = None
    coupon: Annotated[str, Field(max_length=100)] | None = None
    discounts: Annotated[list[InvoiceDiscount], Field(max_length=1)] | None = None


class FinalizeInvoice(Expandable):
    auto_advance: StrictBool | None = None


class PayInvoice(Expandable):
    payment_method: Id | None = None
    paid_out_of_band: StrictBool = False
    off_session: StrictBool = True


class InvoiceAction(Expandable):
    """``/void`` and ``/mark_uncollectible`` take no parameters but ``expand``."""


class PreviewInvoice(Expandable):
    """``POST /v1/invoices/create_preview`` (and the older ``GET /v1/invoices/upcoming``): the
    invoice a subscription's next renewal will make (its own, or the customer's first)."""

    customer: Id | None = None
    subscription: Id | None = None


# -- credit notes (/v1/credit_notes) (H6) ------------------------------------------------------
CreditAmount = Annotated[StrictInt, Field(ge=0, le=999_999_999_999)]
CreditNoteReason = Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]


class CreditNoteLine(Body):
    type: Literal["invoice_line_item", "custom_line_item"]
    invoice_line_item: Id | None = None
    amount: CreditAmount | None = None
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)] | None = None
    unit_amount: CreditAmount | None = None
    description: Annotated[str, Field(max_length=500)] | None = None


class CreateCreditNote(Expandable):
    """``amount`` or ``lines``; for the paid part, ``refund_amount`` + ``credit_amount`` +
    ``out_of_band_amount`` (default: all to the customer's balance)."""

    invoice: Id
    amount: CreditAmount | None = None
    lines: Annotated[list[CreditNoteLine], Field(max_length=100)] | None = None
    reason: CreditNoteReason | None = None
    memo: Annotated[str, Field(max_length=500)] | None = None
    refund_amount: CreditAmount | None = None
    credit_amount: CreditAmount | None = None
    out_of_band_amount: CreditAmount | None = None
    metadata: Metadata = Field(default_factory=dict)


class PreviewCreditNote(Body):
    """The query of ``GET /v1/credit_notes/preview``: what a create would take."""

    invoice: Id
    amount: CreditAmount | None = None
    lines: Annotated[list[CreditNoteLine], Field(max_length=100)] | None = None
    reason: CreditNoteReason | None = None
    memo: Annotated[str, Field(max_length=500)] | None = None
    refund_amount: CreditAmount | None = None
    credit_amount: CreditAmount | None = None
    out_of_band_amount: CreditAmount | None = None
    expand: Annotated[list[str], Field(max_length=20)] | None = None


class UpdateCreditNote(Expandable):
    memo: Annotated[str, Field(max_length=500)] | None = None
    metadata: Metadata | None = None


# -- subscriptions, subscription items, test clocks (H5) -----------------------------------
SubQuantity = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]
SubTaxRateIds = Annotated[list[Id], Field(max_length=10)]
SubTrialEnd = StrictInt | Literal["now"]


class SubscriptionItemParams(Body):
    """One item of a subscription create: a price and its quantity."""

    price: Id
    quantity: SubQuantity | None = None
    tax_rates: SubTaxRateIds | None = None
    metadata: Metadata | None = None


class SubscriptionItemUpdate(Body):
    """One item of a subscription update: an existing item (``id``) changed or ``deleted``,
    or a new one (``price``)."""

    id: Id | None = None
    price: Id | None = None
    quantity: SubQuantity | None = None
    deleted: StrictBool | None = None
    clear_usage: StrictBool | None = None
    tax_rates: SubTaxRateIds | None = None
    metadata: Metadata | None = None


class SubscriptionDiscount(Body):
    coupon: Id | None = None
    promotion_code: Id | None = None


class TrialEndBehavior(Body):
    missing_payment_method: Literal["cancel", "create_invoice", "pause"]


class TrialSettings(Body):
    end_behavior: TrialEndBehavior


class PauseCollection(Body):
    behavior: Literal["keep_as_draft", "mark_uncollectible", "void"]
    resumes_at: UnixSeconds | None = None


SubCollectionMethod = Literal["charge_automatically", "send_invoice"]
SubProrationBehavior = Literal["create_prorations", "none", "always_invoice"]
SubPaymentBehavior = Literal[
    "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"
]
SubDaysUntilDue = Annotated[StrictInt, Field(ge=0, le=730)]


class CreateSubscription(Expandable):
    customer: Id
    items: Annotated[list[SubscriptionItemParams], Field(min_length=1, max_length=20)]
    default_payment_method: Id | None = None
    trial_period_days: Annotated[StrictInt, Field(ge=0, le=730)] | None = None
    trial_end: SubTrialEnd | None = None
    trial_from_plan: StrictBool | None = None
    trial_settings: TrialSettings | None = None
    billing_cycle_anchor: UnixSeconds | None = None
    collection_method: SubCollectionMethod = "charge_automatically"
    days_until_due: SubDaysUntilDue | None = None
    coupon: Id | None = None
    promotion_code: Id | None = None
    discounts: Annotated[list[SubscriptionDiscount], Field(max_length=20)] | None = None
    payment_behavior: SubPaymentBehavior = "allow_incomplete"
    cancel_at_period_end: StrictBool = False
    cancel_at: UnixSeconds | None = None
    metadata: Metadata = Field(default_factory=dict)
    default_tax_rates: SubTaxRateIds | None = None
    description: Text | None = None
    off_session: StrictBool | None = None
    proration_behavior: SubProrationBehavior | None = None


class UpdateSubscription(Expandable):
    items: Annotated[list[SubscriptionItemUpdate], Field(max_length=20)] | None = None
    proration_behavior: SubProrationBehavior = "create_prorations"
    proration_date: UnixSeconds | None = None
    cancel_at_period_end: StrictBool | None = None
    cancel_at: UnixSeconds | Literal[""] | None = None
    pause_collection: PauseCollection | Literal[""] | None = None
    default_payment_method: Id | Literal[""] | None = None
    coupon: Id | Literal[""] | None = None
    promotion_code: Id | None = None
    trial_end: SubTrialEnd | None = None
    metadata: Metadata | None = None
    collection_method: SubCollectionMethod | None = None
    days_until_due: SubDaysUntilDue | None = None
    default_tax_rates: SubTaxRateIds | Literal[""] | None = None
    payment_behavior: SubPaymentBehavior | None = None
    description: Text | None = None
    off_session: StrictBool | None = None
    paymux_apply_at: Literal["now", "period_end"] = Field(
        default="now",
        description="paymux: period_end keeps the item change for the next period (a "
        "downgrade at period end, instead of Stripe's subscription schedules).",
    )


class CancelSubscription(BaseModel):
    """DELETE /v1/subscriptions/{id}: its parameters come in the query (Stripe's SDKs send
    a DELETE's parameters there)."""

    model_config = ConfigDict(extra="forbid")
    invoice_now: StrictBool = False
    prorate: StrictBool = False
    expand: Annotated[list[str], Field(max_length=20)] | None = None


class ResumeSubscription(Expandable):
    billing_cycle_anchor: Literal["now", "unchanged"] | None = None
    proration_behavior: SubProrationBehavior | None = None


class CreateTestClock(Expandable):
    frozen_time: UnixSeconds
    name: Annotated[str, Field(max_length=300)] | None = None


class AdvanceTestClock(Expandable):
    frozen_time: UnixSeconds


class CreateSubscriptionItem(Expandable):
    subscription: Id
    price: Id
    quantity: SubQuantity | None = None
    tax_rates: SubTaxRateIds | None = None
    metadata: Metadata | None = None
    proration_behavior: SubProrationBehavior = "create_prorations"
    proration_date: UnixSeconds | None = None
    payment_behavior: SubPaymentBehavior | None = None


class UpdateSubscriptionItem(Expandable):
    price: Id | None = None
    quantity: SubQuantity | None = None
    tax_rates: SubTaxRateIds | None = None
    metadata: Metadata | None = None
    proration_behavior: SubProrationBehavior = "create_prorations"
    proration_date: UnixSeconds | None = None
    payment_behavior: SubPaymentBehavior | None = None
    off_session: StrictBool | None = None


class DeleteSubscriptionItem(BaseModel):
    """DELETE /v1/subscription_items/{id}: its parameters come in the query."""

    model_config = ConfigDict(extra="forbid")
    proration_behavior: SubProrationBehavior = "create_prorations"
    proration_date: UnixSeconds | None = None
    clear_usage: StrictBool | None = None
