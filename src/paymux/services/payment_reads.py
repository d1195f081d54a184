"""Payments as the dashboard reads them: a search by more than the API's list filters by
(status, a failed payment, currency, gateway, customer, amount, date, one metadata pair),
with the same cursor pagination (``page_of``), and a payment's detail with its timeline.
The dashboard calls this service; it never queries the database itself.

A metadata search on PostgreSQL asks ``metadata @> '{"key": "value"}'`` (jsonb containment),
which the GIN index ``ix_payment_intents_metadata`` (migration 0030) answers without reading
the table; on SQLite it compares ``json_extract``.

A payment's timeline lists the inbound webhooks applied to it (``webhook_inbox.object_id``,
set by webhooks/inbound.py when an event is applied to the payment, its refund or its dispute),
of its account or of a deployment gateway (rows without an account), read through the index
``ix_webhook_inbox_account_object`` (migration 0031).

The rows and the timeline carry only what a page may show: ids, amounts, statuses, codes,
times, request ids. Never a client secret, a gateway token, a request body or card data
beyond brand, last 4 and expiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, cast, literal
from sqlalchemy.sql.compiler import SQLCompiler

from paymux.domain.clock import seconds
from paymux.services.context import Context, CreatedRange, get_owned, page_of, scoped
from paymux.storage.models import (
    Event,
    GatewayAttempt,
    PaymentIntent,
    PaymentMethod,
    Refund,
    Review,
    WebhookDelivery,
    WebhookInbox,
)

__all__ = [
    "FAILED",
    "PaymentDetail",
    "PaymentReads",
    "PaymentSearch",
    "TimelineEntry",
    "payment_row",
]

FAILED = "failed"  # a search status: waiting for a payment method after a decline
_EVENT_LIMIT = 200


@dataclass(frozen=True)
class PaymentSearch:
    """What to search by; every field optional. ``status`` is a payment intent status or
    ``FAILED``; amounts are minor units; dates epoch seconds (both ends included)."""

    status: str | None = None
    currency: str | None = None
    gateway: str | None = None
    customer: str | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    created_gte: int | None = None
    created_lte: int | None = None
    metadata_key: str | None = None
    metadata_value: str | None = None


class MetadataHas(ColumnElement[bool]):
    """``column`` (a JSON object) holds ``key`` with the text ``value``: on PostgreSQL jsonb
    containment (which a GIN index answers), elsewhere ``json_extract(...) = value``."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, column: Any, key: str, value: str) -> None:
        self.column, self.key, self.value = column, key, value


@compiles(MetadataHas)
def _metadata_has(element: MetadataHas, compiler: SQLCompiler, **kw: Any) -> str:
    clause = element.column[element.key].as_string() == element.value
    return str(compiler.process(clause, **kw))


@compiles(MetadataHas, "postgresql")
def _metadata_has_pg(element: MetadataHas, compiler: SQLCompiler, **kw: Any) -> str:
    doc = cast(literal(json.dumps({element.key: element.value})), JSONB)
    return str(compiler.process(element.column.op("@>")(doc), **kw))


def payment_row(pi: PaymentIntent) -> dict[str, Any]:
    """A payment as the list shows it."""
    error = pi.last_payment_error or {}
    return {
        "id": pi.id,
        "amount": pi.amount,
        "currency": pi.currency,
        "status": pi.status,
        "failed": pi.status == "requires_payment_method" and bool(error),
        "decline_code": error.get("decline_code") or error.get("code"),
        "gateway": pi.gateway,
        "customer": pi.customer_id,
        "amount_received": pi.amount_received,
        "amount_refunded": pi.amount_refunded,
        "description": pi.description,
        "created": seconds(pi.created_us),
    }


@dataclass(frozen=True)
class TimelineEntry:
    at_us: int
    kind: str  # gateway call | event | refund | webhook | inbound webhook | review
    title: str
    detail: str = ""
    request_id: str | None = None


@dataclass
class PaymentDetail:
    payment: dict[str, Any]
    decline: dict[str, Any] | None
    fraud: dict[str, Any] | None
    three_d_secure: dict[str, Any] | None
    refunds: list[dict[str, Any]]
    metadata: dict[str, Any]
    amount_refundable: int
    timeline: list[TimelineEntry] = field(default_factory=list)


def _decline(pi: PaymentIntent) -> dict[str, Any] | None:
    error = pi.last_payment_error
    if not error:
        return None
    return {
        k: error.get(k)
        for k in ("code", "decline_code", "message", "type", "advice_code")
        if error.get(k)
    }


_FRAUD_FIELDS = ("type", "risk_level", "risk_score", "reason", "seller_message", "request_3ds")


def _fraud(pi: PaymentIntent) -> dict[str, Any] | None:
    """The fraud decision as Stripe's charge ``outcome`` shows it (the stored record's
    ``outcome``; its facts and velocity keys stay out of the page)."""
    outcome = (pi.fraud_outcome or {}).get("outcome")
    if not isinstance(outcome, dict):
        return None
    shown: dict[str, Any] = {k: outcome[k] for k in _FRAUD_FIELDS if outcome.get(k) is not None}
    rule = outcome.get("rule")
    if isinstance(rule, dict) and rule.get("id"):
        shown["rule"] = f"{rule['id']} ({rule.get('action')}): {rule.get('predicate')}"
    return shown


class PaymentReads:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def search(
        self,
        account_id: str,
        f: PaymentSearch,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        pi = PaymentIntent
        clauses: list[Any] = []
        if f.status == FAILED:
            clauses += [
                pi.status == "requires_payment_method",
                pi.last_payment_error["code"].as_string().is_not(None),
            ]
        elif f.status:
            clauses.append(pi.status == f.status)
        if f.currency:
            clauses.append(pi.currency == f.currency)
        if f.gateway:
            clauses.append(pi.gateway == f.gateway)
        if f.customer:
            clauses.append(pi.customer_id == f.customer)
        if f.amount_min is not None:
            clauses.append(pi.amount >= f.amount_min)
        if f.amount_max is not None:
            clauses.append(pi.amount <= f.amount_max)
        if f.metadata_key:
            clauses.append(MetadataHas(pi.metadata_, f.metadata_key, f.metadata_value or ""))
        created = (
            CreatedRange(gte=f.created_gte, lte=f.created_lte)
            if f.created_gte is not None or f.created_lte is not None
            else None
        )
        return await page_of(
            self.ctx,
            pi,
            account_id,
            payment_row,
            *clauses,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def detail(self, account_id: str, pi_id: str) -> PaymentDetail:
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            refunds = list(
                (
                    await s.scalars(
                        scoped(Refund, account_id)
                        .where(Refund.payment_intent_id == pi.id)
                        .order_by(Refund.created_us)
                    )
                ).all()
            )
            objects = [pi.id, *(r.id for r in refunds)]
            attempts = list(
                (
                    await s.scalars(
                        select(GatewayAttempt)
                        .where(
                            GatewayAttempt.object_id.in_(objects),
                            GatewayAttempt.account_id == account_id,
                        )
                        .order_by(GatewayAttempt.created_us)
                    )
                ).all()
            )
            events = list(
                (
                    await s.scalars(
                        select(Event)
                        .where(Event.object_id.in_(objects), Event.account_id == account_id)
                        .order_by(Event.created_us)
                        .limit(_EVENT_LIMIT)
                    )
                ).all()
            )
            deliveries = (
                list(
                    (
                        await s.scalars(
                            select(WebhookDelivery)
                            .where(
                                WebhookDelivery.event_id.in_([e.id for e in events]),
                                WebhookDelivery.account_id == account_id,
                            )
                            .order_by(WebhookDelivery.created_us)
                        )
                    ).all()
                )
                if events
                else []
            )
            inbox = list(
                (
                    await s.scalars(
                        select(WebhookInbox)
                        .where(
                            WebhookInbox.object_id == pi.id,
                            or_(
                                WebhookInbox.account_id == account_id,
                                WebhookInbox.account_id.is_(None),  # a deployment gateway's
                            ),
                        )
                        .order_by(WebhookInbox.received_us)
                        .limit(_EVENT_LIMIT)
                    )
                ).all()
            )
            reviews = list(
                (
                    await s.scalars(
                        scoped(Review, account_id).where(Review.payment_intent_id == pi.id)
                    )
                ).all()
            )
            method = (
                await s.get(PaymentMethod, pi.payment_method_id) if pi.payment_method_id else None
            )
        row = payment_row(pi)
        row.update(
            capture_method=pi.capture_method,
            amount_capturable=pi.amount_capturable,
            payment_method=pi.payment_method_id,
            card=(
                {
                    "brand": method.card_brand,
                    "last4": method.card_last4,
                    "exp_month": method.card_exp_month,
                    "exp_year": method.card_exp_year,
                }
                if method is not None and method.card_last4
                else None
            ),
            livemode=bool(pi.livemode),
            cancellation_reason=pi.cancellation_reason,
            invoice=pi.invoice_id,
        )
        refund_rows = [
            {
                "id": r.id,
                "amount": r.amount,
                "currency": r.currency,
                "status": r.status,
                "reason": r.reason,
                "failure_reason": r.failure_reason,
                "created": seconds(r.created_us),
            }
            for r in refunds
        ]
        timeline: list[TimelineEntry] = []
        for a in attempts:
            result = a.result or {}
            status = str(result.get("status") or a.status)
            code = result.get("decline_code") or result.get("code") or result.get("error_code")
            timeline.append(
                TimelineEntry(
                    a.created_us,
                    "gateway call",
                    f"{a.gateway} {a.operation}: {status}",
                    f"declined ({code})" if code else (a.error or "")[:200],
                    request_id=str(result.get("request_id") or "") or None,
                )
            )
        for e in events:
            timeline.append(
                TimelineEntry(e.created_us, "event", e.type, e.id, request_id=e.request_id)
            )
        for d in deliveries:
            timeline.append(
                TimelineEntry(
                    d.created_us,
                    "webhook",
                    f"delivery to {d.endpoint_id}: {d.status}",
                    f"event {d.event_id}, {d.attempts} attempt(s)",
                )
            )
        for w in inbox:
            timeline.append(
                TimelineEntry(
                    w.received_us,
                    "inbound webhook",
                    f"{w.gateway} {w.type}: {w.status}",
                    f"event {w.event_id}" + (f": {w.error[:200]}" if w.error else ""),
                )
            )
        for r in refunds:
            timeline.append(
                TimelineEntry(
                    r.created_us,
                    "refund",
                    f"refund {r.id}: {r.status}",
                    f"{r.amount} {r.currency.upper()} (minor units)",
                )
            )
        for v in reviews:
            state = "open" if v.open else f"closed ({v.closed_reason})"
            timeline.append(
                TimelineEntry(v.created_us, "review", f"review {v.id}: {state}", v.reason)
            )
        timeline.sort(key=lambda t: t.at_us)
        pending = sum(r.amount for r in refunds if r.status == "pending")
        return PaymentDetail(
            payment=row,
            decline=_decline(pi),
            fraud=_fraud(pi),
            three_d_secure=dict(pi.three_d_secure) if pi.three_d_secure else None,
            refunds=refund_rows,
            metadata=dict(pi.metadata_ or {}),
            amount_refundable=max(0, pi.amount_received - pi.amount_refunded - pending),
            timeline=timeline,
        )
