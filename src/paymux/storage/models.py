"""SQLAlchemy 2 models. The schema changes only through Alembic migrations (migrations/).

Every row carries ``account_id``. No column can hold a card number or CVC: payment methods
keep the gateway's token, brand, last four digits, expiry and a fingerprint. Times are integer
microseconds since the epoch (``*_us``), so ordering is exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Account",
    "ApiKey",
    "AuditEntry",
    "Base",
    "CheckoutSession",
    "Connection",
    "Coupon",
    "CreditNote",
    "CspReport",
    "Customer",
    "CustomerBalanceTransaction",
    "Dispute",
    "Event",
    "FraudRule",
    "FraudVelocityBucket",
    "FraudVelocityCard",
    "GatewayAttempt",
    "GatewayTokenOwner",
    "IdempotencyKey",
    "Invoice",
    "InvoiceItem",
    "InvoiceLine",
    "InvoiceSequence",
    "Job",
    "Meter",
    "MeterEvent",
    "PaymentIntent",
    "PaymentMethod",
    "Price",
    "Product",
    "PromotionCode",
    "RadarValueList",
    "RadarValueListItem",
    "RateLimitWindow",
    "Refund",
    "RequestLogEntry",
    "Review",
    "SetupIntent",
    "Subscription",
    "SubscriptionItem",
    "TaxRate",
    "TestClock",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookInbox",
]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, int: BigInteger}


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_us: Mapped[int]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    last_used_us: Mapped[int | None] = mapped_column(default=None)
    kind: Mapped[str] = mapped_column(String(16), default="secret")  # secret|publishable|restricted
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # A restricted key's grants: {"payment_intents": "write", "refunds": "read", ...}.
    permissions: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # A rolled key works until then (the grace period the merchant chose); None: no expiry.
    expires_us: Mapped[int | None] = mapped_column(default=None)
    rolled_to: Mapped[str | None] = mapped_column(String(40), default=None)


class Connection(Base):
    """An account's link to a gateway: its credentials (envelope-encrypted, write-only), mode
    and what it takes. ``source`` is ``api`` or ``environment`` (made at start-up from today's
    PAYMUX_*/STRIPE_*/... variables, whose secrets stay in the environment)."""

    __tablename__ = "connections"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    gateway: Mapped[str] = mapped_column(String(32))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    source: Mapped[str] = mapped_column(String(16), default="api")
    credentials: Mapped[str | None] = mapped_column(Text, default=None)
    credential_hints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    currencies: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    payment_method_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    failover: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_connections_account", "account_id", "gateway"),)


class AuditEntry(Base):
    """Who (which key, or the CLI) did what to which object, and when. Append-only."""

    __tablename__ = "audit_log"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))  # key_... | cli | admin
    action: Mapped[str] = mapped_column(String(64))  # payment_intent.create, key.roll, ...
    object_type: Mapped[str | None] = mapped_column(String(64), default=None)
    object_id: Mapped[str | None] = mapped_column(String(255), default=None)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_us: Mapped[int]
    __table_args__ = (Index("ix_audit_log_account_created", "account_id", "created_us"),)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    email: Mapped[str | None] = mapped_column(String(512))
    name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    default_payment_method: Mapped[str | None] = mapped_column(String(40))
    gateway_refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    # Billing: the credit balance (negative: credit the customer has, applied to the next
    # invoice; customer_balance_transactions is its history), the currency it is in (set by
    # the first invoice), and the test clock the customer lives on (test mode only).
    balance: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    test_clock_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    # Stripe's contact fields (migration 0013): ``address`` {line1, line2, city, state,
    # postal_code, country} and ``shipping`` {name, phone, address}, as JSON; None when unset.
    phone: Mapped[str | None] = mapped_column(String(64), default=None)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    shipping: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_customers_account_created", "account_id", "created_us"),)


class PaymentMethod(Base):
    __tablename__ = "payment_methods"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    token: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default="card")
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(Integer)
    card_exp_year: Mapped[int | None] = mapped_column(Integer)
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    card_country: Mapped[str | None] = mapped_column(String(2))
    card_funding: Mapped[str | None] = mapped_column(String(16))
    # Migration 0032: the BIN (first 6 digits, never more) and the checks the gateway made
    # when it tokenized or saved the card (Stripe's ``card.checks``), where it says them.
    card_bin: Mapped[str | None] = mapped_column(String(8), default=None)
    card_cvc_check: Mapped[str | None] = mapped_column(String(16), default=None)
    card_address_line1_check: Mapped[str | None] = mapped_column(String(16), default=None)
    card_address_zip_check: Mapped[str | None] = mapped_column(String(16), default=None)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # Stripe's ``billing_details`` {name, email, phone, address} as given when the payment
    # method was made (migration 0013); None: none given. Never card data.
    billing_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Migration 0026 (see its marker below).
    network_transaction_id: Mapped[str | None] = mapped_column(String(255), default=None)
    created_us: Mapped[int]
    __table_args__ = (
        UniqueConstraint("account_id", "gateway", "token"),
        # Who first used a gateway token, whatever the account: a token is its account's.
        Index("ix_payment_methods_gateway_token", "gateway", "token"),
    )


class GatewayTokenOwner(Base):
    """The account a gateway token belongs to: the first that recorded it. Inserted in the
    transaction that records the payment method, so two accounts racing for one token can't
    both win (the primary key refuses the second). Shared test tokens have no owner."""

    __tablename__ = "gateway_token_owners"
    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    created_us: Mapped[int]


class SetupIntent(Base):
    """Saving a card for later without a charge (Stripe's SetupIntent). ``attempts`` counts
    the gateway setups tried (each has its own idempotency key, ``<id>:setup:<n>``);
    ``pending`` is set, and committed, before a setup call and cleared when its outcome is
    applied, so a retry after a crash asks again with the same key (never a second vault
    entry)."""

    __tablename__ = "setup_intents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(32))
    usage: Mapped[str] = mapped_column(String(16), default="off_session")
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    payment_method_id: Mapped[str | None] = mapped_column(ForeignKey("payment_methods.id"))
    gateway: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    gateway_reference: Mapped[str | None] = mapped_column(String(255), default=None)
    client_secret: Mapped[str] = mapped_column(String(100))
    last_setup_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    return_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    payment_method_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    cancellation_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    canceled_us: Mapped[int | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_setup_intents_account_created", "account_id", "created_us"),)


class PaymentIntent(Base):
    __tablename__ = "payment_intents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    amount_capturable: Mapped[int] = mapped_column(default=0)
    amount_received: Mapped[int] = mapped_column(default=0)
    amount_refunded: Mapped[int] = mapped_column(default=0)
    amount_refund_pending: Mapped[int] = mapped_column(default=0)
    capture_method: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    payment_method_id: Mapped[str | None] = mapped_column(ForeignKey("payment_methods.id"))
    setup_future_usage: Mapped[str | None] = mapped_column(String(16))
    off_session: Mapped[bool] = mapped_column(Boolean, default=False)
    gateway: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    gateway_reference: Mapped[str | None] = mapped_column(String(255), index=True)
    last_payment_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gateway_client: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    return_url: Mapped[str | None] = mapped_column(String(2048))
    risk_level: Mapped[str | None] = mapped_column(String(16))
    # Migration 0034: the gateway's numeric risk score (0-100) for the payment, where it gives
    # one (Stripe's ``outcome.risk_score`` of the payment's charge); None: none given.
    gateway_risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    canceled_us: Mapped[int | None]
    authorized_us: Mapped[int | None]
    description: Mapped[str | None] = mapped_column(String(1000))
    statement_descriptor: Mapped[str | None] = mapped_column(String(22))
    receipt_email: Mapped[str | None] = mapped_column(String(512), default=None)
    statement_descriptor_suffix: Mapped[str | None] = mapped_column(String(22), default=None)
    # What the payer may pay with (Stripe's ``payment_method_types``); None: ["card"].
    payment_method_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    automatic_payment_methods: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # jsonb on PostgreSQL (migration 0030): the dashboard's metadata search uses its GIN index.
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON().with_variant(JSONB(), "postgresql"), default=dict
    )
    # What a browser holding a publishable key shows to confirm this intent (Stripe's shape:
    # ``pi_..._secret_...``).
    client_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    confirm_count: Mapped[int] = mapped_column(default=0)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    # The invoice this payment pays (Stripe's ``invoice``), set by billing; None otherwise.
    invoice_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    # Stripe's ``shipping`` {name, phone, address, carrier, tracking_number} (migration
    # 0013); None when there is none.
    shipping: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The fraud decision of the latest confirm (fraud/, migration 0019): Stripe's charge
    # ``outcome`` fields {type, risk_level, risk_score, rule, reason}; None: none made.
    fraud_outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The latest confirm's velocity settle, internal (never shown): set once its answer is
    # known (fraud/decisions.py ``on_settled``), reset with each new decision; a trigger
    # applies it as it is set (migration 0038). Small on purpose: the trigger reads it, not
    # the 1-2 KB ``fraud_outcome`` record. None is SQL NULL (not JSON ``null``): the trigger
    # fires when it goes from NULL to a value.
    fraud_settle: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # 3-D Secure (migration 0026, see its marker below).
    payment_method_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    three_d_secure: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_payment_intents_account_created", "account_id", "created_us"),
        Index("ix_payment_intents_status_authorized", "status", "authorized_us"),
        # The dashboard (migration 0029): a customer's payments; the home page's volume (on
        # PostgreSQL an index-only scan) and its failed payments (partial).
        Index("ix_payment_intents_customer", "account_id", "customer_id", "created_us"),
        Index(
            "ix_payment_intents_volume", "account_id", "livemode", "status", "created_us",
            postgresql_include=["currency", "amount_received"],
        ),
        Index(
            "ix_payment_intents_failed", "account_id", "livemode", "created_us",
            postgresql_where=text("last_payment_error IS NOT NULL"),
            sqlite_where=text("last_payment_error IS NOT NULL"),
        ),
    )


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    payment_intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    gateway_reference: Mapped[str | None] = mapped_column(String(255), index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_refunds_account_created", "account_id", "created_us"),)


class Dispute(Base):
    """A chargeback opened at the gateway, recorded on its payment."""

    __tablename__ = "disputes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    payment_intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_reference: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    # migration 0016 (issue 9): settable in any state, as on Stripe
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    __table_args__ = (UniqueConstraint("gateway", "gateway_reference"),)


class GatewayAttempt(Base):
    """One gateway call: recorded and committed before the call, settled after it.

    A pending attempt older than the settle delay was interrupted (crash, timeout, lost
    response): a job asks the gateway about it by its idempotency key and settles it.
    """

    __tablename__ = "gateway_attempts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    gateway: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    operation: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | settled | abandoned
    # The intent's status when the attempt started: where an abandoned attempt puts it back.
    from_status: Mapped[str | None] = mapped_column(String(32))
    # The status a success leads to (domain.attempts.target_of).
    target: Mapped[str | None] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_gateway_attempts_status_updated", "status", "updated_us"),)


# The events the previous release's dispatcher looked for: the predicate of a partial index.
_UNDISPATCHED = text("dispatched_us IS NULL")


class Event(Base):
    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    # The previous outbox mark (migration 0011), kept while a rolling upgrade may still run
    # the release that reads it (migration 0040): 0 on every event since, so that release's
    # dispatcher takes none (this release's dispatches the outbox, ``EventOutbox``). ``emit``
    # writes 0; a webhook endpoint's test event its time (it has no row in the outbox).
    dispatched_us: Mapped[int | None] = mapped_column(default=None)
    # Stripe's event.request (the API request that caused it; NULL when a worker did) and
    # data.previous_attributes of *.updated events (migration 0014; services/events.py).
    request_id: Mapped[str | None] = mapped_column(String(40), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    previous_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The event's place among its object's events (1, 2, ...), assigned by ``emit`` in the
    # emitting transaction (migration 0022): the previous event of an object is the one
    # before it in this order, not in time (test clocks backdate; microseconds tie). NULL
    # for events not emitted as a state change (a webhook endpoint's test event).
    object_seq: Mapped[int | None] = mapped_column(default=None)
    __table_args__ = (
        Index("ix_events_account_created", "account_id", "created_us"),
        Index("ix_events_object_seq", "object_id", "object_seq"),
        # The previous release's look for unmarked events (empty since migration 0040).
        Index(
            "ix_events_undispatched",
            "created_us",
            sqlite_where=_UNDISPATCHED,
            postgresql_where=_UNDISPATCHED,
        ),
    )


class EventOutbox(Base):
    """The outbox: one row per event whose webhook deliveries the outbound dispatcher has yet
    to make, written by ``emit`` with the event, deleted by the dispatcher in the transaction
    that makes them (paymux/outbound/dispatch.py; migration 0040). ``seq``: the order written.
    The events table itself is only ever inserted into."""

    __tablename__ = "event_outbox"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(40))


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    # Keys are per mode, as on Stripe: a live request never replays a test request's answer.
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # in_flight | done
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    # brandur's recovery point: how far the first request got, and the object it made, so a
    # retry after the lease resumes there instead of making a second object.
    recovery_point: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(40))
    locked_us: Mapped[int]
    created_us: Mapped[int] = mapped_column(index=True)


# The jobs that hold their dedupe key: the predicate of the partial unique index (see Job).
_JOB_LIVE = text("status IN ('queued', 'running')")


class Job(Base):
    """A durable job. ``dedupe_key`` is unique only among live jobs (queued or running): a job
    that is done or dead no longer holds its key, so the same work can be queued again."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(40), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | dead
    run_at_us: Mapped[int]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    last_error: Mapped[str | None] = mapped_column(Text)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until_us: Mapped[int | None]
    # Bumped by every claim: the fencing token a worker's finish must still match (0017).
    lease_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at_us"),
        Index(
            "ux_jobs_dedupe_key_live",
            "dedupe_key",
            unique=True,
            sqlite_where=_JOB_LIVE,
            postgresql_where=_JOB_LIVE,
        ),
        {"sqlite_autoincrement": True},  # ids never reused after pruning (0017)
    )


class WebhookInbox(Base):
    __tablename__ = "webhook_inbox"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(40), default=None)
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # received | applied | ignored | dead
    error: Mapped[str | None] = mapped_column(Text)
    received_us: Mapped[int]
    applied_us: Mapped[int | None]
    # the payment intent the event was applied to (migration 0031; None: not applied to one)
    object_id: Mapped[str | None] = mapped_column(String(40), default=None)
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)


class RateLimitWindow(Base):
    """Requests counted per API key (its hash) and window, shared by every API process."""

    __tablename__ = "rate_limit_windows"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_no: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


# --- Billing (src/paymux/billing/): catalog, subscriptions, invoices, meters, test clocks. ---
# Decimal rates (a coupon's percent_off, a tax rate's percentage) are kept as decimal text, so
# they are exact; money is integer minor units, as everywhere.


class Product(Base):
    __tablename__ = "products"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(250))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    default_price_id: Mapped[str | None] = mapped_column(String(40), default=None)
    unit_label: Mapped[str | None] = mapped_column(String(12), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_products_account_created", "account_id", "created_us"),)


class Price(Base):
    """A price of a product, in one currency. ``unit_amount`` for ``per_unit``; ``tiers``
    ([{up_to: int | None, unit_amount: int | None, flat_amount: int | None}], ascending, the
    last with up_to None) for ``tiered`` (``tiers_mode`` graduated or volume). Recurring
    prices have an interval; metered ones (usage_type ``metered``) are billed from a meter's
    events. An archived price (active false) keeps its subscriptions."""

    __tablename__ = "prices"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    currency: Mapped[str] = mapped_column(String(3))
    type: Mapped[str] = mapped_column(String(16))  # one_time | recurring
    billing_scheme: Mapped[str] = mapped_column(String(16), default="per_unit")
    unit_amount: Mapped[int | None] = mapped_column(default=None)
    tiers_mode: Mapped[str | None] = mapped_column(String(16), default=None)
    tiers: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    recurring_interval: Mapped[str | None] = mapped_column(String(8), default=None)
    recurring_interval_count: Mapped[int | None] = mapped_column(Integer, default=None)
    recurring_usage_type: Mapped[str | None] = mapped_column(String(16), default=None)
    recurring_meter_id: Mapped[str | None] = mapped_column(String(40), default=None)
    lookup_key: Mapped[str | None] = mapped_column(String(200), default=None)
    nickname: Mapped[str | None] = mapped_column(String(250), default=None)
    tax_behavior: Mapped[str] = mapped_column(String(16), default="unspecified")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_prices_account_created", "account_id", "created_us"),
        UniqueConstraint("account_id", "lookup_key"),
    )


class Coupon(Base):
    """A discount. Its id may be the merchant's own (``SUMMER25``), so it is unique per
    account: the key is (account_id, id)."""

    __tablename__ = "coupons"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(40), default=None)
    percent_off: Mapped[str | None] = mapped_column(String(16), default=None)  # "12.5"
    amount_off: Mapped[int | None] = mapped_column(default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    duration: Mapped[str] = mapped_column(String(16))  # once | repeating | forever
    duration_in_months: Mapped[int | None] = mapped_column(Integer, default=None)
    max_redemptions: Mapped[int | None] = mapped_column(Integer, default=None)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0)
    redeem_by_us: Mapped[int | None] = mapped_column(default=None)
    applies_to_products: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]


class PromotionCode(Base):
    """A customer-facing code for a coupon. ``code`` is unique per account among active
    codes (checked by the service); restrictions: first_time_transaction, minimum_amount and
    its currency."""

    __tablename__ = "promotion_codes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    coupon_id: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    customer_id: Mapped[str | None] = mapped_column(String(40), default=None)
    max_redemptions: Mapped[int | None] = mapped_column(Integer, default=None)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0)
    expires_at_us: Mapped[int | None] = mapped_column(default=None)
    restrictions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    __table_args__ = (Index("ix_promotion_codes_account_code", "account_id", "code"),)


class TaxRate(Base):
    __tablename__ = "tax_rates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    display_name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    percentage: Mapped[str] = mapped_column(String(16))  # "8.875"
    inclusive: Mapped[bool] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    state: Mapped[str | None] = mapped_column(String(50), default=None)
    jurisdiction: Mapped[str | None] = mapped_column(String(50), default=None)
    tax_type: Mapped[str | None] = mapped_column(String(32), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    __table_args__ = (Index("ix_tax_rates_account_created", "account_id", "created_us"),)


class TestClock(Base):
    """Stripe's test clock: the time of the customers (and their subscriptions and invoices)
    created on it. Test mode only. ``status`` ready | advancing | internal_failure."""

    __tablename__ = "test_clocks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str | None] = mapped_column(String(300), default=None)
    frozen_time_us: Mapped[int]
    status: Mapped[str] = mapped_column(String(24), default="ready")
    # Where an advance is going (status advancing): frozen_time moves to it step by step.
    advancing_to_us: Mapped[int | None] = mapped_column(default=None)
    deletes_after_us: Mapped[int]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]


class Subscription(Base):
    """A customer's subscription. ``next_due_us``: when the scheduler must look at it next
    (the period end, trial end, cancel_at, incomplete expiry, a pause's end), None when
    nothing is due; on a test clock it is compared with the clock's time, not the wall's."""

    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    collection_method: Mapped[str] = mapped_column(String(24), default="charge_automatically")
    days_until_due: Mapped[int | None] = mapped_column(Integer, default=None)
    default_payment_method_id: Mapped[str | None] = mapped_column(String(40), default=None)
    billing_cycle_anchor_us: Mapped[int]
    start_date_us: Mapped[int]
    current_period_start_us: Mapped[int]
    current_period_end_us: Mapped[int]
    trial_start_us: Mapped[int | None] = mapped_column(default=None)
    trial_end_us: Mapped[int | None] = mapped_column(default=None)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_at_us: Mapped[int | None] = mapped_column(default=None)
    canceled_at_us: Mapped[int | None] = mapped_column(default=None)
    ended_at_us: Mapped[int | None] = mapped_column(default=None)
    cancellation_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # {"behavior": "void" | "keep_as_draft" | "mark_uncollectible", "resumes_at": int | None}
    pause_collection: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    coupon_id: Mapped[str | None] = mapped_column(String(100), default=None)
    promotion_code_id: Mapped[str | None] = mapped_column(String(40), default=None)
    discount_start_us: Mapped[int | None] = mapped_column(default=None)
    discount_end_us: Mapped[int | None] = mapped_column(default=None)
    default_tax_rate_ids: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    latest_invoice_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # A change that takes effect at the period end (a downgrade): the items it will have.
    pending_update: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    payment_behavior: Mapped[str | None] = mapped_column(String(32), default=None)
    # trial_settings.end_behavior.missing_payment_method: create_invoice | pause | cancel.
    trial_end_behavior: Mapped[str | None] = mapped_column(String(16), default=None)
    test_clock_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    next_due_us: Mapped[int | None] = mapped_column(default=None)
    # The renewal (its time) whose ``invoice.upcoming`` was sent: once per period (0021).
    upcoming_notice_for_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_subscriptions_account_created", "account_id", "created_us"),
        Index("ix_subscriptions_next_due", "next_due_us"),
    )


class SubscriptionItem(Base):
    __tablename__ = "subscription_items"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    price_id: Mapped[str] = mapped_column(ForeignKey("prices.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    tax_rate_ids: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]


class Invoice(Base):
    """An invoice: draft -> open -> paid | void | uncollectible. Once finalized (open) its
    lines and totals never change. ``period_key`` is set on the invoice that bills one period
    of a subscription (``<sub id>:<period start us>``): unique, so a period is invoiced once
    whatever crashes or how many workers race. ``number`` is given at finalization, gap-free
    per account (invoice_sequences)."""

    __tablename__ = "invoices"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    period_key: Mapped[str | None] = mapped_column(String(80), default=None, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    number: Mapped[str | None] = mapped_column(String(40), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    collection_method: Mapped[str] = mapped_column(String(24), default="charge_automatically")
    billing_reason: Mapped[str] = mapped_column(String(32))
    period_start_us: Mapped[int]
    period_end_us: Mapped[int]
    subtotal: Mapped[int] = mapped_column(default=0)
    total_discount: Mapped[int] = mapped_column(default=0)
    tax: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    starting_balance: Mapped[int] = mapped_column(default=0)
    ending_balance: Mapped[int | None] = mapped_column(default=None)
    amount_due: Mapped[int] = mapped_column(default=0)
    amount_paid: Mapped[int] = mapped_column(default=0)
    amount_remaining: Mapped[int] = mapped_column(default=0)
    # [{"coupon": id, "amount": int}] and [{"tax_rate": id, "amount": int, "inclusive": bool}]
    discount_amounts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tax_amounts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    coupon_id: Mapped[str | None] = mapped_column(String(100), default=None)
    default_payment_method_id: Mapped[str | None] = mapped_column(String(40), default=None)
    payment_intent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_payment_attempt_us: Mapped[int | None] = mapped_column(default=None)
    due_date_us: Mapped[int | None] = mapped_column(default=None)
    auto_advance: Mapped[bool] = mapped_column(Boolean, default=True)
    # The secret part of hosted_invoice_url and invoice_pdf.
    hosted_token: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    test_clock_id: Mapped[str | None] = mapped_column(String(40), default=None)
    finalized_at_us: Mapped[int | None] = mapped_column(default=None)
    paid_at_us: Mapped[int | None] = mapped_column(default=None)
    voided_at_us: Mapped[int | None] = mapped_column(default=None)
    marked_uncollectible_at_us: Mapped[int | None] = mapped_column(default=None)
    paid_out_of_band: Mapped[bool] = mapped_column(Boolean, default=False)
    # The payment lease (0021): which intent holds the invoice's one charge path now (a try
    # of the dunning schedule, the hosted page's), until when (wall-clock time). See
    # billing/payment_lease.py.
    payment_lease_holder: Mapped[str | None] = mapped_column(String(40), default=None)
    payment_lease_until_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_invoices_account_created", "account_id", "created_us"),
        UniqueConstraint("account_id", "number"),
    )


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))  # subscription | invoiceitem
    subscription_id: Mapped[str | None] = mapped_column(String(40), default=None)
    subscription_item_id: Mapped[str | None] = mapped_column(String(40), default=None)
    invoice_item_id: Mapped[str | None] = mapped_column(String(40), default=None)
    price_id: Mapped[str | None] = mapped_column(String(40), default=None)
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    quantity: Mapped[int | None] = mapped_column(default=None)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    period_start_us: Mapped[int]
    period_end_us: Mapped[int]
    proration: Mapped[bool] = mapped_column(Boolean, default=False)
    discountable: Mapped[bool] = mapped_column(Boolean, default=True)
    discount_amount: Mapped[int] = mapped_column(default=0)
    tax_amounts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class InvoiceItem(Base):
    """A one-off charge or credit (a proration too) waiting for the customer's next invoice
    (``invoice_id`` None), or on the invoice it was added to."""

    __tablename__ = "invoice_items"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40), default=None)
    subscription_item_id: Mapped[str | None] = mapped_column(String(40), default=None)
    price_id: Mapped[str | None] = mapped_column(String(40), default=None)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_amount: Mapped[int | None] = mapped_column(default=None)
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    period_start_us: Mapped[int]
    period_end_us: Mapped[int]
    proration: Mapped[bool] = mapped_column(Boolean, default=False)
    discountable: Mapped[bool] = mapped_column(Boolean, default=True)
    tax_rate_ids: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    test_clock_id: Mapped[str | None] = mapped_column(String(40), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]


class InvoiceSequence(Base):
    """The next invoice number of an account: taken under the row's lock in the finalizing
    transaction, so numbers are gap-free and never shared, whatever runs concurrently."""

    __tablename__ = "invoice_sequences"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(20))
    next_number: Mapped[int] = mapped_column(default=1)


class CreditNote(Base):
    __tablename__ = "credit_notes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(40))
    number: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16), default="issued")  # issued | void
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    refund_amount: Mapped[int] = mapped_column(default=0)
    credit_amount: Mapped[int] = mapped_column(default=0)  # to the customer's balance
    out_of_band_amount: Mapped[int] = mapped_column(default=0)
    refund_id: Mapped[str | None] = mapped_column(String(40), default=None)
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    memo: Mapped[str | None] = mapped_column(String(500), default=None)
    lines: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    voided_at_us: Mapped[int | None] = mapped_column(default=None)
    created_us: Mapped[int]


class CustomerBalanceTransaction(Base):
    """A change of a customer's credit balance (negative: credit the customer has), with the
    balance after it. The customer's ``balance`` column is the last one's ending_balance."""

    __tablename__ = "customer_balance_transactions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))  # adjustment | applied_to_invoice | credit_note
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    ending_balance: Mapped[int]
    invoice_id: Mapped[str | None] = mapped_column(String(40), default=None)
    credit_note_id: Mapped[str | None] = mapped_column(String(40), default=None)
    description: Mapped[str | None] = mapped_column(String(350), default=None)
    created_us: Mapped[int]


class Meter(Base):
    __tablename__ = "meters"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    display_name: Mapped[str] = mapped_column(String(250))
    event_name: Mapped[str] = mapped_column(String(100))
    aggregation: Mapped[str] = mapped_column(String(16))  # sum | count | last
    customer_mapping_key: Mapped[str] = mapped_column(String(100), default="stripe_customer_id")
    value_key: Mapped[str] = mapped_column(String(100), default="value")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | inactive
    deactivated_us: Mapped[int | None] = mapped_column(default=None)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (UniqueConstraint("account_id", "livemode", "event_name"),)


class MeterEvent(Base):
    """One usage report, idempotent by its ``identifier`` (the merchant's, or ours)."""

    __tablename__ = "meter_events"
    # Identifiers are unique per account and mode (a test event never hides a live one).
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_name: Mapped[str] = mapped_column(String(100))
    customer_id: Mapped[str] = mapped_column(String(40))
    value: Mapped[int]
    timestamp_us: Mapped[int]
    created_us: Mapped[int]
    # billing/meters.py ``usage``: one range scan per (meter, customer, period).
    __table_args__ = (
        Index(
            "ix_meter_events_usage",
            "account_id",
            "livemode",
            "event_name",
            "customer_id",
            "timestamp_us",
        ),
    )


# Deliveries still to make: the predicate of the delivery queue's partial index.
_DELIVERY_PENDING = text("status = 'pending'")


class WebhookEndpoint(Base):
    """A merchant's URL that receives its account's events (Stripe's webhook_endpoint).
    ``secret`` (and ``old_secret`` during a roll's grace period) are sealed with the
    envelope keyring, bound to the endpoint id: never stored or logged in clear."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    enabled_events: Mapped[list[str]] = mapped_column(JSON)
    signature_scheme: Mapped[str] = mapped_column(String(16))  # standard | stripe
    api_version: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))  # enabled | disabled
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(Text)
    old_secret: Mapped[str | None] = mapped_column(Text)
    old_secret_expires_us: Mapped[int | None]
    failing_since_us: Mapped[int | None]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]


class WebhookDelivery(Base):
    """One event owed to one endpoint: the delivery queue. ``pending`` until a 2xx
    (``delivered``) or the retry schedule runs out (``failed``); a claimed delivery is leased
    until ``lease_until_us``, so one whose worker died is sent again (at least once)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed | canceled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_us: Mapped[int]
    lease_until_us: Mapped[int | None]
    created_us: Mapped[int]
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_us",
            sqlite_where=_DELIVERY_PENDING,
            postgresql_where=_DELIVERY_PENDING,
        ),
    )


class WebhookAttempt(Base):
    """One HTTP request to an endpoint: its outcome, latency, status code and the start of
    the response body (truncated), for /v1/webhook_endpoints/{id}/attempts."""

    __tablename__ = "webhook_attempts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    delivery_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(255))
    created_us: Mapped[int]
    __table_args__ = (
        Index("ix_webhook_attempts_endpoint", "endpoint_id", "created_us"),
        # pruning (outbound/prune.py) reads the oldest attempts of every endpoint
        Index("ix_webhook_attempts_created_us", "created_us"),
    )


# --- disputes and Stripe parameters (issue 9): migration 0016 ---
# (a column on Dispute above: disputes.metadata)


# --- jobs: lease fencing: migration 0017 ---


# --- checkout sessions (issue 12): migration 0018 ---


class CheckoutSession(Base):
    """A hosted checkout (Stripe's Checkout Session, src/paymux/checkout/): what the payer is
    shown (``line_items``, a snapshot taken at creation, each with its price) and the intent
    it pays with: a PaymentIntent (mode payment, its id derived from the session's, so a
    retried create never makes a second) or a SetupIntent (mode setup). ``status`` open ->
    complete | expired; ``expires_us`` when the sweep expires it."""

    __tablename__ = "checkout_sessions"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    mode: Mapped[str] = mapped_column(String(16))  # payment | setup
    status: Mapped[str] = mapped_column(String(16))  # open | complete | expired
    payment_status: Mapped[str] = mapped_column(String(24))  # paid|unpaid|no_payment_required
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    amount_subtotal: Mapped[int | None] = mapped_column(default=None)
    amount_total: Mapped[int | None] = mapped_column(default=None)
    line_items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    customer_id: Mapped[str | None] = mapped_column(String(40), default=None)
    customer_email: Mapped[str | None] = mapped_column(String(512), default=None)
    client_reference_id: Mapped[str | None] = mapped_column(String(200), default=None)
    success_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    cancel_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    capture_method: Mapped[str] = mapped_column(String(16), default="automatic")
    payment_method_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    payment_intent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    setup_intent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    expires_us: Mapped[int]
    completed_us: Mapped[int | None] = mapped_column(default=None)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_checkout_sessions_account_created", "account_id", "created_us"),
        Index("ix_checkout_sessions_payment_intent", "payment_intent_id"),
        Index("ix_checkout_sessions_setup_intent", "setup_intent_id"),
        # the expiry sweep: open sessions by expires_us
        Index("ix_checkout_sessions_status_expires", "status", "expires_us"),
    )


class CspReport(Base):
    """A Content-Security-Policy violation a browser reported from one of paymux's pages
    (PCI DSS 4.0 6.4.3 / 11.6.1: a change to a payment page's scripts is noticed). The
    deployment's, listed by the operator (``GET /v1/admin/csp_reports``); ``account_id`` is
    the checkout session's when the page was one. Paths only: no query, and a checkout
    page's session id (its secret) is replaced by ``{session}``."""

    __tablename__ = "csp_reports"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(40), default=None)
    page: Mapped[str] = mapped_column(String(512))
    directive: Mapped[str] = mapped_column(String(128))
    blocked: Mapped[str] = mapped_column(String(512))
    source: Mapped[str | None] = mapped_column(String(512), default=None)
    line: Mapped[int | None] = mapped_column(default=None)
    disposition: Mapped[str] = mapped_column(String(16), default="enforce")
    # One row per aggregate (csp_reports.fingerprint): how many, first (created_us) and last
    # seen.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    count: Mapped[int] = mapped_column(BigInteger, default=1)
    created_us: Mapped[int]
    last_seen_us: Mapped[int]
    __table_args__ = (Index("ix_csp_reports_last_seen", "last_seen_us"),)


# --- fraud (issue 13): migration 0019 ---
class FraudRule(Base):
    """An account's rule (``/v1/fraud/rules``): Radar's syntax, kept as written and parsed
    again when the rule set is loaded. ``status`` active | disabled."""

    __tablename__ = "fraud_rules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str] = mapped_column(String(16))
    predicate: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (Index("ix_fraud_rules_account_created", "account_id", "created_us"),)


class RadarValueList(Base):
    """Stripe's ``radar.value_list``: a named list a rule names by ``@alias``."""

    __tablename__ = "radar_value_lists"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    alias: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    item_type: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(100), default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    __table_args__ = (
        UniqueConstraint("account_id", "livemode", "alias", name="uq_radar_value_lists_alias"),
        Index("ix_radar_value_lists_account_created", "account_id", "created_us"),
    )


class RadarValueListItem(Base):
    """Stripe's ``radar.value_list_item``; ``value`` as given, matched case-insensitively
    (but for ``case_sensitive_string`` lists)."""

    __tablename__ = "radar_value_list_items"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    value_list_id: Mapped[str] = mapped_column(ForeignKey("radar_value_lists.id"))
    value: Mapped[str] = mapped_column(String(800))
    # ``value`` as rules compare it (case-folded, but for case_sensitive_string lists): a
    # payment's facts are looked up in it with one indexed IN query (fraud/lists.py).
    match_value: Mapped[str] = mapped_column(String(800))
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_us: Mapped[int]
    __table_args__ = (
        UniqueConstraint("value_list_id", "value", name="uq_radar_value_list_items_value"),
        Index("ix_radar_value_list_items_list_created", "value_list_id", "created_us"),
        Index("ix_radar_value_list_items_match", "value_list_id", "match_value"),
    )


class Review(Base):
    """Stripe's ``review``: a payment a review rule let through as an authorization only.
    ``reason`` open: rule | manual; closed: approved | refunded | canceled (Stripe's
    ``closed_reason``)."""

    __tablename__ = "reviews"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id"))
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    opened_reason: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    closed_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    rule_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    ip_country: Mapped[str | None] = mapped_column(String(2), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(500), default=None)
    created_us: Mapped[int]
    closed_us: Mapped[int | None] = mapped_column(default=None)
    __table_args__ = (
        Index("ix_reviews_account_created", "account_id", "created_us"),
        Index("ix_reviews_payment_intent", "payment_intent_id"),
    )


class FraudVelocityBucket(Base):
    """The velocity counters of one key (``fraud/velocity.py``: a digest of kind and value,
    never a card number, raw email or raw IP) in one minute: attempts allowed to reach the
    gateway, those settled, and the issuer declines among them. Rows older than a day are
    pruned as new attempts for the key come in."""

    __tablename__ = "fraud_velocity_buckets"
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    declines: Mapped[int] = mapped_column(Integer, default=0)
    settled: Mapped[int] = mapped_column(Integer, default=0)
    # Migration 0032: the highest risk level a gateway gave the key's attempts settled in
    # the minute (1 normal, 2 elevated, 3 highest; None: none given).
    gateway_risk: Mapped[int | None] = mapped_column(Integer, default=None)
    # Migration 0034: the highest numeric risk score (0-100) a gateway gave the key's attempts
    # settled in the minute (Stripe's ``outcome.risk_score``; None: none given).
    gateway_risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    # Migration 0035: how many of the key's distinct cards were last tried in the minute (a
    # card tried again moves to its new minute): the distinct_cards counts sum these.
    cards: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class FraudVelocityCard(Base):
    """A distinct card (its fingerprint's digest) tried with a key, and the minute it was
    last tried: for the ``distinct_cards_*`` counts."""

    __tablename__ = "fraud_velocity_cards"
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    card: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger)


# --- ops (issue 16): migration 0020 ---
class WorkerHeartbeat(Base):
    """A running job worker (jobs/worker.py): its row is written every loop and deleted when
    it stops cleanly, so /health/ready can tell whether workers run (observability/health.py)."""

    __tablename__ = "worker_heartbeats"
    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_us: Mapped[int]
    beat_us: Mapped[int]


# --- ops (issue 16): migration 0023: the indexes /metrics reads through ---
Index(
    "ix_webhook_inbox_status",
    WebhookInbox.status,
    WebhookInbox.gateway,
    WebhookInbox.received_us,
)
Index("ix_webhook_deliveries_status", WebhookDelivery.status, WebhookDelivery.created_us)


# --- issue 15 (helper H5): migration 0030: the dashboard's inbox by account, metadata search ---
Index(
    "ix_webhook_inbox_account",
    WebhookInbox.account_id,
    WebhookInbox.status,
    WebhookInbox.received_us,
)
Index("ix_webhook_inbox_account_received", WebhookInbox.account_id, WebhookInbox.received_us)
# migration 0031 (helper B15): a payment's page reads the inbound webhooks about it
Index("ix_webhook_inbox_account_object", WebhookInbox.account_id, WebhookInbox.object_id)
# GIN (jsonb_path_ops) on PostgreSQL; on SQLite a partial index of no row (WHERE 0), so the
# schema is the same on both engines and SQLite writes pay nothing for it.
Index(
    "ix_payment_intents_metadata",
    PaymentIntent.metadata_,
    postgresql_using="gin",
    postgresql_ops={"metadata": "jsonb_path_ops"},
    sqlite_where=text("0"),
)


# --- issue 10/13 (helper H1): migration 0024 ---


# --- issue 11 (helper H2): migration 0025 ---


# --- issue 12 section 3 (helper H4): migration 0026 ---
# payment_intents.payment_method_options: Stripe's {"card": {"request_three_d_secure": ...}}
# as given on create or confirm; payment_intents.three_d_secure: the latest confirmation's
# 3-D Secure outcome (gateways/base.py ThreeDSecure.as_dict), shown on the charge;
# payment_methods.network_transaction_id: the network's id of the card's first
# customer-initiated payment made to save it, referenced by merchant-initiated charges.


# --- issue 14 (helper H6): migration 0027 ---
# Per-endpoint claims (paymux/outbound/claims.py): an endpoint's oldest due deliveries, and
# how many it has leased (in flight) across workers.
Index(
    "ix_webhook_deliveries_endpoint_due",
    WebhookDelivery.endpoint_id,
    WebhookDelivery.next_attempt_us,
    sqlite_where=_DELIVERY_PENDING,
    postgresql_where=_DELIVERY_PENDING,
)
Index(
    "ix_webhook_deliveries_endpoint_leased",
    WebhookDelivery.endpoint_id,
    WebhookDelivery.lease_until_us,
    sqlite_where=text("status = 'pending' AND lease_until_us IS NOT NULL"),
    postgresql_where=text("status = 'pending' AND lease_until_us IS NOT NULL"),
)


# --- issue 15 (helper H7): migration 0028 ---


class DashboardUser(Base):
    """A person who signs in to /dashboard (not an API key): argon2 password hash, TOTP
    secret sealed with the envelope keyring (context ``dashboard_user:<id>:totp``)."""

    __tablename__ = "dashboard_users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # admin|developer|support|view_only
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    last_login_us: Mapped[int | None] = mapped_column(default=None)
    # The last TOTP time step accepted: a code is never accepted twice.
    last_totp_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


class DashboardSession(Base):
    """A signed-in browser: the cookie holds a random token, this row its SHA-256."""

    __tablename__ = "dashboard_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("dashboard_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    seen_us: Mapped[int]


class DashboardLoginAttempt(Base):
    """Failed sign-ins counted per key (``email:<address>`` or ``ip:<address>``)."""

    __tablename__ = "dashboard_login_attempts"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start_us: Mapped[int]
    locked_until_us: Mapped[int | None] = mapped_column(default=None)


class RequestLogEntry(Base):
    """A recent API call of an account (issue 15: the dashboard's request log), written in
    batches by services/request_log.py and trimmed to the newest entries per account and
    mode. The body is redacted as the logs are (security/redact.py) and capped; never a key
    (``key_id`` names the key)."""

    __tablename__ = "request_log"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))  # the route template
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(Integer)
    duration_us: Mapped[int]
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    body: Mapped[str | None] = mapped_column(Text, default=None)
    created_us: Mapped[int]
    __table_args__ = (
        Index("ix_request_log_account_created", "account_id", "livemode", "created_us", "id"),
    )
