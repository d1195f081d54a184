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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Account",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Connection",
    "Customer",
    "Dispute",
    "Event",
    "GatewayAttempt",
    "IdempotencyKey",
    "Job",
    "PaymentIntent",
    "PaymentMethod",
    "RateLimitWindow",
    "Refund",
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
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_us: Mapped[int]
    __table_args__ = (
        UniqueConstraint("account_id", "gateway", "token"),
        # Who first used a gateway token, whatever the account: a token is its account's.
        Index("ix_payment_methods_gateway_token", "gateway", "token"),
    )


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
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # What a browser holding a publishable key shows to confirm this intent (Stripe's shape:
    # ``pi_..._secret_...``).
    client_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    confirm_count: Mapped[int] = mapped_column(default=0)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    updated_us: Mapped[int]
    __table_args__ = (
        Index("ix_payment_intents_account_created", "account_id", "created_us"),
        Index("ix_payment_intents_status_authorized", "status", "authorized_us"),
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


class Event(Base):
    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int]
    __table_args__ = (Index("ix_events_account_created", "account_id", "created_us"),)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
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
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)


class RateLimitWindow(Base):
    """Requests counted per API key (its hash) and window, shared by every API process."""

    __tablename__ = "rate_limit_windows"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_no: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
