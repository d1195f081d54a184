"""The inbound path: verify the raw bytes, store the event once, answer fast, apply later.

``receive`` verifies the signature before anything is parsed, then writes the event to the
inbox (unique on gateway + provider event id) and an ``apply_webhook`` job in one committed
transaction. A duplicate delivery finds the row and is acknowledged without a second job.
If the database is unavailable the exception propagates and the endpoint answers 5xx, so the
provider delivers again: we never acknowledge an event we did not store.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from paymux.domain.ids import new_id
from paymux.gateways.base import InboundEvent, PaymentUpdate, RefundUpdate
from paymux.jobs.queue import enqueue
from paymux.services.context import Context
from paymux.services.payments import PaymentsService
from paymux.services.refunds import RefundsService
from paymux.storage.models import GatewayAttempt, PaymentIntent, Refund, WebhookInbox

__all__ = ["InboundWebhooks", "Received", "UnknownObjectYet"]

log = logging.getLogger(__name__)


class UnknownObjectYet(Exception):
    """The event is about an object we have not stored yet: retry later, never drop."""


@dataclass(frozen=True, slots=True)
class Received:
    inbox_id: str
    duplicate: bool


class InboundWebhooks:
    def __init__(self, ctx: Context, payments: PaymentsService, refunds: RefundsService) -> None:
        self.ctx = ctx
        self.payments = payments
        self.refunds = refunds

    async def receive(self, gateway_name: str, headers: dict[str, str], body: bytes) -> Received:
        gateway = self.ctx.gateway(gateway_name, param="gateway")
        event = gateway.verify_webhook(headers, body)  # raises WebhookVerificationError
        now = self.ctx.now_us()
        inbox_id = new_id("we")
        try:
            async with self.ctx.db.write() as s:
                s.add(
                    WebhookInbox(
                        id=inbox_id,
                        gateway=gateway_name,
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
                    s, "apply_webhook", {"inbox_id": inbox_id}, now_us=now, max_attempts=12
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

    async def apply(self, inbox_id: str) -> None:
        """Apply one stored event (job ``apply_webhook``). Idempotent and order-tolerant."""
        async with self.ctx.db.read() as s:
            row = await s.get(WebhookInbox, inbox_id)
            if row is None or row.status != "received":
                return
            gateway_name, body, event_type = row.gateway, row.payload, row.type
        gateway = self.ctx.gateway(gateway_name)
        payload = json.loads(body)
        update = gateway.interpret_event(
            InboundEvent(gateway_name, str(payload.get("id")), event_type, payload)
        )
        status = "applied"
        if isinstance(update, PaymentUpdate):
            await self._apply_payment(update)
        elif isinstance(update, RefundUpdate):
            await self._apply_refund(update)
        else:
            status = "ignored"
        async with self.ctx.db.write() as s:
            row = await s.get(WebhookInbox, inbox_id)
            assert row is not None
            row.status = status
            row.applied_us = self.ctx.now_us()

    async def _apply_payment(self, update: PaymentUpdate) -> None:
        async with self.ctx.db.write() as s:
            pi = await s.get(PaymentIntent, update.reference)
            if pi is None and update.result.reference:
                pi = (
                    await s.execute(
                        select(PaymentIntent).where(
                            PaymentIntent.gateway_reference == update.result.reference
                        )
                    )
                ).scalar_one_or_none()
            if pi is None:
                raise UnknownObjectYet(f"payment {update.reference} is not stored yet")
            pending = (
                (
                    await s.execute(
                        select(GatewayAttempt).where(
                            GatewayAttempt.object_id == pi.id, GatewayAttempt.status == "pending"
                        )
                    )
                )
                .scalars()
                .all()
            )
            for attempt in pending:
                attempt.status = "settled"
                attempt.updated_us = self.ctx.now_us()
            await self.payments.apply_result(s, pi, update.result, operation="webhook")

    async def _apply_refund(self, update: RefundUpdate) -> None:
        async with self.ctx.db.read() as s:
            refund = (
                await s.execute(
                    select(Refund).where(Refund.gateway_reference == update.refund.reference)
                )
            ).scalar_one_or_none()
        if refund is None:
            raise UnknownObjectYet(f"refund {update.refund.reference} is not stored yet")
        await self.refunds.apply(refund.id, update.refund)
