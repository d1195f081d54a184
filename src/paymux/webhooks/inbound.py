"""The inbound path: verify the raw bytes, store the event once, answer fast, apply later.

``receive`` verifies the signature before anything is parsed, then writes the event to the
inbox (unique on gateway + provider event id) and an ``apply_webhook`` job in one committed
transaction. A duplicate delivery finds the row and is acknowledged without a second job.
If the database is unavailable the exception propagates and the endpoint answers 5xx, so the
provider delivers again: we never acknowledge an event we did not store.

``apply`` (the worker's job) applies one event in ONE transaction: the change to our objects,
the events it emits, the inbox row's ``applied`` mark and the job's ``done`` commit together,
so a worker killed at any point leaves either nothing or everything, and a re-run finds the
row applied. Rows are locked (``FOR UPDATE`` on PostgreSQL) so two applies (two workers, or
one worker's concurrent applies) never interleave on one payment.
Handlers tolerate any order: an outcome that would move an object backwards is ignored; an
event about an object we don't have yet raises ``UnknownObjectYet`` and is retried with
backoff, then parked as ``dead`` (never dropped) for ``replay``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.attempts import Operation
from paymux.domain.ids import new_id
from paymux.gateways.base import (
    DisputeUpdate,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    WebhookVerificationError,
)
from paymux.jobs.queue import enqueue
from paymux.services.attempts import result_json
from paymux.services.connections import ConnectionsService
from paymux.services.context import Context, emit
from paymux.services.payments import PaymentsService
from paymux.services.refunds import RefundsService
from paymux.services.views import dispute_view
from paymux.storage.models import Dispute, GatewayAttempt, PaymentIntent, Refund, WebhookInbox

__all__ = [
    "INBOX_STATUSES",
    "Finish",
    "InboundWebhooks",
    "InboxStatus",
    "Received",
    "UnknownObjectYet",
]

# A stored event's status: waiting to be applied, applied, nothing to do, older than what we
# know, or failed its last attempt (waiting for a replay).
InboxStatus = Literal["received", "applied", "ignored", "stale", "dead"]
INBOX_STATUSES: tuple[str, ...] = get_args(InboxStatus)

log = logging.getLogger(__name__)

Finish = Callable[[AsyncSession], Awaitable[None]]


class UnknownObjectYet(Exception):
    """The event is about an object we have not stored yet: retry later, never drop."""


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where an inbound event may look: its gateway, and the account of the connection it
    arrived at (None: a deployment gateway, whose events may be about any account's)."""

    gateway: str
    account_id: str | None

    def holds(self, obj: PaymentIntent | Refund) -> bool:
        gateway = getattr(obj, "gateway", self.gateway)
        return gateway == self.gateway and self.account_id in (None, obj.account_id)


@dataclass(frozen=True, slots=True)
class Received:
    inbox_id: str
    duplicate: bool


def inbox_view(row: WebhookInbox) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "webhook_event",
        "gateway": row.gateway,
        "account": row.account_id,
        "connection": row.connection_id,
        "event_id": row.event_id,
        "type": row.type,
        "status": row.status,
        "error": row.error,
        "received": row.received_us // 1_000_000,
        "applied": None if row.applied_us is None else row.applied_us // 1_000_000,
    }


class InboundWebhooks:
    def __init__(
        self,
        ctx: Context,
        payments: PaymentsService,
        refunds: RefundsService,
        connections: ConnectionsService,
    ) -> None:
        self.ctx = ctx
        self.connections = connections
        self.payments = payments
        self.refunds = refunds
        self.rejected: Counter[tuple[str, str]] = Counter()

    # -- ingress ----------------------------------------------------------------------------
    async def receive(self, segment: str, headers: dict[str, str], body: bytes) -> Received:
        """``segment``: the last part of ``/webhooks/{segment}``, a connection's id (verified
        with that connection's secret, stored as that account's) or, as before connections,
        a deployment gateway's name."""
        gateway, account_id, connection_id = await self.connections.for_webhook(segment)
        gateway_name = gateway.name
        try:
            event = await gateway.verify_webhook(headers, body)
        except WebhookVerificationError as exc:
            self.rejected[(gateway_name, exc.reason)] += 1
            raise
        now = self.ctx.now_us()
        inbox_id = new_id("we")
        try:
            async with self.ctx.db.write() as s:
                s.add(
                    WebhookInbox(
                        id=inbox_id,
                        gateway=gateway_name,
                        account_id=account_id,
                        connection_id=connection_id,
                        event_id=event.event_id,
                        type=event.type,
                        payload=body.decode(),
                        status="received",
                        error=None,
                        received_us=now,
                        applied_us=None,
                    )
                )
                await s.flush()
                await enqueue(
                    s,
                    "apply_webhook",
                    {"inbox_id": inbox_id},
                    now_us=now,
                    max_attempts=self.ctx.settings.webhook_apply_max_attempts,
                    account_id=account_id,
                )
        except IntegrityError:
            async with self.ctx.db.read() as s:
                existing = (
                    await s.execute(
                        select(WebhookInbox.id).where(
                            WebhookInbox.gateway == gateway_name,
                            WebhookInbox.event_id == event.event_id,
                        )
                    )
                ).scalar_one()
            return Received(existing, duplicate=True)
        return Received(inbox_id, duplicate=False)

    # -- applying ---------------------------------------------------------------------------
    async def apply(self, inbox_id: str, *, finish: Finish | None = None) -> None:
        """Apply one stored event (job ``apply_webhook``). Idempotent and order-tolerant.

        ``finish`` runs last in the same transaction, whether the event was applied now or
        had been already (the worker marks its job done there: one commit, not two)."""
        async with self.ctx.db.write() as s:
            row = await s.get(WebhookInbox, inbox_id, with_for_update=True)
            if row is not None and row.status == "received":
                await self._apply_row(s, row)
            if finish is not None:
                await finish(s)

    async def _apply_row(self, s: AsyncSession, row: WebhookInbox) -> None:
        gateway_name, scope = row.gateway, _Scope(row.gateway, row.account_id)
        gateway = await self.ctx.gateway(
            gateway_name, account_id=row.account_id, connection_id=row.connection_id
        )
        payload = json.loads(row.payload)
        change = gateway.interpret_event(
            InboundEvent(gateway_name, str(payload.get("id")), row.type, payload)
        )
        stale = None
        if isinstance(change, PaymentUpdate):
            stale = await self._apply_payment(s, scope, change)
        elif isinstance(change, RefundUpdate):
            await self._apply_refund(s, scope, change)
        elif isinstance(change, DisputeUpdate):
            await self._apply_dispute(s, scope, change)
        # "stale": verified and kept, but older than what we know, so it changed nothing.
        row.status = "ignored" if change is None else ("stale" if stale else "applied")
        row.error = stale
        row.applied_us = self.ctx.now_us()

    async def _payment_by_reference(
        self, s: AsyncSession, scope: _Scope, ours: str | None, theirs: str | None
    ) -> PaymentIntent | None:
        """The payment an event is about, among the receiving connection's account's (any
        account's, for a deployment gateway shared by several)."""
        if ours:
            pi = await s.get(PaymentIntent, ours, with_for_update=True)
            if pi is not None and scope.holds(pi):
                return pi
        if theirs:
            query = select(PaymentIntent).where(
                PaymentIntent.gateway == scope.gateway, PaymentIntent.gateway_reference == theirs
            )
            if scope.account_id is not None:
                query = query.where(PaymentIntent.account_id == scope.account_id)
            found: PaymentIntent | None = (
                await s.execute(query.with_for_update())
            ).scalar_one_or_none()
            return found
        return None

    async def _apply_payment(
        self, s: AsyncSession, scope: _Scope, change: PaymentUpdate
    ) -> str | None:
        """Apply the provider's word. Returns why it was stale, or None when applied."""
        pi = await self._payment_by_reference(s, scope, change.reference, change.result.reference)
        if pi is None:
            raise UnknownObjectYet(
                f"payment {change.reference or change.result.reference} is not stored yet"
            )
        attempts = list(
            (
                await s.execute(
                    select(GatewayAttempt)
                    .where(GatewayAttempt.object_id == pi.id)
                    .order_by(GatewayAttempt.created_us)
                )
            ).scalars()
        )
        stale = _stale(attempts, change.result)
        if stale:
            log.info("ignoring a late %s about %s: %s", change.result.status, pi.id, stale)
            return stale
        if change.result.status is GatewayStatus.OPEN and pi.status == "requires_action":
            # The payer acted and the provider waits for us (PayPal's CHECKOUT.ORDER.APPROVED
            # after PAYER_ACTION_REQUIRED): have the worker complete it now.
            await enqueue(
                s,
                "refresh_intent",
                {"pi_id": pi.id},
                now_us=self.ctx.now_us(),
                dedupe_key=f"refresh:{pi.id}",
                account_id=pi.account_id,
            )
            return None
        moved = await self.payments.engine.apply_payment_report(s, pi, change.result)
        if moved.moved and pi.status != "processing":
            for attempt in attempts:  # the webhook told us the outcome a call was waiting for
                if attempt.status == "pending" and attempt.operation != Operation.REFUND:
                    attempt.status = "settled"
                    attempt.result = result_json(change.result)
                    attempt.updated_us = self.ctx.now_us()
        return None

    async def _apply_refund(self, s: AsyncSession, scope: _Scope, change: RefundUpdate) -> None:
        outcome = change.refund
        refund = await self._find_refund(s, scope, outcome)
        if refund is None:
            pi = await self._payment_by_reference(s, scope, None, outcome.payment_reference)
            if pi is None:
                raise UnknownObjectYet(
                    f"refund {outcome.reference}: payment {outcome.payment_reference} is not "
                    "stored yet"
                )
            # Another event about the same refund (refund.created, charge.refunded, ...) may
            # have recorded it while we waited for the intent's lock: look again, under it.
            refund = await self._find_refund(s, scope, outcome)
            if refund is None:
                await self.refunds.record_external(s, pi, outcome)
                return
        await self.refunds.apply_in(s, refund, outcome)

    async def _find_refund(
        self, s: AsyncSession, scope: _Scope, outcome: GatewayRefund
    ) -> Refund | None:
        refund: Refund | None = None
        if outcome.reference:
            query = select(Refund).where(Refund.gateway_reference == outcome.reference)
            if scope.account_id is not None:
                query = query.where(Refund.account_id == scope.account_id)
            refund = (await s.execute(query)).scalar_one_or_none()
        if refund is None and outcome.our_id:
            refund = await s.get(Refund, outcome.our_id)
            if refund is not None and not scope.holds(refund):
                refund = None
        return refund

    async def _apply_dispute(self, s: AsyncSession, scope: _Scope, change: DisputeUpdate) -> None:
        gateway = scope.gateway
        pi = await self._payment_by_reference(s, scope, None, change.payment_reference)
        if pi is None:
            raise UnknownObjectYet(
                f"dispute {change.reference}: payment {change.payment_reference} is not stored yet"
            )
        now = self.ctx.now_us()
        dispute = (
            await s.execute(
                select(Dispute).where(
                    Dispute.gateway == gateway, Dispute.gateway_reference == change.reference
                )
            )
        ).scalar_one_or_none()
        if dispute is None:
            dispute = Dispute(
                id=new_id("dp"),
                account_id=pi.account_id,
                payment_intent_id=pi.id,
                gateway=gateway,
                gateway_reference=change.reference,
                amount=change.amount,
                currency=(change.currency or pi.currency).upper(),
                reason=change.reason,
                status=change.status,
                livemode=pi.livemode,
                created_us=now,
                updated_us=now,
            )
            s.add(dispute)
            await s.flush()
            await emit(s, pi.account_id, "charge.dispute.created", dispute_view(dispute), now)
        elif dispute.status != change.status:
            dispute.status = change.status
            dispute.updated_us = now
            await emit(s, pi.account_id, "charge.dispute.updated", dispute_view(dispute), now)

    # -- operations -------------------------------------------------------------------------
    async def mark_dead(self, s: AsyncSession, inbox_id: str, error: str) -> None:
        await s.execute(
            update(WebhookInbox)
            .where(WebhookInbox.id == inbox_id)
            .values(status="dead", error=error[:2000])
        )

    async def note_failure(self, s: AsyncSession, inbox_id: str, error: str) -> None:
        await s.execute(
            update(WebhookInbox).where(WebhookInbox.id == inbox_id).values(error=error[:2000])
        )

    async def list_page(
        self, *, status: str | None = None, gateway: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(WebhookInbox)
        if status:
            query = query.where(WebhookInbox.status == status)
        if gateway:
            query = query.where(WebhookInbox.gateway == gateway)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                query.order_by(WebhookInbox.received_us.desc(), WebhookInbox.id).limit(limit)
            )
            return [inbox_view(r) for r in rows.scalars()]

    async def replay(self, *, event_id: str | None = None, all_dead: bool = False) -> list[str]:
        """Put events back in the queue: one (by inbox id or provider event id), or all dead."""
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            query = select(WebhookInbox)
            if all_dead:
                query = query.where(WebhookInbox.status == "dead")
            elif event_id:
                query = query.where(
                    (WebhookInbox.id == event_id) | (WebhookInbox.event_id == event_id)
                )
            else:
                return []
            rows = list((await s.execute(query)).scalars())
            for row in rows:
                row.status = "received"
                row.error = None
                await enqueue(
                    s,
                    "apply_webhook",
                    {"inbox_id": row.id},
                    now_us=now,
                    max_attempts=self.ctx.settings.webhook_apply_max_attempts,
                    account_id=row.account_id,
                )
            return [row.id for row in rows]

    def stats(self) -> dict[str, Any]:
        return {
            "rejected": [
                {"gateway": g, "reason": r, "count": n}
                for (g, r), n in sorted(self.rejected.items())
            ]
        }


def _stale(attempts: list[GatewayAttempt], result: GatewayResult) -> str | None:
    """Why this outcome is older than what we already know, or None if it is news.

    - It is about an earlier attempt's provider payment (gateways that make a new payment per
      attempt, like the sandbox or Square, send a late decline of attempt 1 while attempt 2
      is in flight); or
    - a capture or void of ours is in flight and this is not where it can lead (an APPROVED
      event overtaken by our own capture). A success always counts: money moved."""
    authorizations = [a for a in attempts if a.operation == Operation.AUTHORIZE]
    if result.reference and len(authorizations) > 1:
        earlier = {(a.result or {}).get("reference") for a in authorizations[:-1]}
        latest = (authorizations[-1].result or {}).get("reference")
        if result.reference in earlier and result.reference != latest:
            return "about an earlier attempt's payment"
    in_flight = {a.operation for a in attempts if a.status == "pending"}
    if Operation.CAPTURE in in_flight and result.status is not GatewayStatus.SUCCEEDED:
        return "overtaken by a capture in flight"
    if Operation.CANCEL in in_flight and result.status not in (
        GatewayStatus.CANCELED,
        GatewayStatus.SUCCEEDED,
    ):
        return "overtaken by a cancel in flight"
    return None
