"""The inbound path: verify the raw bytes, store the event once, answer fast, apply later.

``receive`` verifies the signature before anything is parsed, then writes the event to the
inbox (unique on gateway + provider event id) and an ``apply_webhook`` job in one committed
transaction, shared with the deliveries that arrived alongside (group commit:
webhooks/ingest.py). A duplicate delivery finds the row and is acknowledged without a second job.
If the database is unavailable the exception propagates and the endpoint answers 5xx, so the
provider delivers again: we never acknowledge an event we did not store.

``apply`` (the worker's job) applies one event in ONE transaction: the change to our objects,
the events it emits, the inbox row's ``applied`` mark (with the payment intent the event was
about: ``object_id``, which a payment's timeline reads) and the job's ``done`` commit together,
so a worker killed at any point leaves either nothing or everything, and a re-run finds the
row applied. Rows are locked (``FOR UPDATE`` on PostgreSQL) so two applies (two workers, or
one worker's concurrent applies) never interleave on one payment. ``apply_many`` is the
worker's batch: several events in the caller's ONE transaction, each in a SAVEPOINT of its
own, so a failing event is rolled back alone while the others commit with their jobs.
Handlers tolerate any order: an outcome that would move an object backwards is ignored; an
event about an object we don't have yet raises ``UnknownObjectYet`` and is retried with
backoff, then parked as ``dead`` (never dropped) for ``replay``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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
    SetupUpdate,
    WebhookVerificationError,
)
from paymux.jobs.queue import enqueue, revive_dead
from paymux.observability.metrics import observe_apply_lag
from paymux.observability.tracing import carrier
from paymux.services.attempts import result_json
from paymux.services.connections import ConnectionsService
from paymux.services.context import Context, emit
from paymux.services.payments import PaymentsService
from paymux.services.refunds import RefundsService
from paymux.services.three_d_secure import needs_charge_read
from paymux.services.views import dispute_view
from paymux.storage.models import (
    Dispute,
    GatewayAttempt,
    PaymentIntent,
    Refund,
    SetupIntent,
    WebhookInbox,
)
from paymux.webhooks.ingest import Arrival, InboxWriter

__all__ = [
    "INBOX_STATUSES",
    "BatchEventFailed",
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


class BatchEventFailed(Exception):
    """An event of a batch applied without savepoints failed (``apply_many(isolate=False)``,
    the exception chained): roll the transaction back and apply the batch with them."""

    def __init__(self, inbox_id: str | None) -> None:
        super().__init__(
            f"event {inbox_id} failed in a batch" if inbox_id else "a batch's writes failed"
        )
        self.inbox_id = inbox_id


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where an inbound event may look: its gateway, and the account of the connection it
    arrived at (None: a deployment gateway, whose events may be about any account's)."""

    gateway: str
    account_id: str | None

    def holds(self, obj: PaymentIntent | Refund | SetupIntent) -> bool:
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
        self.inbox = InboxWriter(ctx.db, max_attempts=ctx.settings.webhook_apply_max_attempts)

    # -- ingress ----------------------------------------------------------------------------
    async def receive(self, segment: str, headers: dict[str, str], body: bytes) -> Received:
        """``segment``: the last part of ``/webhooks/{segment}``, a connection's id (verified
        with that connection's secret, stored as that account's) or, as before connections,
        a deployment gateway's name.

        The store is group-committed (webhooks/ingest.py): this returns after the commit of
        the transaction that holds the event (with the deliveries that arrived alongside it);
        a failed transaction raises here, so the endpoint answers 5xx."""
        gateway, account_id, connection_id = await self.connections.for_webhook(segment)
        gateway_name = gateway.name
        try:
            event = await gateway.verify_webhook(headers, body)
        except WebhookVerificationError as exc:
            self.rejected[(gateway_name, exc.reason)] += 1
            raise
        stored = await self.inbox.store(
            Arrival(
                gateway=gateway_name,
                account_id=account_id,
                connection_id=connection_id,
                event_id=event.event_id,
                type=event.type,
                payload=body.decode(),
                received_us=self.ctx.now_us(),
                trace=carrier(),  # this request's: its apply job's span is linked to it
            )
        )
        return Received(stored.inbox_id, stored.duplicate)

    async def aclose(self) -> None:
        """Wait for a group commit in progress (before the database is disposed)."""
        await self.inbox.aclose()

    # -- applying ---------------------------------------------------------------------------
    async def apply(self, inbox_id: str, *, finish: Finish | None = None) -> None:
        """Apply one stored event (job ``apply_webhook``). Idempotent and order-tolerant.

        ``finish`` runs last in the same transaction, whether the event was applied now or
        had been already (the worker marks its job done there: one commit, not two)."""
        lag: tuple[str, int] | None = None
        async with self.ctx.db.write() as s:
            row = await s.get(WebhookInbox, inbox_id, with_for_update=True)
            if row is not None and row.status == "received":
                await self._apply_row(s, row)
                lag = (row.gateway, (row.applied_us or row.received_us) - row.received_us)
            if finish is not None:
                await finish(s)
        if lag is not None:  # committed: counted once
            observe_apply_lag(lag[0], lag[1] / 1_000_000)

    async def apply_many(
        self, s: AsyncSession, inbox_ids: Sequence[str], *, isolate: bool = True
    ) -> dict[str, Exception]:
        """Apply stored events in the caller's transaction (the worker's batch: one commit for
        all of them and their jobs), each in a SAVEPOINT of its own. Returns the events that
        failed, by inbox id: each was rolled back to its savepoint alone (nothing of it is
        written, its row stays ``received``) for the caller to record and retry; the others'
        changes, emitted events and inbox marks commit with the caller's transaction. Events
        no longer ``received`` (applied by an earlier run) are left alone, as ``apply`` does.

        ``isolate=False`` is for the common case where every event applies: no savepoints
        (two round trips an event), the intents that payment events name by our id locked
        and read with their attempts in two statements for the whole batch (``_Prefetched``,
        id order), and the writes flushed together at the end. The first event that fails to
        apply (or a failed flush) raises ``BatchEventFailed`` instead: what was written is
        then in the transaction, which the caller must roll back, and apply the batch again
        with ``isolate=True``. Events whose payload cannot be read fail before writing
        anything: they are returned either way.

        Locks are taken in one order, so that concurrent batches wait for each other rather
        than deadlock: the inbox rows first, in one statement in id order; then the objects,
        event by event, sorted by the object each is about (``_lock_order``; arrival order
        among one object's). With savepoints, each event starts from an empty session (what
        an earlier one read is not reused), as if in a transaction of its own, except that
        the locks it takes are held until the batch commits.

        An error that ends the transaction rather than one event (a deadlock, a
        serialization failure, a lost connection: ``_aborts_batch``) propagates: the caller
        rolls the whole batch back."""
        rows = (
            await s.execute(
                select(
                    WebhookInbox.id,
                    WebhookInbox.gateway,
                    WebhookInbox.account_id,
                    WebhookInbox.connection_id,
                    WebhookInbox.type,
                    WebhookInbox.payload,
                    WebhookInbox.received_us,
                )
                .where(WebhookInbox.id.in_(sorted(set(inbox_ids))))
                .where(WebhookInbox.status == "received")
                .order_by(WebhookInbox.id)
                .with_for_update()
            )
        ).all()
        failed: dict[str, Exception] = {}
        marks: list[dict[str, Any]] = []
        todo: list[tuple[str, int, str, _Scope, _Change]] = []
        for row in rows:
            try:
                change = await self._interpret(
                    row.gateway, row.account_id, row.connection_id, row.type, row.payload
                )
            except Exception as exc:  # a payload its connector cannot read, a connection gone
                failed[row.id] = exc
                continue
            if change is None:
                marks.append(self._mark(row.id, "ignored", None))
            else:
                scope = _Scope(row.gateway, row.account_id)
                todo.append((_lock_order(change), row.received_us, row.id, scope, change))
        todo.sort(key=lambda item: item[:3])
        batch = None
        if not isolate:
            ours = [c.reference for *_, c in todo if isinstance(c, PaymentUpdate) and c.reference]
            batch = await _Prefetched.load(s, ours)
        for _, _, inbox_id, scope, change in todo:
            try:
                if isolate:
                    async with s.begin_nested():
                        stale, object_id = await self._apply_change(s, scope, change)
                        await s.flush()
                else:
                    stale, object_id = await self._apply_change(s, scope, change, batch)
            except Exception as exc:
                if _aborts_batch(exc):
                    raise
                if not isolate:
                    raise BatchEventFailed(inbox_id) from exc
                failed[inbox_id] = exc
            else:
                status: InboxStatus = "stale" if stale else "applied"
                marks.append(self._mark(inbox_id, status, stale, object_id))
            finally:
                if isolate:
                    s.expunge_all()
        if not isolate:
            try:  # every event's writes, in as few statements as the unit of work can make
                await s.flush()
            except Exception as exc:
                if _aborts_batch(exc):
                    raise
                raise BatchEventFailed(None) from exc
        if marks:  # the batch's marks in one statement (executemany, on the connection)
            # The lag of each event marked (applied, stale or ignored, as ``apply`` counts
            # it), in the caller's transaction: a batch rolled back after this and applied
            # again is counted again, which a retry makes rare. From the rows read, not
            # ``todo``: an ignored event is marked without a change to apply.
            received = {row.id: (row.gateway, row.received_us) for row in rows}
            for mark in marks:
                gateway, at = received[mark["b_id"]]
                observe_apply_lag(gateway, (mark["b_applied_us"] - at) / 1_000_000)
            connection = await s.connection()
            await connection.execute(
                update(WebhookInbox)
                .where(WebhookInbox.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    error=bindparam("b_error"),
                    applied_us=bindparam("b_applied_us"),
                    object_id=bindparam("b_object_id"),
                ),
                marks,
            )
        return failed

    def _mark(
        self, inbox_id: str, status: InboxStatus, error: str | None, object_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "b_id": inbox_id,
            "b_status": status,
            "b_error": error,
            "b_applied_us": self.ctx.now_us(),
            "b_object_id": object_id,
        }

    async def _apply_row(self, s: AsyncSession, row: WebhookInbox) -> None:
        change = await self._interpret(
            row.gateway, row.account_id, row.connection_id, row.type, row.payload
        )
        stale: str | None = None
        object_id: str | None = None
        if change is not None:
            scope = _Scope(row.gateway, row.account_id)
            stale, object_id = await self._apply_change(s, scope, change)
        # "stale": verified and kept, but older than what we know, so it changed nothing.
        row.status = "ignored" if change is None else ("stale" if stale else "applied")
        row.error = stale
        row.applied_us = self.ctx.now_us()
        row.object_id = object_id

    async def _interpret(
        self,
        gateway_name: str,
        account_id: str | None,
        connection_id: str | None,
        type_: str,
        body: str,
    ) -> _Change | None:
        """What a stored event tells us, in its connector's words (None: nothing to do)."""
        gateway = await self.ctx.gateway(
            gateway_name, account_id=account_id, connection_id=connection_id
        )
        payload = json.loads(body)
        return gateway.interpret_event(
            InboundEvent(gateway_name, str(payload.get("id")), type_, payload)
        )

    async def _apply_change(
        self, s: AsyncSession, scope: _Scope, change: _Change, batch: _Prefetched | None = None
    ) -> tuple[str | None, str | None]:
        """Apply one event's change in ``s``. Returns why it was stale (or None), and the
        payment intent it was about (a refund's or a dispute's payment; None for a setup)."""
        if isinstance(change, PaymentUpdate):
            return await self._apply_payment(s, scope, change, batch)
        if isinstance(change, SetupUpdate):
            return await self._apply_setup(s, scope, change), None
        if isinstance(change, RefundUpdate):
            return None, await self._apply_refund(s, scope, change)
        return None, await self._apply_dispute(s, scope, change)

    async def _payment_by_reference(
        self,
        s: AsyncSession,
        scope: _Scope,
        ours: str | None,
        theirs: str | None,
        batch: _Prefetched | None = None,
    ) -> PaymentIntent | None:
        """The payment an event is about, among the receiving connection's account's (any
        account's, for a deployment gateway shared by several). ``batch``: the intents a
        batch locked already."""
        if ours:
            pi = batch.intents.get(ours) if batch is not None else None
            if pi is None:
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
        self, s: AsyncSession, scope: _Scope, change: PaymentUpdate, batch: _Prefetched | None
    ) -> tuple[str | None, str]:
        """Apply the provider's word. Returns why it was stale (None when applied) and the
        payment intent's id."""
        pi = await self._payment_by_reference(
            s, scope, change.reference, change.result.reference, batch
        )
        if pi is None:
            raise UnknownObjectYet(
                f"payment {change.reference or change.result.reference} is not stored yet"
            )
        attempts = batch.attempts.get(pi.id) if batch is not None else None
        if attempts is None:
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
            return stale, pi.id
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
            return None, pi.id
        moved = await self.payments.engine.apply_payment_report(s, pi, change.result)
        if needs_charge_read(change, moved.moved, pi):
            await enqueue(  # the charge's 3-D Secure result: read by the worker, no tx open
                s,
                "refresh_intent",
                {"pi_id": pi.id},
                now_us=self.ctx.now_us(),
                dedupe_key=f"refresh:{pi.id}",
                account_id=pi.account_id,
            )
        if moved.moved and pi.status != "processing":
            for attempt in attempts:  # the webhook told us the outcome a call was waiting for
                if attempt.status == "pending" and attempt.operation != Operation.REFUND:
                    attempt.status = "settled"
                    attempt.result = result_json(change.result)
                    attempt.updated_us = self.ctx.now_us()
        return None, pi.id

    async def _apply_setup(self, s: AsyncSession, scope: _Scope, change: SetupUpdate) -> str | None:
        """A SetupIntent ended at the gateway (the payer authenticated, or failed to): have the
        worker settle it (``refresh_setup_intent``: ``SetupIntentsService.settle_waiting`` asks
        the gateway, with no transaction open, and applies its answer once, as the payer's
        return does). Returns why the event was stale, or None."""
        si = None
        if change.reference:
            si = await s.get(SetupIntent, change.reference, with_for_update=True)
            if si is not None and not scope.holds(si):
                si = None
        if si is None and change.gateway_reference:
            query = select(SetupIntent).where(
                SetupIntent.gateway == scope.gateway,
                SetupIntent.gateway_reference == change.gateway_reference,
            )
            if scope.account_id is not None:
                query = query.where(SetupIntent.account_id == scope.account_id)
            si = (await s.execute(query.with_for_update())).scalar_one_or_none()
        if si is None:
            raise UnknownObjectYet(
                f"setup {change.reference or change.gateway_reference} is not stored yet"
            )
        waiting = si.pending or si.status == "requires_action"
        if not waiting:
            return f"the setup intent is {si.status} already"
        if change.status not in (
            GatewayStatus.SUCCEEDED, GatewayStatus.FAILED, GatewayStatus.CANCELED
        ):
            return None  # still under way at the gateway: a later event (or read) ends it
        # A setup call still in flight applies its own answer: the job waits for it, and
        # settles the setup only if that call's request died (the same key: no second entry).
        delay = self.ctx.settings.attempt_settle_after_seconds if si.pending else 0.0
        await enqueue(
            s,
            "refresh_setup_intent",
            {"account_id": si.account_id, "seti_id": si.id},
            now_us=self.ctx.now_us(),
            delay=delay,
            dedupe_key=f"refresh_setup:{si.id}",
            account_id=si.account_id,
        )
        return None

    async def _apply_refund(self, s: AsyncSession, scope: _Scope, change: RefundUpdate) -> str:
        """Returns the refund's payment intent."""
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
                return pi.id
        await self.refunds.apply_in(s, refund, outcome)
        return refund.payment_intent_id

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

    async def _apply_dispute(self, s: AsyncSession, scope: _Scope, change: DisputeUpdate) -> str:
        """Returns the disputed payment intent."""
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
        return pi.id

    # -- operations -------------------------------------------------------------------------
    async def mark_dead(self, s: AsyncSession, inbox_id: str, error: str) -> None:
        await s.execute(
            update(WebhookInbox)
            # An event already applied (or found stale, or ignored) keeps that outcome: a job
            # buried after its lease ran out may have been finished by the worker that was
            # still running it.
            .where(WebhookInbox.id == inbox_id, WebhookInbox.status.in_(("received", "dead")))
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
        """Put events back in the queue: one (by inbox id or provider event id), or all dead.

        An event whose apply_webhook job is dead gets that job back (queued, due now, its
        attempts reset: ``revive_dead``), so the jobs list shows one job per event, which
        ends done once applied, not a dead job left beside a new one; an event without a
        dead job (applied, or ignored) gets a new job."""
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
            revived = await revive_dead(
                s, "apply_webhook", "inbox_id", [row.id for row in rows], now_us=now
            )
            for row in rows:
                row.status = "received"
                row.error = None
                if row.id in revived:
                    continue
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


# What an event tells us, as its connector reads it.
_Change = PaymentUpdate | RefundUpdate | DisputeUpdate | SetupUpdate

# SQLSTATE classes of errors that end a transaction, not one statement: connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources, operator
# intervention (a cancelled query, the server shutting down), system error.
_TRANSACTION_ERRORS = frozenset({"08", "40", "53", "57", "58"})


def _lock_order(change: _Change) -> str:
    """The object an event is about, as a sort key: a batch locks objects in this order, so
    two batches holding some of the same objects take them in the same order.

    The key is the reference the handler looks the intent up by (ours when the event
    carries it, else the provider's); two events naming one intent differently may still
    cross, and the database's deadlock detection ends one batch (which is then applied one
    event at a time)."""
    if isinstance(change, PaymentUpdate):
        return change.reference or change.result.reference or ""
    if isinstance(change, RefundUpdate):
        return change.refund.payment_reference or ""
    if isinstance(change, SetupUpdate):
        return change.reference or change.gateway_reference or ""
    return change.payment_reference or ""


def _aborts_batch(exc: BaseException) -> bool:
    """True if ``exc`` ends the whole transaction rather than one event's savepoint: a lost
    connection, a deadlock, a serialization failure (and SQLite's operational errors, such
    as a locked or unreadable database). The batch is then rolled back as a whole."""
    if isinstance(exc, OSError | InterfaceError | OperationalError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(code, str) and (code[:2] in _TRANSACTION_ERRORS or code == "55P03")


@dataclass(frozen=True, slots=True)
class _Prefetched:
    """What a batch applied without savepoints reads up front, in two statements instead of
    two per event: the intents its payment events name by our id, locked (``FOR UPDATE``,
    in id order: one order for every batch), and their gateway attempts. Webhooks never add
    attempts, and nothing else changes these rows while the batch holds their intents'
    locks, so each event finds them as a query of its own would (with what the events
    before it in the batch changed)."""

    intents: dict[str, PaymentIntent]
    attempts: dict[str, list[GatewayAttempt]]

    @classmethod
    async def load(cls, s: AsyncSession, ours: Sequence[str]) -> _Prefetched:
        intents: dict[str, PaymentIntent] = {}
        attempts: dict[str, list[GatewayAttempt]] = {}
        if ours:
            found = await s.execute(
                select(PaymentIntent)
                .where(PaymentIntent.id.in_(sorted(set(ours))))
                .order_by(PaymentIntent.id)
                .with_for_update()
            )
            intents = {pi.id: pi for pi in found.scalars()}
        if intents:
            attempts = {pi_id: [] for pi_id in intents}
            rows = await s.execute(
                select(GatewayAttempt)
                .where(GatewayAttempt.object_id.in_(sorted(intents)))
                .order_by(GatewayAttempt.object_id, GatewayAttempt.created_us)
            )
            for attempt in rows.scalars():
                attempts[attempt.object_id].append(attempt)
        return cls(intents, attempts)
