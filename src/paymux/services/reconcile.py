"""The reconciler: our payment intents and refunds, compared with the providers' records.

``Reconciler.run`` walks our intents (created since a time, on one gateway or all) that reached
a provider (a ``gateway_reference``, or a gateway call recorded), oldest first in bounded
pages, and asks the provider about each: ``retrieve(gateway_reference)``, or
``lookup(intent id, authorize key)`` when no reference ever came back. Then the refunds the
same way (``retrieve_refund``). Calls are made outside any transaction, under the one retry
policy (``call_with_retries``).

Each difference becomes a ``Difference`` row whose resolution says what was done:

``applied``          the provider's truth was applied through the attempt engine, under the
                     intent's lock, by the same pure rules as webhooks (``apply_report``,
                     ``apply_refund``), or a pending gateway call was settled (``recover``);
``would_apply``      the same, in a dry run: nothing was changed;
``needs_attention``  the two sides differ and the rules refuse to move our record (it would
                     go backwards, or money moved that nobody asked for): a person decides;
``error``            the provider could not be asked (unavailable, rate limited, not
                     configured): the check is incomplete;
``none``             the sides agree (equal objects are counted, not listed; a listed row
                     with ``none`` was settled by someone else meanwhile, a webhook say).

A call of ours still in flight (a pending attempt younger than
``attempt_settle_after_seconds``) is left to its caller and counted as skipped.
Disputes are not compared: the Gateway Protocol has no call to read one; they arrive by
webhook only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Literal, TypeVar

from sqlalchemy import exists, or_, select, tuple_

from paymux.domain import attempts as rules
from paymux.domain.attempts import IntentState, Operation, ProviderStatus, Report
from paymux.domain.errors import PaymuxError
from paymux.domain.states import PaymentIntentStatus as S
from paymux.domain.states import RefundStatus
from paymux.gateways.base import (
    Gateway,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayRefund,
    GatewayResult,
    GatewayUnavailable,
)
from paymux.jobs.queue import enqueue
from paymux.services.attempts import (
    PENDING,
    AttemptEngine,
    opened_reference,
    report_of,
    state_of,
)
from paymux.services.context import Context
from paymux.services.gateway_calls import call_with_retries
from paymux.storage.models import GatewayAttempt, PaymentIntent, Refund

__all__ = [
    "Difference",
    "ReconcileReport",
    "Reconciler",
    "Resolution",
    "Side",
    "intent_agrees",
    "parse_since",
    "plan_intent",
]

log = logging.getLogger(__name__)
R = TypeVar("R")

PAGE_SIZE = 100

# Exit statuses of ``paymux reconcile`` (2 is a usage error, as for every command).
EXIT_OK, EXIT_ATTENTION, EXIT_ERROR = 0, 1, 3


class Resolution(StrEnum):
    NONE = "none"
    APPLIED = "applied"
    WOULD_APPLY = "would_apply"
    NEEDS_ATTENTION = "needs_attention"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Side:
    """One side's view of an object: a status and the amounts that matter (minor units)."""

    status: str
    amounts: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        shown = " ".join(f"{name}={value}" for name, value in self.amounts)
        return f"{self.status} {shown}" if shown else self.status


NO_RECORD = Side("no record")


@dataclass(frozen=True, slots=True)
class Difference:
    object_id: str
    object: Literal["payment_intent", "refund"]
    gateway: str
    ours: Side
    theirs: Side | None  # None: the provider could not be asked
    resolution: Resolution
    note: str = ""


@dataclass
class ReconcileReport:
    dry_run: bool = False
    checked: int = 0
    skipped: int = 0  # calls of ours still in flight, left to their caller
    rows: list[Difference] = field(default_factory=list)

    def count(self, resolution: Resolution) -> int:
        return sum(1 for row in self.rows if row.resolution is resolution)

    @property
    def differences(self) -> list[Difference]:
        return [row for row in self.rows if row.resolution is not Resolution.NONE]

    @property
    def exit_code(self) -> int:
        """3 if anything could not be checked, else 1 if anything needs a person, else 0."""
        if self.count(Resolution.ERROR):
            return EXIT_ERROR
        if self.count(Resolution.NEEDS_ATTENTION):
            return EXIT_ATTENTION
        return EXIT_OK


# -- the pure part: do the two sides agree, and what may be done ------------------------------


def our_intent_side(state: IntentState) -> Side:
    amounts = (
        ("capturable", state.amount_capturable),
        ("received", state.amount_received),
        ("refunded", state.amount_refunded),
        ("refund_pending", state.amount_refund_pending),
    )
    return Side(str(state.status), tuple((k, v) for k, v in amounts if v))


def their_intent_side(result: GatewayResult) -> Side:
    amounts = (("authorized", result.amount_authorized), ("captured", result.amount_captured))
    return Side(str(result.status), tuple((k, v) for k, v in amounts if v))


def refund_side(status: str, amount: int) -> Side:
    return Side(status, (("amount", amount),))


_NO_MONEY = frozenset({S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.CANCELED})


def intent_agrees(state: IntentState, report: Report) -> bool:
    """Our record says what the provider's does (an amount of 0 on the provider's side is
    one it did not report)."""
    st = state.status
    match report.status:
        case ProviderStatus.SUCCEEDED:
            captured = report.amount_captured
            if st is S.SUCCEEDED:
                return captured in (0, state.amount_received)
            # Money that landed on a canceled intent, recorded and given back (or on its way).
            return (
                st is S.CANCELED
                and captured > 0
                and captured == state.amount_received
                and rules.refundable(state) <= 0
            )
        case ProviderStatus.REQUIRES_CAPTURE:
            return st is S.REQUIRES_CAPTURE and report.amount_authorized in (
                0,
                state.amount_capturable,
            )
        case ProviderStatus.REQUIRES_ACTION:
            return st is S.REQUIRES_ACTION
        case ProviderStatus.PROCESSING:
            return st is S.PROCESSING
        case ProviderStatus.FAILED | ProviderStatus.OPEN | ProviderStatus.CANCELED:
            return (
                st in _NO_MONEY
                and state.amount_received == 0
                and (report.status is not ProviderStatus.CANCELED or st is S.CANCELED)
            )
    return False  # pragma: no cover


Plan = Literal["none", "apply", "return_late", "attention"]


def plan_intent(
    state: IntentState, report: Report, *, refund_late_payments: bool
) -> tuple[Plan, str]:
    """What to do about an intent and the provider's word on it, and why."""
    if intent_agrees(state, report):
        return "none", ""
    change = rules.apply_report(state, report)
    late = change.late_capture > 0 or change.late_authorization
    if change.moved:
        if late and not refund_late_payments:
            return "attention", (
                "money on a canceled intent and PAYMUX_REFUND_LATE_PAYMENTS is off: "
                "give it back by hand"
            )
        return "apply", ", ".join(change.events)
    st, theirs = state.status, report.status
    if st is S.CANCELED and theirs is ProviderStatus.SUCCEEDED and rules.refundable(state) > 0:
        if refund_late_payments:
            return "return_late", "money held on a canceled intent: return_late_payment queued"
        return "attention", (
            "money held on a canceled intent and PAYMUX_REFUND_LATE_PAYMENTS is off: "
            "give it back by hand"
        )
    if st is S.SUCCEEDED and theirs is ProviderStatus.SUCCEEDED:
        return "attention", (
            f"the provider captured {report.amount_captured}, we record {state.amount_received}"
        )
    if st in (S.SUCCEEDED, S.CANCELED, S.REQUIRES_CAPTURE):
        return "attention", f"we record {st}, the provider {theirs}: not moved automatically"
    return "attention", f"the rules do not move {st} to the provider's {theirs}"


# -- --since --------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now_us: int) -> int:
    """``--since``: an age (``90s``, ``30m``, ``24h``, ``7d``, ``2w``) back from now, a date
    (``2026-11-30``, midnight UTC) or an ISO 8601 time (UTC unless it says otherwise), as
    microseconds since the epoch. ValueError otherwise."""
    age = _AGE.match(text)
    if age:
        return now_us - int(float(age.group(1)) * _UNIT_SECONDS[age.group(2)] * 1_000_000)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        pass
    else:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return int(moment.timestamp()) * 1_000_000
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (24h, 30m, 7d) nor a date (2026-11-30) "
            "nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


# -- the I/O shell --------------------------------------------------------------------------


_Row = Callable[[Side | None, Resolution, str], Difference]


class _Unavailable(Exception):
    """The provider could not be asked (the row says ``error``)."""


@dataclass
class _IntentItem:
    pi: PaymentIntent
    pending: GatewayAttempt | None = None
    last_authorize: GatewayAttempt | None = None
    other_references: set[str] = field(default_factory=set)


class Reconciler:
    """``await Reconciler(app.ctx, app.engine).run(since_us=..., gateway=None)``."""

    def __init__(self, ctx: Context, engine: AttemptEngine, *, page_size: int = PAGE_SIZE):
        self.ctx = ctx
        self.engine = engine
        self.page_size = page_size

    async def run(
        self,
        *,
        since_us: int | None,
        gateway: str | None,
        apply: bool = True,
        account_id: str | None = None,
    ) -> ReconcileReport:
        report = ReconcileReport(dry_run=not apply)
        after: tuple[int, str] | None = None
        while True:
            items = await self._intent_page(since_us, gateway, account_id, after)
            for item in items:
                pi = item.pi
                await self._guard(
                    report,
                    Difference(
                        pi.id,
                        "payment_intent",
                        pi.gateway,
                        our_intent_side(state_of(pi)),
                        None,
                        Resolution.ERROR,
                    ),
                    self._check_intent(item, apply, report),
                )
            if len(items) < self.page_size:
                break
            after = (items[-1].pi.created_us, items[-1].pi.id)
        refund_after: tuple[int, str] | None = None
        while True:
            refunds = await self._refund_page(since_us, gateway, account_id, refund_after)
            for refund, of, pending in refunds:
                await self._guard(
                    report,
                    Difference(
                        refund.id,
                        "refund",
                        of.gateway,
                        refund_side(refund.status, refund.amount),
                        None,
                        Resolution.ERROR,
                    ),
                    self._check_refund(refund, of, pending, apply, report),
                )
            if len(refunds) < self.page_size:
                break
            refund_after = (refunds[-1][0].created_us, refunds[-1][0].id)
        return report

    async def _guard(
        self,
        report: ReconcileReport,
        failed: Difference,
        check: Awaitable[Difference | None],
    ) -> None:
        """One object's check: a provider that can't be asked, or anything unexpected, makes
        the ``error`` row ``failed`` (with the reason) instead of stopping the run."""
        row: Difference | None
        try:
            row = await check
        except _Unavailable as exc:
            row = replace(failed, note=str(exc))
        except Exception as exc:
            log.exception("reconciling %s failed", failed.object_id)
            row = replace(failed, note=f"{type(exc).__name__}: {exc}")
        if row is not None:
            report.rows.append(row)

    # -- reading our side, in pages -----------------------------------------------------------
    async def _intent_page(
        self,
        since_us: int | None,
        gateway: str | None,
        account_id: str | None,
        after: tuple[int, str] | None,
    ) -> list[_IntentItem]:
        reached = or_(
            PaymentIntent.gateway_reference.is_not(None),
            exists().where(GatewayAttempt.object_id == PaymentIntent.id),
        )
        query = select(PaymentIntent).where(reached)
        if since_us is not None:
            query = query.where(PaymentIntent.created_us >= since_us)
        if gateway is not None:
            query = query.where(PaymentIntent.gateway == gateway)
        if account_id is not None:
            query = query.where(PaymentIntent.account_id == account_id)
        if after is not None:
            query = query.where(tuple_(PaymentIntent.created_us, PaymentIntent.id) > tuple_(*after))
        query = query.order_by(PaymentIntent.created_us, PaymentIntent.id).limit(self.page_size)
        async with self.ctx.db.read() as s:
            intents = list((await s.execute(query)).scalars())
            items = {pi.id: _IntentItem(pi) for pi in intents}
            if not items:
                return []
            attempts = (
                await s.execute(
                    select(GatewayAttempt)
                    .where(
                        GatewayAttempt.object_id.in_(list(items)),
                        or_(
                            GatewayAttempt.status == PENDING,
                            GatewayAttempt.operation == Operation.AUTHORIZE.value,
                        ),
                    )
                    .order_by(GatewayAttempt.created_us, GatewayAttempt.id)
                )
            ).scalars()
            for attempt in attempts:
                item = items[attempt.object_id]
                if attempt.status == PENDING:
                    item.pending = item.pending or attempt
                if attempt.operation == Operation.AUTHORIZE:
                    item.last_authorize = attempt
                    reference = (attempt.result or {}).get("reference")
                    if reference:
                        item.other_references.add(str(reference))
        return list(items.values())

    async def _refund_page(
        self,
        since_us: int | None,
        gateway: str | None,
        account_id: str | None,
        after: tuple[int, str] | None,
    ) -> list[tuple[Refund, PaymentIntent, GatewayAttempt | None]]:
        query = select(Refund, PaymentIntent).join(
            PaymentIntent, PaymentIntent.id == Refund.payment_intent_id
        )
        if since_us is not None:
            query = query.where(Refund.created_us >= since_us)
        if gateway is not None:
            query = query.where(PaymentIntent.gateway == gateway)
        if account_id is not None:
            query = query.where(Refund.account_id == account_id)
        if after is not None:
            query = query.where(tuple_(Refund.created_us, Refund.id) > tuple_(*after))
        query = query.order_by(Refund.created_us, Refund.id).limit(self.page_size)
        async with self.ctx.db.read() as s:
            rows = [(r, p) for r, p in (await s.execute(query)).all()]
            if not rows:
                return []
            pending: dict[str, GatewayAttempt] = {}
            for attempt in (
                await s.execute(
                    select(GatewayAttempt)
                    .where(
                        GatewayAttempt.object_id.in_([r.id for r, _ in rows]),
                        GatewayAttempt.status == PENDING,
                    )
                    .order_by(GatewayAttempt.created_us)
                )
            ).scalars():
                pending.setdefault(attempt.object_id, attempt)
        return [(r, p, pending.get(r.id)) for r, p in rows]

    # -- asking the provider ------------------------------------------------------------------
    async def _ask(self, call: Callable[[], Awaitable[R]]) -> R:
        try:
            return await call_with_retries(self.ctx.settings, call)
        except (GatewayUnavailable, GatewayRateLimited) as exc:
            raise _Unavailable(
                f"the provider could not be asked: {type(exc).__name__}: {exc}"
            ) from exc

    async def _gateway(self, obj: PaymentIntent | GatewayAttempt) -> Gateway:
        try:
            return await self.ctx.gateway_of(obj)
        except PaymuxError as exc:
            raise _Unavailable(
                f"no gateway {obj.gateway!r} (connection {obj.connection_id}) here: {exc}"
            ) from exc

    def _in_flight(self, attempt: GatewayAttempt) -> bool:
        age = self.ctx.now_us() - attempt.updated_us
        return age < self.ctx.settings.attempt_settle_after_seconds * 1_000_000

    def _retained(self, gateway: Gateway, attempt: GatewayAttempt) -> bool:
        age = self.ctx.now_us() - attempt.created_us
        return age < gateway.idempotency_retention_seconds * 1_000_000

    # -- intents ------------------------------------------------------------------------------
    async def _check_intent(
        self, item: _IntentItem, apply: bool, report: ReconcileReport
    ) -> Difference | None:
        pi = item.pi
        if item.pending is not None:
            return await self._check_pending_payment(item, item.pending, apply, report)
        report.checked += 1
        gateway = await self._gateway(pi)
        state = state_of(pi)
        ours = our_intent_side(state)
        reference = pi.gateway_reference
        found: GatewayResult | None
        missing = ""
        try:
            if reference is not None:
                found = await self._ask(lambda: gateway.retrieve(reference))
            else:
                assert item.last_authorize is not None  # selected for having a gateway call
                key = item.last_authorize.idempotency_key
                found = await self._ask(lambda: gateway.lookup(pi.id, key))
        except GatewayInvalidRequest as exc:
            found, missing = None, f" ({exc.code}: {exc})"

        def row(theirs: Side | None, resolution: Resolution, note: str) -> Difference:
            return Difference(pi.id, "payment_intent", pi.gateway, ours, theirs, resolution, note)

        if found is None:
            if state.status in _NO_MONEY and state.amount_received == 0:
                return None  # never paid, and the provider agrees
            what = f"payment {reference}" if reference else "payment for this intent"
            return row(
                NO_RECORD,
                Resolution.NEEDS_ATTENTION,
                f"the provider has no record of the {what}{missing}",
            )
        theirs = their_intent_side(found)
        settings = self.ctx.settings
        plan, note = plan_intent(
            state, report_of(found), refund_late_payments=settings.refund_late_payments
        )
        if plan == "none":
            return None
        if plan == "attention":
            return row(theirs, Resolution.NEEDS_ATTENTION, note)
        if not apply:
            return row(theirs, Resolution.WOULD_APPLY, note)
        resolution, note = await self._apply_intent(pi.id, found)
        return row(theirs, resolution, note)

    async def _apply_intent(self, pi_id: str, found: GatewayResult) -> tuple[Resolution, str]:
        """Apply the provider's word under the intent's lock, deciding again on what the row
        says now (a webhook may have got there first)."""
        settings = self.ctx.settings
        async with self.ctx.db.write() as s:
            pi = await s.get(PaymentIntent, pi_id, with_for_update=True, populate_existing=True)
            assert pi is not None
            busy = (
                await s.execute(
                    select(GatewayAttempt.id).where(
                        GatewayAttempt.object_id == pi_id, GatewayAttempt.status == PENDING
                    )
                )
            ).first()
            if busy is not None:
                return Resolution.NONE, "a gateway call started meanwhile: left to it"
            plan, note = plan_intent(
                state_of(pi), report_of(found), refund_late_payments=settings.refund_late_payments
            )
            if plan == "none":
                return Resolution.NONE, "settled meanwhile"
            if plan == "attention":
                return Resolution.NEEDS_ATTENTION, note
            if plan == "return_late":
                await enqueue(
                    s,
                    "return_late_payment",
                    {"pi_id": pi_id},
                    now_us=self.ctx.now_us(),
                    dedupe_key=f"late:{pi_id}",
                    account_id=pi.account_id,
                )
                return Resolution.APPLIED, note
            change = await self.engine.apply_payment_report(s, pi, found)
            if not change.moved:  # pragma: no cover - plan_intent said it would move
                return Resolution.NEEDS_ATTENTION, "the rules refused the provider's word"
            return Resolution.APPLIED, ", ".join(change.events) or note

    async def _check_pending_payment(
        self, item: _IntentItem, attempt: GatewayAttempt, apply: bool, report: ReconcileReport
    ) -> Difference | None:
        """An intent with a gateway call of ours whose outcome we never recorded."""
        if self._in_flight(attempt):
            report.skipped += 1
            return None
        report.checked += 1
        pi = item.pi
        ours = our_intent_side(state_of(pi))
        gateway = await self._gateway(attempt)
        op = Operation(attempt.operation)
        reference, key = pi.gateway_reference, attempt.idempotency_key
        header = f"{op.value} call {attempt.id} pending"

        def row(theirs: Side | None, resolution: Resolution, note: str) -> Difference:
            return Difference(
                pi.id,
                "payment_intent",
                pi.gateway,
                ours,
                theirs,
                resolution,
                f"{header}: {note}",
            )

        # What ``recover`` asks: an authorize call made its own payment unless it confirmed
        # one opened at create (the reference on the intent may be an earlier, failed one).
        if op is Operation.AUTHORIZE:
            reference = opened_reference(pi)
        try:
            if reference is not None:
                asked = reference
                found: GatewayResult | None = await self._ask(lambda: gateway.retrieve(asked))
            elif op is Operation.AUTHORIZE:
                found = await self._ask(lambda: gateway.lookup(pi.id, key))
            else:
                found = None
        except GatewayInvalidRequest as exc:
            return row(
                NO_RECORD,
                Resolution.NEEDS_ATTENTION,
                f"the provider refused to show payment {reference} ({exc.code}: {exc})",
            )
        if (
            op is Operation.AUTHORIZE
            and found is not None
            and found.reference in item.other_references - {reference}
        ):
            found = None  # an earlier attempt's payment, not this one's
        known = found is not None and found.status is not ProviderStatus.OPEN
        theirs = their_intent_side(found) if found is not None else NO_RECORD
        if op is Operation.AUTHORIZE and not known and not self._retained(gateway, attempt):
            return row(
                theirs,
                Resolution.NEEDS_ATTENTION,
                "no payment at the provider and the idempotency key is past the gateway's "
                "retention: it may have made a payment that can't be found; not re-sent",
            )
        if op is Operation.AUTHORIZE and not known:
            plan = "send it again with the same idempotency key"
        elif known:
            plan = "record the provider's answer"
        elif reference is None:
            plan = "abandon it (no provider payment to act on)"
        else:
            plan = "ask again and settle it"
        if not apply:
            return row(theirs, Resolution.WOULD_APPLY, plan)
        return await self._recover(attempt.id, pi.id, row, theirs)

    async def _recover(
        self,
        attempt_id: str,
        object_id: str,
        row: _Row,
        theirs: Side,
    ) -> Difference:
        """Settle a pending call as the ``settle_attempt`` job does (``engine.recover``)."""
        await self.engine.recover(attempt_id)
        async with self.ctx.db.read() as s:
            attempt = await s.get(GatewayAttempt, attempt_id)
            obj: PaymentIntent | Refund | None = await s.get(PaymentIntent, object_id)
            if obj is None:
                obj = await s.get(Refund, object_id)
            assert attempt is not None and obj is not None
            status, now = attempt.status, obj.status
        if status == PENDING:
            return row(
                theirs,
                Resolution.ERROR,
                "the provider could not be asked; a settle_attempt job will ask again",
            )
        return row(theirs, Resolution.APPLIED, f"{status}, now {now}")

    # -- refunds ------------------------------------------------------------------------------
    async def _check_refund(
        self,
        refund: Refund,
        pi: PaymentIntent,
        attempt: GatewayAttempt | None,
        apply: bool,
        report: ReconcileReport,
    ) -> Difference | None:
        if attempt is not None and self._in_flight(attempt):
            report.skipped += 1
            return None
        report.checked += 1
        ours = refund_side(refund.status, refund.amount)
        old = RefundStatus(refund.status)
        header = f"refund call {attempt.id} pending: " if attempt is not None else ""

        def row(theirs: Side | None, resolution: Resolution, note: str) -> Difference:
            return Difference(
                refund.id, "refund", pi.gateway, ours, theirs, resolution, header + note
            )

        payment_reference = pi.gateway_reference
        if payment_reference is None:
            if old in (RefundStatus.FAILED, RefundStatus.CANCELED) and attempt is None:
                return None
            return row(None, Resolution.NEEDS_ATTENTION, "its payment has no provider reference")
        gateway = await self._gateway(pi)
        try:
            found: GatewayRefund | None = await self._ask(
                lambda: gateway.retrieve_refund(
                    refund.gateway_reference, our_id=refund.id, payment_reference=payment_reference
                )
            )
        except GatewayInvalidRequest as exc:
            return row(
                NO_RECORD,
                Resolution.NEEDS_ATTENTION,
                f"the provider refused to show it ({exc.code}: {exc})",
            )
        theirs = refund_side(found.status, found.amount) if found is not None else NO_RECORD
        if attempt is not None:
            if found is None and not self._retained(gateway, attempt):
                return row(
                    theirs,
                    Resolution.NEEDS_ATTENTION,
                    "no refund at the provider and the idempotency key is past the gateway's "
                    "retention; not re-sent",
                )
            if not apply:
                plan = "record the provider's answer" if found else "send it again, same key"
                return row(theirs, Resolution.WOULD_APPLY, plan)
            return await self._recover(attempt.id, refund.id, row, theirs)
        if found is None:
            if old in (RefundStatus.FAILED, RefundStatus.CANCELED):
                return None  # never made, and the provider agrees
            return row(theirs, Resolution.NEEDS_ATTENTION, "the provider has no record of it")
        if found.status == old and found.amount == refund.amount:
            return None
        if found.amount != refund.amount:
            return row(
                theirs,
                Resolution.NEEDS_ATTENTION,
                f"the provider refunded {found.amount}, we record {refund.amount}",
            )
        try:
            new = RefundStatus(found.status)
        except ValueError:
            return row(theirs, Resolution.NEEDS_ATTENTION, f"unknown status {found.status!r}")
        if rules.apply_refund(state_of(pi), old, new, refund.amount) is None:
            return row(
                theirs,
                Resolution.NEEDS_ATTENTION,
                f"we record {old}, the provider {new}: not moved automatically",
            )
        note = f"refund {old} -> {new}"
        if not apply:
            return row(theirs, Resolution.WOULD_APPLY, note)
        async with self.ctx.db.write() as s:
            locked = await s.get(Refund, refund.id)
            assert locked is not None
            changed = await self.engine.apply_refund_report(s, locked, found)
            now = locked.status
        if changed:
            return row(theirs, Resolution.APPLIED, note)
        if now == found.status:
            return row(theirs, Resolution.NONE, "settled meanwhile")
        return row(theirs, Resolution.NEEDS_ATTENTION, f"we record {now}, the provider {new}")
